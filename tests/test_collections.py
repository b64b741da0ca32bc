"""`nnx.Sequence` and `nnx.Dict`: Modules holding a list or a mapping of items."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Add(nnx.Module):
    def __init__(self, value):
        self.value = nnx.Param(jnp.asarray(value))

    def __call__(self, x):
        return x + self.value


class Noisy(nnx.Module):
    def __call__(self, x, *, ctx: nnx.Context):
        return x + jax.random.uniform(ctx.make_rng("noise"), jnp.shape(x))


def test_sequence_len_iter_index():
    seq = nnx.Sequence([Add(1.0), Add(2.0), Add(3.0)])
    assert len(seq) == 3
    assert [float(m.value) for m in seq] == [1.0, 2.0, 3.0]
    assert seq[0].value == 1.0
    assert seq[-1].value == 3.0
    assert seq[-3].value == 1.0
    assert [float(m.value) for m in seq[1:]] == [2.0, 3.0]
    with pytest.raises(IndexError, match="out of range"):
        seq[3]
    with pytest.raises(IndexError, match="out of range"):
        seq[-4]


def test_empty_sequence():
    seq = nnx.Sequence([])
    assert len(seq) == 0
    assert list(seq) == []
    assert len(nnx.Sequence()) == 0
    with pytest.raises(IndexError):
        seq[0]
    with pytest.raises(IndexError):
        seq[-1]
    state, moduledef = seq.partition()
    assert len(state) == 0
    assert len(moduledef.merge(state)) == 0


def test_sequence_items_are_unboxed_and_stateful():
    seq = nnx.Sequence([nnx.Param(jnp.ones(2)), jnp.zeros(1), Add(1.0)])
    assert isinstance(seq[0], jax.Array)
    assert not isinstance(seq[0], nnx.Param)
    assert list(seq.get_state()) == [(0,), (1,), (2, "value")]
    assert type(seq.get_state()[(0,)]) is nnx.Param


def test_sequence_setitem_and_append():
    seq = nnx.Sequence([Add(1.0)])
    seq.append(Add(2.0))
    assert len(seq) == 2
    seq[-1] = Add(5.0)
    assert seq[1].value == 5.0
    with pytest.raises(IndexError):
        seq[2] = Add(0.0)


def test_sequence_call_chains():
    seq = nnx.Sequence([Add(1.0), lambda x: x * 2, Add(3.0)])
    assert seq(1.0) == 7.0


def test_sequence_call_tuple_and_dict_outputs():
    seq = nnx.Sequence(
        [
            lambda x: (x, x + 1),
            lambda a, b: {"a": a, "b": b},
            lambda *, a, b: a * b,
        ]
    )
    assert seq(2) == 6


def test_sequence_call_forwards_ctx_to_items_that_take_it():
    seq = nnx.Sequence([Add(1.0), Noisy(), lambda x: x * 0 + x])
    out1 = seq(jnp.zeros(3), ctx=nnx.context(noise=0))
    out2 = seq(jnp.zeros(3), ctx=nnx.context(noise=0))
    np.testing.assert_array_equal(out1, out2)
    expected = 1.0 + jax.random.uniform(nnx.context(noise=0).make_rng("noise"), (3,))
    np.testing.assert_allclose(out1, expected, rtol=1e-6)


def test_sequence_non_callable_item():
    seq = nnx.Sequence([Add(1.0), nnx.Param(jnp.ones(()))])
    with pytest.raises(TypeError, match=r"Sequence\[1\] is not callable"):
        seq(1.0)


def test_sequence_roundtrip():
    seq = nnx.Sequence([Add(float(i)) for i in range(11)])
    state, moduledef = seq.partition()
    assert list(state) == [(i, "value") for i in range(11)]
    rebuilt = moduledef.merge(state)
    assert len(rebuilt) == 11
    assert [float(m.value) for m in rebuilt] == [float(i) for i in range(11)]


def test_dict_mapping_protocol():
    d = nnx.Dict({"a": Add(1.0)}, b=nnx.Param(jnp.ones(2)), c=3)
    assert len(d) == 3
    assert list(d) == ["a", "b", "c"]
    assert set(d.keys()) == {"a", "b", "c"}
    assert "a" in d
    assert "zzz" not in d
    assert d.get("zzz") is None
    assert d.get("zzz", 7) == 7
    assert d.get("c") == 3
    assert d["a"] is d.a
    assert isinstance(d["b"], jax.Array)
    with pytest.raises(KeyError):
        d["zzz"]
    with pytest.raises(AttributeError, match="zzz"):
        _ = d.zzz


def test_dict_set_and_delete():
    d = nnx.Dict(a=nnx.Param(jnp.ones(())))
    d["a"] = jnp.zeros(())
    assert type(vars(d)["a"]) is nnx.Param
    assert d["a"] == 0.0
    d["m"] = Add(1.0)
    assert list(d.get_state()) == [("a",), ("m", "value")]
    del d["a"]
    assert "a" not in d
    assert len(d) == 1
    with pytest.raises(KeyError):
        del d["a"]


def test_dict_roundtrip():
    d = nnx.Dict(x=Add(1.0), y=Add(2.0))
    d["z"] = d["x"]
    state, moduledef = d.partition()
    rebuilt = moduledef.merge(state)
    assert rebuilt["z"] is rebuilt["x"]
    assert rebuilt["y"].value == 2.0
    assert len(rebuilt) == 3


def test_empty_dict():
    d = nnx.Dict()
    assert len(d) == 0
    assert list(d) == []
    assert "a" not in d

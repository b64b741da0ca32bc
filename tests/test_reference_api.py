"""NNX 0.0.8 behaviours of the Module API, containers, dataclasses, Pytree and SPMD
helpers (reference-semantics §4, §5, §11, §12; DECISIONS 6-8)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization
from jax.sharding import PartitionSpec

import nnx


class Capture(nnx.Module):
    """The README's "Capturing Intermediate Values" Linear."""

    def __init__(self, din: int, dout: int, *, ctx: nnx.Context) -> None:
        key = ctx.make_rng("params")
        self.w = nnx.Param(jax.random.uniform(key, (din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x @ self.w + self.b
        self.y = nnx.Intermediate(y)
        return y


# ----------------------------------------------------------------------------------
# merge tolerates missing intermediates only (DECISIONS 6)


def test_readme_functional_flow_pops_intermediates_and_applies_again():
    model = Capture(12, 2, ctx=nnx.context(0))
    x = jnp.ones((8, 12))
    state, moduledef = model.partition()
    y, (state, moduledef) = moduledef.apply(state)(x)
    intermediates, state = state.partition("intermediates", ...)
    assert list(intermediates) == [("y",)]
    np.testing.assert_allclose(intermediates[("y",)].value, y)
    # the returned moduledef records `y`; the popped state no longer has it
    assert moduledef.intermediate_keys == ("y",)
    y2, (state2, _) = moduledef.apply(state)(x)
    np.testing.assert_allclose(y2, y)
    assert ("y",) in state2
    rebuilt = moduledef.merge(state)
    assert "y" not in vars(rebuilt)
    np.testing.assert_allclose(rebuilt.w, model.w)


def test_merge_still_refuses_a_missing_param():
    model = Capture(3, 2, ctx=nnx.context(0))
    model(jnp.ones((1, 3)))
    state, moduledef = model.partition()
    params_only = state.filter(nnx.Param)
    moduledef.merge(params_only)  # missing only the Intermediate: fine
    with pytest.raises(ValueError, match=r"missing paths: \[\('w',\)\]"):
        moduledef.merge(state.filter(lambda path, _: path != ("w",)))


def test_moduledef_records_intermediates():
    model = Capture(3, 2, ctx=nnx.context(0))
    before = model.get_module_def()
    model(jnp.ones((1, 3)))
    after = model.get_module_def()
    assert before.intermediate_keys == ()
    assert after.intermediate_keys == ("y",)
    assert after != before
    model.pop_state(nnx.Intermediate)
    assert model.get_module_def() == before


# ----------------------------------------------------------------------------------
# module.apply -> (out, clone) (DECISIONS 7)


def test_module_apply_returns_the_output_and_a_clone():
    model = Capture(3, 2, ctx=nnx.context(0))
    x = jnp.ones((1, 3))
    y, clone = model.apply(x)
    assert isinstance(clone, Capture) and clone is not model
    np.testing.assert_allclose(clone.y, y)
    assert "y" not in vars(model)  # the original is untouched
    np.testing.assert_allclose(clone.w, model.w)
    clone.w = jnp.zeros((3, 2))
    assert not np.allclose(model.w, 0.0)


# ----------------------------------------------------------------------------------
# generic Sequence / Dict


def test_sequence_and_dict_are_generic_at_run_time():
    ctx = nnx.context(0)
    seq = nnx.Sequence[nnx.Linear]([nnx.Linear(2, 2, ctx=ctx), nnx.Linear(2, 2, ctx=ctx)])
    assert isinstance(seq, nnx.Sequence)
    assert "__orig_class__" not in vars(seq)  # not a static field
    plain = nnx.Sequence([nnx.Linear(2, 2, ctx=ctx), nnx.Linear(2, 2, ctx=ctx)])
    assert seq.get_module_def() == plain.get_module_def()
    d = nnx.Dict[int](a=1, b=2)
    assert dict(d.items()) == {"a": 1, "b": 2}
    alias = nnx.PureModule[nnx.Dict[int]]
    assert alias is not None
    pure: nnx.PureModule[nnx.Dict[int]] = d.partition()  # type: ignore[assignment]
    assert dict(pure.merge().items()) == {"a": 1, "b": 2}


@pytest.mark.parametrize("key", ["cls", "self", "args", "kwargs", "ctx", "items"])
def test_dict_takes_any_key(key: str):
    d = nnx.Dict(**{key: jnp.ones((2,))})
    np.testing.assert_array_equal(d[key], jnp.ones((2,)))
    assert list(d) == [key]
    state, moduledef = d.partition()
    assert list(state) == [(key,)]
    assert key in moduledef.merge(state)


def test_dict_missing_key_is_a_key_error():
    d = nnx.Dict(a=1)
    with pytest.raises(KeyError):
        d["b"]
    assert d.get("b") is None and "b" not in d


# ----------------------------------------------------------------------------------
# dataclass fields check their kind (as on Pytrees)


@nnx.dataclass
class Fields(nnx.Module):
    a: int = nnx.node_field()
    p: jax.Array | None = nnx.param_field(default=None)
    v: jax.Array | None = nnx.var_field(nnx.BatchStat, default=None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"a": nnx.Param(1)}, r"Fields\.a \(a dataclass field\): Cannot build a Node from a Param"),
        (
            {"a": 1, "p": nnx.BatchStat(jnp.ones(1))},
            r"Fields\.p (.|\n)*Param from a BatchStat",
        ),
        ({"a": 1, "v": nnx.Param(jnp.ones(1))}, r"Fields\.v (.|\n)*BatchStat from a Param"),
    ],
)
def test_module_dataclass_fields_refuse_another_kind(kwargs: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message):
        Fields(**kwargs)


def test_module_dataclass_fields_wrap_and_accept_their_own_kind():
    m = Fields(a=1, p=nnx.Param(jnp.ones(2)), v=jnp.zeros(2))
    assert type(vars(m)["a"]) is nnx.Node
    assert type(vars(m)["p"]) is nnx.Param
    assert type(vars(m)["v"]) is nnx.BatchStat
    assert m.a == 1
    with pytest.raises(ValueError, match=r"Fields\.a"):
        m.a = nnx.Param(2)  # later assignments are checked too
    assert m.a == 1


@nnx.dataclass
class PytreeFields(nnx.Pytree):
    a: int = nnx.node_field()


def test_pytree_dataclass_fields_refuse_another_kind():
    assert type(vars(PytreeFields(a=1))["a"]) is nnx.Node
    with pytest.raises(ValueError, match="Cannot build a Node from a Param"):
        PytreeFields(a=nnx.Param(1))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------
# dataclass options


@nnx.dataclass(frozen=True)
class Frozen(nnx.Pytree):
    w: jax.Array = nnx.param_field()
    scale: float = 1.0


def test_frozen_pytree_dataclass():
    f = Frozen(jnp.ones(2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.scale = 2.0  # type: ignore[misc]
    assert type(vars(f)["w"]) is nnx.Param
    leaves, treedef = jax.tree_util.tree_flatten(f)
    assert len(leaves) == 1
    g = jax.tree_util.tree_unflatten(treedef, [jnp.zeros(2)])
    np.testing.assert_array_equal(g.w, jnp.zeros(2))
    assert f.replace(scale=3.0).scale == 3.0
    doubled = jax.jit(lambda t: jax.tree.map(lambda x: 2 * x, t))(f)
    np.testing.assert_array_equal(doubled.w, 2 * jnp.ones(2))


def test_eq_order_and_unsafe_hash_have_their_dataclass_meaning():
    @nnx.dataclass(eq=True, order=True, unsafe_hash=True)
    class Point(nnx.Pytree):
        x: int
        y: int

    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) < Point(1, 3)
    assert hash(Point(1, 2)) == hash(Point(1, 2))

    @nnx.dataclass(kw_only=True)
    class KwOnly(nnx.Pytree):
        x: int

    with pytest.raises(TypeError):
        KwOnly(1)  # type: ignore[misc]
    assert KwOnly(x=1).x == 1


def test_identity_equality_is_the_default():
    @nnx.dataclass
    class Point(nnx.Pytree):
        x: int

    assert Point(1) != Point(1)


def test_a_frozen_module_is_refused():
    with pytest.raises(TypeError, match=r"cannot decorate the Module Bad(.|\n)*nnx\.Pytree"):

        @nnx.dataclass(frozen=True)
        class Bad(nnx.Module):
            a: int = 1


def test_pytree_whose_new_takes_arguments():
    class Scaled(nnx.Pytree):
        def __new__(cls, factor: float) -> Scaled:
            assert factor > 0
            return super().__new__(cls)

        def __init__(self, factor: float) -> None:
            self.factor = factor

    assert Scaled(2.0).factor == 2.0
    with pytest.raises(AssertionError):
        Scaled(-1.0)


# ----------------------------------------------------------------------------------
# get_partition_spec of a TrainState


def test_get_partition_spec_of_a_train_state():
    init = nnx.with_logical_partitioning(nnx.initializers.lecun_normal(), ("in", "out"))
    model = nnx.Linear(2, 3, kernel_init=init, ctx=nnx.context(0))
    params, moduledef = model.partition(nnx.Param)
    state = nnx.TrainState(moduledef, params=params, tx=optax.adam(1e-3))
    specs = nnx.get_partition_spec(state)
    assert specs.params[("kernel",)] == PartitionSpec("in", "out")
    assert specs.params[("bias",)] == PartitionSpec()
    adam = specs.opt_state[0]
    assert adam.mu[("kernel",)] == PartitionSpec("in", "out")
    assert adam.nu[("bias",)] == PartitionSpec()
    assert adam.count == PartitionSpec()
    assert specs.step == PartitionSpec()
    # the specs are a prefix of the state's own tree (what in_shardings takes)
    paired = jax.tree.map(
        lambda spec, x: (spec, len(jax.tree.leaves(x)[0].shape)),
        specs,
        state,
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )
    assert paired.params[("kernel",)] == (PartitionSpec("in", "out"), 2)
    assert paired.step == (PartitionSpec(), 0)


# ----------------------------------------------------------------------------------
# filters: a list is any-of, like a tuple


def test_list_filters():
    model = nnx.BatchNorm(2, ctx=nnx.context(0))
    with_list = model.filter([nnx.Param, nnx.BatchStat])
    with_tuple = model.filter((nnx.Param, nnx.BatchStat))
    assert list(with_list) == list(with_tuple)
    (params, rest), _ = model.partition(["params"], ...)
    assert set(params) == {("bias",), ("scale",)}
    assert set(rest) == {("mean",), ("var",)}


# ----------------------------------------------------------------------------------
# flax.serialization (where flax is imported, as in 0.0.8)


def test_pytrees_serialize_with_flax():
    class Bar(nnx.Pytree):
        def __init__(self, a: int, b: int) -> None:
            self.a = a
            self.b = nnx.Node(b)

    @nnx.dataclass
    class Foo(nnx.Pytree):
        bar: Bar
        c: int = nnx.node_field()
        d: int = nnx.field()

    foo = Foo(bar=Bar(a=1, b=2), c=3, d=4)
    state_dict = serialization.to_state_dict(foo)
    assert state_dict == {"bar": {"b": 2}, "c": 3}  # node fields only, unboxed
    state_dict["bar"]["b"] = 5
    restored = serialization.from_state_dict(foo, state_dict)
    assert (restored.bar.b, restored.bar.a, restored.c, restored.d) == (5, 1, 3, 4)
    assert type(vars(restored.bar)["b"]) is nnx.Node
    assert foo.bar.b == 2  # the target is not changed
    del state_dict["bar"]["b"]
    with pytest.raises(ValueError, match="Missing field 'b'"):
        serialization.from_state_dict(foo, state_dict)
    state_dict["bar"]["b"] = 5
    state_dict["x"] = 6
    with pytest.raises(ValueError, match=r"Unknown field\(s\) \['x'\]"):
        serialization.from_state_dict(foo, state_dict)

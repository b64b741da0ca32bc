"""State: a sorted, immutable, path-keyed mapping and pytree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import DictKey, GetAttrKey

import nnx


def _state():
    return nnx.State(
        {
            ("b",): nnx.Param(jnp.asarray(1.0)),
            ("a", "y"): nnx.BatchStat(jnp.asarray(2.0)),
            ("a", "x"): jnp.asarray(3.0),
        }
    )


def test_state_is_sorted():
    state = _state()
    assert list(state) == [("a", "x"), ("a", "y"), ("b",)]
    assert list(state.keys()) == [("a", "x"), ("a", "y"), ("b",)]


def test_state_sorts_int_keys_numerically_before_str_keys():
    state = nnx.State(
        {
            ("s", "name"): 0,
            ("s", 10): 1,
            ("s", 2): 2,
            ("r",): 3,
            ("s", 1, "z"): 4,
            ("s", 1, "a"): 5,
        }
    )
    assert list(state) == [
        ("r",),
        ("s", 1, "a"),
        ("s", 1, "z"),
        ("s", 2),
        ("s", 10),
        ("s", "name"),
    ]


def test_state_is_a_mapping():
    state = _state()
    assert len(state) == 3
    assert ("b",) in state
    assert ("c",) not in state
    assert state[("b",)] == nnx.Param(jnp.asarray(1.0))
    assert state.get(("c",)) is None
    with pytest.raises(KeyError):
        state[("c",)]


def test_state_keys_must_be_tuples():
    with pytest.raises(TypeError, match="tuples"):
        nnx.State({"a": 1})
    with pytest.raises(TypeError, match="tuples"):
        nnx.State({"a/b": 1})


def test_state_is_immutable():
    state = _state()
    with pytest.raises(TypeError):
        state[("c",)] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        del state[("b",)]  # type: ignore[attr-defined]
    assert len(state) == 3


def test_state_from_pairs():
    state = nnx.State([(("z",), 1), (("a",), 2)])
    assert list(state) == [("a",), ("z",)]


def test_state_or_and_merge_later_wins():
    a = nnx.State({("x",): 1, ("y",): 2})
    b = nnx.State({("y",): 3, ("z",): 4})
    c = nnx.State({("z",): 5})
    merged = a | b
    assert isinstance(merged, nnx.State)
    assert dict(merged) == {("x",): 1, ("y",): 3, ("z",): 4}
    assert dict(nnx.State.merge(a, b, c)) == {("x",): 1, ("y",): 3, ("z",): 5}
    assert dict(nnx.State.merge(c, b, a)) == {("x",): 1, ("y",): 2, ("z",): 4}
    assert list(b | a) == [("x",), ("y",), ("z",)]
    assert dict(nnx.State.merge(a)) == dict(a)


def test_state_sub_drops_keys_and_keeps_order():
    state = _state()
    rest = state - nnx.State({("a", "y"): None, ("missing",): None})
    assert isinstance(rest, nnx.State)
    assert list(rest) == [("a", "x"), ("b",)]
    assert list(state) == [("a", "x"), ("a", "y"), ("b",)]


def test_state_equality():
    assert _state() == _state()
    assert _state() == {
        ("a", "x"): jnp.asarray(3.0),
        ("a", "y"): nnx.BatchStat(jnp.asarray(2.0)),
        ("b",): nnx.Param(jnp.asarray(1.0)),
    }
    # a different value, kind, or key set
    assert _state() != _state() | nnx.State({("b",): nnx.Param(jnp.asarray(0.0))})
    assert _state() != _state() | nnx.State({("b",): nnx.BatchStat(jnp.asarray(1.0))})
    assert _state() != _state() | nnx.State({("c",): 1})
    assert _state() != _state() - nnx.State({("b",): None})
    # arrays with several elements compare element-wise without raising
    big = nnx.State({("w",): nnx.Param(jnp.ones((2, 3)))})
    assert big == nnx.State({("w",): nnx.Param(jnp.ones((2, 3)))})
    assert big != nnx.State({("w",): nnx.Param(jnp.zeros((2, 3)))})
    assert big != nnx.State({("w",): nnx.Param(jnp.ones((3, 2)))})


def test_state_is_a_pytree_with_keys():
    state = _state()
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(state)
    paths = [p for p, _ in leaves_with_path]
    assert paths == [
        (DictKey(("a", "x")),),
        (DictKey(("a", "y")), GetAttrKey("value")),
        (DictKey(("b",)), GetAttrKey("value")),
    ]
    assert [float(v) for _, v in leaves_with_path] == [3.0, 2.0, 1.0]
    rebuilt = jax.tree_util.tree_unflatten(treedef, [v for _, v in leaves_with_path])
    assert rebuilt == state
    assert list(rebuilt) == list(state)


def test_tree_map_keeps_keys_and_variable_kinds():
    state = nnx.State(
        {
            ("w",): nnx.Param(jnp.ones(2), sharding=("x",)),
            ("s",): nnx.BatchStat(jnp.zeros(2)),
            ("n",): nnx.Param(None),
        }
    )
    doubled = jax.tree.map(lambda x: x * 2 + 1, state)
    assert isinstance(doubled, nnx.State)
    assert list(doubled) == list(state)
    assert type(doubled[("w",)]) is nnx.Param
    assert doubled[("w",)].sharding == ("x",)
    assert type(doubled[("s",)]) is nnx.BatchStat
    assert doubled[("n",)] == nnx.Param(None)
    np.testing.assert_array_equal(doubled[("w",)].value, jnp.full(2, 3.0))
    np.testing.assert_array_equal(doubled[("s",)].value, jnp.ones(2))
    assert len(jax.tree_util.tree_leaves(state)) == 2


def test_state_crosses_jit():
    state = _state()
    out = jax.jit(lambda s: jax.tree.map(lambda x: -x, s))(state)
    assert list(out) == list(state)
    assert out[("b",)] == nnx.Param(jnp.asarray(-1.0))


def test_state_partition_and_filter():
    state = _state()
    params, stats, rest = state.partition(nnx.Param, nnx.BatchStat, ...)
    assert list(params) == [("b",)]
    assert list(stats) == [("a", "y")]
    assert list(rest) == [("a", "x")]
    assert state.partition(...) == state
    with pytest.raises(ValueError, match="Non-exhaustive"):
        state.partition(nnx.Param)
    with pytest.raises(ValueError, match="Ellipsis"):
        state.partition(..., nnx.Param)
    with pytest.raises(ValueError, match="Ellipsis"):
        state.filter(nnx.Param, ..., nnx.BatchStat)
    assert list(state.filter(nnx.Param)) == [("b",)]
    assert state.filter(nnx.Cache) == nnx.State({})


def test_state_partition_first_match_wins():
    state = _state()
    variables, params = state.filter(nnx.Variable, nnx.Param)
    assert list(variables) == [("a", "y"), ("b",)]
    assert len(params) == 0


def test_state_repr():
    text = repr(_state())
    assert text.startswith("State({\n")
    assert text.endswith("\n})")
    assert "  ('a', 'x'): Array(3.0)," in text
    assert "  ('a', 'y'): BatchStat(value=Array(2.0))," in text
    assert "  ('b',): Param(value=Array(1.0))" in text
    assert repr(nnx.State({})) == "State({})"
    assert "Param(value=Array(float32[2,3]))" in repr(
        nnx.State({("w",): nnx.Param(jnp.ones((2, 3)))})
    )


def test_state_is_a_node():
    assert nnx.is_node(_state())

    class Holder(nnx.Module):
        def __init__(self):
            self.inner = nnx.State({("a",): jnp.ones(2)})

    state = Holder().get_state()
    assert list(state) == [("inner",)]
    assert isinstance(state[("inner",)], nnx.State)
    assert len(jax.tree_util.tree_leaves(state)) == 1

"""`nnx.is_node` and `nnx.register_node_type`: which values are state."""

import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Point(nnx.Pytree):
    def __init__(self, x, y, label):
        self.x = x
        self.y = nnx.Param(y)
        self.label = label


def test_is_node():
    assert nnx.is_node(jnp.ones(2))
    assert nnx.is_node(np.ones(2))
    assert nnx.is_node(nnx.Param(1))
    assert nnx.is_node(nnx.Node([1]))
    assert nnx.is_node(nnx.State({}))
    assert nnx.is_node(Point(1, 2, "p"))
    for static in (1, 2.0, "s", [jnp.ones(1)], (1,), {"a": 1}, None, nnx.Static(1), len):
        assert not nnx.is_node(static)


def test_register_node_type():
    class Custom:
        def __init__(self, v):
            self.v = v

    class M(nnx.Module):
        def __init__(self):
            self.before = Custom(1)

    assert not nnx.is_node(Custom(1))
    m = M()
    assert list(m.get_state()) == []
    nnx.register_node_type(Custom)
    assert nnx.is_node(Custom(1))
    m.after = Custom(2)
    state, moduledef = m.partition()
    assert list(state) == [("after",), ("before",)]
    assert state[("after",)].v == 2
    # registering twice is harmless
    nnx.register_node_type(Custom)
    assert moduledef.merge(state).after.v == 2


def test_register_node_type_needs_a_class():
    with pytest.raises(TypeError, match="expects a class"):
        nnx.register_node_type(3)  # type: ignore[arg-type]

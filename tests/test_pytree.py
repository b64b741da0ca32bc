"""`nnx.Pytree`: frozen (or mutable) pytree classes, and Pytrees as state in Modules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import GetAttrKey

import nnx


class Point(nnx.Pytree):
    def __init__(self, x, y, label):
        self.x = x
        self.y = nnx.Param(y)
        self.label = label


class MutablePoint(nnx.Pytree, mutable=True):
    def __init__(self, x):
        self.x = x


def test_pytree_flatten_with_keys():
    p = Point(jnp.ones(2), jnp.zeros(2), "p")
    leaves_with_path, _ = jax.tree_util.tree_flatten_with_path(p)
    assert [path for path, _ in leaves_with_path] == [
        (GetAttrKey("x"),),
        (GetAttrKey("y"), GetAttrKey("value")),
    ]
    q = jax.tree.map(lambda v: v + 1, p)
    assert type(q) is Point
    assert q.label == "p"
    np.testing.assert_array_equal(q.x, jnp.full(2, 2.0))
    np.testing.assert_array_equal(q.y, jnp.ones(2))
    assert type(vars(q)["y"]) is nnx.Param


def test_pytree_is_immutable():
    p = Point(jnp.ones(2), jnp.zeros(2), "p")
    with pytest.raises(AttributeError, match="Cannot add new fields to an initialized Pytree"):
        p.z = 1
    with pytest.raises(AttributeError, match="is immutable, trying to update field x"):
        p.x = jnp.zeros(2)
    np.testing.assert_array_equal(p.x, jnp.ones(2))


def test_pytree_mutable():
    p = MutablePoint(1)
    p.x = 2
    assert p.x == 2
    with pytest.raises(AttributeError, match="Cannot add new fields"):
        p.y = 1


def test_pytree_replace():
    p = Point(jnp.ones(2), jnp.zeros(2), "p")
    q = p.replace(x=jnp.zeros(2), y=jnp.ones(2), label="q")
    assert type(q) is Point
    assert q.label == "q"
    assert p.label == "p"
    assert type(vars(q)["y"]) is nnx.Param
    np.testing.assert_array_equal(q.y, jnp.ones(2))
    np.testing.assert_array_equal(p.y, jnp.zeros(2))
    with pytest.raises(ValueError, match=r"unknown fields \{'nope'\} for 'Point'"):
        p.replace(nope=1)


def test_pytree_crosses_jit():
    p = Point(jnp.ones(2), jnp.zeros(2), "p")
    out = jax.jit(lambda p: p.replace(x=p.x * 3))(p)
    assert type(out) is Point
    np.testing.assert_array_equal(out.x, jnp.full(2, 3.0))
    assert out.label == "p"


def test_pytree_is_a_node_in_modules():
    class M(nnx.Module):
        def __init__(self):
            self.point = Point(jnp.ones(2), jnp.zeros(2), "p")

    state = M().get_state()
    assert list(state) == [("point",)]
    assert len(jax.tree_util.tree_leaves(state)) == 2

"""Containers: Node, Variable and its kinds, Static, metadata, pytree behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Count(nnx.Variable):
    pass


class VariablesProbe(nnx.Variable):  # a collection name no other test module uses
    pass


def test_variable_kinds():
    for cls in (nnx.Param, nnx.BatchStat, nnx.Cache, nnx.Intermediate, Count):
        v = cls(jnp.ones(2))
        assert isinstance(v, nnx.Variable)
        assert isinstance(v, nnx.Node)
        np.testing.assert_array_equal(v.value, jnp.ones(2))
        assert nnx.is_node(v)


def test_metadata_and_sharding():
    p = nnx.Param(jnp.ones(2), sharding=("data", None), foo="bar")
    assert p.sharding == ("data", None)
    assert p.foo == "bar"
    assert p.metadata == {"sharding": ("data", None), "foo": "bar"}
    assert nnx.Param(1).sharding is None
    assert nnx.Param(1).metadata == {}
    with pytest.raises(AttributeError, match="baz"):
        _ = p.baz


def test_container_from_container():
    p = nnx.Param(nnx.Param(1))
    assert p == nnx.Param(1)
    with pytest.raises(ValueError, match="Cannot build a BatchStat from a Param"):
        nnx.BatchStat(nnx.Param(1))
    with pytest.raises(ValueError, match="Cannot build a Node from a Variable"):
        nnx.Node(nnx.Variable(1))
    with pytest.raises(ValueError, match="Cannot build"):
        nnx.Param(nnx.Param(1, sharding=("x",)))


def test_replace():
    p = nnx.Param(jnp.ones(2), sharding=("x",))
    q = p.replace(value=jnp.zeros(2))
    assert type(q) is nnx.Param
    assert q.sharding == ("x",)
    np.testing.assert_array_equal(q.value, jnp.zeros(2))
    np.testing.assert_array_equal(p.value, jnp.ones(2))
    assert p.replace(sharding=("y",)).sharding == ("y",)
    assert p.replace(value=nnx.Param(3, sharding=("x",))).value == 3
    with pytest.raises(ValueError, match="incompatible"):
        p.replace(value=nnx.Param(3))
    with pytest.raises(ValueError, match="Unknown metadata key 'foo'"):
        p.replace(foo=1)


def test_copy_and_equivalence():
    p = nnx.Param(jnp.ones(2), sharding=("x",))
    c = p.copy()
    assert c is not p
    assert c == p
    assert p.is_equivalent(nnx.Param(0, sharding=("x",)))
    assert not p.is_equivalent(nnx.Param(0))
    assert not p.is_equivalent(nnx.BatchStat(0, sharding=("x",)))


def test_equality():
    assert nnx.Param(1) == nnx.Param(1)
    assert nnx.Param(1) != nnx.Param(2)
    assert nnx.Param(1) != nnx.BatchStat(1)
    assert nnx.Param(1) != nnx.Param(1, sharding=("x",))
    assert nnx.Param(jnp.ones(3)) == nnx.Param(jnp.ones(3))
    assert nnx.Param(jnp.ones(3)) != nnx.Param(jnp.ones(4))


def test_variables_are_unhashable_and_have_no_arithmetic():
    with pytest.raises(TypeError):
        hash(nnx.Param(1))
    with pytest.raises(TypeError):
        nnx.Param(1) + 1  # type: ignore[operator]


def test_variable_is_a_pytree_keeping_kind_and_metadata():
    p = nnx.Param(jnp.ones(2), sharding=("x",))
    leaves, treedef = jax.tree_util.tree_flatten(p)
    assert len(leaves) == 1
    q = jax.tree.map(lambda x: x + 1, p)
    assert type(q) is nnx.Param
    assert q.sharding == ("x",)
    np.testing.assert_array_equal(q.value, jnp.full(2, 2.0))
    # None has no leaves
    assert jax.tree_util.tree_leaves(nnx.Param(None)) == []
    assert jax.tree.map(lambda x: x, nnx.Param(None)) == nnx.Param(None)
    # Node holds any pytree
    assert jax.tree_util.tree_leaves(nnx.Node([4, 5])) == [4, 5]


def test_variable_crosses_jit():
    out = jax.jit(lambda p: jax.tree.map(lambda x: x * 2, p))(Count(jnp.asarray(3)))
    assert type(out) is Count
    assert out.value == 6


def test_variable_repr():
    assert repr(nnx.Param(jnp.asarray(1.0))) == "Param(value=Array(1.0))"
    assert repr(nnx.Param(jnp.ones((2, 3)))) == "Param(value=Array(float32[2,3]))"
    assert repr(nnx.BatchStat(1, sharding=("x",))) == "BatchStat(value=1, sharding=('x',))"
    assert repr(Count(0)) == "Count(value=0)"


def test_static():
    s = nnx.Static([1, 2])
    assert not nnx.is_node(s)
    assert jax.tree_util.tree_leaves(s) == []
    assert hash(nnx.Static(3)) == hash(nnx.Static(3))
    assert nnx.Static(3) == nnx.Static(3)
    assert nnx.Static(3) != nnx.Static(4)


def test_with_metadata():
    init = nnx.with_metadata(jax.nn.initializers.ones, sharding=("a", "b"))
    p = nnx.Param(init(jax.random.key(0), (2, 3), jnp.float32))
    assert p.sharding == ("a", "b")
    np.testing.assert_array_equal(p.value, jnp.ones((2, 3)))

    linear = nnx.Linear(2, 3, kernel_init=init, ctx=nnx.context(0))
    assert vars(linear)["kernel"].sharding == ("a", "b")
    np.testing.assert_array_equal(linear.kernel, jnp.ones((2, 3)))
    assert linear.get_state()[("kernel",)].sharding == ("a", "b")


def test_variable_type():
    assert nnx.variable_type("params") is nnx.Param
    assert nnx.variable_type("intermediates") is nnx.Intermediate
    assert VariablesProbe.collection == "variables_probe"
    assert nnx.variable_type("variables_probe") is VariablesProbe
    new = nnx.variable_type("some_new_collection")
    assert issubclass(new, nnx.Variable)
    assert new.collection == "some_new_collection"
    assert nnx.variable_type("some_new_collection") is new


def test_owned_variable_value_write_goes_through_the_module():
    class M(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.zeros(()))

    m = M()
    vars(m)["w"].value = jnp.ones(())
    assert m.w == 1.0
    assert m.get_state()[("w",)].value == 1.0

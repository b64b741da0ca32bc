"""Module: attribute semantics, partition/merge, ModuleDef, apply, Pure, pop_state,
update_state, sow, for_each, clone, repr."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Count(nnx.Variable):
    pass


class Leaf(nnx.Module):
    def __init__(self, value=0.0):
        self.w = nnx.Param(jnp.asarray(value))
        self.k = 2

    def __call__(self, x):
        return x * self.w

    def double(self, x):
        return 2 * x * self.w

    def bump(self):
        self.w += 1
        return self.w


class Holder(nnx.Module):
    def __init__(self):
        self.leaf = Leaf(1.0)
        self.stat = nnx.BatchStat(jnp.zeros(()))
        self.buf = np.arange(3)


# ----------------------------------------------------------------------------------
# attribute semantics


def test_reads_are_unboxed():
    m = Holder()
    assert isinstance(m.stat, jax.Array)
    assert not isinstance(m.stat, nnx.Variable)
    assert type(vars(m)["stat"]) is nnx.BatchStat
    assert m.leaf.w == 1.0
    assert isinstance(m.buf, np.ndarray)


def test_augmented_assignment_keeps_variable_kind_and_metadata():
    class Counter(nnx.Module):
        def __init__(self):
            self.count = Count(0, sharding=("x",), tag="t")

    m = Counter()
    box = vars(m)["count"]
    m.count += 1
    m.count += 1
    assert m.count == 2
    assert type(vars(m)["count"]) is Count
    assert vars(m)["count"].sharding == ("x",)
    assert vars(m)["count"].tag == "t"
    # the box is updated in place
    assert vars(m)["count"] is box


def test_raw_assignment_keeps_kind():
    m = Holder()
    m.stat = jnp.ones(())
    assert type(vars(m)["stat"]) is nnx.BatchStat
    assert m.stat == 1.0


def test_variables_are_copied_on_assignment():
    p = nnx.Param(jnp.zeros(2))
    a, b = Leaf(), Leaf()
    a.p = p
    b.p = p
    assert vars(a)["p"] is not p
    assert vars(b)["p"] is not p
    assert vars(a)["p"] is not vars(b)["p"]
    a.p = jnp.ones(2)
    np.testing.assert_array_equal(a.p, jnp.ones(2))
    np.testing.assert_array_equal(b.p, jnp.zeros(2))
    np.testing.assert_array_equal(p.value, jnp.zeros(2))
    # the two Params are two state entries
    a.b = b
    assert {("p",), ("b", "p")} <= set(a.get_state())


def test_modules_are_shared_by_reference():
    shared = Leaf(3.0)
    a, b = Holder(), Holder()
    a.other = shared
    b.other = shared
    assert a.other is shared
    assert b.other is shared
    a.other.w = 5.0
    assert b.other.w == 5.0


def test_assigning_other_variable_kind_is_a_value_error():
    m = Holder()
    with pytest.raises(ValueError, match=r"Holder\.stat") as info:
        m.stat = nnx.Param(jnp.ones(()))
    assert "BatchStat" in str(info.value)
    assert "Param" in str(info.value)
    # nothing changed
    assert type(vars(m)["stat"]) is nnx.BatchStat
    assert m.stat == 0.0


def test_assigning_same_kind_variable_replaces_value():
    m = Holder()
    m.stat = nnx.BatchStat(jnp.full((), 7.0))
    assert m.stat == 7.0
    assert type(vars(m)["stat"]) is nnx.BatchStat


def test_assigning_module_over_variable_is_a_type_error():
    m = Holder()
    with pytest.raises(TypeError, match=r"Holder\.stat"):
        m.stat = Leaf()


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda: [Leaf()], id="list-of-modules"),
        pytest.param(lambda: [jnp.ones(2)], id="list-of-jax-arrays"),
        pytest.param(lambda: (1, np.ones(2)), id="tuple-with-numpy-array"),
        pytest.param(lambda: {"a": nnx.Param(1.0)}, id="dict-of-params"),
        pytest.param(lambda: [[1, [Leaf()]]], id="nested-list"),
    ],
)
def test_assigning_container_with_state_is_a_type_error(value):
    m = Holder()
    with pytest.raises(TypeError, match="would be a static attribute") as info:
        m.items = value()
    assert "Holder.items" in str(info.value)
    assert "nnx.Sequence" in str(info.value)
    assert "items" not in vars(m)


def test_static_containers_without_state_are_fine():
    m = Holder()
    m.items = [1, "a", (2.0, None)]
    m.mapping = {"a": 1}
    assert m.items == [1, "a", (2.0, None)]
    state, moduledef = m.partition()
    assert dict(moduledef.static_fields)["items"] == [1, "a", (2.0, None)]
    assert all("items" not in path for path in state)


def test_static_attribute_read_and_written():
    m = Holder()
    m.name = "x"
    m.name = "y"
    assert m.name == "y"
    m.wrapped = nnx.Static([1, 2])
    assert m.wrapped == [1, 2]
    assert ("wrapped",) not in m.get_state()


def test_delete_attribute_removes_it_from_state():
    m = Holder()
    del m.stat
    assert ("stat",) not in m.get_state()
    m.stat = nnx.Param(jnp.ones(()))  # a new kind is fine after deletion
    assert type(vars(m)["stat"]) is nnx.Param


def test_underscore_attributes_are_ordinary():
    m = Holder()
    m._private = nnx.Param(jnp.ones(()))
    m._static = 3
    state, moduledef = m.partition()
    assert ("_private",) in state
    assert ("_static", 3) in moduledef.static_fields


# ----------------------------------------------------------------------------------
# partition / filter / get_state


def _mixed():
    m = Holder()
    m.count = Count(0)
    return m


def test_partition_no_filter():
    m = _mixed()
    pure = m.partition()
    assert isinstance(pure, nnx.Pure)
    state, moduledef = pure
    assert isinstance(state, nnx.State)
    assert list(state) == [("buf",), ("count",), ("leaf", "w"), ("stat",)]
    assert moduledef.type is Holder


def test_partition_one_filter():
    m = Leaf()
    params, moduledef = m.partition(nnx.Param)
    assert isinstance(params, nnx.State)
    assert list(params) == [("w",)]
    with pytest.raises(ValueError, match="Non-exhaustive"):
        _mixed().partition(nnx.Param)


def test_partition_two_and_three_filters():
    m = _mixed()
    (params, rest), _ = m.partition(nnx.Param, ...)
    assert list(params) == [("leaf", "w")]
    assert list(rest) == [("buf",), ("count",), ("stat",)]

    (params, stats, rest), _ = m.partition(nnx.Param, nnx.BatchStat, ...)
    assert list(params) == [("leaf", "w")]
    assert list(stats) == [("stat",)]
    assert list(rest) == [("buf",), ("count",)]

    (a, b, c, d), _ = m.partition(nnx.Param, nnx.BatchStat, Count, nnx.buffers)
    assert [list(s) for s in (a, b, c, d)] == [
        [("leaf", "w")],
        [("stat",)],
        [("count",)],
        [("buf",)],
    ]


def test_partition_non_exhaustive_message_lists_paths():
    with pytest.raises(ValueError, match="Non-exhaustive") as info:
        _mixed().partition(nnx.Param, nnx.BatchStat)
    assert "('buf',)" in str(info.value)
    assert "('count',)" in str(info.value)


def test_partition_ellipsis_not_last():
    with pytest.raises(ValueError, match="Ellipsis"):
        _mixed().partition(..., nnx.Param)


def test_partition_invalid_filter():
    with pytest.raises(TypeError, match="Invalid filter"):
        _mixed().partition(3)


def test_filter_is_not_exhaustive():
    m = _mixed()
    params = m.filter(nnx.Param)
    assert list(params) == [("leaf", "w")]
    params, counts = m.filter(nnx.Param, Count)
    assert list(counts) == [("count",)]


def test_state_is_a_snapshot():
    m = Leaf(1.0)
    state = m.get_state()
    m.w = 2.0
    assert state[("w",)].value == 1.0
    state[("w",)].value = 5.0  # a free-standing box: does not write into the module
    assert m.w == 2.0
    assert vars(m)["w"] is not state[("w",)]


def test_merge_copies_variables_out_of_the_state():
    state, moduledef = Leaf(1.0).partition()
    a = moduledef.merge(state)
    b = moduledef.merge(state)
    a.w = 3.0
    assert b.w == 1.0
    assert state[("w",)].value == 1.0


def test_sequence_positions_are_int_path_keys_in_numeric_order():
    seq = nnx.Sequence([nnx.Param(jnp.asarray(float(i))) for i in range(12)])
    state, moduledef = seq.partition()
    assert list(state) == [(i,) for i in range(12)]
    rebuilt = moduledef.merge(state)
    assert [float(v) for v in rebuilt] == [float(i) for i in range(12)]


# ----------------------------------------------------------------------------------
# ModuleDef


def test_moduledef_hashable_and_equal_for_equal_structure():
    class WithList(nnx.Module):
        def __init__(self, items):
            self.items = items
            self.w = nnx.Param(jnp.ones(()))

    a = WithList([1, 2, 3]).get_module_def()
    b = WithList([1, 2, 3]).get_module_def()
    c = WithList([1, 2]).get_module_def()
    assert hash(a) == hash(b)
    assert a == b
    assert a != c
    assert len({a, b, c}) == 2


def test_moduledef_differs_for_different_structure():
    a = Holder().get_module_def()
    m = Holder()
    m.extra = Leaf()
    assert m.get_module_def() != a
    m2 = Holder()
    m2.leaf.k = 3
    assert m2.get_module_def() != a
    # different sharing, same attributes otherwise
    shared = Holder()
    shared.x = shared.leaf
    unshared = Holder()
    unshared.x = Leaf(1.0)
    assert shared.get_module_def() != unshared.get_module_def()


def test_moduledef_properties():
    moduledef = Holder().get_module_def()
    assert moduledef.type is Holder
    assert moduledef.index == 0
    subs = dict(moduledef.submodules)
    assert set(subs) == {"leaf"}
    assert subs["leaf"].type is Leaf
    assert dict(subs["leaf"].static_fields) == {"k": 2}


def test_moduledef_is_a_pytree_without_leaves():
    moduledef = Holder().get_module_def()
    leaves, treedef = jax.tree_util.tree_flatten(moduledef)
    assert leaves == []
    assert jax.tree_util.tree_unflatten(treedef, []) == moduledef


def test_jit_retraces_when_the_moduledef_changes():
    traces = []

    @jax.jit
    def f(state, moduledef):
        traces.append(moduledef)
        return moduledef.merge(state)(jnp.ones(()))

    m = Leaf(2.0)
    state, moduledef = m.partition()
    assert f(state, moduledef) == 2.0
    assert f(state, Leaf(5.0).get_module_def()) == 2.0
    assert len(traces) == 1

    m.k = 3  # a static attribute changes: a new ModuleDef, a new trace
    state, moduledef = m.partition()
    f(state, moduledef)
    assert len(traces) == 2

    # a list static attribute works as static data too
    m.items = [1, 2]
    f(*m.partition())
    f(*m.partition())
    assert len(traces) == 3


def test_moduledef_as_static_argnum():
    traces = []

    def f(moduledef, state):
        traces.append(None)
        return moduledef.merge(state).double(jnp.ones(()))

    jf = jax.jit(f, static_argnums=0)
    state, moduledef = Leaf(2.0).partition()
    assert jf(moduledef, state) == 4.0
    assert jf(Leaf(3.0).get_module_def(), state) == 4.0
    assert len(traces) == 1


def test_merge_missing_path():
    state, moduledef = Holder().partition()
    with pytest.raises(ValueError, match="missing paths") as info:
        moduledef.merge(state - nnx.State({("leaf", "w"): None}))
    assert "('leaf', 'w')" in str(info.value)


def test_merge_unknown_path():
    state, moduledef = Holder().partition()
    extra = nnx.State({("nope",): jnp.zeros(())})
    with pytest.raises(ValueError, match=r"unexpected path \('nope',\)"):
        moduledef.merge(state | extra)
    extra = nnx.State({("leaf", "nope", "w"): jnp.zeros(())})
    with pytest.raises(ValueError, match="'nope' is not a submodule"):
        moduledef.merge(state | extra)


def test_merge_path_through_static_attribute():
    state, moduledef = Holder().partition()
    with pytest.raises(ValueError, match="static attribute"):
        moduledef.merge(state | nnx.State({("leaf", "k"): jnp.zeros(())}))
    with pytest.raises(ValueError, match="'k' is not a submodule"):
        moduledef.merge(state | nnx.State({("leaf", "k", "x"): jnp.zeros(())}))


def test_merge_path_onto_a_submodule():
    state, moduledef = Holder().partition()
    with pytest.raises(ValueError, match="submodule"):
        moduledef.merge(state | nnx.State({("leaf",): jnp.zeros(())}))


def test_merge_later_state_wins():
    state, moduledef = Leaf(1.0).partition()
    other = nnx.State({("w",): nnx.Param(jnp.asarray(9.0))})
    assert moduledef.merge(state, other).w == 9.0
    assert moduledef.merge(other, state).w == 1.0


def test_merge_restores_types_and_statics():
    m = Holder()
    state, moduledef = m.partition()
    m2 = moduledef.merge(state)
    assert type(m2) is Holder
    assert type(m2.leaf) is Leaf
    assert m2.leaf.k == 2
    assert type(vars(m2)["stat"]) is nnx.BatchStat
    np.testing.assert_array_equal(m2.buf, m.buf)


# ----------------------------------------------------------------------------------
# apply


class Deep(nnx.Module):
    def __init__(self):
        self.a = nnx.Dict(b=nnx.Sequence([Leaf(1.0), Leaf(2.0)]))
        self.top = nnx.Param(jnp.asarray(10.0))

    def __call__(self, x):
        return x + self.top


def test_apply_call():
    state, moduledef = Deep().partition()
    out, pure = moduledef.apply(state)(1.0)
    assert out == 11.0
    assert isinstance(pure, nnx.Pure)
    new_state, new_moduledef = pure
    assert new_moduledef == moduledef
    assert new_state == state


@pytest.mark.parametrize(
    ("access", "expected"),
    [
        (lambda c: c.a.b[0], 3.0),
        (lambda c: c.a.b[1], 6.0),
        (lambda c: c.a.b[-1], 6.0),
        (lambda c: c.a["b"][0].double, 6.0),
        (lambda c: c.a.b[1].double, 12.0),
    ],
)
def test_apply_nested_access_at_any_depth(access, expected):
    state, moduledef = Deep().partition()
    out, (new_state, new_moduledef) = access(moduledef.apply(state))(3.0)
    assert out == expected
    assert isinstance(new_state, nnx.State)
    assert new_moduledef == moduledef


def test_apply_returns_updated_state_and_leaves_input_alone():
    state, moduledef = Deep().partition()
    out, (new_state, _) = moduledef.apply(state).a.b[1].bump()
    assert out == 3.0
    assert new_state[("a", "b", 1, "w")].value == 3.0
    assert state[("a", "b", 1, "w")].value == 2.0
    out, (newer_state, _) = moduledef.apply(new_state).a.b[1].bump()
    assert newer_state[("a", "b", 1, "w")].value == 4.0


def test_apply_with_several_states():
    m = Holder()
    (params, rest), moduledef = m.partition(nnx.Param, ...)
    out, (state, _) = moduledef.apply(params, rest).leaf(2.0)
    assert out == 2.0
    assert set(state) == set(params) | set(rest)


def test_module_apply_property_works_on_a_copy():
    # DECISIONS 7 (as 0.0.8): module.apply returns (out, clone), a Module
    m = Deep()
    out, clone = m.apply.a.b[0].bump()
    assert out == 2.0
    assert m.a.b[0].w == 1.0
    assert type(clone) is Deep and clone is not m
    assert clone.a.b[0].w == 2.0
    assert clone.a is not m.a


def test_module_apply_call_returns_a_clone_with_updates():
    m = Deep()
    _, clone = m.apply.a.b[0].bump()
    _, clone2 = clone.apply.a.b[0].bump()
    assert (m.a.b[0].w, clone.a.b[0].w, clone2.a.b[0].w) == (1.0, 2.0, 3.0)


# ----------------------------------------------------------------------------------
# Pure / PureModule


def test_pure_is_a_pytree_and_merges():
    m = Holder()
    pure = m.partition()
    assert isinstance(pure, tuple)
    assert pure.states is pure[0]
    assert pure.moduledef is pure[1]
    leaves = jax.tree_util.tree_leaves(pure)
    assert len(leaves) == 3  # buf, leaf/w, stat

    @jax.jit
    def f(pure: nnx.PureModule[Holder]) -> nnx.PureModule[Holder]:
        model = pure.merge()
        model.leaf.w = model.leaf.w + 1
        return model.partition(nnx.Param, ...)

    out = f(m.partition(nnx.Param, ...))
    assert isinstance(out, nnx.Pure)
    model = out.merge()
    assert isinstance(model, Holder)
    assert model.leaf.w == 2.0
    assert m.leaf.w == 1.0


def test_pure_apply_and_call():
    pure = Deep().partition()
    out, new_pure = pure.apply.a.b[1].bump()
    assert out == 3.0
    assert new_pure.merge().a.b[1].w == 3.0
    assert pure.call.a.b[1].double(1.0) == 4.0
    assert pure.call(1.0) == 11.0


def test_pure_state_helpers():
    m = _mixed()
    pure = m.partition(nnx.Param, ...)
    full = pure.get_state()
    assert full == m.get_state()
    assert list(pure.filter(nnx.Param)) == [("leaf", "w")]

    repartitioned = pure.partition(nnx.BatchStat, ...)
    stats, rest = repartitioned.states
    assert list(stats) == [("stat",)]
    assert repartitioned.merge().leaf.w == 1.0

    popped, remaining = pure.pop_state(Count)
    assert list(popped) == [("count",)]
    assert ("count",) not in remaining.states
    assert ("stat",) in remaining.states


def test_pure_update_state_updates_win():
    pure = Leaf(1.0).partition()
    updated = pure.update_state(nnx.State({("w",): nnx.Param(jnp.asarray(4.0))}))
    assert updated.merge().w == 4.0
    assert pure.merge().w == 1.0


def test_pure_module_alias():
    assert nnx.PureModule[Holder] is not None
    pure = Holder().partition()
    assert isinstance(pure, nnx.Pure)


# ----------------------------------------------------------------------------------
# pop_state


def test_pop_state_removes_entries():
    m = _mixed()
    m.leaf.i = nnx.Intermediate(jnp.ones(2))
    popped = m.pop_state(nnx.Intermediate)
    assert list(popped) == [("leaf", "i")]
    assert "i" not in vars(m.leaf)
    assert ("leaf", "w") in m.get_state()


def test_pop_state_several_filters_first_match_wins():
    m = _mixed()
    params, variables = m.pop_state(nnx.Param, nnx.Variable)
    assert list(params) == [("leaf", "w")]
    assert list(variables) == [("count",), ("stat",)]
    assert list(m.get_state()) == [("buf",)]


def test_pop_state_requires_a_filter():
    with pytest.raises(ValueError, match="at least one filter"):
        Holder().pop_state()


def test_pop_state_on_a_cycle():
    parent = Holder()
    child = Holder()
    parent.child = child
    child.parent = parent
    child.leaf.i = nnx.Intermediate(jnp.ones(()))
    parent.i = nnx.Intermediate(jnp.zeros(()))
    popped = parent.pop_state(nnx.Intermediate)
    assert list(popped) == [("child", "leaf", "i"), ("i",)]
    assert "i" not in vars(parent)
    assert "i" not in vars(child.leaf)
    assert parent.child.parent is parent


def test_pop_state_shared_submodule_once():
    shared = Leaf()
    shared.i = nnx.Intermediate(jnp.ones(()))
    m = Holder()
    m.a = shared
    m.b = shared
    popped = m.pop_state(nnx.Intermediate)
    assert list(popped) == [("a", "i")]
    assert "i" not in vars(shared)


# ----------------------------------------------------------------------------------
# update_state


def test_update_state_with_state():
    m = Holder()
    leaf = m.leaf
    state = m.get_state()
    m.update_state(jax.tree.map(lambda x: x + 1, state))
    assert m.leaf is leaf
    assert m.leaf.w == 2.0
    assert m.stat == 1.0
    np.testing.assert_array_equal(m.buf, np.arange(3) + 1)
    assert type(vars(m)["stat"]) is nnx.BatchStat


def test_update_state_with_tuple_pure_and_module():
    m = Holder()
    params, stats = (
        nnx.State({("leaf", "w"): nnx.Param(jnp.asarray(5.0))}),
        nnx.State({("stat",): nnx.BatchStat(jnp.asarray(6.0))}),
    )
    m.update_state((params, stats))
    assert m.leaf.w == 5.0
    assert m.stat == 6.0

    other = Holder()
    other.leaf.w = 7.0
    m.update_state(other.partition(nnx.Param, ...))
    assert m.leaf.w == 7.0
    assert m.stat == 0.0

    other.stat = 8.0
    m.update_state(other)
    assert m.stat == 8.0
    assert m.leaf is not other.leaf


def test_update_state_with_module_of_another_type():
    with pytest.raises(TypeError, match="Holder"):
        Holder().update_state(Leaf())


def test_update_state_adds_new_entries():
    m = Holder()
    m.update_state(nnx.State({("leaf", "new"): nnx.Cache(jnp.ones(()))}))
    assert type(vars(m.leaf)["new"]) is nnx.Cache
    assert m.leaf.new == 1.0


def test_update_state_missing_submodule_changes_nothing():
    m = Holder()
    before = m.get_state()
    updates = nnx.State(
        {
            ("leaf", "w"): nnx.Param(jnp.asarray(9.0)),
            ("stat",): nnx.BatchStat(jnp.asarray(9.0)),
            ("zzz", "w"): nnx.Param(jnp.asarray(9.0)),
        }
    )
    with pytest.raises(ValueError, match="zzz"):
        m.update_state(updates)
    assert m.get_state() == before
    assert m.leaf.w == 1.0
    assert m.stat == 0.0
    assert set(vars(m)) == {"leaf", "stat", "buf"}


def test_update_state_kind_mismatch_changes_nothing():
    m = Holder()
    updates = nnx.State(
        {
            ("buf",): np.ones(3),
            ("leaf", "w"): nnx.Param(jnp.asarray(9.0)),
            ("stat",): nnx.Param(jnp.asarray(9.0)),
        }
    )
    with pytest.raises(ValueError, match=r"\('stat',\)"):
        m.update_state(updates)
    assert m.leaf.w == 1.0
    np.testing.assert_array_equal(m.buf, np.arange(3))


def test_update_state_cannot_replace_a_submodule():
    m = Holder()
    with pytest.raises(ValueError, match="submodule"):
        m.update_state(nnx.State({("leaf",): jnp.zeros(())}))
    assert isinstance(m.leaf, Leaf)


def test_update_state_path_through_static():
    m = Holder()
    with pytest.raises(ValueError, match="'k'"):
        m.update_state(nnx.State({("leaf", "k", "x"): jnp.zeros(())}))


def test_update_state_in_place_identity_kept():
    m = Deep()
    ids = {id(m), id(m.a), id(m.a.b), id(m.a.b[0]), id(m.a.b[1])}
    boxes = id(vars(m.a.b[0])["w"])
    m.update_state(jax.tree.map(lambda x: x * 10, m.get_state()))
    assert {id(m), id(m.a), id(m.a.b), id(m.a.b[0]), id(m.a.b[1])} == ids
    assert id(vars(m.a.b[0])["w"]) == boxes
    assert m.a.b[1].w == 20.0
    assert m.top == 100.0


# ----------------------------------------------------------------------------------
# sow, for_each, clone


def test_sow():
    m = Leaf()
    m.sow(nnx.Intermediate, "y", 1)
    m.sow(nnx.Intermediate, "y", 2)
    assert m.y == (1, 2)
    assert type(vars(m)["y"]) is nnx.Intermediate
    assert m.get_state()[("y",)] == nnx.Intermediate((1, 2))


def test_sow_errors():
    m = Leaf()
    m.sow(nnx.Intermediate, "y", 1)
    with pytest.raises(ValueError, match="'y' to be of type 'Param', got 'Intermediate'"):
        m.sow(nnx.Param, "y", 2)
    with pytest.raises(ValueError, match="'k' to be a Variable, got int"):
        m.sow(nnx.Intermediate, "k", 2)
    m.z = nnx.Intermediate(5)
    with pytest.raises(ValueError, match="'z' to be a tuple, got int"):
        m.sow(nnx.Intermediate, "z", 2)
    assert m.y == (1,)


def test_for_each_visits_each_module_once():
    shared = Leaf()
    m = Holder()
    m.a = shared
    m.b = shared
    m.self_ref = m
    seen = []
    m.for_each(Leaf, seen.append)
    assert len(seen) == 2
    assert {id(x) for x in seen} == {id(m.leaf), id(shared)}
    modules = []
    m.for_each(nnx.Module, modules.append)
    assert len(modules) == 3
    assert modules[0] is m


def test_for_each_can_mutate():
    m = Deep()
    m.for_each(Leaf, lambda leaf: setattr(leaf, "w", leaf.w * 0))
    assert m.a.b[0].w == 0.0
    assert m.a.b[1].w == 0.0


def test_clone_is_independent_and_keeps_sharing_and_cycles():
    m = Holder()
    shared = Leaf(4.0)
    m.x = shared
    m.y = shared
    m.cycle = m
    c = m.clone()
    assert c is not m
    assert type(c) is Holder
    assert c.x is c.y
    assert c.x is not shared
    assert c.cycle is c
    assert c.x.w == 4.0
    c.x.w = 5.0
    c.stat = 1.0
    assert shared.w == 4.0
    assert m.stat == 0.0
    assert vars(c)["stat"] is not vars(m)["stat"]


# ----------------------------------------------------------------------------------
# repr


def test_module_repr():
    m = Holder()
    text = repr(m)
    assert text.startswith("Holder(")
    assert "leaf=Leaf(" in text
    assert "stat=BatchStat(value=Array(0.0))" in text
    assert "w=Param(value=Array(1.0))" in text
    assert "k=2" in text
    assert "buf=ndarray(int" in text


def test_module_repr_cycle():
    m = Holder()
    m.leaf.parent = m
    text = repr(m)
    assert "parent=Holder(...)" in text
    assert Holder.__name__ + "()" not in text


def test_empty_module_repr():
    class Empty(nnx.Module):
        pass

    assert repr(Empty()) == "Empty()"


# ----------------------------------------------------------------------------------
# raw array attributes assigned under a trace


def test_raw_array_attribute_assigned_under_jit_is_state():
    class Buf(nnx.Module):
        def __init__(self):
            self.buf = jnp.zeros(3)

    state, moduledef = Buf().partition()

    @jax.jit
    def f(state, x):
        m = moduledef.merge(state)
        m.buf = m.buf + x
        return m.partition()

    new_state, new_moduledef = f(state, 1.0)
    assert new_moduledef == moduledef
    assert list(new_state) == [("buf",)]
    np.testing.assert_array_equal(new_state[("buf",)], jnp.ones(3))


def test_update_state_rejects_values_that_are_not_state():
    class WithBuffer(nnx.Module):
        def __init__(self):
            self.buf = np.array(0)
            self.w = nnx.Param(jnp.ones(2))

    m = WithBuffer()
    updates = nnx.State({("buf",): np.int64(1), ("w",): nnx.Param(jnp.zeros(2))})
    with pytest.raises(TypeError, match=r"the value at \('buf',\) is a int64, which is not state"):
        m.update_state(updates)
    # nothing was applied: the update is all-or-nothing
    assert np.array_equal(m.w, jnp.ones(2))
    assert list(m.get_state()) == [("buf",), ("w",)]


def test_callers_on_calls_what_select_picks_with_the_whole_state_back():
    class Net(nnx.Module):
        def __init__(self):
            self.lin = nnx.Linear(2, 3, ctx=nnx.context(0))
            self.bn = nnx.BatchNorm(3, ctx=nnx.context(0))

    net = Net()
    x = jnp.ones((4, 3))
    state, moduledef = net.partition()
    y, updates = moduledef.apply(state).on(lambda m: m.bn)(x, use_running_average=False)
    y_attr, updates_attr = moduledef.apply(state).bn(x, use_running_average=False)
    np.testing.assert_allclose(y, y_attr)
    assert updates.moduledef == moduledef and set(updates.states) == set(state)
    np.testing.assert_allclose(
        updates.states[("bn", "mean")].value, jnp.full((3,), 0.01)
    )  # momentum 0.99
    # selection composes with attribute access; the state given is not changed
    y2, _ = moduledef.apply(state).bn.on(lambda bn: bn)(x, use_running_average=True)
    np.testing.assert_allclose(y2, x / jnp.sqrt(1.0 + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(state[("bn", "mean")].value, jnp.zeros(3))
    # on a copy: the original module is untouched
    out, copy = net.apply.on(lambda m: m.lin)(jnp.ones((1, 2)))
    assert out.shape == (1, 3) and copy is not net and isinstance(copy, Net)

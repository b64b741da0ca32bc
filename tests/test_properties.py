"""Property tests over random module graphs with shared submodules and cycles.

A graph is generated as plain data (`GraphSpec`) and built fresh for each check:
up to 6 modules of three kinds (two Module classes and `nnx.Sequence`), a spanning
tree of depth <= 3, plus extra edges that make shared submodules (one module
reachable under several attributes), self references and back references (a
child pointing to its parent or any ancestor). Modules hold Params, BatchStats, a
custom Variable, raw numpy / jax arrays, `Param(None)` and static ints.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, note, strategies as st

import nnx


class Count(nnx.Variable):
    pass


class GA(nnx.Module):
    pass


class GB(nnx.Module):
    pass


LEAF_KINDS = ("param", "batch_stat", "count", "np", "jnp", "param_none")
VARIABLE_TYPES = {"param": nnx.Param, "batch_stat": nnx.BatchStat, "count": Count}
SHAPES = ((), (2,), (2, 3))


@dataclasses.dataclass(frozen=True)
class LeafSpec:
    kind: str
    shape: tuple[int, ...]
    offset: int


@dataclasses.dataclass(frozen=True)
class ModuleSpec:
    kind: str  # "A", "B" or "seq"
    leaves: tuple[LeafSpec, ...]
    statics: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class GraphSpec:
    modules: tuple[ModuleSpec, ...]
    parents: tuple[int, ...]  # parents[i] for i >= 1: the tree edge parent -> i
    extra_edges: tuple[tuple[int, int], ...]  # (src, dst): src.<attr> = dst


leaf_specs = st.builds(
    LeafSpec,
    kind=st.sampled_from(LEAF_KINDS),
    shape=st.sampled_from(SHAPES),
    offset=st.integers(-5, 5),
)

module_specs = st.builds(
    ModuleSpec,
    kind=st.sampled_from(("A", "B", "seq")),
    leaves=st.lists(leaf_specs, max_size=3).map(tuple),
    statics=st.lists(st.integers(-3, 3), max_size=2).map(tuple),
)


@st.composite
def graph_specs(draw: st.DrawFn) -> GraphSpec:
    n = draw(st.integers(1, 6))
    modules = tuple(draw(module_specs) for _ in range(n))
    parents = [0]
    depth = [0]
    for i in range(1, n):
        parent = draw(st.sampled_from([j for j in range(i) if depth[j] < 3]))
        parents.append(parent)
        depth.append(depth[parent] + 1)
    node = st.integers(0, n - 1)
    # extra edges: back to the tree parent (a cycle) or anywhere (sharing, cycles)
    back_edges = draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=2)) if n > 1 else []
    extra = [(i, parents[i]) for i in back_edges]
    extra += draw(st.lists(st.tuples(node, node), max_size=3))
    return GraphSpec(modules, tuple(parents), tuple(extra))


def _leaf_value(spec: LeafSpec):
    size = int(np.prod(spec.shape, dtype=int))
    base = (np.arange(size) + spec.offset).reshape(spec.shape)
    if spec.kind == "np":
        return base.astype(np.int32)
    if spec.kind == "param_none":
        return nnx.Param(None)
    if spec.kind == "count":
        return Count(int(spec.offset)) if spec.shape == () else Count(jnp.asarray(base, jnp.int32))
    value = jnp.asarray(base, jnp.float32)
    if spec.kind == "jnp":
        return value
    return VARIABLE_TYPES[spec.kind](value)


def build(spec: GraphSpec) -> nnx.Module:
    classes = {"A": GA, "B": GB, "seq": nnx.Sequence}
    modules = [classes[m.kind]() for m in spec.modules]

    def add(i: int, name: str, value) -> None:
        module = modules[i]
        if isinstance(module, nnx.Sequence):
            module.append(value)
        else:
            setattr(module, name, value)

    for i, mspec in enumerate(spec.modules):
        for j, leaf in enumerate(mspec.leaves):
            add(i, f"v{j}", _leaf_value(leaf))
        for j, value in enumerate(mspec.statics):
            setattr(modules[i], f"s{j}", value)
    for child in range(1, len(modules)):
        add(spec.parents[child], f"c{child}", modules[child])
    for k, (src, dst) in enumerate(spec.extra_edges):
        # named attributes even on a Sequence: sharing/cycles outside its items
        setattr(modules[src], f"e{k}", modules[dst])
    return modules[0]


# ----------------------------------------------------------------------------------
# graph inspection


def _attrs(module: nnx.Module):
    return sorted(vars(module).items())


def walk(root: nnx.Module):
    """`(path, module)` for every attribute path that reaches a module, expanding
    each path only while it does not revisit a module already on it (so cycles
    contribute their closing edge, e.g. `('c1', 'e0')` -> root, and stop)."""
    out = [((), root)]

    def visit(module, path, on_path):
        for name, value in _attrs(module):
            if isinstance(value, nnx.Module):
                sub = (*path, name)
                out.append((sub, value))
                if id(value) not in on_path:
                    visit(value, sub, on_path | {id(value)})

    visit(root, (), frozenset({id(root)}))
    return out


def identity_classes(root: nnx.Module) -> set[frozenset]:
    groups: dict[int, set] = {}
    for path, module in walk(root):
        groups.setdefault(id(module), set()).add(path)
    return {frozenset(paths) for paths in groups.values()}


def leaf_snapshot(root: nnx.Module) -> dict:
    """`{(module path, attribute): (kind, value copy)}` for every node attribute."""
    snap = {}
    for path, module in walk(root):
        for name, raw in _attrs(module):
            if nnx.is_node(raw):
                kind = type(raw)
                value = raw.value if isinstance(raw, nnx.Variable) else raw
                snap[(path, name)] = (kind, None if value is None else np.array(value))
    return snap


def static_snapshot(root: nnx.Module) -> dict:
    return {
        (path, name): value
        for path, module in walk(root)
        for name, value in _attrs(module)
        if not nnx.is_node(value) and not isinstance(value, nnx.Module)
    }


def types_snapshot(root: nnx.Module) -> dict:
    return {path: type(module) for path, module in walk(root)}


def assert_values_equal(a: dict, b: dict, delta=0) -> None:
    assert a.keys() == b.keys()
    for key, (kind, value) in a.items():
        kind_b, value_b = b[key]
        assert kind is kind_b, key
        if value is None:
            assert value_b is None, key
        else:
            assert value_b is not None, key
            assert value.shape == value_b.shape, key
            assert np.array_equal(value + delta, value_b), key


def assert_same_graph(original: nnx.Module, rebuilt: nnx.Module) -> None:
    assert types_snapshot(original) == types_snapshot(rebuilt)
    assert identity_classes(original) == identity_classes(rebuilt)
    assert static_snapshot(original) == static_snapshot(rebuilt)
    assert_values_equal(leaf_snapshot(original), leaf_snapshot(rebuilt))


def assert_no_shared_objects(original: nnx.Module, rebuilt: nnx.Module) -> None:
    """A merged graph shares no Module and no Variable object with the original."""
    orig_modules = {id(m) for _, m in walk(original)}
    assert orig_modules.isdisjoint(id(m) for _, m in walk(rebuilt))
    orig_vars = {id(v) for _, m in walk(original) for v in vars(m).values()}
    for _, m in walk(rebuilt):
        for v in vars(m).values():
            if isinstance(v, nnx.Variable):
                assert id(v) not in orig_vars


# ----------------------------------------------------------------------------------
# properties


@given(graph_specs())
def test_partition_merge_round_trip(spec):
    original = build(spec)
    state, moduledef = original.partition()
    note(f"state paths: {list(state)}")
    rebuilt = moduledef.merge(state)

    assert_same_graph(original, rebuilt)
    assert_no_shared_objects(original, rebuilt)
    # the rebuilt graph partitions to the same thing
    state2, moduledef2 = rebuilt.partition()
    assert moduledef2 == moduledef
    assert hash(moduledef2) == hash(moduledef)
    assert state2 == state
    assert list(state2) == list(state)
    # building the same spec again gives an equal ModuleDef
    assert build(spec).get_module_def() == moduledef
    # the state is deduplicated: one entry per node attribute of each module object
    unique = {(id(m), name) for _, m in walk(original) for name, v in _attrs(m) if nnx.is_node(v)}
    assert len(state) == len(unique)
    # clone gives the same graph too
    assert_same_graph(original, original.clone())


def inc(x):
    # numpy turns a 0-d array plus a scalar into a numpy scalar (not an array, so
    # not a node): keep numpy arrays arrays
    return np.asarray(x + 1) if isinstance(x, np.ndarray) else x + 1


@given(graph_specs())
def test_update_state_applies_each_update_once_and_keeps_identities(spec):
    root = build(spec)
    before_ids = {path: id(m) for path, m in walk(root)}
    before_values = leaf_snapshot(root)
    before_statics = static_snapshot(root)

    state, _ = root.partition()
    root.update_state(jax.tree.map(inc, state))

    assert {path: id(m) for path, m in walk(root)} == before_ids
    assert static_snapshot(root) == before_statics
    # every path -- aliases of shared modules included -- moved by exactly one
    assert_values_equal(before_values, leaf_snapshot(root), delta=1)
    assert root.get_state() == jax.tree.map(inc, state)


FILTER_POOL = (
    nnx.Param,
    nnx.BatchStat,
    Count,
    "params",
    "batch_stats",
    "count",
    nnx.buffers,
    nnx.Not(nnx.Param),
    nnx.PathContains(0),
    nnx.Variable,
)


@given(graph_specs(), st.lists(st.sampled_from(FILTER_POOL), max_size=4, unique_by=id))
def test_filtered_partitions_merge_like_the_full_state(spec, filters):
    root = build(spec)
    full, full_moduledef = root.partition()
    filters = (*filters, ...)
    states, moduledef = root.partition(*filters)
    if len(filters) == 1:
        states = (states,)
    assert len(states) == len(filters)
    assert moduledef == full_moduledef

    # each entry goes to exactly one partition: the first filter matching it
    seen: set = set()
    for state in states:
        assert seen.isdisjoint(state)
        seen.update(state)
    assert seen == set(full)
    for i, state in enumerate(states):
        for path, value in state.items():
            for f in filters[:i]:
                assert not nnx.to_predicate(f)(path, value)
            assert nnx.to_predicate(filters[i])(path, value)

    assert nnx.State.merge(*states) == full
    merged = moduledef.merge(*states)
    assert_same_graph(full_moduledef.merge(full), merged)
    assert_same_graph(root, merged)
    # merging in any order gives the same graph (paths are disjoint)
    assert_same_graph(root, moduledef.merge(*reversed(states)))

    # Module.filter takes the same entries without the `...` bucket
    if len(filters) > 1:
        filtered = root.filter(*filters[:-1])
        filtered = filtered if isinstance(filtered, tuple) else (filtered,)
        assert all(a == b for a, b in zip(filtered, states))


@given(graph_specs())
def test_pop_state_then_update_state_restores(spec):
    root = build(spec)
    before = leaf_snapshot(root)
    full = root.get_state()
    popped = root.pop_state(nnx.Variable)
    assert len(root.filter(nnx.Variable)) == 0
    assert set(popped) | set(root.get_state()) == set(full)
    root.update_state(popped)
    assert root.get_state() == full
    assert_values_equal(before, leaf_snapshot(root))

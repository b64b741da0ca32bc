"""ModuleDef, the static half of a partitioned Module, and `merge`: rebuilding a
module graph from a ModuleDef and State(s) through a precompiled merge plan."""

from __future__ import annotations

import copy
import operator
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Generic, cast

from typing_extensions import TypeIs, TypeVar

from .._compat import current_trace, register_pytree_node
from .._filters import Path
from .._module_object import bump, check_trace, forget_dims, next_version, retypable, vars_of
from .._nodes import ARRAY, kind_of
from .._repr import indent
from .._state import State, path_sort_key
from .._variables import Node
from ._builders import Builder, builder_for

if TYPE_CHECKING:
    from ._module import Module
    from ._pure import ApplyCaller

M = TypeVar("M", covariant=True, default=Any)

# ------------------------------------------------------------------------------------
# Static attribute values: snapshot mutable containers so a ModuleDef never changes.

_MUTABLE_STATIC = (list, dict, set, bytearray)

MSG_NOT_STATE: Final = (
    "{who}: the value at {path} is a {type}, which is not state (an array, a Variable or "
    "another registered node), so it would silently become a static attribute. If a "
    "tree_map made Python or numpy scalars (e.g. from 0-d arrays), return arrays "
    "(np.asarray / jnp.asarray) instead."
)


def is_tuple(value: object) -> TypeIs[tuple[Any, ...]]:
    return isinstance(value, tuple)


def is_sequence(value: object) -> TypeIs[list[Any] | tuple[Any, ...]]:
    return isinstance(value, (list, tuple))


def is_dict(value: object) -> TypeIs[dict[Any, Any]]:
    return isinstance(value, dict)


def is_set(value: object) -> TypeIs[set[Any] | frozenset[Any]]:
    return isinstance(value, (set, frozenset))


def _is_mutable_static(value: object) -> bool:
    return isinstance(value, _MUTABLE_STATIC)


def freeze_static(value: object) -> object:
    return copy.deepcopy(value) if _is_mutable_static(value) else value


def _hashable(value: object) -> object:
    try:
        hash(value)
    except TypeError:
        if is_sequence(value):
            return (type(value).__name__, tuple(_hashable(v) for v in value))
        if is_dict(value):
            return ("dict", tuple((_hashable(k), _hashable(v)) for k, v in value.items()))
        if is_set(value):
            return ("set", frozenset(_hashable(v) for v in value))
        return ("unhashable", type(value))  # equal objects of one type hash alike
    return value


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()
"""What `dict.get` returns for an absent attribute (None may be a value)."""


# ------------------------------------------------------------------------------------
# ModuleDef


class _MergePlan:
    """What merge needs from a ModuleDef, compiled once per ModuleDef.

    `builders` has one builder per module, in index order (`_builders.py`): it makes
    the module with its static attributes (immutable ones copied from a ready dict in
    one step; mutable ones deep-copied per merge, so a merged module never shares a
    list with the ModuleDef) and its leaves, which it reads from the leaf values at
    its offset. A module's leaves are consecutive in that list when its submodules'
    keys do not sort between them (the common case); otherwise `gather` reorders the
    values first. `links` holds the submodule attributes of the modules that have any.
    """

    __slots__ = ("builders", "gather", "links", "optional_paths", "path_set", "paths")

    def __init__(self, root: ModuleDef[Any]) -> None:
        self.links: list[tuple[int, tuple[tuple[str, int], ...]]] = []
        self.paths: list[Path] = []
        optional: list[Path] = []
        # per module: its ModuleDef, leaf names and leaf positions in `paths`
        nodes: list[tuple[ModuleDef[Any], tuple[str, ...], list[int]]] = []

        def visit(md: ModuleDef[Any], prefix: Path) -> None:
            links: list[tuple[str, int]] = []
            names: list[str] = []
            positions: list[int] = []
            nodes.append((md, (), positions))
            node_at = len(nodes) - 1
            subs = dict(md.submodules)
            leaves = set(md.leaf_keys)
            for key in md.keys:
                if key in leaves:
                    positions.append(len(self.paths))
                    self.paths.append((*prefix, key))
                    if key in md.intermediate_keys:
                        optional.append((*prefix, key))
                    names.append(attr_name(key))
                else:
                    sub = subs[key]
                    if isinstance(sub, ModuleDef):
                        links.append((attr_name(key), sub.index))
                        visit(sub, (*prefix, key))
                    else:
                        links.append((attr_name(key), sub))
            nodes[node_at] = (md, tuple(names), positions)
            if links:
                self.links.append((md.index, tuple(links)))

        visit(root, ())
        order = [i for _, _, positions in nodes for i in positions]
        self.gather = None if order == sorted(order) else operator.itemgetter(*order)
        self.builders: list[Builder] = []
        start = 0
        for md, names, _ in nodes:
            statics = {n: v for n, v in md.static_fields if not _is_mutable_static(v)}
            mutable = tuple((n, v) for n, v in md.static_fields if _is_mutable_static(v))
            build = builder_for(md.type, statics, mutable, names, start, retypable(md.type))
            self.builders.append(build)
            start += len(names)
        if root._paths is not None and root._paths == self.paths:
            self.paths = root._paths
        self.path_set = frozenset(self.paths)
        self.optional_paths = frozenset(optional)

    def values(self, moduledef: ModuleDef[Any], mapping: dict[Path, Any]) -> Sequence[Any]:
        """The entries of `mapping` in the builders' order; `MISSING` for an absent
        intermediate. Raises the fit error if `mapping` does not fit."""
        values = self._in_path_order(moduledef, mapping)
        gather = self.gather
        return values if gather is None else gather(values)

    def _in_path_order(self, moduledef: ModuleDef[Any], mapping: dict[Path, Any]) -> list[Any]:
        paths = self.paths
        if len(mapping) == len(paths):
            # A State from partition lists its paths in this order: compare the keys
            # (a pointer comparison when they are the same tuples) instead of hashing
            # every path.
            if list(mapping) == paths:
                return list(mapping.values())
            try:
                return [mapping[p] for p in paths]
            except KeyError:
                raise _fit_error(moduledef, mapping) from None
        values = [mapping.get(p, MISSING) for p in paths]
        missing = [p for p, v in zip(paths, values) if v is MISSING]
        if len(mapping) + len(missing) != len(paths) or not self.optional_paths.issuperset(missing):
            raise _fit_error(moduledef, mapping)
        return values


class ModuleDef(Generic[M]):
    """The static half of a partitioned Module: types, static attributes and the
    shape of the graph.

    `module.partition()` (or `module.get_module_def()`) makes one; it describes a
    module and, in `submodules`, each of its submodules, numbered by `index` in
    depth-first order. A submodule reached a second time (shared, or a cycle) is
    stored as the integer index of its first occurrence. `merge(*states)` rebuilds
    the module graph; `apply(*states).method(*args)` runs a method functionally.

    A ModuleDef never changes (mutable static values are snapshotted). It is hashable
    and compares by value, so two models of one structure and equal static attributes
    have equal ModuleDefs (a static `1` and `1.0` differ: a trace specialised on one is
    wrong for the other). It is a pytree without leaves, so it can be a static
    argument of `jax.jit` or travel through any transform.

    Args:
        type: The module class.
        index: This module's position in the graph, depth first (the root is 0).
        submodules: `(key, ModuleDef or back-reference index)` per submodule.
        static_fields: `(name, value)` per static attribute, sorted by name.
        leaf_keys: The keys of this module's state entries.
        keys: Leaf and submodule keys in traversal order. Default: both sorted.
        intermediate_keys: The leaf keys holding `nnx.Intermediate`s.

    Example:
        ```python
        model = nnx.Linear(2, 3, ctx=nnx.context(0))
        state, moduledef = model.partition()
        assert moduledef.type is nnx.Linear and moduledef.leaf_keys == ("bias", "kernel")
        assert ("in_features", 2) in moduledef.static_fields
        other = nnx.Linear(2, 3, ctx=nnx.context(1)).get_module_def()
        assert moduledef == other and hash(moduledef) == hash(other)

        shared = nnx.Sequence([model, model]).get_module_def()
        assert shared.submodules[1] == (1, 1)  # the second item: module 1 again
        ```
    """

    __slots__ = (
        "_hash",
        "_index",
        "_intermediate_keys",
        "_keys",
        "_leaf_keys",
        "_paths",
        "_plan",
        "_static_fields",
        "_submodules",
        "_type",
    )

    def __init__(
        self,
        type: type[M],
        index: int,
        submodules: tuple[tuple[str | int, ModuleDef[Any] | int], ...],
        static_fields: tuple[tuple[str, Any], ...],
        leaf_keys: tuple[str | int, ...] = (),
        keys: tuple[str | int, ...] | None = None,
        intermediate_keys: tuple[str | int, ...] = (),
    ) -> None:
        self._type = type
        self._intermediate_keys = intermediate_keys
        self._index = index
        self._submodules = submodules
        self._static_fields = static_fields
        self._leaf_keys = leaf_keys
        if keys is None:
            keys = tuple(
                sorted([*leaf_keys, *(k for k, _ in submodules)], key=lambda k: path_sort_key((k,)))
            )
        self._keys = keys
        self._hash: int | None = None  # computed on first use
        self._plan: _MergePlan | None = None
        # The path tuples of the State that partition made with this ModuleDef: the
        # merge plan reuses those objects, so it recognises such a State by identity.
        self._paths: list[Path] | None = None

    @property
    def type(self) -> type[M]:
        """The class of the module this ModuleDef describes."""
        return self._type

    @property
    def index(self) -> int:
        """This module's number in the graph, depth first: 0 for the root."""
        return self._index

    @property
    def submodules(self) -> tuple[tuple[str | int, ModuleDef[Any] | int], ...]:
        """`(key, sub)` per submodule: `sub` is its ModuleDef, or, for a module already
        reached (shared, or a cycle), the `index` of its first occurrence."""
        return self._submodules

    @property
    def static_fields(self) -> tuple[tuple[str, Any], ...]:
        """`(name, value)` per static attribute, sorted by name."""
        return self._static_fields

    @property
    def leaf_keys(self) -> tuple[str | int, ...]:
        """The keys of this module's state entries (not of its submodules')."""
        return self._leaf_keys

    @property
    def keys(self) -> tuple[str | int, ...]:
        """Leaf and submodule keys in traversal order."""
        return self._keys

    @property
    def intermediate_keys(self) -> tuple[str | int, ...]:
        """The leaf keys holding `nnx.Intermediate`s: `merge` tolerates their absence."""
        return self._intermediate_keys

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not _is_moduledef(other):
            return NotImplemented
        that = other
        return (
            hash(self) == hash(that)
            and self._type is that._type
            and self._submodules == that._submodules
            and self._leaf_keys == that._leaf_keys
            and self._intermediate_keys == that._intermediate_keys
            and self._static_fields == that._static_fields
            # 1, 1.0 and True are ==, but a trace specialised on one is wrong for another
            and all(
                type(a) is type(b)
                for (_, a), (_, b) in zip(self._static_fields, that._static_fields)
            )
        )

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            statics = tuple(
                (name, value.__class__, _hashable(value)) for name, value in self._static_fields
            )
            h = self._hash = hash(
                (self._type, self._submodules, statics, self._leaf_keys, self._intermediate_keys)
            )
        return h

    def __repr__(self) -> str:
        parts = [f"type={self._type.__name__}", f"index={self._index}"]
        if self._leaf_keys:
            parts.append(f"leaves={list(self._leaf_keys)}")
        if self._static_fields:
            statics = ", ".join(f"{k}={v!r}" for k, v in self._static_fields)
            parts.append(f"static_fields={{{statics}}}")
        for key, sub in self._submodules:
            parts.append(f"{key}={indent(repr(sub))}")
        return "ModuleDef(\n  " + ",\n  ".join(parts) + "\n)"

    def _get_plan(self) -> _MergePlan:
        plan = self._plan
        if plan is None:
            plan = self._plan = _MergePlan(self)
        return plan

    def merge(self, state: State[Any], /, *states: State[Any]) -> M:
        """Build a new module graph from this definition and the given State(s).

        Pass every partition (`merge(params, batch_stats)`); for a path present in
        several, the last State wins. The modules are new objects, of the current JAX
        trace (so `merge` inside a `jax.jit` gives a module free to mutate there); the
        Variables are copies, the States are not changed. Shared submodules and cycles
        are rebuilt as such. Missing `nnx.Intermediate` entries are allowed: the module
        is built without them, as after `pop_state(nnx.Intermediate)`. No run-time
        shape check runs.

        Args:
            state: A State (e.g. from `partition`).
            *states: More States, e.g. the other partitions.

        Returns:
            A new module of type `self.type`.

        Raises:
            ValueError: If the States do not fit this ModuleDef (missing or unknown
                paths); the message names them.
            TypeError: If an entry is not state (e.g. a Python float left by a
                `tree_map`: return arrays instead), or an argument is not a State.

        Example:
            ```python
            model = nnx.BatchNorm(3, ctx=nnx.context(0))
            (params, stats), moduledef = model.partition(nnx.Param, nnx.BatchStat)
            copy = moduledef.merge(params, stats)
            assert type(copy) is nnx.BatchNorm and copy is not model
            try:
                moduledef.merge(params)  # the batch statistics are missing
            except ValueError as error:
                assert "missing paths" in str(error)
            else:
                raise AssertionError("expected a ValueError")
            ```
        """
        return cast(M, unflatten(self, combine_states((state, *states))))

    def apply(self, state: State[Any], /, *states: State[Any]) -> ApplyCaller[M]:
        """Call a method functionally: merge, call, partition again.

        `moduledef.apply(*states)(*args)` calls `__call__`, `.method(*args)` another
        method; attribute and item access chain to any depth first
        (`apply(state).blocks[0].linear(x)`). The call merges a fresh module, calls it,
        and returns `(output, nnx.Pure(new_state, new_moduledef))`: the whole updated
        state (counters, batch statistics, intermediates) as one State. The States
        given are not changed, so it works inside `jax.jit` and `jax.grad`.

        Args:
            state: A State, as for `merge`.
            *states: More States, as for `merge`.

        Returns:
            An `nnx.ApplyCaller`; nothing runs until it is called.

        Example:
            ```python
            (params, stats), moduledef = nnx.BatchNorm(2, ctx=nnx.context(0)).partition(
                nnx.Param, nnx.BatchStat
            )
            x = jnp.arange(8.0).reshape(4, 2)
            y, (new_state, _) = moduledef.apply(params, stats)(x, use_running_average=False)
            assert y.shape == (4, 2)
            assert float(new_state[("mean",)].value.sum()) > 0.0  # updated
            assert float(stats[("mean",)].value.sum()) == 0.0  # not changed

            @jax.jit
            def loss(params: nnx.State, x: jax.Array) -> jax.Array:
                y, _ = moduledef.apply(params, stats)(x, use_running_average=True)
                return jnp.mean(y**2)

            grads = jax.grad(loss)(params, x)
            assert set(grads) == {("bias",), ("scale",)}
            ```
        """
        from ._pure import ApplyCaller  # _pure builds on ModuleDef

        return ApplyCaller(self, (state, *states), ())


def _is_moduledef(x: object) -> TypeIs[ModuleDef[Any]]:
    return isinstance(x, ModuleDef)


def _moduledef_flatten(md: ModuleDef[Any]) -> tuple[tuple[()], ModuleDef[Any]]:
    return (), md


def _moduledef_unflatten(md: ModuleDef[Any], _: Iterable[Any]) -> ModuleDef[Any]:
    return md


register_pytree_node(ModuleDef, _moduledef_flatten, _moduledef_unflatten)


def attr_name(key: str | int) -> str:
    return key if type(key) is str else str(key)


def combine_states(states: tuple[Any, ...]) -> dict[Path, Any]:
    if len(states) == 1:
        only = states[0]
        if isinstance(only, State):
            return only._mapping  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    combined: dict[Path, Any] = {}
    for s in states:
        if isinstance(s, State):
            combined.update(s._mapping)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        elif isinstance(s, tuple):
            combined.update(combine_states(s))  # pyright: ignore[reportUnknownArgumentType]
        else:
            raise TypeError(f"Expected a State or a tuple of States, got {type(s).__name__}")
    return combined


def _fit_error(moduledef: ModuleDef[Any], mapping: dict[Path, Any]) -> ValueError:
    plan = moduledef._get_plan()
    missing = [p for p in plan.paths if p not in mapping]
    unknown = [p for p in mapping if p not in plan.path_set]
    lines = [f"The state does not fit ModuleDef[{moduledef.type.__name__}]:"]
    if missing:
        lines.append(f"  missing paths: {missing}")
    for path in unknown:
        lines.append(f"  unexpected path {path}: {_why_unknown(moduledef, path)}")
    lines.append(
        "Pass every partition to merge (e.g. merge(params, batch_stats, rest)) and use "
        "the moduledef that was returned together with these states."
    )
    return ValueError("\n".join(lines))


def _why_unknown(moduledef: ModuleDef[Any], path: Path) -> str:
    md: ModuleDef[Any] = moduledef
    root_md = moduledef
    for depth, key in enumerate(path):
        subs = dict(md.submodules)
        where = md.type.__name__ + "".join(f"[{k!r}]" for k in path[:depth])
        if depth == len(path) - 1:
            if key in subs:
                return f"{key!r} is a submodule of {where}, not a state entry"
            if any(name == key for name, _ in md.static_fields):
                return f"{key!r} is a static attribute of {where}, not a state entry"
            return f"{where} has no state entry {key!r}"
        sub = subs.get(key)
        if sub is None:
            return f"{key!r} is not a submodule of {where}"
        if isinstance(sub, int):
            sub = _find_index(root_md, sub)
        md = sub
    return "empty path"


def _find_index(root: ModuleDef[Any], index: int) -> ModuleDef[Any]:
    stack = [root]
    while stack:
        md = stack.pop()
        if md.index == index:
            return md
        stack.extend(s for _, s in md.submodules if isinstance(s, ModuleDef))
    raise LookupError(index)  # pragma: no cover - indices always refer to built nodes


def unflatten(
    moduledef: ModuleDef[Any], mapping: dict[Path, Any], into: Module | None = None
) -> Any:
    """Build the graph `moduledef` describes from `mapping`'s entries; `into`, if
    given, is used as the root object (it must be of the root's type).

    The hot path of `merge`, and of every transform that rebuilds modules: one
    builder call per module over the compiled plan (see `_builders.py`).
    """
    plan = moduledef._get_plan()
    values = plan.values(moduledef, mapping)
    trace = current_trace()
    version = next_version()  # one for all: versions are only compared per module

    def other(d: dict[str, Any], name: str, value: Any) -> None:
        if value is MISSING:  # an intermediate left out (DECISIONS 6)
            return
        if kind_of(value) != ARRAY:  # e.g. a Python float from a tree_map
            _refuse_non_state(moduledef, mapping, value, "merge")
        d[name] = value

    modules: list[Module] = [build(values, trace, version, other) for build in plan.builders]
    if into is not None:
        _move_root(modules, into)
    for index, links in plan.links:
        d = vars_of(modules[index])
        for name, target in links:
            d[name] = modules[target]
    return modules[0]


def _move_root(modules: list[Module], into: Module) -> None:
    """Make `into` the root of the freshly built graph (`merge_into`): it takes the
    built root's attributes, and its Variables now belong to `into`."""
    d = vars_of(into)
    d.update(vars_of(modules[0]))
    owner = weakref.ref(into)
    for value in d.values():
        if isinstance(value, Node):
            value._owner = owner
    modules[0] = into


def _refuse_non_state(
    moduledef: ModuleDef[Any], mapping: dict[Path, Any], value: Any, who: str
) -> None:
    path = next(p for p, v in mapping.items() if v is value)
    raise TypeError(MSG_NOT_STATE.format(who=who, path=path, type=type(value).__name__))


def merge_into(root: Module, moduledef: ModuleDef[Any], states: tuple[State[Any], ...]) -> None:
    """Make `root` the root of the graph `moduledef` and `states` describe (what
    `moduledef.merge(*states)` would build, but on this object): `nnx.scan` on
    `__init__` builds the stacked layers on the real `self` this way."""
    if type(root) is not moduledef.type:
        raise TypeError(
            f"merge_into: a {type(root).__name__} cannot hold a "
            f"ModuleDef[{moduledef.type.__name__}]"
        )
    check_trace(root, "<state>")
    unflatten(moduledef, combine_states(states), into=root)
    bump(root)
    forget_dims(root)


def owned_copy(node: Node[Any], module: Module) -> Node[Any]:
    new = node.copy()
    new._owner = weakref.ref(module)
    return new

"""Modules, the module graph, and its functional form (State + ModuleDef).

A Module is a plain mutable Python object. Each attribute is one of

- a **submodule** (a Module; shared references and cycles allowed),
- a **node** (a Variable/Node container or a raw array: the Module's state),
- **static** (anything else: ints, strings, functions, ...).

`module.partition()` walks the graph depth-first, attributes in sorted order, each
module once, and returns a `State` (path → node, deduplicated, sorted) and a
`ModuleDef` (types, static attributes and the graph's shape, shared references as
integer indices). `moduledef.merge(state)` rebuilds a fresh graph.

Ownership: a Module owns the Variable objects it holds. Assigning a Variable stores
a copy; `partition` returns copies; `merge`/`update_state` copy values in. So a State
is a snapshot, and writing `variable.value` on a Module's own Variable (reachable as
`vars(module)[name]`) is checked by the Module like any other assignment.
"""

from __future__ import annotations

import copy
import functools
import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Generic, cast, overload

from typing_extensions import ParamSpec, Self, TypeIs, TypeVar

from . import _nodes
from ._compat import Tracer, TraceState, current_trace, register_pytree_node
from ._errors import MSG_MODULE_TRACE, TraceContextError
from ._filters import Filter, Path, Predicate, check_filters
from ._jaxtyping_internals import Bindings
from ._nodes import (
    CONTAINER_NODE,
    MODULE,
    MUTABLE_STATIC,
    NODE,
    STATIC,
    STATIC_CONTAINER,
    kind_of,
)
from ._repr import indent, repr_value
from ._shape_checks import (
    AttrSpec,
    check_assignment,
    class_specs,
    commit,
    register_module_internals,
    shape_checks_enabled,
)
from ._state import State, path_sort_key, split_pairs
from ._treescope import render_constructor, render_mapping
from ._variables import (
    Container,
    Intermediate,
    Node,
    Static,
    Variable,
    is_container,
    is_node_box,
    is_variable,
)

__all__ = ["ApplyCaller", "CloneCaller", "Module", "ModuleDef", "Pure", "PureModule"]

A = TypeVar("A")
M = TypeVar("M", covariant=True, default=Any)
S = TypeVar("S", covariant=True, default=Any)
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T", covariant=True)
Root = TypeVar("Root", covariant=True)
V1 = TypeVar("V1")
V2 = TypeVar("V2")
V3 = TypeVar("V3")
ModuleT = TypeVar("ModuleT", bound="Module")

_object_getattribute = object.__getattribute__
_versions = itertools.count(1)

MSG_KIND_MISMATCH: Final = (
    "Cannot assign a {new} to {owner}.{name}, which holds a {old}: a Variable keeps "
    "its kind. Assign the raw value to update it (`{owner_var}.{name} = x`), or "
    "`del {owner_var}.{name}` first to change its kind."
)
MSG_MODULE_INTO_CONTAINER: Final = (
    "Cannot assign a Module ({new}) to {owner}.{name}, which holds a {old}. "
    "`del {owner_var}.{name}` first if you mean to replace it with a submodule."
)
MSG_STATIC_CONTAINER: Final = (
    "{owner}.{name}: a {kind} holding {what} would be a static attribute, so that "
    "state would be silently left out of partition() and every transform. Use "
    "nnx.Sequence([...]) or nnx.Dict({{...}}) for submodules, or wrap arrays in "
    "nnx.Node(...) / a Variable."
)


# ------------------------------------------------------------------------------------
# Static attribute values: snapshot mutable containers so a ModuleDef never changes.

_MUTABLE_STATIC = (list, dict, set, bytearray)

MSG_NOT_STATE: Final = (
    "{who}: the value at {path} is a {type}, which is not state (an array, a Variable or "
    "another registered node), so it would silently become a static attribute. If a "
    "tree_map made Python or numpy scalars (e.g. from 0-d arrays), return arrays "
    "(np.asarray / jnp.asarray) instead."
)


def _is_tuple(value: object) -> TypeIs[tuple[Any, ...]]:
    return isinstance(value, tuple)


def _is_sequence(value: object) -> TypeIs[list[Any] | tuple[Any, ...]]:
    return isinstance(value, (list, tuple))


def _is_dict(value: object) -> TypeIs[dict[Any, Any]]:
    return isinstance(value, dict)


def _is_set(value: object) -> TypeIs[set[Any] | frozenset[Any]]:
    return isinstance(value, (set, frozenset))


def _is_mutable_static(value: object) -> bool:
    return isinstance(value, _MUTABLE_STATIC)


def _freeze_static(value: object) -> object:
    return copy.deepcopy(value) if _is_mutable_static(value) else value


def _hashable(value: object) -> object:
    try:
        hash(value)
    except TypeError:
        if _is_sequence(value):
            return (type(value).__name__, tuple(_hashable(v) for v in value))
        if _is_dict(value):
            return ("dict", tuple((_hashable(k), _hashable(v)) for k, v in value.items()))
        if _is_set(value):
            return ("set", frozenset(_hashable(v) for v in value))
        return ("unhashable", type(value))  # equal objects of one type hash alike
    return value


# ------------------------------------------------------------------------------------
# ModuleDef


class _MergePlan:
    """What merge needs from a ModuleDef, flattened once: node types, statics,
    submodule links and the leaf slots in path order."""

    __slots__ = ("leaf_slots", "nodes", "optional_paths", "path_set", "paths")

    def __init__(self, root: ModuleDef[Any]) -> None:
        self.nodes: list[
            tuple[type[Module], tuple[tuple[str, Any], ...], list[tuple[str, int]]]
        ] = []
        self.paths: list[Path] = []
        self.leaf_slots: list[tuple[int, str]] = []
        optional: list[Path] = []

        def visit(md: ModuleDef[Any], prefix: Path) -> None:
            links: list[tuple[str, int]] = []
            self.nodes.append((md.type, md.static_fields, links))
            index = md.index
            subs = dict(md.submodules)
            leaves = set(md.leaf_keys)
            for key in md.keys:
                if key in leaves:
                    self.paths.append((*prefix, key))
                    if key in md.intermediate_keys:
                        optional.append((*prefix, key))
                    self.leaf_slots.append((index, _attr_name(key)))
                else:
                    sub = subs[key]
                    if isinstance(sub, ModuleDef):
                        links.append((_attr_name(key), sub.index))
                        visit(sub, (*prefix, key))
                    else:
                        links.append((_attr_name(key), sub))

        visit(root, ())
        self.path_set = frozenset(self.paths)
        self.optional_paths = frozenset(optional)


class ModuleDef(Generic[M]):
    """The static half of a partitioned Module: types, static attributes and the
    shape of the graph (shared submodules and cycles as integer back-references).

    Hashable and a pytree without leaves, so it can be a static argument of
    `jax.jit` or travel through any transform. `merge(state)` rebuilds the Module;
    `apply(state).method(*args)` runs a method functionally.
    """

    __slots__ = (
        "_hash",
        "_index",
        "_intermediate_keys",
        "_keys",
        "_leaf_keys",
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

    @property
    def type(self) -> type[M]:
        return self._type

    @property
    def index(self) -> int:
        return self._index

    @property
    def submodules(self) -> tuple[tuple[str | int, ModuleDef[Any] | int], ...]:
        return self._submodules

    @property
    def static_fields(self) -> tuple[tuple[str, Any], ...]:
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
        """Build a new Module from this definition and the given State(s).

        Pass every partition (`merge(params, batch_stats)`); for a path present in
        several, the last State wins. Raises `ValueError` if the states do not fit
        this ModuleDef (missing or unknown paths), except that missing
        `nnx.Intermediate` entries are allowed: the module is built without them, as
        after `pop_state(nnx.Intermediate)`.
        """
        return cast(M, _unflatten(self, _combine_states((state, *states))))

    def apply(self, state: State[Any], /, *states: State[Any]) -> ApplyCaller[M]:
        """Call a method functionally: `moduledef.apply(state).method(*args)` merges,
        calls, and returns `(output, Pure(new_state, new_moduledef))`. Attribute and
        item access chain to any depth: `apply(state).blocks[0].linear(x)`."""
        return ApplyCaller(self, (state, *states), ())


def _is_moduledef(x: object) -> TypeIs[ModuleDef[Any]]:
    return isinstance(x, ModuleDef)


def _moduledef_flatten(md: ModuleDef[Any]) -> tuple[tuple[()], ModuleDef[Any]]:
    return (), md


def _moduledef_unflatten(md: ModuleDef[Any], _: Iterable[Any]) -> ModuleDef[Any]:
    return md


register_pytree_node(ModuleDef, _moduledef_flatten, _moduledef_unflatten)


def _attr_name(key: str | int) -> str:
    return key if type(key) is str else str(key)


def _combine_states(states: tuple[Any, ...]) -> dict[Path, Any]:
    if len(states) == 1:
        only = states[0]
        if isinstance(only, State):
            return only._mapping  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    combined: dict[Path, Any] = {}
    for s in states:
        if isinstance(s, State):
            combined.update(s._mapping)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        elif isinstance(s, tuple):
            combined.update(_combine_states(s))  # pyright: ignore[reportUnknownArgumentType]
        else:
            raise TypeError(f"Expected a State or a tuple of States, got {type(s).__name__}")
    return combined


class _Caller:
    """What `ApplyCaller` and `CloneCaller` share: the ModuleDef and States to merge,
    and the attribute/item accesses (`.blocks[0].linear`) to follow before the call."""

    __slots__ = ("_accessors", "_moduledef", "_states")

    def __init__(
        self,
        moduledef: ModuleDef[Any],
        states: tuple[State[Any], ...],
        accessors: tuple[tuple[bool, Any], ...],
    ) -> None:
        self._moduledef = moduledef
        self._states = states
        self._accessors = accessors

    def _access(self, is_attr: bool, key: Any) -> Any:
        if is_attr and isinstance(key, str) and key.startswith("__"):
            raise AttributeError(key)
        return type(self)(self._moduledef, self._states, (*self._accessors, (is_attr, key)))

    def _call_on_copy(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Module]:
        """Merge a fresh module, reach the accessed attribute/item, call it:
        `(output, the fresh module)`."""
        module: Module = self._moduledef.merge(*self._states)
        target: Any = module
        for is_attr, key in self._accessors:
            target = getattr(target, key) if is_attr else target[key]
        return target(*args, **kwargs), module


class ApplyCaller(_Caller, Generic[M]):
    """`moduledef.apply(state)` — call it, or reach any attribute/item first; the call
    returns `(output, Pure(new_state, new_moduledef))`."""

    __slots__ = ()

    def __getattr__(self, name: str) -> ApplyCaller[Any]:
        accessed: ApplyCaller[Any] = self._access(True, name)
        return accessed

    def __getitem__(self, key: Any) -> ApplyCaller[Any]:
        accessed: ApplyCaller[Any] = self._access(False, key)
        return accessed

    def __call__(
        self: ApplyCaller[Callable[P, R]], *args: P.args, **kwargs: P.kwargs
    ) -> tuple[R, tuple[State[Any], ModuleDef[M]]]:
        out, module = self._call_on_copy(args, kwargs)
        return out, cast("tuple[State[Any], ModuleDef[M]]", module.partition())


class CloneCaller(_Caller, Generic[T, Root]):
    """`module.apply` — call it, or reach any attribute/item first; the call runs on
    a copy of the module and returns `(output, copy)`, the original untouched."""

    __slots__ = ()

    def __getattr__(self, name: str) -> CloneCaller[Any, Root]:
        accessed: CloneCaller[Any, Root] = self._access(True, name)
        return accessed

    def __getitem__(self, key: Any) -> CloneCaller[Any, Root]:
        accessed: CloneCaller[Any, Root] = self._access(False, key)
        return accessed

    def __call__(
        self: CloneCaller[Callable[P, R], Root], *args: P.args, **kwargs: P.kwargs
    ) -> tuple[R, Root]:
        out, module = self._call_on_copy(args, kwargs)
        return out, cast(Root, module)


# ------------------------------------------------------------------------------------
# Pure: (states, moduledef)


class Pure(tuple[S, ModuleDef[M]]):
    """`(states, moduledef)`, what `Module.partition` returns; a pytree.

    `states` is one State or a tuple of States (one per filter).
    """

    __slots__ = ()

    def __new__(cls, states: S, moduledef: ModuleDef[M]) -> Pure[S, M]:
        return super().__new__(cls, (states, moduledef))

    @property
    def states(self) -> S:
        return self[0]

    @property
    def moduledef(self) -> ModuleDef[M]:
        return self[1]

    def _state_tuple(self) -> tuple[State[Any], ...]:
        states: Any = self[0]
        return states if isinstance(states, tuple) else (states,)  # pyright: ignore[reportUnknownVariableType]

    def merge(self) -> M:
        """The Module these states and this moduledef describe."""
        return self[1].merge(*self._state_tuple())

    @property
    def apply(self) -> ApplyCaller[M]:
        return ApplyCaller(self[1], self._state_tuple(), ())

    @property
    def call(self) -> _OutputOnly[M]:
        """`pure.call.method(*args)` → only the output (updates discarded)."""
        return _OutputOnly(self.apply)

    def get_state(self) -> State[Any]:
        return State.merge(*self._state_tuple())

    def filter(self, first: Filter, /, *filters: Filter) -> State[Any] | tuple[State[Any], ...]:
        return self.get_state().filter(first, *filters)

    def partition(self, *filters: Filter) -> Pure[Any, M]:
        state = self.get_state()
        if not filters:
            return Pure(state, self[1])
        first, *rest = filters
        return Pure(state.partition(first, *rest), self[1])

    def pop_state(self, first: Filter, /, *filters: Filter) -> tuple[Any, Pure[State[Any], M]]:
        """`(popped, Pure(rest))`: the entries matching the filters, and the rest."""
        state = self.get_state()
        predicates = check_filters((first, *filters))
        *popped, rest = split_pairs(
            state._mapping.items(), (*predicates, _everything), exhaustive=True
        )
        return (popped[0] if len(popped) == 1 else tuple(popped)), Pure(rest, self[1])

    def update_state(self, updates: State[Any] | tuple[State[Any], ...]) -> Pure[State[Any], M]:
        """A new Pure whose state is this one's with `updates` applied (updates win)."""
        new = updates if isinstance(updates, tuple) else (updates,)
        return Pure(State.merge(self.get_state(), *new), self[1])


def _everything(path: Path, value: Any) -> bool:
    return True


class _OutputOnly(Generic[M]):
    __slots__ = ("_caller",)

    def __init__(self, caller: ApplyCaller[Any]) -> None:
        self._caller = caller

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _OutputOnly(getattr(self._caller, name))

    def __getitem__(self, key: Any) -> Any:
        return _OutputOnly(self._caller[key])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._caller(*args, **kwargs)[0]


def _pure_flatten(pure: Pure[Any, Any]) -> tuple[tuple[Any, Any], None]:
    return (pure[0], pure[1]), None


def _pure_unflatten(_: None, children: Iterable[Any]) -> Pure[Any, Any]:
    states, moduledef = children
    return Pure(states, moduledef)


register_pytree_node(Pure, _pure_flatten, _pure_unflatten)
_nodes.register_node_type(Pure)

if TYPE_CHECKING:
    from typing import TypeAlias

    PureModule: TypeAlias = "Pure[State[Any] | tuple[State[Any], ...], ModuleT]"
else:
    PureModule = Pure[State | tuple, ModuleT]


# ------------------------------------------------------------------------------------
# Graph traversal


def _sorted_entries(module: Module, d: dict[str, Any]) -> list[tuple[str | int, Any]]:
    """`(key, value)` for each attribute, in traversal order (`key` is the path key)."""
    if type(module)._nnx_int_keys:
        keyed: list[tuple[str | int, Any]] = [
            (int(n) if n.isdigit() else n, v) for n, v in d.items()
        ]
        keyed.sort(key=_int_first)
        return keyed
    return sorted(d.items())


def _int_first(item: tuple[str | int, Any]) -> tuple[bool, str | int]:
    return (type(item[0]) is str, item[0])


def _module_items(module: Module) -> list[tuple[str | int, str, Any]]:
    """`(key, attribute name, value)` for each attribute, in traversal order."""
    return [(k, _attr_name(k), v) for k, v in _sorted_entries(module, _vars(module))]


class _GraphCache:
    """What `partition` learned about a graph, valid while no module in it has had a
    structural change (every such change bumps that module's version) and no
    mutable static attribute (list, dict, set) was changed in place."""

    __slots__ = (
        "leaf_slots",
        "moduledef",
        "modules",
        "mutable_statics",
        "paths",
        "spec",
        "versions",
    )

    def __init__(
        self,
        modules: list[Module],
        moduledef: ModuleDef[Any],
        paths: list[Path],
        leaf_slots: list[tuple[dict[str, Any], str, bool]],
        mutable_statics: list[tuple[dict[str, Any], str, Any]],
    ) -> None:
        self.modules = modules
        self.versions = [_version_slot.__get__(m) for m in modules]
        self.moduledef = moduledef
        self.paths = paths
        self.leaf_slots = leaf_slots
        self.mutable_statics = mutable_statics
        self.spec: GraphSpec | None = None  # made on first use by a transform

    def get_spec(self) -> GraphSpec:
        spec = self.spec
        if spec is None:
            boxes = tuple(
                (d[name].__class__, d[name]._metadata) if boxed else None
                for d, name, boxed in self.leaf_slots
            )
            spec = self.spec = GraphSpec(self.moduledef, tuple(self.paths), boxes)
        return spec

    def raw_leaves(self) -> list[Any]:
        """The current leaf values, unboxed (what a transform passes to JAX)."""
        return [d[name]._value if boxed else d[name] for d, name, boxed in self.leaf_slots]

    def write_raw(self, indices: Iterable[int], values: Iterable[Any]) -> None:
        """Write unboxed values back into the leaf slots at `indices`."""
        slots = self.leaf_slots
        for i, value in zip(indices, values):
            d, name, boxed = slots[i]
            if boxed:
                d[name]._value = value
            else:
                d[name] = value

    def is_valid(self) -> bool:
        get_version = _version_slot.__get__
        for module, version in zip(self.modules, self.versions):
            if get_version(module) != version:
                return False
        return all(d.get(name, _MISSING) == snapshot for d, name, snapshot in self.mutable_statics)

    def leaves(self, copy_leaves: bool) -> list[Any]:
        if copy_leaves:
            return [d[name].copy() if boxed else d[name] for d, name, boxed in self.leaf_slots]
        return [d[name] for d, name, _ in self.leaf_slots]


class GraphSpec:
    """The static description of a partitioned graph that transforms key on: its
    ModuleDef, its paths and, per leaf, the Variable kind and metadata (or None for a
    raw array). Hashable; equal for equal structure."""

    __slots__ = ("_hash", "boxes", "moduledef", "paths")

    def __init__(
        self,
        moduledef: ModuleDef[Any],
        paths: tuple[Path, ...],
        boxes: tuple[tuple[type[Node[Any]], Any] | None, ...],
    ) -> None:
        self.moduledef = moduledef
        self.paths = paths
        self.boxes = boxes
        self._hash = hash((moduledef, paths, boxes))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, GraphSpec):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.paths == other.paths
            and self.boxes == other.boxes
            and self.moduledef == other.moduledef
        )

    def state(self, raw_leaves: Iterable[Any]) -> State[Any]:
        """The State these unboxed leaves stand for."""
        entries: dict[Path, Any] = {}
        for path, box, value in zip(self.paths, self.boxes, raw_leaves):
            if box is not None:
                node = object.__new__(box[0])
                node._value, node._metadata, node._owner = value, box[1], None
                value = node
            entries[path] = value
        return State._from_sorted(entries)

    def merge(self, raw_leaves: Iterable[Any]) -> Any:
        return _unflatten(self.moduledef, _combine_states((self.state(raw_leaves),)))


def graph_cache(root: Module) -> _GraphCache:
    """The (valid) structure cache of the graph under `root`."""
    cache: _GraphCache | None = _cache_slot.__get__(root)
    if cache is None or not cache.is_valid():
        cache = _build_graph_cache(root)
        _cache_slot.__set__(root, cache)
    return cache


def _flatten(
    root: Module, copy_leaves: bool = True
) -> tuple[ModuleDef[Any], list[Path], list[Any]]:
    """`(moduledef, paths, leaves)` of the graph under `root`, paths in sorted order.

    The structure is cached on `root` and reused while it is valid, so repeated
    partitions of an unchanged model only gather the current leaves.
    """
    cache = graph_cache(root)
    return cache.moduledef, cache.paths, cache.leaves(copy_leaves)


class _Layout:
    """One module's own share of the graph structure, valid for one version of it:
    its static attributes and, in traversal order, its submodule and leaf entries."""

    __slots__ = (
        "entries",
        "intermediate_keys",
        "keys",
        "leaf_keys",
        "mutable_statics",
        "statics",
        "version",
    )

    def __init__(self, module: Module, version: int) -> None:
        kinds = _nodes._kind_cache
        d = _vars(module)
        statics: list[tuple[str, Any]] = []
        entries: list[tuple[str | int, str, int]] = []
        keys: list[str | int] = []
        leaf_keys: list[str | int] = []
        intermediate_keys: list[str | int] = []
        mutable: list[tuple[dict[str, Any], str, Any]] = []
        for key, value in _sorted_entries(module, d):
            name = key if type(key) is str else str(key)
            kind = kinds.get(value.__class__)
            if kind is None:
                kind = kind_of(value)
            if kind in (STATIC, STATIC_CONTAINER):
                statics.append((name, value))
            elif kind == MUTABLE_STATIC:  # snapshot lists/dicts/sets: a ModuleDef is frozen
                value = copy.deepcopy(value)
                mutable.append((d, name, value))
                statics.append((name, value))
            else:
                entries.append((key, name, kind))
                keys.append(key)
                if kind != MODULE:
                    leaf_keys.append(key)
                    if isinstance(value, Intermediate):
                        intermediate_keys.append(key)
        self.version = version
        self.statics = tuple(statics)
        self.entries = entries
        self.keys = tuple(keys)
        self.leaf_keys = tuple(leaf_keys)
        self.intermediate_keys = tuple(intermediate_keys)
        self.mutable_statics = mutable

    def is_valid(self, version: int) -> bool:
        if self.version != version:
            return False
        return not self.mutable_statics or all(
            d.get(name, _MISSING) == snapshot for d, name, snapshot in self.mutable_statics
        )


def _layout(module: Module) -> _Layout:
    version: int = _version_slot.__get__(module)
    layout: _Layout | None = _layout_slot.__get__(module)
    if layout is None or not layout.is_valid(version):
        layout = _Layout(module, version)
        _layout_slot.__set__(module, layout)
    return layout


def _build_graph_cache(root: Module) -> _GraphCache:
    index_of: dict[int, int] = {}
    modules: list[Module] = []
    paths: list[Path] = []
    leaf_slots: list[tuple[dict[str, Any], str, bool]] = []
    mutable_statics: list[tuple[dict[str, Any], str, Any]] = []

    get_version = _version_slot.__get__
    get_layout = _layout_slot.__get__

    def visit(module: Module, prefix: Path) -> ModuleDef[Any] | int:
        index = index_of.get(id(module))
        if index is not None:
            return index
        index = index_of[id(module)] = len(modules)
        modules.append(module)
        layout: _Layout | None = get_layout(module)
        if layout is None or not layout.is_valid(get_version(module)):
            layout = _layout(module)
        if layout.mutable_statics:
            mutable_statics.extend(layout.mutable_statics)
        d = _vars(module)
        submodules: list[tuple[str | int, ModuleDef[Any] | int]] = []
        for key, name, kind in layout.entries:
            if kind == MODULE:
                submodules.append((key, visit(d[name], prefix + (key,))))  # noqa: RUF005 - faster
            else:
                paths.append(prefix + (key,))  # noqa: RUF005 - faster
                leaf_slots.append((d, name, kind == CONTAINER_NODE))
        return ModuleDef(
            type(module),
            index,
            tuple(submodules),
            layout.statics,
            layout.leaf_keys,
            layout.keys,
            layout.intermediate_keys,
        )

    moduledef = visit(root, ())
    assert isinstance(moduledef, ModuleDef)
    return _GraphCache(modules, moduledef, paths, leaf_slots, mutable_statics)


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


def _unflatten(
    moduledef: ModuleDef[Any], mapping: dict[Path, Any], into: Module | None = None
) -> Any:
    """Build the graph `moduledef` describes from `mapping`'s entries; `into`, if
    given, is used as the root object (it must be of the root's type)."""
    plan = moduledef._get_plan()
    leaf_slots = plan.leaf_slots
    try:
        values = [mapping[p] for p in plan.paths]
    except KeyError:
        leaf_slots, values = _without_intermediates(moduledef, mapping)
    if len(mapping) != len(values):
        raise _fit_error(moduledef, mapping)
    trace = current_trace()
    modules: list[Module] = []
    for module_type, _, _ in plan.nodes:
        module = object.__new__(module_type)
        _init_internals(module, trace)
        modules.append(module)
    if into is not None:
        modules[0] = into
    for module, (_, statics, links) in zip(modules, plan.nodes):
        d = _vars(module)
        for name, value in statics:
            d[name] = _freeze_static(value)
        for name, index in links:
            d[name] = modules[index]
    for (index, name), value in zip(leaf_slots, values):
        module = modules[index]
        if isinstance(value, Node):
            value = _owned_copy(value, module, name)  # pyright: ignore[reportUnknownArgumentType]
        elif kind_of(value) != NODE:  # e.g. a Python float from a tree_map
            _refuse_non_state(moduledef, mapping, value, "merge")
        _vars(module)[name] = value
    return modules[0]


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
    _check_trace(root, "<state>")
    _unflatten(moduledef, _combine_states(states), into=root)
    _bump(root)
    _forget_dims(root)


def _without_intermediates(
    moduledef: ModuleDef[Any], mapping: dict[Path, Any]
) -> tuple[list[tuple[int, str]], list[Any]]:
    """The leaf slots and values of `mapping` when some paths are missing: allowed
    only for `nnx.Intermediate` entries (DECISIONS 6), else the fit error."""
    plan = moduledef._get_plan()
    slots: list[tuple[int, str]] = []
    values: list[Any] = []
    for slot, path in zip(plan.leaf_slots, plan.paths):
        value = mapping.get(path, _MISSING)
        if value is not _MISSING:
            slots.append(slot)
            values.append(value)
        elif path not in plan.optional_paths:
            raise _fit_error(moduledef, mapping)
    return slots, values


def _owned_copy(node: Node[Any], module: Module, name: str) -> Node[Any]:
    new = node.copy()
    new._owner = weakref.ref(module)
    new._name = name
    return new


# ------------------------------------------------------------------------------------
# Module


_vars: Callable[[Module], dict[str, Any]]  # Module's own __dict__ getter, set below
_trace_slot: Any = None  # the member descriptors of Module's private slots, set below
_version_slot: Any = None
_cache_slot: Any = None
_layout_slot: Any = None
_dims_slot: Any = None


def _init_internals(module: Module, trace: TraceState) -> None:
    _trace_slot.__set__(module, trace)
    _version_slot.__set__(module, next(_versions))
    _cache_slot.__set__(module, None)
    _layout_slot.__set__(module, None)
    _dims_slot.__set__(module, None)


def _bump(module: Module) -> None:
    _version_slot.__set__(module, next(_versions))


def _forget_dims(module: Module) -> None:
    """Values changed without a check (update_state, pop_state, del): the dimension
    bindings are rebuilt from the current values on the next checked assignment."""
    _dims_slot.__set__(module, None)


def _check_trace(module: Module, name: str) -> None:
    if not _trace_slot.__get__(module).is_valid():
        raise TraceContextError(MSG_MODULE_TRACE.format(type=type(module).__name__, name=name))


_CONTAINERS: Final = (dict, list, tuple, set, frozenset)


def _find_state_in_static(value: Any) -> str | None:
    """What state a list/tuple/dict/set holds, at any depth, if any (it would be lost)."""
    if not isinstance(value, _CONTAINERS):
        return None  # the common case (an int, a str, a function): nothing to walk
    stack: list[Any] = [value]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:  # shared or cyclic containers: look once
            continue
        seen.add(id(current))
        items: Iterable[object]
        if _is_dict(current):
            items = current.values()
        elif _is_sequence(current) or _is_set(current):
            items = current
        else:
            continue
        for item in items:
            kind = kind_of(item)
            if kind == MODULE:
                return f"a {type(item).__name__} Module"
            if kind in (CONTAINER_NODE, NODE):
                return f"a {type(item).__name__}"
            stack.append(item)
    return None


MSG_TRACED_STATIC: Final = (
    "{transform}: {where} is a static attribute (not state) and now holds a traced "
    "value ({found}), set inside the transform. Static attributes are not returned "
    "by transforms, so the tracer would leak onto the module and fail later, far from "
    "here. Keep traced values in state: an array attribute or a Variable "
    "(e.g. `self.scale = nnx.Variable(x)`), or return them from the function."
)
_MAX_STATIC_OBJECTS: Final = 10_000


def _find_tracer(value: Any) -> str | None:
    """A tracer held by a static value (in containers, dataclasses, SimpleNamespaces,
    functools.partials, ...), described; None if there is none."""
    stack: list[Any] = [value]
    seen: set[int] = set()
    while stack and len(seen) < _MAX_STATIC_OBJECTS:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if _is_tracer(current):
            return repr(current)
        if _is_partial(current):
            stack.extend((*current.args, *current.keywords.values()))
        elif isinstance(current, (str, bytes, int, float, complex, type, Module)) or callable(
            current
        ):
            continue
        elif _is_dict(current):
            stack.extend(current.values())
        elif _is_sequence(current) or _is_set(current):
            stack.extend(current)
        else:
            attrs: Any = getattr(current, "__dict__", None)
            if _is_dict(attrs):
                stack.extend(attrs.values())
    return None


def _is_tracer(x: object) -> bool:
    return isinstance(x, Tracer)


def _is_partial(x: object) -> TypeIs[functools.partial[Any]]:
    return isinstance(x, functools.partial)


def refuse_traced_statics(root: Module, transform: str) -> None:
    """Raise if a static attribute of the graph under `root` holds a tracer. Called
    inside a transform's traced function (at trace time only)."""
    for path, module in root.modules():
        for name, value in _layout(module).statics:
            found = _find_tracer(value)
            if found is not None:
                where = type(root).__name__ + "".join(f".{k}" for k in (*path, name))
                raise TypeError(
                    MSG_TRACED_STATIC.format(transform=transform, where=where, found=found)
                )


def _prepare_assignment(
    module: Module, name: str, value: Any, d: dict[str, Any]
) -> tuple[Container[Any] | None, Any, bool]:
    """Validate `module.<name> = value` without changing anything.

    Returns `(container, payload, structural)`: when `container` is not None its value
    is to be set to `payload` in place; else `payload` is the object to store.
    """
    box: object = d.get(name, _MISSING)
    value_kind = kind_of(value)
    if is_container(box):
        if value_kind == MODULE:
            raise TypeError(
                MSG_MODULE_INTO_CONTAINER.format(
                    new=type(value).__name__,
                    owner=type(module).__name__,
                    owner_var="module",
                    name=name,
                    old=box.describe(),
                )
            )
        if is_container(value):
            new_box = value
            if type(new_box) is not type(box):
                raise ValueError(
                    MSG_KIND_MISMATCH.format(
                        new=new_box.describe(),
                        old=box.describe(),
                        owner=type(module).__name__,
                        owner_var="module",
                        name=name,
                    )
                )
            if isinstance(box, Static):
                return None, new_box, True
            if new_box._metadata == box._metadata:
                return box, new_box._value, False
            assert is_node_box(new_box)
            return None, _owned_copy(new_box, module, name), True
        if isinstance(box, Static):
            return None, box.replace(value=value), True
        return box, value, False
    if is_node_box(value):
        return None, _owned_copy(value, module, name), True
    if value_kind in (STATIC, MUTABLE_STATIC):
        what = _find_state_in_static(value)
        if what is not None:
            raise TypeError(
                MSG_STATIC_CONTAINER.format(
                    owner=type(module).__name__, name=name, kind=type(value).__name__, what=what
                )
            )
    structural = not (value_kind == NODE and box is not _MISSING and kind_of(box) == NODE)
    return None, value, structural


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()

_repr_state = threading.local()


class _NoOrigClass:
    """`typing` sets `__orig_class__` on an instance made through a subscripted
    generic (`nnx.Sequence[nnx.Linear](...)`). A Module keeps no such attribute: it
    would become a static field and make two equal models' ModuleDefs differ. Raising
    AttributeError here makes `typing` skip it."""

    def __get__(self, obj: object, owner: type[Any] | None = None) -> Any:
        raise AttributeError("__orig_class__")

    def __set__(self, obj: object, value: object) -> None:
        raise AttributeError("Modules do not record __orig_class__")


class Module:
    """Base class of every nnx module: a plain, mutable Python object.

    Attributes that hold Variables (`nnx.Param`, ...), arrays or other nodes are the
    module's state; attributes that hold Modules are submodules (shared references and
    cycles are fine); anything else is static. Reading an attribute that holds a
    Variable gives its value; assigning a raw value to it updates the value and keeps
    the Variable's kind and metadata.
    """

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_nnx_dims",
        "_nnx_graph_cache",
        "_nnx_layout",
        "_nnx_trace",
        "_nnx_version",
    )

    _nnx_int_keys: bool = False  # Sequence: digit attribute names are int path keys

    if not TYPE_CHECKING:
        __orig_class__ = _NoOrigClass()

        def __new__(cls, /, *args, **kwargs):
            module = object.__new__(cls)
            _init_internals(module, current_trace())
            return module

        def __getattribute__(self, name):
            value = _object_getattribute(self, name)
            if isinstance(value, Container):
                return value._value
            return value

        def __setattr__(self, name, value):
            _setattr(self, name, value)

        def __delattr__(self, name):
            _check_trace(self, name)
            object.__delattr__(self, name)
            _bump(self)
            _forget_dims(self)

    # -- functional API ---------------------------------------------------------------
    @overload
    def partition(self) -> tuple[State[Any], ModuleDef[Self]]: ...
    @overload
    def partition(self, first: type[V1], /) -> tuple[State[V1], ModuleDef[Self]]: ...
    @overload
    def partition(self, first: Filter, /) -> tuple[State[Any], ModuleDef[Self]]: ...
    @overload
    def partition(
        self, first: type[V1], second: type[V2], /
    ) -> tuple[tuple[State[V1], State[V2]], ModuleDef[Self]]: ...
    @overload
    def partition(
        self, first: Filter, second: Filter, /
    ) -> tuple[tuple[State[Any], State[Any]], ModuleDef[Self]]: ...
    @overload
    def partition(
        self, first: type[V1], second: type[V2], third: type[V3], /
    ) -> tuple[tuple[State[V1], State[V2], State[V3]], ModuleDef[Self]]: ...
    @overload
    def partition(
        self, first: Filter, second: Filter, third: Filter, /, *filters: Filter
    ) -> tuple[tuple[State[Any], ...], ModuleDef[Self]]: ...
    def partition(self, *filters: Filter) -> tuple[Any, ModuleDef[Self]]:
        """Split into `(states, moduledef)` (an `nnx.Pure`, a tuple with `.merge()`).

        No filter: one State with every entry. One filter: one State, which must hold
        every entry. Several: a tuple of States, each entry going to the first filter
        that matches it, every entry matched (`...` last catches the rest).
        """
        moduledef, paths, leaves = _flatten(self)
        if not filters:
            return Pure(State._from_sorted(dict(zip(paths, leaves))), moduledef)
        states = split_pairs(zip(paths, leaves), check_filters(filters), exhaustive=True)
        return Pure(states[0] if len(states) == 1 else states, moduledef)

    def get_state(self) -> State[Any]:
        """Every state entry, as one State."""
        _, paths, leaves = _flatten(self)
        return State._from_sorted(dict(zip(paths, leaves)))

    def get_module_def(self) -> ModuleDef[Self]:
        return _flatten(self, copy_leaves=False)[0]

    @overload
    def filter(self, first: type[V1], /) -> State[V1]: ...
    @overload
    def filter(self, first: Filter, /) -> State[Any]: ...
    @overload
    def filter(self, first: type[V1], second: type[V2], /) -> tuple[State[V1], State[V2]]: ...
    @overload
    def filter(self, first: Filter, second: Filter, /) -> tuple[State[Any], State[Any]]: ...
    @overload
    def filter(
        self, first: type[V1], second: type[V2], third: type[V3], /
    ) -> tuple[State[V1], State[V2], State[V3]]: ...
    @overload
    def filter(
        self, first: Filter, second: Filter, third: Filter, /, *filters: Filter
    ) -> tuple[State[Any], ...]: ...
    def filter(self, first: Filter, /, *filters: Filter) -> State[Any] | tuple[State[Any], ...]:
        """The entries matching each filter (entries matching none are left out)."""
        _, paths, leaves = _flatten(self)
        states = split_pairs(zip(paths, leaves), check_filters((first, *filters)), exhaustive=False)
        return states[0] if len(states) == 1 else states

    @overload
    def pop_state(self, first: type[V1], /) -> State[V1]: ...
    @overload
    def pop_state(self, first: Filter, /) -> State[Any]: ...
    @overload
    def pop_state(self, first: type[V1], second: type[V2], /) -> tuple[State[V1], State[V2]]: ...
    @overload
    def pop_state(self, first: Filter, second: Filter, /) -> tuple[State[Any], State[Any]]: ...
    @overload
    def pop_state(
        self, first: type[V1], second: type[V2], third: type[V3], /
    ) -> tuple[State[V1], State[V2], State[V3]]: ...
    @overload
    def pop_state(
        self, first: Filter, second: Filter, third: Filter, /, *filters: Filter
    ) -> tuple[State[Any], ...]: ...
    def pop_state(self, *filters: Filter) -> State[Any] | tuple[State[Any], ...]:
        """Remove the entries matching the filters and return them as State(s)."""
        if not filters:
            raise ValueError(
                "pop_state expects at least one filter, e.g. pop_state(nnx.Intermediate)"
            )
        return _pop_state(self, check_filters(filters))

    def update_state(
        self, updates: State[Any] | tuple[State[Any], ...] | Pure[Any, Any] | Module
    ) -> None:
        """Write state entries back into this module graph, in place.

        `updates` is a State, a tuple of States, a `Pure`, or a Module of the same
        type. Existing Variables get new values (their kind must match); new entries
        become new attributes. Every path is checked before anything changes.
        """
        if isinstance(updates, Module):
            if type(updates) is not type(self):
                raise TypeError(
                    f"update_state expects a {type(self).__name__}, got a {type(updates).__name__}"
                )
            mapping = _combine_states((updates.get_state(),))
        elif isinstance(updates, Pure):
            mapping = _combine_states(updates._state_tuple())
        else:
            mapping = _combine_states((updates,))
        _update_state(self, mapping)

    def clone(self) -> Self:
        """A deep copy of the module graph (sharing and cycles kept)."""
        moduledef, paths, leaves = _flatten(self, copy_leaves=False)
        return _unflatten(moduledef, dict(zip(paths, leaves)))  # type: ignore[no-any-return]

    @property
    def apply(self) -> CloneCaller[Self, Self]:
        """`module.apply.method(*args)`: call on a copy; returns `(out, copy)`, the copy
        holding the updated state, and leaves this module untouched (as NNX 0.0.8).
        Attribute and item access chain: `module.apply.blocks[0].linear(x)`."""
        moduledef, paths, leaves = _flatten(self, copy_leaves=False)
        return CloneCaller(moduledef, (State._from_sorted(dict(zip(paths, leaves))),), ())

    # -- helpers --------------------------------------------------------------------------
    def sow(self, variable_type: type[Variable[Any]], name: str, value: Any) -> None:
        """Append `value` to the tuple held by Variable `name` (created if absent)."""
        d = _vars(self)
        if name not in d:
            setattr(self, name, variable_type((value,)))
            return
        current: object = d[name]
        if not is_variable(current):
            raise ValueError(
                f"{type(self).__name__}.sow: expected {name!r} to be a Variable, got "
                f"{type(current).__name__}"
            )
        if type(current) is not variable_type:
            raise ValueError(
                f"{type(self).__name__}.sow: expected {name!r} to be of type "
                f"{variable_type.__name__!r}, got {type(current).__name__!r}"
            )
        held: Any = current._value
        if not _is_tuple(held):
            raise ValueError(
                f"{type(self).__name__}.sow: expected {name!r} to be a tuple, got "
                f"{type(held).__name__}"
            )
        setattr(self, name, (*held, value))

    def for_each(self, module_type: type[ModuleT], fn: Callable[[ModuleT], None]) -> None:
        """Call `fn(m)` on every module `m` of the graph (each once) that is a
        `module_type`, depth first."""
        for _, module in self.modules():
            if isinstance(module, module_type):
                fn(module)

    def modules(self) -> Iterator[tuple[Path, Module]]:
        """`(path, module)` for every module of the graph, each once, depth first."""
        seen: set[int] = set()

        def visit(module: Module, prefix: Path) -> Iterator[tuple[Path, Module]]:
            seen.add(id(module))
            yield prefix, module
            for key, _, value in _module_items(module):
                if kind_of(value) == MODULE and id(value) not in seen:
                    yield from visit(value, (*prefix, key))

        return visit(self, ())

    # -- internals ----------------------------------------------------------------------
    def _nnx_write_variable(self, name: str, variable: Node[Any], value: Any) -> None:
        """`variable.value = value` on a Variable this module owns."""
        if _vars(self).get(name) is not variable:
            variable._value = value  # no longer ours: a free-standing box
            return
        _check_trace(self, name)
        spec, own = _shape_check(self, name, value, variable)
        variable._value = value
        if spec is not None:
            commit(self, name, own)

    def __getstate__(self) -> dict[str, Any]:
        return dict(_vars(self))

    def __setstate__(self, state: dict[str, Any]) -> None:
        d = _vars(self)
        for name, value in state.items():
            d[name] = _owned_copy(value, self, name) if is_node_box(value) else value

    def __treescope_repr__(self, path: str | None, subtree_renderer: Any) -> Any:
        """treescope's rich repr: attributes with Variables boxed (kind visible);
        `nnx.Sequence` items by position, `nnx.Dict` items by key."""
        attributes = dict(_vars(self))
        if type(self)._nnx_int_keys:
            items = {int(k): v for k, v in attributes.items() if k.isdigit()}
            return render_mapping(self, dict(sorted(items.items())), path, subtree_renderer)
        if isinstance(self, Mapping):  # nnx.Dict
            return render_mapping(self, attributes, path, subtree_renderer)
        return render_constructor(self, attributes, path, subtree_renderer)

    def __repr__(self) -> str:
        active: set[int] | None = getattr(_repr_state, "active", None)
        top = active is None
        if active is None:
            active = set[int]()
            _repr_state.active = active
        try:
            if id(self) in active:
                return f"{type(self).__name__}(...)"
            active.add(id(self))
            lines: list[str] = []
            for key, _, value in _module_items(self):
                if isinstance(value, Container):
                    text = repr(value)  # pyright: ignore[reportUnknownArgumentType]
                else:
                    text = repr_value(value)
                lines.append(f"{key}={indent(text)}")
            if not lines:
                return f"{type(self).__name__}()"
            return f"{type(self).__name__}(\n  " + ",\n  ".join(lines) + "\n)"
        finally:
            if top:
                del _repr_state.active


_vars = Module.__dict__["__dict__"].__get__
_trace_slot = Module.__dict__["_nnx_trace"]
_version_slot = Module.__dict__["_nnx_version"]
_cache_slot = Module.__dict__["_nnx_graph_cache"]
_layout_slot = Module.__dict__["_nnx_layout"]
_dims_slot = Module.__dict__["_nnx_dims"]
register_module_internals(_dims_slot, _vars)
_nodes._module_type.append(Module)
_nodes._kind_cache.clear()


class _ClassInfo:
    """What `__setattr__` needs to know about a Module class, computed once."""

    __slots__ = ("descriptors", "field_containers")

    def __init__(self, cls: type[Module]) -> None:
        self.descriptors = frozenset(
            name
            for klass in cls.__mro__
            for name, attr in vars(klass).items()
            if hasattr(attr.__class__, "__set__") and not name.startswith("_nnx")
        )
        found: dict[str, Callable[[Any], Any]] | None = getattr(cls, "_nnx_field_containers", None)
        self.field_containers = found or {}


_class_infos: dict[type[Any], _ClassInfo] = {}


def _shape_check(
    module: Module, name: str, value: Any, old: Any
) -> tuple[AttrSpec | None, Bindings | None]:
    """Check `module.<name> = value` against its annotation, if it has one and checks
    are on: `(spec, bindings to commit after the write)`; raises ShapeCheckError."""
    if not shape_checks_enabled():
        _forget_dims(module)  # unchecked values: rebuild the bindings when checks resume
        return None, None
    spec = class_specs(type(module)).get(name)
    if spec is None:
        return None, None
    return spec, check_assignment(module, spec, value, old)


def _wrap_field(module: Module, name: str, wrap: Callable[[Any], Any], value: Any) -> Any:
    """The value of an `nnx.dataclass` field declared with `param_field()`,
    `var_field(kind)`, `node_field()` or `static_field()`, in its container; a value
    that already is a container must be of that kind."""
    try:
        return wrap(value)
    except ValueError as e:
        raise ValueError(f"{type(module).__name__}.{name} (a dataclass field): {e}") from None


def _setattr(module: Module, name: str, value: Any) -> None:
    _check_trace(module, name)
    cls = type(module)
    info = _class_infos.get(cls)
    if info is None:
        info = _class_infos[cls] = _ClassInfo(cls)
    if name in info.descriptors:
        object.__setattr__(module, name, value)  # a property or other data descriptor
        _bump(module)
        return
    wrap = info.field_containers.get(name)
    if wrap is not None:
        value = _wrap_field(module, name, wrap, value)
    d = _vars(module)
    spec, own = _shape_check(module, name, value, d.get(name))
    container, payload, structural = _prepare_assignment(module, name, value, d)
    if container is not None:
        container._value = payload
    else:
        d[name] = payload
    if structural:
        _bump(module)
    if spec is not None:
        commit(module, name, own)


def _pop_state(
    root: Module, predicates: tuple[Predicate, ...]
) -> State[Any] | tuple[State[Any], ...]:
    found: list[tuple[Module, str, Path, Any]] = []
    buckets: list[dict[Path, Any]] = [{} for _ in predicates]
    indexed = tuple(enumerate(predicates))
    seen: set[int] = set()

    def visit(module: Module, prefix: Path) -> None:
        seen.add(id(module))  # before recursing: cycles terminate
        for key, name, value in _module_items(module):
            kind = kind_of(value)
            if kind == MODULE:
                if id(value) not in seen:
                    visit(value, (*prefix, key))
            elif kind in (NODE, CONTAINER_NODE):
                path = (*prefix, key)
                for i, predicate in indexed:
                    if predicate(path, value):
                        found.append((module, name, path, value))
                        buckets[i][path] = value
                        break

    visit(root, ())
    for module, name, _, _ in found:
        _check_trace(module, name)
    for module, name, _, value in found:
        del _vars(module)[name]
        if isinstance(value, Node):
            value._owner = None
        _bump(module)
        _forget_dims(module)
    states = tuple(State._from_sorted(b) for b in buckets)
    return states[0] if len(states) == 1 else states


def _update_state(root: Module, mapping: dict[Path, Any]) -> None:
    resolved: dict[Path, Module] = {(): root}
    plans: list[tuple[Module, str, Container[Any] | None, Any, bool]] = []
    for path, value in mapping.items():
        if not path:
            raise ValueError("update_state: empty path () in the updates")
        prefix = path[:-1]
        module = resolved.get(prefix)
        if module is None:
            module = root
            for depth, key in enumerate(prefix):
                child = _vars(module).get(_attr_name(key), _MISSING)
                if not isinstance(child, Module):
                    where = type(root).__name__ + "".join(f".{k}" for k in prefix[:depth])
                    raise ValueError(
                        f"update_state: path {path} leads nowhere: {key!r} is "
                        f"{'missing from' if child is _MISSING else 'not a submodule of'} "
                        f"{where} ({type(module).__name__}). Updates can add state entries "
                        "to existing modules, not new submodules."
                    )
                module = child
            resolved[prefix] = module
        name = _attr_name(path[-1])
        d = _vars(module)
        current = d.get(name, _MISSING)
        if isinstance(current, Module):
            raise ValueError(
                f"update_state: {path} is a submodule ({type(current).__name__}) of "
                f"{type(module).__name__}; a state entry cannot replace it."
            )
        if kind_of(value) not in (NODE, CONTAINER_NODE):
            raise TypeError(
                MSG_NOT_STATE.format(who="update_state", path=path, type=type(value).__name__)
            )
        _check_trace(module, name)
        try:
            container, payload, structural = _prepare_assignment(module, name, value, d)
        except (TypeError, ValueError) as e:
            raise type(e)(f"update_state at path {path}: {e}") from None
        plans.append((module, name, container, payload, structural))
    for module, name, container, payload, structural in plans:
        if container is not None:
            container._value = payload
        else:
            _vars(module)[name] = payload
        if structural:
            _bump(module)
        _forget_dims(module)


def _shape_mismatch(old: ModuleDef[Any], new: ModuleDef[Any], where: str) -> str | None:
    """Where the submodule structure of `new` differs from `old`, if anywhere."""
    if old.type is not new.type:
        return f"{where} changed type from {old.type.__name__} to {new.type.__name__}"
    old_subs, new_subs = dict(old.submodules), dict(new.submodules)
    if old_subs.keys() != new_subs.keys():
        added = sorted(map(str, new_subs.keys() - old_subs.keys()))
        removed = sorted(map(str, old_subs.keys() - new_subs.keys()))
        return f"{where}: submodules added {added}, removed {removed}"
    for key, old_sub in old_subs.items():
        new_sub = new_subs[key]
        if isinstance(old_sub, int) or isinstance(new_sub, int):
            old_ref = old_sub if isinstance(old_sub, int) else old_sub.index
            new_ref = new_sub if isinstance(new_sub, int) else new_sub.index
            if isinstance(old_sub, int) != isinstance(new_sub, int) or old_ref != new_ref:
                return f"{where}.{key}: the sharing of submodules changed"
            continue
        found = _shape_mismatch(old_sub, new_sub, f"{where}.{key}")
        if found is not None:
            return found
    return None


def apply_graph_update(root: Module, new_moduledef: ModuleDef[Any], state: State[Any]) -> None:
    """Write a transform's result back into `root`: the State's values and, if the
    structure changed inside (attributes added, removed or made static), that too.

    New or removed *submodules* cannot be written back: that raises ValueError
    before anything changes.
    """
    old_moduledef = root.get_module_def()
    mapping = _combine_states((state,))
    if old_moduledef == new_moduledef:
        _update_state(root, mapping)
        return
    problem = _shape_mismatch(old_moduledef, new_moduledef, type(root).__name__)
    if problem is not None:
        raise ValueError(
            f"Cannot write the transform's changes back: {problem}. Create submodules "
            "outside the transform (e.g. in __init__), not inside it."
        )
    modules = {index: module for index, (_, module) in enumerate(root.modules())}
    stack: list[ModuleDef[Any]] = [new_moduledef]
    edits: list[tuple[Module, dict[str, Any], list[str]]] = []
    while stack:
        md = stack.pop()
        module = modules[md.index]
        d = _vars(module)
        new_statics = dict(md.static_fields)
        keep = {_attr_name(k) for k in md.keys}
        removed = [
            name
            for name, value in d.items()
            if name not in keep and name not in new_statics and kind_of(value) != MODULE
        ]
        changed = {
            name: value
            for name, value in new_statics.items()
            if name not in d or d[name] is not value
        }
        if changed or removed:
            _check_trace(module, next(iter(changed), removed[0] if removed else ""))
            edits.append((module, changed, removed))
        stack.extend(s for _, s in md.submodules if isinstance(s, ModuleDef))
    for module, changed, removed in edits:
        d = _vars(module)
        for name in removed:
            del d[name]
        for name, value in changed.items():
            d[name] = _freeze_static(value)
        _bump(module)
    _update_state(root, mapping)

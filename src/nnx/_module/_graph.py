"""The graph traversal behind `partition`: per-module layouts and per-root graph caches
(what they key on and what invalidates them: see `__init__.py`), and GraphSpec, the
hashable description of a partitioned graph that transforms key their caches on."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import _nodes
from .._filters import Path
from .._module_object import cache_slot, layout_slot, vars_of, version_slot
from .._nodes import BOXED_NODE, BOXED_STATIC, MODULE, MUTABLE_STATIC, STATIC, Kind, kind_of
from .._state import State
from .._variables import Intermediate, Node
from ._moduledef import MISSING, ModuleDef, attr_name, combine_states, unflatten

if TYPE_CHECKING:
    from ._module import Module


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


def module_items(module: Module) -> list[tuple[str | int, str, Any]]:
    """`(key, attribute name, value)` for each attribute, in traversal order."""
    return [(k, attr_name(k), v) for k, v in _sorted_entries(module, vars_of(module))]


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
        self.versions = [version_slot.__get__(m) for m in modules]
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
        get_version = version_slot.__get__
        for module, version in zip(self.modules, self.versions):
            if get_version(module) != version:
                return False
        return all(d.get(name, MISSING) == snapshot for d, name, snapshot in self.mutable_statics)

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
        return unflatten(self.moduledef, combine_states((self.state(raw_leaves),)))


def graph_cache(root: Module) -> _GraphCache:
    """The (valid) structure cache of the graph under `root`."""
    cache: _GraphCache | None = cache_slot.__get__(root)
    if cache is None or not cache.is_valid():
        cache = _build_graph_cache(root)
        cache_slot.__set__(root, cache)
    return cache


def flatten_graph(
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
        d = vars_of(module)
        statics: list[tuple[str, Any]] = []
        entries: list[tuple[str | int, str, Kind]] = []
        keys: list[str | int] = []
        leaf_keys: list[str | int] = []
        intermediate_keys: list[str | int] = []
        mutable: list[tuple[dict[str, Any], str, Any]] = []
        for key, value in _sorted_entries(module, d):
            name = key if type(key) is str else str(key)
            kind = kinds.get(value.__class__)
            if kind is None:
                kind = kind_of(value)
            if kind in (STATIC, BOXED_STATIC):
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
            d.get(name, MISSING) == snapshot for d, name, snapshot in self.mutable_statics
        )


def layout_of(module: Module) -> _Layout:
    version: int = version_slot.__get__(module)
    layout: _Layout | None = layout_slot.__get__(module)
    if layout is None or not layout.is_valid(version):
        layout = _Layout(module, version)
        layout_slot.__set__(module, layout)
    return layout


def _build_graph_cache(root: Module) -> _GraphCache:
    index_of: dict[int, int] = {}
    modules: list[Module] = []
    paths: list[Path] = []
    leaf_slots: list[tuple[dict[str, Any], str, bool]] = []
    mutable_statics: list[tuple[dict[str, Any], str, Any]] = []

    get_version = version_slot.__get__
    get_layout = layout_slot.__get__

    def visit(module: Module, prefix: Path) -> ModuleDef[Any] | int:
        index = index_of.get(id(module))
        if index is not None:
            return index
        index = index_of[id(module)] = len(modules)
        modules.append(module)
        layout: _Layout | None = get_layout(module)
        if layout is None or not layout.is_valid(get_version(module)):
            layout = layout_of(module)
        if layout.mutable_statics:
            mutable_statics.extend(layout.mutable_statics)
        d = vars_of(module)
        submodules: list[tuple[str | int, ModuleDef[Any] | int]] = []
        for key, name, kind in layout.entries:
            if kind == MODULE:
                submodules.append((key, visit(d[name], prefix + (key,))))  # noqa: RUF005 - faster
            else:
                paths.append(prefix + (key,))  # noqa: RUF005 - faster
                leaf_slots.append((d, name, kind == BOXED_NODE))
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
    moduledef._paths = paths
    return _GraphCache(modules, moduledef, paths, leaf_slots, mutable_statics)

"""Module builders: the code that creates one module of a merge.

`merge` creates every module of a graph and a copy of each of its Variables (each
module owns its Variables, DECISIONS 3), so its cost is the cost of these functions.
Each node of a merge plan gets its builder when the plan is compiled; a builder
takes the graph's leaf values and returns the new module with its static attributes
and leaves in place (submodule links are set afterwards).

For a module with few leaves and no mutable statics, the builder's code is generated
once per tuple of leaf names, as straight-line code with the names as constants and
offsets, and shared by every module of that shape (all `Linear`s of all models run
one code object; each plan node binds its class, statics and offset as defaults).
That removes the loop bookkeeping that otherwise costs as much as the work itself.
Other modules get `build_any`, the same steps as a loop.

Building a module does not call its `__init__` nor `Module.__setattr__`: a `Blank`
gets the six private slots as plain stores and is then retyped (`_module_object.py`).
"""

from __future__ import annotations

import copy
import types
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final

from .._compat import TraceState
from .._module_object import Blank, init_internals, set_vars
from .._variables import Node

__all__ = ["Builder", "OtherLeaf", "build_any", "builder_for"]

OtherLeaf = Callable[[dict[str, Any], str, Any], None]
"""Called with `(dict, name, value)` for a leaf value that is not a Variable: stores
an array, skips an absent intermediate, raises for anything else."""

Builder = Callable[[Sequence[Any], TraceState, int, OtherLeaf], Any]
"""`build(values, trace, version, other)`: the new module, its leaves taken from
`values` (all the graph's leaf values, in path order) at the node's own offset."""

MAX_GENERATED_LEAVES: Final = 32
"""Modules with more leaves use `build_any` (the generated code grows with them)."""


def builder_for(
    module_type: type[Any],
    statics: dict[str, Any],
    mutable: tuple[tuple[str, Any], ...],
    names: tuple[str, ...],
    start: int,
    retypable: bool,
) -> Builder:
    """The builder of one node of a merge plan (called once per node, when the plan
    is compiled): `module_type` with `statics` (a ready dict) and `mutable` statics
    (deep-copied per build), and leaves `names` read from `values[start:]`."""
    if not retypable or mutable or len(names) > MAX_GENERATED_LEAVES:
        return build_any(module_type, statics, mutable, names, start)
    code = _generated.get(names)
    if code is None:
        code = _generated[names] = _generate(names)
    build: Builder = types.FunctionType(code, _GLOBALS, "build", (module_type, statics, start))
    return build


def build_any(
    module_type: type[Any],
    statics: dict[str, Any],
    mutable: tuple[tuple[str, Any], ...],
    names: tuple[str, ...],
    start: int,
) -> Builder:
    """The general builder: any class (also one with slots of its own), mutable
    statics, any number of leaves. (Its modules get a version of their own.)"""

    def build(values: Sequence[Any], trace: TraceState, version: int, other: OtherLeaf) -> Any:
        module: Any = object.__new__(module_type)
        init_internals(module, trace)
        d = statics.copy()
        for name, value in mutable:
            d[name] = copy.deepcopy(value)
        if names:
            owner = weakref.ref(module)
            for name, value in zip(names, values[start : start + len(names)]):
                if isinstance(value, Node):
                    kind: type[Node[Any]] = value.__class__  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
                    box = object.__new__(kind)
                    box._value = value._value  # pyright: ignore[reportUnknownMemberType]
                    box._metadata = value._metadata
                    box._owner = owner
                    d[name] = box
                else:
                    other(d, name, value)
        set_vars(module, d)
        return module

    return build


# The generated builder. `m` is a Blank while its slots and `__dict__` are stored (plain
# stores, no Module.__setattr__), then it becomes a `module_type`. The defaults are
# bound per plan node. Its Variables get their owner when its `__dict__` is first
# handed out (`claim_variables`), not here.
_TEMPLATE_HEAD = """\
def build(values, trace, version, other, module_type=None, statics=None, start=0):
    m = new(Blank)
    m._nnx_trace = trace
    m._nnx_version = version
    m._nnx_graph_cache = m._nnx_layout = m._nnx_dims = None
    m._nnx_unowned = {unowned}
    d = statics.copy()
    m.__dict__ = d
    m.__class__ = module_type
"""
_TEMPLATE_LEAF = """\
    v = values[start + {offset}]
    if isinstance(v, Node):
        b = new(v.__class__)
        b._value = v._value
        b._metadata = v._metadata
        b._owner = None
        d[{name!r}] = b
    else:
        other(d, {name!r}, v)
"""
_TEMPLATE_TAIL = "    return m\n"
_GLOBALS: Final = {
    "Blank": Blank,
    "Node": Node,
    "isinstance": isinstance,
    "new": object.__new__,
}
_generated: dict[tuple[str, ...], types.CodeType] = {}


def _generate(names: tuple[str, ...]) -> types.CodeType:
    source = _TEMPLATE_HEAD.format(unowned=bool(names))
    for offset, name in enumerate(names):
        source += _TEMPLATE_LEAF.format(offset=offset, name=name)
    source += _TEMPLATE_TAIL
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<nnx merge builder {names}>", "exec"), dict(_GLOBALS), namespace)
    code: types.CodeType = namespace["build"].__code__
    return code

"""The object layer of a Module: its private slots, read and written directly.

Every Module carries six private slots next to its `__dict__`:

- `_nnx_trace`: the JAX trace it was created (or merged) under; mutations under
  another trace raise `nnx.TraceContextError`;
- `_nnx_version`: a number from a global counter, renewed by every *structural*
  change (an attribute added, removed, or changing kind); the graph caches key on it;
- `_nnx_layout`: the module's own cached share of the graph structure (`_module/_graph.py`);
- `_nnx_graph_cache`: the cached structure of the whole graph under this module, when
  it was partitioned as a root;
- `_nnx_dims`: the named dimensions its annotated attributes bound (`_shape_checks.py`);
- `_nnx_unowned`: True while the Variables merge put in it lack their owner
  (`claim_variables`).

They live on `ModuleObject`, the base class of `nnx.Module`, so that this file depends
on nothing in the package but the trace state: the graph code, the shape checks and
the node classification all read them from here, with no wiring at import time.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any, Final

from ._compat import TraceState
from ._errors import MSG_MODULE_TRACE, TraceContextError
from ._variables import Node

__all__ = [
    "ModuleObject",
    "bump",
    "check_trace",
    "claim_variables",
    "forget_dims",
    "init_internals",
    "next_version",
    "retypable",
    "set_vars",
    "vars_of",
]


class ModuleObject:
    """The base of `nnx.Module`: the private slots every module has."""

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_nnx_dims",
        "_nnx_graph_cache",
        "_nnx_layout",
        "_nnx_trace",
        "_nnx_unowned",
        "_nnx_version",
    )

    _nnx_dims: Any
    _nnx_graph_cache: Any
    _nnx_layout: Any
    _nnx_trace: TraceState
    _nnx_unowned: bool
    _nnx_version: int


class Blank(ModuleObject):
    """A bare ModuleObject, used by merge to build modules fast.

    Module overrides `__setattr__`, so filling a new module's six slots through their
    descriptors costs six Python-level calls. Merge instead stores them plainly on a
    `Blank` and then retypes it (`obj.__class__ = cls`), which costs about a third as
    much. This needs `cls` to have ModuleObject's memory layout; see `retypable`.
    """

    __slots__ = ()


def retypable(cls: type) -> bool:
    """Whether a `Blank` can become a `cls`. A Module subclass that declares slots of
    its own has another layout; merge builds those the slow way."""
    blank = object.__new__(Blank)
    try:
        blank.__class__ = cls
    except TypeError:
        return False
    return True


_versions = itertools.count(1)
next_version: Final[Callable[[], int]] = _versions.__next__
"""A fresh version number (every structural change gets one)."""

vars_of: Final[Callable[[ModuleObject], dict[str, Any]]] = ModuleObject.__dict__["__dict__"].__get__
"""A module's own `__dict__`, without going through Module.__getattribute__."""
set_vars: Final[Callable[[ModuleObject, dict[str, Any]], None]] = ModuleObject.__dict__[
    "__dict__"
].__set__
"""Replace a module's `__dict__` (merge fills a new dict and installs it in one step)."""

# The member descriptors of the slots: `slot.__get__(module)`, `slot.__set__(module, v)`.
trace_slot: Final[Any] = ModuleObject.__dict__["_nnx_trace"]
version_slot: Final[Any] = ModuleObject.__dict__["_nnx_version"]
cache_slot: Final[Any] = ModuleObject.__dict__["_nnx_graph_cache"]
layout_slot: Final[Any] = ModuleObject.__dict__["_nnx_layout"]
dims_slot: Final[Any] = ModuleObject.__dict__["_nnx_dims"]
unowned_slot: Final[Any] = ModuleObject.__dict__["_nnx_unowned"]


def init_internals(module: ModuleObject, trace: TraceState) -> None:
    """Fill the slots of a new module (made by `Module.__new__` or by merge)."""
    trace_slot.__set__(module, trace)
    version_slot.__set__(module, next_version())
    cache_slot.__set__(module, None)
    layout_slot.__set__(module, None)
    dims_slot.__set__(module, None)
    unowned_slot.__set__(module, False)


def claim_variables(module: ModuleObject) -> dict[str, Any]:
    """Make `module` the owner of the Variables in its `__dict__`, and return it.

    Merge builds a module's Variables without their owner (a weak reference per
    module, which would be a good share of merge's cost) and marks the module
    `_nnx_unowned`. The owner only matters once user code holds one of those boxes,
    and the one way to reach them is the module's `__dict__` (`vars(module)`), whose
    accessor on Module calls this first.
    """
    d = vars_of(module)
    if unowned_slot.__get__(module):
        owner = weakref.ref(module)
        for value in d.values():
            if isinstance(value, Node) and value._owner is None:
                value._owner = owner
        unowned_slot.__set__(module, False)
    return d


def bump(module: ModuleObject) -> None:
    """Record a structural change: every cache keyed on the old version is stale."""
    version_slot.__set__(module, next_version())


def forget_dims(module: ModuleObject) -> None:
    """Values changed without a check (update_state, pop_state, del): the dimension
    bindings are rebuilt from the current values on the next checked assignment."""
    dims_slot.__set__(module, None)


def check_trace(module: ModuleObject, name: str) -> None:
    """Raise `TraceContextError` if `module` may not be mutated under the current trace."""
    if not trace_slot.__get__(module).is_valid():
        raise TraceContextError(MSG_MODULE_TRACE.format(type=type(module).__name__, name=name))

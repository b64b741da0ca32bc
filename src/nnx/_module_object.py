"""The object layer of a Module: its private slots, read and written directly.

Every Module carries five private slots next to its `__dict__`:

- `_nnx_trace`: the JAX trace it was created (or merged) under; mutations under
  another trace raise `nnx.TraceContextError`;
- `_nnx_version`: a number from a global counter, renewed by every *structural*
  change (an attribute added, removed, or changing kind); the graph caches key on it;
- `_nnx_layout`: the module's own cached share of the graph structure (`_module/_graph.py`);
- `_nnx_graph_cache`: the cached structure of the whole graph under this module, when
  it was partitioned as a root;
- `_nnx_dims`: the named dimensions its annotated attributes bound (`_shape_checks.py`).

They live on `ModuleObject`, the base class of `nnx.Module`, so that this file depends
on nothing in the package but the trace state: the graph code, the shape checks and
the node classification all read them from here, with no wiring at import time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Final

from ._compat import TraceState
from ._errors import MSG_MODULE_TRACE, TraceContextError

__all__ = [
    "ModuleObject",
    "bump",
    "check_trace",
    "forget_dims",
    "init_internals",
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
        "_nnx_version",
    )


_versions = itertools.count(1)

vars_of: Final[Callable[[ModuleObject], dict[str, Any]]] = ModuleObject.__dict__["__dict__"].__get__
"""A module's own `__dict__`, without going through Module.__getattribute__."""

# The member descriptors of the slots: `slot.__get__(module)`, `slot.__set__(module, v)`.
trace_slot: Final[Any] = ModuleObject.__dict__["_nnx_trace"]
version_slot: Final[Any] = ModuleObject.__dict__["_nnx_version"]
cache_slot: Final[Any] = ModuleObject.__dict__["_nnx_graph_cache"]
layout_slot: Final[Any] = ModuleObject.__dict__["_nnx_layout"]
dims_slot: Final[Any] = ModuleObject.__dict__["_nnx_dims"]


def init_internals(module: ModuleObject, trace: TraceState) -> None:
    """Fill the slots of a new module (made by `Module.__new__` or by merge)."""
    trace_slot.__set__(module, trace)
    version_slot.__set__(module, next(_versions))
    cache_slot.__set__(module, None)
    layout_slot.__set__(module, None)
    dims_slot.__set__(module, None)


def bump(module: ModuleObject) -> None:
    """Record a structural change: every cache keyed on the old version is stale."""
    version_slot.__set__(module, next(_versions))


def forget_dims(module: ModuleObject) -> None:
    """Values changed without a check (update_state, pop_state, del): the dimension
    bindings are rebuilt from the current values on the next checked assignment."""
    dims_slot.__set__(module, None)


def check_trace(module: ModuleObject, name: str) -> None:
    """Raise `TraceContextError` if `module` may not be mutated under the current trace."""
    if not trace_slot.__get__(module).is_valid():
        raise TraceContextError(MSG_MODULE_TRACE.format(type=type(module).__name__, name=name))

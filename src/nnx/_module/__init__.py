"""Modules, the module graph, and its functional form (State + ModuleDef).

A Module is a plain mutable Python object. Each attribute is one of

- a **submodule** (a Module; shared references and cycles allowed),
- a **node** (a Variable/Node container or a raw array: the Module's state),
- **static** (anything else: ints, strings, functions, ...).

`module.partition()` walks the graph depth-first, attributes in sorted order, each
module once, and returns a `State` (path -> node, deduplicated, sorted) and a
`ModuleDef` (types, static attributes and the graph's shape, shared references as
integer indices). `moduledef.merge(state)` rebuilds a fresh graph.

Design note for contributors
----------------------------

Files, by job (each imports only those above it; `_module.py` imports them all):

- `../_module_object.py`: the private slots every Module has (trace, version, layout
  cache, graph cache, dimension bindings) and the helpers that read and write them.
- `_moduledef.py`: `ModuleDef` and `merge` (`unflatten`), through a merge plan
  compiled once per ModuleDef.
- `_pure.py`: `Pure`, `moduledef.apply(...)` (ApplyCaller), `module.apply` (CloneCaller).
- `_graph.py`: the traversal behind `partition`, and its caches.
- `_writes.py`: every change to a module: checked assignment, `pop_state`,
  `update_state`, a transform's write-back.
- `_module.py`: the `Module` class itself.

Caches, what they key on, what invalidates them:

- A module's *version* (`_nnx_version`) is renewed by every structural change to it:
  an attribute added, deleted, or replaced by a value of another kind (all of them go
  through `_writes.py` or `merge`). A value written into an existing Variable or array
  slot is not structural and keeps the version.
- A module's *layout* (`_graph._Layout`: its static attributes and its leaf and
  submodule entries, in traversal order) is valid for one version, and while the
  lists/dicts/sets among its static attributes still equal the snapshot taken (those
  can change in place without a version bump).
- A root's *graph cache* (`_graph._GraphCache`: the ModuleDef, the paths and the leaf
  slots of the whole graph) is valid while every module in the graph keeps the
  version it had; `partition()` of an unchanged model then only gathers the leaves.
- A ModuleDef's *merge plan* is computed on first use and kept: a ModuleDef is immutable.

Ownership: a Module owns the Variable objects it holds. Assigning a Variable stores a
copy; `partition` returns copies; `merge`/`update_state` copy values in. So a State is
a snapshot, and writing `variable.value` on a Module's own Variable (reachable as
`vars(module)[name]`) is checked by the Module like any other assignment (each owned
Variable knows its owner and its attribute name).
"""

from ._graph import GraphSpec as GraphSpec, graph_cache as graph_cache
from ._module import Module as Module
from ._moduledef import ModuleDef as ModuleDef, merge_into as merge_into
from ._pure import (
    ApplyCaller as ApplyCaller,
    CloneCaller as CloneCaller,
    Pure as Pure,
    PureModule as PureModule,
)
from ._writes import (
    apply_graph_update as apply_graph_update,
    refuse_traced_statics as refuse_traced_statics,
)

__all__ = [
    "ApplyCaller",
    "CloneCaller",
    "GraphSpec",
    "Module",
    "ModuleDef",
    "Pure",
    "PureModule",
    "apply_graph_update",
    "graph_cache",
    "merge_into",
    "refuse_traced_statics",
]

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

Outside this package: `../_lift.py` is the one lifting protocol every transform uses
(`Lifted` splits a call's Modules, `enter`/`leave` rebuild them inside the JAX
transform and collect what changed, `Lifted.write_back` applies it); one file per
transform family sits on it (`_jit.py`, `_grad.py`, `_remat.py`, `_scan.py`,
`_vmap.py`, `_eval_shape.py`).

Writes: one path. Every change of an attribute is planned, then applied:
`plan_write` checks the kind (a Variable keeps its kind; no state hidden in a static
value) and returns a `WritePlan`; the shape check (`_shape_checks`) runs on the
planned write; `apply_write` applies it and renews the version if it is structural.
Assignment (`module.x = v`), `variable.value = v` on an owned Variable,
`update_state` and a transform's write-back all go through it, so one mistake raises
one error type wherever it is made (kind before shape). Removals (`del`,
`pop_state`, write-back of a removed attribute) all end in `apply_deletion`.

Words used in the code:

- *kind* (`_nodes.Kind`): what an attribute value is to the traversal: ARRAY (a raw
  array or registered node type), BOXED_NODE (a Node/Variable), BOXED_STATIC (an
  `nnx.Static`), MODULE, MUTABLE_STATIC (list/dict/set), STATIC.
- *box* / *Container*: the `Container` base of Node/Variable and Static, which holds
  a `_value` and metadata; reading a boxed attribute gives the value.
- *node*: a value that is state (a State leaf): a box of kind BOXED_NODE or an ARRAY.
- *graph*: the modules reachable from a root; *GraphSpec*: its hashable structure.

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
  It holds one builder per module (`_builders.py`: straight-line code generated once per
  tuple of leaf names and shared by all modules of that shape). The modules one merge
  builds share one fresh version number: versions are only ever compared per module.

Ownership: a Module owns the Variable objects it holds. Assigning a Variable stores a
copy; `partition` returns copies; `merge`/`update_state` copy values in. So a State is
a snapshot, and writing `variable.value` on a Module's own Variable (reachable as
`vars(module)[name]`) is checked by the Module like any other assignment: each owned
Variable holds a weak reference to its owner (the attribute name is looked up when
such a write happens). Merge leaves that reference to be set when the module's
`__dict__` is first handed out (`claim_variables`): `vars(module)` is the only way
user code reaches a Module's own Variables, and most merged modules (inside
transforms, `apply`) never get there. Internal code reads the dict with `vars_of`.
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
    refuse_new_submodules as refuse_new_submodules,
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
    "refuse_new_submodules",
    "refuse_traced_statics",
]

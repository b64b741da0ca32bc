"""The lifting layer shared by nnx's transforms: splitting the Modules (and Contexts)
out of a call's arguments into pytrees JAX can trace, rebuilding them inside, and
writing what changed back into the caller's Modules; RNG streams split per step for
the mapped transforms (scan, vmap); the `.call` accessor of Scan and Remat."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import jax
import jax.numpy as jnp
from typing_extensions import TypeIs

from ._collections import Sequence as ModuleSequence
from ._compat import (
    register_pytree_node,
)
from ._context import Context, ContextDef, PureContext
from ._filters import Filter, to_predicate
from ._module import (
    GraphSpec,
    Module,
    ModuleDef,
    apply_graph_update,
    graph_cache,
    refuse_new_submodules,
    refuse_traced_statics,
)
from ._module_object import check_trace
from ._state import State
from ._variables import is_node_box

__all__ = [
    "LiftStatic",
    "Lifted",
    "LiftedCall",
    "SplitContext",
    "StaticBox",
    "argnums_tuple",
    "call_named",
    "enter",
    "leave",
    "move_axis",
    "states_tuple",
]

MSG_EXPECTED_MODULE: Final = (
    "{transform} expects a Module as its first argument, got {type}. Call it as "
    "{transform}(f)(model, *args), with f(model, *args)."
)


class StaticBox:
    """A leafless pytree carrying a hashable value (an output the caller needs
    but JAX must not trace)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


register_pytree_node(StaticBox, lambda s: ((), s.value), lambda value, _: StaticBox(value))


# ------------------------------------------------------------------------------------
# The lifting protocol
#
# Every lifted transform runs the same three steps around the JAX transform it lifts:
#
#   outside   lift = Lifted(args, kwargs[, filters])     split the arguments' Modules
#             jax_transform(inner)(lift.traced, lift.static, lift.args, lift.kwargs)
#   inside    root, args, kwargs = enter(static, traced, args, kwargs)
#             out = fun(*args, **kwargs)
#             changes = leave(root, static, traced, "nnx.<name>")
#   outside   lift.write_back(changes)
#
# Two representations of the graph's state share this protocol:
#   * graph mode (no filters: jit, remat, eval_shape and the control-flow transforms):
#     the graph cache's raw leaves and its hashable GraphSpec; `leave` returns only
#     the leaves that changed (or all of them, `changes_only=False`, where branches
#     must agree on the output structure).
#   * state mode (filters: grad's `wrt`, vmap's and scan's variable axes): one State
#     per filter, in filter order, and the ModuleDef; `leave` returns the new States.


class LiftStatic:
    """The hashable half of a lifted call's Modules: the graph's GraphSpec (graph mode)
    or ModuleDef and filters (state mode), and where the Modules sit among the
    arguments (positions and keyword names; several Modules form one graph, so
    sharing between them survives)."""

    __slots__ = ("_hash", "filters", "graph", "module_slots")

    def __init__(
        self,
        graph: GraphSpec | ModuleDef[Any] | None,
        filters: tuple[Filter, ...] | None,
        module_slots: tuple[int | str, ...],
    ) -> None:
        self.graph = graph
        self.filters = filters
        self.module_slots = module_slots
        self._hash = hash((graph, filters, module_slots))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or (
            isinstance(other, LiftStatic)
            and self._hash == other._hash
            and self.module_slots == other.module_slots
            and self.filters == other.filters
            and self.graph == other.graph
        )


class Lifted:
    """The Modules (and Contexts) among one lifted call's arguments, split for JAX:
    `traced` is the pytree to trace, `static` the hashable rest, `args`/`kwargs` the
    call's arguments with each Module replaced by None and each Context by its
    `PureContext`. `write_back(changes)` writes what `leave` returned into the
    caller's Modules."""

    __slots__ = ("args", "kwargs", "root", "static", "traced")

    def __init__(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        filters: tuple[Filter, ...] | None = None,
    ) -> None:
        slots, self.args, self.kwargs, self.root = _split_modules(args, kwargs)
        self.traced: Any
        root = self.root
        if root is None:
            self.static = LiftStatic(None, filters, ())
            self.traced = [] if filters is None else ()
        elif filters is None:
            cache = graph_cache(root)
            self.static = LiftStatic(cache.get_spec(), None, slots)
            self.traced = cache.raw_leaves()
        else:
            states, moduledef = root.partition(*filters)
            self.static = LiftStatic(moduledef, filters, slots)
            self.traced = states_tuple(states)

    def write_back(self, changes: Any) -> None:
        """Write the `changes` that `leave` returned into the caller's Modules."""
        root = self.root
        if root is None or changes is None:
            return
        if self.static.filters is None:
            _write_back_leaves(root, self.static, changes)
            return
        states, new_moduledef = changes[0], changes[1].value
        if new_moduledef is None:
            root.update_state(states)
        else:
            apply_graph_update(root, new_moduledef, states)


def _split_modules(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[int | str, ...], tuple[Any, ...], dict[str, Any], Module | None]:
    """Take the Modules out of a call's arguments (None in their place) and split its
    Contexts: `(module slots, args, kwargs, root)`, root being the one Module, or a
    Sequence of them when there are several, or None."""
    slots: list[int | str] = []
    new_args: list[Any] = []
    for i, a in enumerate(args):
        if isinstance(a, Module):
            slots.append(i)
            new_args.append(None)
        else:
            new_args.append(a.partition() if isinstance(a, Context) else a)
    new_kwargs: dict[str, Any] = {}
    for k, a in kwargs.items():
        if isinstance(a, Module):
            slots.append(k)
            new_kwargs[k] = None
        else:
            new_kwargs[k] = a.partition() if isinstance(a, Context) else a
    modules = [args[s] if isinstance(s, int) else kwargs[s] for s in slots]
    root: Module | None
    if not modules:
        root = None
    elif len(modules) == 1:
        root = modules[0]
    else:
        root = ModuleSequence(modules)
    return tuple(slots), tuple(new_args), new_kwargs, root


def states_tuple(states: Any) -> tuple[State[Any], ...]:
    """`partition` gives one State for one filter and a tuple for several."""
    return tuple(states) if is_tuple(states) else (states,)


def enter(
    static: LiftStatic, traced: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Module | None, list[Any], dict[str, Any]]:
    """Inside the transform: rebuild the Modules from `traced` and put them, and the
    rebuilt Contexts, back into the arguments: `(root, args, kwargs)`."""
    graph = static.graph
    root: Module | None = None
    if isinstance(graph, GraphSpec):
        root = graph.merge(traced)
    elif graph is not None:
        root = graph.merge(*traced)
    full_args, full_kwargs = _rebuild_call(static.module_slots, root, args, kwargs)
    return root, full_args, full_kwargs


def leave(
    root: Module | None,
    static: LiftStatic,
    traced: Any,
    transform: str,
    *,
    changes_only: bool = True,
    returned: tuple[int, ...] = (),
) -> Any:
    """Inside the transform, after the call: what changed in the rebuilt graph, for
    `Lifted.write_back`. Graph mode: the changed leaves (all leaves with
    `changes_only=False`) and the new GraphSpec if the structure changed. State mode:
    the new States, one per filter, and the new ModuleDef if the structure changed.
    Raises TypeError if a static attribute now holds a tracer. Graph mode also
    returns the leaves at the indices `returned`, changed or not (donated buffers:
    their input arrays are gone after the call)."""
    if root is None:
        return None
    graph = static.graph
    if isinstance(graph, GraphSpec):
        return _changed_leaves(root, graph, traced, transform, changes_only, returned)
    refuse_traced_statics(root, transform)
    assert static.filters is not None and graph is not None
    states, moduledef = root.partition(*static.filters)
    if moduledef == graph:
        return states_tuple(states), StaticBox(None)
    # here, not at write-back: a scan's carry would fail first, with JAX's own error
    refuse_new_submodules(graph, moduledef, type(root).__name__)
    return states_tuple(states), StaticBox(moduledef)


MSG_BROADCAST_CHANGED: Final = (
    "{transform}: the function changed {paths}, which is broadcast state ({what}), so "
    "the change cannot be written back. {fix}"
)


def refuse_broadcast_changes(
    before: State[Any], after: State[Any], transform: str, what: str, fix: str
) -> None:
    """Inside a mapped transform: broadcast state comes back unmapped, so it must be
    what went in (a change would be silently dropped otherwise)."""
    changed = [
        path
        for path, value in after.items()
        if path not in before or _raw(value) is not _raw(before[path])
    ]
    if changed:
        raise ValueError(
            MSG_BROADCAST_CHANGED.format(transform=transform, paths=changed[:5], what=what, fix=fix)
        )


def _raw(value: Any) -> Any:
    return value.value if is_node_box(value) else value


def _rebuild_call(
    module_slots: tuple[int | str, ...],
    root: Module | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[list[Any], dict[str, Any]]:
    """Put the (rebuilt) modules and Contexts back into the arguments."""
    full_args = [a.merge() if isinstance(a, PureContext) else a for a in args]
    full_kwargs = {k: a.merge() if isinstance(a, PureContext) else a for k, a in kwargs.items()}
    if root is not None:
        modules = [root] if len(module_slots) == 1 else list(cast(ModuleSequence, root))
        for slot, module in zip(module_slots, modules):
            if isinstance(slot, int):
                full_args[slot] = module
            else:
                full_kwargs[slot] = module
    return full_args, full_kwargs


def _changed(old: Sequence[Any], new: Sequence[Any]) -> tuple[int, ...]:
    return tuple(i for i, (a, b) in enumerate(zip(old, new)) if a is not b)


def _changed_leaves(
    root: Module,
    spec: GraphSpec,
    leaves: list[Any],
    transform: str,
    changes_only: bool,
    returned: tuple[int, ...] = (),
) -> tuple[list[Any], StaticBox]:
    """Graph mode's changes: `(values, StaticBox((new_spec | None, indices)))`."""
    refuse_traced_statics(root, transform)
    cache = graph_cache(root)
    new_spec = cache.get_spec()
    new_leaves = cache.raw_leaves()
    if new_spec != spec:
        return new_leaves, StaticBox((new_spec, tuple(range(len(new_leaves)))))
    changed = _changed(leaves, new_leaves) if changes_only else tuple(range(len(new_leaves)))
    if returned:
        changed = tuple(sorted({*changed, *returned}))
    return [new_leaves[i] for i in changed], StaticBox((None, changed))


def _write_back_leaves(root: Module, static: LiftStatic, changes: tuple[Any, ...]) -> None:
    values, box = changes
    new_spec, indices = box.value
    if new_spec is None and not indices:
        return  # nothing changed: reading a module is allowed under any trace
    check_trace(root, "<state>")
    if new_spec is None:
        graph_cache(root).write_raw(indices, values)
    else:  # the structure changed inside: every leaf came back
        apply_graph_update(root, new_spec.moduledef, (new_spec.state(values),))


class LiftedCall:
    """The `.call` accessor of `nnx.Scan` and `nnx.Remat`.

    `m.call(*args)` runs the wrapped module's `__call__` through the transform,
    `m.call.method(*args)` its `method` (each attribute access gives a new LiftedCall
    naming that method; nothing runs until the call). Accessors compose:
    `nnx.Remat(nnx.Scan(Block, ...))` is called as `m.call.call(carry, xs)`, the
    Scan's `__call__` (itself scanning the Block's) under `jax.checkpoint`.

    Args:
        run: `run(name, args, kwargs)`: runs the method `name` through the transform.
        name: The method to run. Default `"__call__"`.

    Example:
        ```python
        class Block(nnx.Module):
            def __init__(self, *, ctx: nnx.Context) -> None:
                self.linear = nnx.Linear(2, 2, ctx=ctx)

            def __call__(self, h: jax.Array, _: None) -> tuple[jax.Array, None]:
                return jnp.tanh(self.linear(h)), None


        scan = nnx.Scan(Block, variable_axes={nnx.Param: 0}, split_rngs="params", length=2)
        model = nnx.Remat(scan)(ctx=nnx.context(0))
        assert isinstance(model.call, nnx.LiftedCall)
        h, _ = model.call.call(jnp.ones((1, 2)), None)  # Scan.__call__ under remat
        assert h.shape == (1, 2)
        ```
    """

    __slots__ = ("_name", "_run")

    def __init__(
        self, run: Callable[[str, tuple[Any, ...], dict[str, Any]], Any], name: str = "__call__"
    ) -> None:
        self._run = run
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the named method through the transform with these arguments.

        Args:
            *args: The method's positional arguments.
            **kwargs: The method's keyword arguments.

        Returns:
            What the transform returns for the method (the method's output for
            `nnx.Remat`; `(carry, ys)` for `nnx.Scan`).
        """
        return self._run(self._name, args, kwargs)

    def __getattr__(self, name: str) -> LiftedCall:
        if name.startswith("__"):
            raise AttributeError(name)
        return LiftedCall(self._run, name)


def argnums_tuple(argnums: int | Sequence[int]) -> tuple[int, ...]:
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def call_named(name: str, module: Any, *args: Any, **kwargs: Any) -> Any:
    """`module.<name>(*args, **kwargs)`."""
    return getattr(module, name)(*args, **kwargs)


def is_tuple(x: object) -> TypeIs[tuple[Any, ...]]:
    return isinstance(x, tuple)


def is_sequence(x: object) -> TypeIs[tuple[Any, ...] | list[Any]]:
    return isinstance(x, (tuple, list))


def names_stream(filter: Filter, name: str) -> bool:
    """Whether a `split_rngs` filter selects the stream `name`: a name, a tuple of
    filters, `...` (all), None (none), or a predicate called as `f((name,), name)`."""
    if filter is None:
        return False
    if filter is Ellipsis:
        return True
    if isinstance(filter, str):
        return filter == name
    if is_sequence(filter):
        return any(names_stream(f, name) for f in filter)
    return bool(to_predicate(filter)((name,), name))


def named_streams(filter: Filter) -> set[str]:
    """The stream names a `split_rngs` filter spells out (a name, or names in a tuple
    or list): each must be a stream of the Context it splits."""
    if isinstance(filter, str):
        return {filter}
    if is_sequence(filter):
        return {name for f in filter for name in named_streams(f)}
    return set()


tree_leaves: Callable[[Any], list[Any]] = getattr(jax.tree_util, "tree_leaves")  # noqa: B009
tree_map: Callable[..., Any] = getattr(jax.tree_util, "tree_map")  # noqa: B009
_moveaxis: Callable[[Any, int, int], Any] = getattr(jnp, "moveaxis")  # noqa: B009


def leading_sizes(tree: Any, axis: int | None) -> set[int]:
    if axis is None:
        return set()
    sizes: set[int] = {int(x.shape[axis]) for x in tree_leaves(tree)}
    return sizes


_split_key: Callable[[Any, int], jax.Array] = getattr(jax.random, "split")  # noqa: B009


def move_axis(tree: Any, source: int, destination: int) -> Any:
    if source == destination:
        return tree

    def move(x: Any) -> Any:
        return _moveaxis(x, source, destination)

    return tree_map(move, tree)


MSG_UNKNOWN_STREAM: Final = (
    "{who}: split_rngs={split!r} names the RNG stream(s) {names}, which the Context "
    "does not have (it has {have}){hint}; every step would get the same keys. Add the "
    "stream to the Context (nnx.context(params=0, dropout=1)) or fix split_rngs."
)


def _check_named_streams(
    split_rngs: Filter, have: tuple[str, ...], split: list[str], who: str
) -> None:
    """Refuse a `split_rngs` that silently splits nothing: it names streams and the
    Context has none of them, or a missing name looks like a typo of a stream that
    is then shared. (Naming streams that are absent is otherwise fine, as in 0.0.8:
    one set of options often serves an `__init__` whose Context has "params" and a
    call whose Context has "dropout".)"""
    named = named_streams(split_rngs)
    missing = sorted(named - set(have))
    if not missing:
        return
    shared = [n for n in have if n not in split]
    typos = {m: difflib.get_close_matches(m, shared, n=1) for m in missing}
    typos = {m: close for m, close in typos.items() if close}
    if split and not typos:
        return
    hint = "".join(f"; did you mean {close[0]!r} for {m!r}?" for m, close in typos.items())
    raise ValueError(
        MSG_UNKNOWN_STREAM.format(
            who=who, names=missing, have=sorted(have), split=split_rngs, hint=hint
        )
    )


class SplitContext:
    """A Context split for a mapped or scanned call: the streams `split_rngs` names
    get one key per step (`split_keys`, mapped over), the others are shared; `ctx(keys)`
    rebuilds the Context for one step."""

    def __init__(self, ctx: Context | None, split_rngs: Filter, size: int | None, who: str) -> None:
        self.contextdef: ContextDef | None = None
        self.split_keys: dict[str, jax.Array] = {}
        self.shared_keys: dict[str, jax.Array] = {}
        if ctx is None:
            return
        names = [n for n in ctx.rng_names if names_stream(split_rngs, n)]
        _check_named_streams(split_rngs, ctx.rng_names, names, who)
        if names and size is None:
            raise ValueError(f"{who}: cannot split RNG streams without a size (pass it)")
        keys, self.contextdef = ctx.partition()
        for name, key in keys.items():
            if name in names:
                self.split_keys[name] = _split_key(key, size or 1)
            else:
                self.shared_keys[name] = key

    def add_to(self, kwargs: dict[str, Any], step_keys: dict[str, Any]) -> dict[str, Any]:
        """`kwargs` with `ctx=` the step's Context, if there is a Context."""
        if self.contextdef is None:
            return kwargs
        return {**kwargs, "ctx": self.contextdef.merge({**self.shared_keys, **step_keys})}

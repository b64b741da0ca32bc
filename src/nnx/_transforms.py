"""Lifted transforms: JAX transforms that take Modules and keep their state in sync.

Each one splits the Modules among the arguments into pytrees, runs the JAX transform
on a function that rebuilds them, and writes what changed inside back into the
caller's Modules, in place. A `Context` argument is split into a `PureContext` and
rebuilt inside, so its streams can be used there.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Final, Generic, Literal, TypeVar, cast, overload

from typing_extensions import ParamSpec

from ._compat import (
    jax_checkpoint,
    jax_eval_shape,
    jax_grad,
    jax_jit,
    jax_value_and_grad,
    register_pytree_node,
)
from ._context import Context, PureContext
from ._filters import Filter
from ._helpers import Sequence as ModuleSequence
from ._module import (
    GraphSpec,
    Module,
    apply_graph_update,
    graph_cache,
    refuse_traced_statics,
)
from ._module_object import check_trace
from ._state import State
from ._variables import Param

__all__ = [
    "LiftedCall",
    "Remat",
    "RematModule",
    "RematOptions",
    "eval_shape",
    "grad",
    "jit",
    "remat",
    "value_and_grad",
]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=Module)
V = TypeVar("V")

MSG_EXPECTED_MODULE: Final = (
    "{transform} expects a Module as its first argument, got {type}. Call it as "
    "{transform}(f)(model, *args), with f(model, *args)."
)


class _Static:
    """A leafless pytree carrying a hashable value (an output the caller needs
    but JAX must not trace)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


register_pytree_node(_Static, lambda s: ((), s.value), lambda value, _: _Static(value))


# ------------------------------------------------------------------------------------
# Splitting the arguments of a lifted call


class _Split:
    """The Modules and Contexts among a call's arguments, split out of them.

    Top-level Module arguments are grouped into one graph (so sharing between them
    survives), given to JAX as a list of unboxed leaves plus a hashable GraphSpec.
    """

    __slots__ = ("args", "kwargs", "module_slots", "root")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        slots: list[int | str] = []
        new_args: list[Any] = []
        for i, a in enumerate(args):
            if isinstance(a, Module):
                slots.append(i)
                new_args.append(None)
            elif isinstance(a, Context):
                new_args.append(a.partition())
            else:
                new_args.append(a)
        new_kwargs: dict[str, Any] = {}
        for k, a in kwargs.items():
            if isinstance(a, Module):
                slots.append(k)
                new_kwargs[k] = None
            elif isinstance(a, Context):
                new_kwargs[k] = a.partition()
            else:
                new_kwargs[k] = a
        self.module_slots = tuple(slots)
        self.args = tuple(new_args)
        self.kwargs = new_kwargs
        modules = [args[s] if isinstance(s, int) else kwargs[s] for s in slots]
        self.root: Module | None
        if not modules:
            self.root = None
        elif len(modules) == 1:
            self.root = modules[0]
        else:
            self.root = ModuleSequence(modules)


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


def _write_back(root: Module, spec: GraphSpec, result: tuple[Any, ...]) -> None:
    """Write `(changed values, _Static((new_spec | None, changed indices)))` into root."""
    values, static = result
    new_spec, indices = static.value
    if new_spec is None and not indices:
        return  # nothing changed: reading a module is allowed under any trace
    check_trace(root, "<state>")
    if new_spec is None:
        graph_cache(root).write_raw(indices, values)
    else:  # the structure changed inside: every leaf came back
        apply_graph_update(root, new_spec.moduledef, new_spec.state(values))


def _outputs(
    root: Module, spec: GraphSpec, leaves: list[Any], transform: str
) -> tuple[list[Any], _Static]:
    """What a transformed function returns about its module graph."""
    refuse_traced_statics(root, transform)
    cache = graph_cache(root)
    new_spec = cache.get_spec()
    new_leaves = cache.raw_leaves()
    if new_spec == spec:
        changed = _changed(leaves, new_leaves)
        return [new_leaves[i] for i in changed], _Static((None, changed))
    return new_leaves, _Static((new_spec, tuple(range(len(new_leaves)))))


# ------------------------------------------------------------------------------------
# jit


class _JitStatic:
    """The hashable part of an `nnx.jit` call: graph spec, module positions, static
    arguments."""

    __slots__ = ("_hash", "module_slots", "spec", "static_args")

    def __init__(
        self,
        spec: GraphSpec | None,
        module_slots: tuple[int | str, ...],
        static_args: tuple[tuple[int | str, Any], ...],
    ) -> None:
        self.spec = spec
        self.module_slots = module_slots
        self.static_args = static_args
        self._hash = hash(
            (spec, module_slots, static_args, tuple(v.__class__ for _, v in static_args))
        )

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or (
            isinstance(other, _JitStatic)
            and self._hash == other._hash
            and self.module_slots == other.module_slots
            and self.static_args == other.static_args
            and all(
                type(a) is type(b) for (_, a), (_, b) in zip(self.static_args, other.static_args)
            )
            and self.spec == other.spec
        )


@overload
def jit(
    fun: Callable[P, R],
    /,
    *,
    stateful: bool = True,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    **jit_kwargs: Any,
) -> Callable[P, R]: ...
@overload
def jit(
    fun: None = None,
    /,
    *,
    stateful: bool = True,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    **jit_kwargs: Any,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def jit(
    fun: Callable[P, R] | None = None,
    /,
    *,
    stateful: bool = True,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    **jit_kwargs: Any,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """`jax.jit` for functions of Modules: `nnx.jit(step)(model, x)`.

    Module arguments (top-level, positional or keyword) are split into their state,
    traced, and every change made inside (new values, new Variables, static
    attributes) is written back into them after the call; `stateful=False` discards
    the changes. `ctx=` Contexts are split and rebuilt inside. Retraces when a
    module's structure, a static attribute, or a leaf's shape/dtype changes. Keeps
    `fun`'s signature for type checkers; works as a decorator, also on methods.
    """
    if fun is None:

        def decorator(f: Callable[P, R]) -> Callable[P, R]:
            return jit(
                f,
                stateful=stateful,
                static_argnums=static_argnums,
                static_argnames=static_argnames,
                **jit_kwargs,
            )

        return decorator
    f: Callable[..., Any] = fun
    static_nums, static_names = _static_slots(
        f,
        _argnums(static_argnums),
        (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames),
    )

    def inner(
        static: _JitStatic, leaves: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, Any]:
        args_list = list(args)
        for slot, value in static.static_args:
            if isinstance(slot, int):
                args_list[slot] = value
            else:
                kwargs = {**kwargs, slot: value}
        spec = static.spec
        root = spec.merge(leaves) if spec is not None else None
        call_args, call_kwargs = _rebuild_call(static.module_slots, root, tuple(args_list), kwargs)
        out = f(*call_args, **call_kwargs)
        if root is None or spec is None or not stateful:
            return out, None
        return out, _outputs(root, spec, leaves, "nnx.jit")

    if "donate_argnums" in jit_kwargs or "donate_argnames" in jit_kwargs:
        # a donated leaf that comes back unchanged would leave the module holding a
        # deleted buffer
        raise NotImplementedError("nnx.jit does not support buffer donation yet")
    jitted = jax_jit(inner, static_argnums=(0,), **jit_kwargs)

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        split = _Split(args, kwargs)
        call_args = list(split.args)
        static_args: list[tuple[int | str, Any]] = []
        for i in static_nums:
            if i < len(call_args):
                static_args.append((i, _hashable_static(f, i, call_args[i])))
                call_args[i] = None
        call_kwargs = split.kwargs
        for name in static_names:
            if name in call_kwargs:
                static_args.append((name, _hashable_static(f, name, call_kwargs[name])))
                call_kwargs = {k: v for k, v in call_kwargs.items() if k != name}
        root = split.root
        if root is None:
            static = _JitStatic(None, (), tuple(static_args))
            out, _ = jitted(static, [], tuple(call_args), call_kwargs)
            return out  # type: ignore[no-any-return]
        cache = graph_cache(root)
        spec = cache.get_spec()
        static = _JitStatic(spec, split.module_slots, tuple(static_args))
        out, result = jitted(static, cache.raw_leaves(), tuple(call_args), call_kwargs)
        if result is not None:
            _write_back(root, spec, result)
        return out  # type: ignore[no-any-return]

    return wrapper


def _static_slots(
    fun: Callable[..., Any], nums: tuple[int, ...], names: tuple[str, ...]
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The positions and names of the static arguments, each completed from the other
    through `fun`'s signature, as `jax.jit` does: `static_argnums=1` also makes the
    parameter at position 1 static when it is passed by keyword, and vice versa."""
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):  # no signature: take them as given
        return tuple(sorted({i for i in nums if i >= 0})), names
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    resolved = {i + len(positional) if i < 0 else i for i in nums}
    by_keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    more_names = {
        positional[i].name
        for i in resolved
        if 0 <= i < len(positional) and positional[i].kind is by_keyword
    }
    more_nums = {i for i, p in enumerate(positional) if p.name in names and p.kind is by_keyword}
    all_nums = tuple(sorted(i for i in resolved | more_nums if i >= 0))
    return all_nums, tuple(sorted(set(names) | more_names))


MSG_UNHASHABLE_STATIC: Final = (
    "{fun}: the static argument {which} is a {type}, which is not hashable ({error}). "
    "Static arguments key the compilation cache: pass a hashable value (a tuple instead "
    "of a list, a frozen dataclass), or make it an ordinary (traced) argument."
)


def _hashable_static(fun: Callable[..., Any], which: int | str, value: Any) -> Any:
    try:
        hash(value)
    except TypeError as e:
        where = f"at position {which}" if isinstance(which, int) else repr(which)
        raise TypeError(
            MSG_UNHASHABLE_STATIC.format(
                fun=f"nnx.jit({getattr(fun, '__name__', 'function')})",
                which=where,
                type=type(value).__name__,
                error=e,
            )
        ) from None
    return value


# ------------------------------------------------------------------------------------
# grad / value_and_grad


def _grad_transform(
    fun: Callable[..., Any],
    wrt: Filter,
    *,
    stateful: bool,
    has_aux: bool,
    holomorphic: bool,
    allow_int: bool,
    with_value: bool,
    name: str,
) -> Callable[..., Any]:
    def inner(
        diff: State[Any],
        rest: State[Any],
        spec_box: _Static,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, Any]:
        moduledef = spec_box.value
        module = moduledef.merge(diff, rest)
        call_args, call_kwargs = _rebuild_call((0,), module, (None, *args), kwargs)
        out = fun(*call_args, **call_kwargs)
        loss, aux = out if has_aux else (out, None)
        refuse_traced_statics(module, name)
        updates = module.partition() if stateful else None
        return loss, (aux, updates)

    transform = jax_value_and_grad if with_value else jax_grad
    differentiate = transform(inner, has_aux=True, holomorphic=holomorphic, allow_int=allow_int)

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not args or not isinstance(args[0], Module):
            got = type(args[0]).__name__ if args else "no arguments"
            raise TypeError(MSG_EXPECTED_MODULE.format(transform=name, type=got))
        module: Module = args[0]
        (diff, rest), moduledef = module.partition(wrt, ...)
        split = _Split(args[1:], kwargs)
        if split.root is not None:
            raise TypeError(f"{name}: only the first argument may be a Module")
        result = differentiate(diff, rest, _Static(moduledef), split.args, split.kwargs)
        value: Any = None
        if with_value:
            (value, (aux, updates)), grads = result
        else:
            grads, (aux, updates) = result
        if updates is not None:
            new_state, new_moduledef = updates
            apply_graph_update(module, new_moduledef, new_state)
        if with_value:
            return ((value, aux), grads) if has_aux else (value, grads)
        return (grads, aux) if has_aux else grads

    return wrapper


@overload
def grad(
    fun: Callable[Concatenate[M, P], Any],
    /,
    *,
    stateful: bool = True,
    has_aux: Literal[False] = False,
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], State[Param[Any]]]: ...
@overload
def grad(
    fun: Callable[Concatenate[M, P], Any],
    /,
    wrt: type[V],
    *,
    stateful: bool = True,
    has_aux: Literal[False] = False,
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], State[V]]: ...
@overload
def grad(
    fun: Callable[Concatenate[M, P], Any],
    /,
    wrt: Filter,
    *,
    stateful: bool = True,
    has_aux: Literal[False] = False,
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], State[Any]]: ...
@overload
def grad(
    fun: Callable[Concatenate[M, P], tuple[Any, R]],
    /,
    *,
    stateful: bool = True,
    has_aux: Literal[True],
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], tuple[State[Param[Any]], R]]: ...
@overload
def grad(
    fun: Callable[Concatenate[M, P], tuple[Any, R]],
    /,
    wrt: type[V],
    *,
    stateful: bool = True,
    has_aux: Literal[True],
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], tuple[State[V], R]]: ...
@overload
def grad(
    fun: Callable[Concatenate[M, P], tuple[Any, R]],
    /,
    wrt: Filter,
    *,
    stateful: bool = True,
    has_aux: Literal[True],
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], tuple[State[Any], R]]: ...
def grad(
    fun: Callable[..., Any],
    /,
    wrt: Filter = Param,
    *,
    stateful: bool = True,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[..., Any]:
    """The gradient of `fun(module, *args)` with respect to the module's `wrt` state.

    Returns a State holding exactly the entries `wrt` selects (shared parameters
    appear once, with their summed gradient); `(grads, aux)` with `has_aux`. Changes
    `fun` makes to the module (counters, batch statistics) are written back unless
    `stateful=False`. Integer Variables selected by `wrt` need `allow_int=True`.
    """
    return _grad_transform(
        fun,
        wrt,
        stateful=stateful,
        has_aux=has_aux,
        holomorphic=holomorphic,
        allow_int=allow_int,
        with_value=False,
        name="nnx.grad",
    )


@overload
def value_and_grad(
    fun: Callable[Concatenate[M, P], R],
    /,
    *,
    stateful: bool = True,
    has_aux: Literal[False] = False,
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], tuple[R, State[Param[Any]]]]: ...
@overload
def value_and_grad(
    fun: Callable[Concatenate[M, P], R],
    /,
    wrt: type[V],
    *,
    stateful: bool = True,
    has_aux: Literal[False] = False,
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], tuple[R, State[V]]]: ...
@overload
def value_and_grad(
    fun: Callable[Concatenate[M, P], R],
    /,
    wrt: Filter,
    *,
    stateful: bool = True,
    has_aux: Literal[False] = False,
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], tuple[R, State[Any]]]: ...
@overload
def value_and_grad(
    fun: Callable[Concatenate[M, P], R],
    /,
    *,
    stateful: bool = True,
    has_aux: Literal[True],
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], tuple[R, State[Param[Any]]]]: ...
@overload
def value_and_grad(
    fun: Callable[Concatenate[M, P], R],
    /,
    wrt: type[V],
    *,
    stateful: bool = True,
    has_aux: Literal[True],
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], tuple[R, State[V]]]: ...
@overload
def value_and_grad(
    fun: Callable[Concatenate[M, P], R],
    /,
    wrt: Filter,
    *,
    stateful: bool = True,
    has_aux: Literal[True],
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[Concatenate[M, P], tuple[R, State[Any]]]: ...
def value_and_grad(
    fun: Callable[..., Any],
    /,
    wrt: Filter = Param,
    *,
    stateful: bool = True,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
) -> Callable[..., Any]:
    """Like `nnx.grad`, returning `(value, grads)` (`((value, aux), grads)` with
    `has_aux`)."""
    return _grad_transform(
        fun,
        wrt,
        stateful=stateful,
        has_aux=has_aux,
        holomorphic=holomorphic,
        allow_int=allow_int,
        with_value=True,
        name="nnx.value_and_grad",
    )


# ------------------------------------------------------------------------------------
# remat


@overload
def remat(
    fun: Callable[P, R],
    /,
    *,
    prevent_cse: bool = True,
    static_argnums: int | Sequence[int] = (),
    policy: Callable[..., bool] | None = None,
) -> Callable[P, R]: ...
@overload
def remat(
    fun: None = None,
    /,
    *,
    prevent_cse: bool = True,
    static_argnums: int | Sequence[int] = (),
    policy: Callable[..., bool] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def remat(
    fun: Callable[P, R] | None = None,
    /,
    *,
    prevent_cse: bool = True,
    static_argnums: int | Sequence[int] = (),
    policy: Callable[..., bool] | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """`jax.checkpoint` for functions of Modules: activations inside are recomputed
    on the backward pass instead of stored. Module changes are written back.

    `static_argnums` name positional arguments that are Python values, not traced
    (as for `jax.checkpoint`). On an `__init__`, `remat` leaves it as it is: building
    a module has no backward pass.
    """
    if fun is None:

        def decorator(f: Callable[P, R]) -> Callable[P, R]:
            return remat(f, prevent_cse=prevent_cse, static_argnums=static_argnums, policy=policy)

        return decorator
    if getattr(fun, "__name__", None) == "__init__":
        return fun
    f: Callable[..., Any] = fun
    static_positions = _argnums(static_argnums)

    def inner(
        leaves: list[Any], spec_box: _Static, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, Any]:
        spec: GraphSpec | None
        spec, module_slots, statics = spec_box.value
        root = spec.merge(leaves) if spec is not None else None
        call_args, call_kwargs = _rebuild_call(module_slots, root, args, kwargs)
        for i, value in statics:
            call_args[i] = value
        out = f(*call_args, **call_kwargs)
        if root is None or spec is None:
            return out, None
        return out, _outputs(root, spec, leaves, "nnx.remat")

    checkpointed = jax_checkpoint(inner, prevent_cse=prevent_cse, policy=policy)

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        statics: tuple[tuple[int, Any], ...] = ()
        call_args: tuple[Any, ...] = args
        if static_positions:
            n = len(args)
            positions = sorted({i % n for i in static_positions if -n <= i < n})
            statics = tuple((i, args[i]) for i in positions)
            call_args = tuple(None if i in positions else a for i, a in enumerate(args))
        split = _Split(call_args, kwargs)
        root = split.root
        if root is None:
            out, _ = checkpointed([], _Static((None, (), statics)), split.args, split.kwargs)
            return out  # type: ignore[no-any-return]
        cache = graph_cache(root)
        spec = cache.get_spec()
        out, result = checkpointed(
            cache.raw_leaves(),
            _Static((spec, split.module_slots, statics)),
            split.args,
            split.kwargs,
        )
        _write_back(root, spec, result)
        return out  # type: ignore[no-any-return]

    return wrapper


# ------------------------------------------------------------------------------------
# Remat (module form) and eval_shape


class LiftedCall:
    """The `.call` accessor of `nnx.Scan` and `nnx.Remat`: `m.call(*args)` runs the
    wrapped module's `__call__` through the transform, `m.call.method(*args)` its
    `method`. Accessors compose: `remat_of_scan.call.call(x, None)`."""

    __slots__ = ("_name", "_run")

    def __init__(
        self, run: Callable[[str, tuple[Any, ...], dict[str, Any]], Any], name: str = "__call__"
    ) -> None:
        self._run = run
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(self._name, args, kwargs)

    def __getattr__(self, name: str) -> LiftedCall:
        if name.startswith("__"):
            raise AttributeError(name)
        return LiftedCall(self._run, name)


@dataclasses.dataclass(frozen=True)
class RematOptions:
    """The `jax.checkpoint` options of an `nnx.Remat` (static)."""

    prevent_cse: bool = True
    static_argnums: tuple[int, ...] = ()
    policy: Callable[..., bool] | None = None


class Remat(Module, Generic[M]):
    """A module whose calls are rematerialized (run under `jax.checkpoint`).

    `nnx.Remat(Block, prevent_cse=True, static_argnums=(), policy=None)` is a
    constructor: calling it with Block's own arguments builds a Block, held as
    `remat_module`. Calling the Remat calls the Block under `jax.checkpoint`
    (activations recomputed on the backward pass); `m.call.method(*args)` runs another
    method. `static_argnums` count the call's own arguments (0 is the first after the
    module).
    """

    module_constructor: Callable[..., M]
    options: RematOptions
    remat_module: M

    if TYPE_CHECKING:

        def __new__(  # type: ignore[misc]
            cls,
            constructor: Callable[P, M],
            /,
            *,
            prevent_cse: bool = True,
            static_argnums: int | Sequence[int] = (),
            policy: Callable[..., bool] | None = None,
        ) -> Callable[P, Remat[M]]: ...

    else:

        def __new__(cls, *args, **kwargs):
            if not args and not kwargs:  # copy/pickle: an empty instance
                return Module.__new__(cls)
            return _remat_factory(cls, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._remat_method("__call__", args, kwargs)

    @property
    def call(self) -> LiftedCall:
        """`m.call(*args)` is `m(*args)`; `m.call.method(*args)` runs `method` under
        `jax.checkpoint`."""
        return LiftedCall(self._remat_method)

    def _remat_method(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        options = self.options
        run = remat(
            functools.partial(_call_named, name),
            prevent_cse=options.prevent_cse,
            static_argnums=tuple(i + 1 for i in options.static_argnums),
            policy=options.policy,
        )
        return run(self.remat_module, *args, **kwargs)


RematModule = Remat
"""The name nnx used for `Remat` instances before 0.1; an alias."""


def _remat_factory(
    cls: type[Remat[Any]],
    constructor: Callable[..., Any],
    /,
    *,
    prevent_cse: bool = True,
    static_argnums: int | Sequence[int] = (),
    policy: Callable[..., bool] | None = None,
) -> Callable[..., Remat[Any]]:
    options = RematOptions(prevent_cse, _argnums(static_argnums), policy)

    def build(*args: Any, **kwargs: Any) -> Remat[Any]:
        module = Module.__new__(cls)
        module.module_constructor = constructor
        module.options = options
        module.remat_module = constructor(*args, **kwargs)
        return module

    build.__name__ = f"{cls.__name__}({getattr(constructor, '__name__', 'constructor')})"
    build.__doc__ = getattr(constructor, "__doc__", None)
    return build


def _argnums(argnums: int | Sequence[int]) -> tuple[int, ...]:
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def _call_named(name: str, module: Any, *args: Any, **kwargs: Any) -> Any:
    """`module.<name>(*args, **kwargs)`."""
    return getattr(module, name)(*args, **kwargs)


def eval_shape(fun: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `fun` abstractly (no FLOPs, no memory): arrays come back as
    `jax.ShapeDtypeStruct`s. A Module result comes back as a Module whose state is
    abstract, e.g. to restore a checkpoint into: `nnx.eval_shape(lambda: Model(ctx=...))`.
    """
    f: Callable[..., Any] = fun

    def inner(*a: Any, **k: Any) -> Any:
        out = f(*a, **k)
        if isinstance(out, Module):
            state, moduledef = out.partition()
            return _Static(True), state, moduledef
        return _Static(False), out, None

    split = _Split(args, kwargs)
    if split.root is not None:
        raise TypeError("nnx.eval_shape: Module arguments are not supported; build them inside")
    is_module, out, moduledef = jax_eval_shape(inner, *split.args, **split.kwargs)
    if is_module.value:
        return moduledef.merge(out)  # type: ignore[no-any-return]
    return out  # type: ignore[no-any-return]

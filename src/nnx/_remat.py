"""`nnx.remat` (`jax.checkpoint` for functions of Modules) and `nnx.Remat`, a Module
whose calls are rematerialized."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from typing_extensions import ParamSpec

from ._compat import (
    jax_checkpoint,
)
from ._lift import (
    Lifted,
    LiftedCall,
    LiftStatic,
    StaticBox,
    argnums_tuple,
    call_named,
    enter,
    leave,
)
from ._module import Module

__all__ = ["Remat", "RematModule", "RematOptions", "remat"]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=Module)


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
    if fun is None:  # used as @nnx.remat(...)
        options = dict(prevent_cse=prevent_cse, static_argnums=static_argnums, policy=policy)
        return cast(
            "Callable[[Callable[P, R]], Callable[P, R]]", functools.partial(remat, **options)
        )
    if getattr(fun, "__name__", None) == "__init__":
        return fun
    f: Callable[..., Any] = fun
    static_positions = argnums_tuple(static_argnums)

    checkpointed = jax_checkpoint(_traced(f), prevent_cse=prevent_cse, policy=policy)

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        call_args, statics = _take_static(args, static_positions)
        lift = Lifted(call_args, kwargs)
        out, changes = checkpointed(
            lift.traced, StaticBox((lift.static, statics)), lift.args, lift.kwargs
        )
        lift.write_back(changes)
        return out  # type: ignore[no-any-return]

    return wrapper


def _traced(
    f: Callable[..., Any],
) -> Callable[[list[Any], StaticBox, tuple[Any, ...], dict[str, Any]], tuple[Any, Any]]:
    """The function `jax.checkpoint` traces: rebuild the modules and the static
    arguments, call `f`, and return its output with what changed."""

    def inner(
        leaves: list[Any], static_box: StaticBox, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, Any]:
        static: LiftStatic
        static, statics = static_box.value
        root, call_args, call_kwargs = enter(static, leaves, args, kwargs)
        for i, value in statics:
            call_args[i] = value
        out = f(*call_args, **call_kwargs)
        return out, leave(root, static, leaves, "nnx.remat")

    return inner


def _take_static(
    args: tuple[Any, ...], positions: tuple[int, ...]
) -> tuple[tuple[Any, ...], tuple[tuple[int, Any], ...]]:
    """`(args with the static ones blanked, ((position, value), ...))`."""
    if not positions:
        return args, ()
    n = len(args)
    chosen = sorted({i % n for i in positions if -n <= i < n})
    statics = tuple((i, args[i]) for i in chosen)
    return tuple(None if i in chosen else a for i, a in enumerate(args)), statics


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
            functools.partial(call_named, name),
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
    options = RematOptions(prevent_cse, argnums_tuple(static_argnums), policy)

    def build(*args: Any, **kwargs: Any) -> Remat[Any]:
        module = Module.__new__(cls)
        module.module_constructor = constructor
        module.options = options
        module.remat_module = constructor(*args, **kwargs)
        return module

    build.__name__ = f"{cls.__name__}({getattr(constructor, '__name__', 'constructor')})"
    build.__doc__ = getattr(constructor, "__doc__", None)
    return build

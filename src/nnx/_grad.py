"""`nnx.grad` and `nnx.value_and_grad`: gradients with respect to the state a filter
selects (`wrt=nnx.Param` by default), other changes written back."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, Literal, TypeVar, overload

from typing_extensions import ParamSpec

from ._compat import (
    jax_grad,
    jax_value_and_grad,
)
from ._filters import Filter
from ._lift import MSG_EXPECTED_MODULE, Lifted, LiftStatic, StaticBox, enter, leave
from ._module import Module
from ._state import State
from ._variables import Param

__all__ = ["grad", "value_and_grad"]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=Module)
V = TypeVar("V")


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
        static_box: StaticBox,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, Any]:
        static: LiftStatic = static_box.value
        root, call_args, call_kwargs = enter(static, (diff, rest), args, kwargs)
        out = fun(*call_args, **call_kwargs)
        loss, aux = out if has_aux else (out, None)
        changes = leave(root, static, (diff, rest), name) if stateful else None
        return loss, (aux, changes)

    transform = jax_value_and_grad if with_value else jax_grad
    differentiate = transform(inner, has_aux=True, holomorphic=holomorphic, allow_int=allow_int)

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not args or not isinstance(args[0], Module):
            got = type(args[0]).__name__ if args else "no arguments"
            raise TypeError(MSG_EXPECTED_MODULE.format(transform=name, type=got))
        lift = Lifted(args, kwargs, (wrt, ...))
        if lift.static.module_slots != (0,):
            raise TypeError(f"{name}: only the first argument may be a Module")
        diff, rest = lift.traced
        result = differentiate(diff, rest, StaticBox(lift.static), lift.args, lift.kwargs)
        value: Any = None
        if with_value:
            (value, (aux, changes)), grads = result
        else:
            grads, (aux, changes) = result
        lift.write_back(changes)
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

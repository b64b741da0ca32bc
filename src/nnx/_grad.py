"""`nnx.grad` and `nnx.value_and_grad`: gradients with respect to the state a filter
selects (`wrt=nnx.Param` by default), other changes written back."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, Literal, NamedTuple, TypeAlias, TypeVar, overload

from typing_extensions import ParamSpec, TypedDict, Unpack

from ._compat import (
    jax_grad,
    jax_value_and_grad,
)
from ._filters import Filter
from ._lift import MSG_EXPECTED_MODULE, Lifted, LiftStatic, StaticBox, enter, leave
from ._module import Module
from ._state import State
from ._variables import Param

__all__ = ["GradOptions", "grad", "value_and_grad"]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=Module)
V = TypeVar("V")


# ------------------------------------------------------------------------------------
# grad / value_and_grad


def _grad_transform(
    fun: Callable[..., Any],
    wrt: Filter,
    has_aux: bool,
    options: _Resolved,
    *,
    with_value: bool,
    name: str,
) -> Callable[..., Any]:
    stateful = options.stateful

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
    differentiate = transform(
        inner, has_aux=True, holomorphic=options.holomorphic, allow_int=options.allow_int
    )

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


ModuleFn: TypeAlias = Callable[Concatenate[M, P], R]
"""A function of a Module `M` and then `P`, returning `R`."""


class GradOptions(TypedDict, total=False):
    """The keyword options of `nnx.grad` and `nnx.value_and_grad` besides `wrt` and
    `has_aux`."""

    stateful: bool
    """Write the changes `fun` makes to the module back (default True)."""
    holomorphic: bool
    """As in `jax.grad` (default False)."""
    allow_int: bool
    """As in `jax.grad`: allow integer state under `wrt` (default False)."""


class _Resolved(NamedTuple):
    stateful: bool
    holomorphic: bool
    allow_int: bool


def _grad_options(options: GradOptions, who: str) -> _Resolved:
    """The options with their defaults; unknown keywords are a TypeError, as for a
    function that spells its keywords out."""
    unknown = sorted(set(options) - set(_Resolved._fields))
    if unknown:
        raise TypeError(f"{who}() got unexpected keyword argument(s) {unknown}")
    return _Resolved(
        stateful=options.get("stateful", True),
        holomorphic=options.get("holomorphic", False),
        allow_int=options.get("allow_int", False),
    )


# fmt: off
@overload
def grad(fun: ModuleFn[M, P, Any], /, *, has_aux: Literal[False] = False, **options: Unpack[GradOptions]) -> ModuleFn[M, P, State[Param[Any]]]: ...  # noqa: E501
@overload
def grad(fun: ModuleFn[M, P, Any], /, wrt: type[V], *, has_aux: Literal[False] = False, **options: Unpack[GradOptions]) -> ModuleFn[M, P, State[V]]: ...  # noqa: E501
@overload
def grad(fun: ModuleFn[M, P, Any], /, wrt: Filter, *, has_aux: Literal[False] = False, **options: Unpack[GradOptions]) -> ModuleFn[M, P, State[Any]]: ...  # noqa: E501
@overload
def grad(fun: ModuleFn[M, P, tuple[Any, R]], /, *, has_aux: Literal[True], **options: Unpack[GradOptions]) -> ModuleFn[M, P, tuple[State[Param[Any]], R]]: ...  # noqa: E501
@overload
def grad(fun: ModuleFn[M, P, tuple[Any, R]], /, wrt: type[V], *, has_aux: Literal[True], **options: Unpack[GradOptions]) -> ModuleFn[M, P, tuple[State[V], R]]: ...  # noqa: E501
@overload
def grad(fun: ModuleFn[M, P, tuple[Any, R]], /, wrt: Filter, *, has_aux: Literal[True], **options: Unpack[GradOptions]) -> ModuleFn[M, P, tuple[State[Any], R]]: ...  # noqa: E501
# fmt: on
def grad(
    fun: Callable[..., Any],
    /,
    wrt: Filter = Param,
    *,
    has_aux: bool = False,
    **options: Unpack[GradOptions],
) -> Callable[..., Any]:
    """The gradient of `fun(module, *args)` with respect to the module's `wrt` state.

    Returns a State holding exactly the entries `wrt` selects (shared parameters
    appear once, with their summed gradient); `(grads, aux)` with `has_aux`. Changes
    `fun` makes to the module (counters, batch statistics) are written back unless
    `stateful=False`. Integer Variables selected by `wrt` need `allow_int=True`.
    """
    return _grad_transform(
        fun, wrt, has_aux, _grad_options(options, "nnx.grad"), with_value=False, name="nnx.grad"
    )


# fmt: off
@overload
def value_and_grad(fun: ModuleFn[M, P, R], /, *, has_aux: Literal[False] = False, **options: Unpack[GradOptions]) -> ModuleFn[M, P, tuple[R, State[Param[Any]]]]: ...  # noqa: E501
@overload
def value_and_grad(fun: ModuleFn[M, P, R], /, wrt: type[V], *, has_aux: Literal[False] = False, **options: Unpack[GradOptions]) -> ModuleFn[M, P, tuple[R, State[V]]]: ...  # noqa: E501
@overload
def value_and_grad(fun: ModuleFn[M, P, R], /, wrt: Filter, *, has_aux: Literal[False] = False, **options: Unpack[GradOptions]) -> ModuleFn[M, P, tuple[R, State[Any]]]: ...  # noqa: E501
@overload
def value_and_grad(fun: ModuleFn[M, P, R], /, *, has_aux: Literal[True], **options: Unpack[GradOptions]) -> ModuleFn[M, P, tuple[R, State[Param[Any]]]]: ...  # noqa: E501
@overload
def value_and_grad(fun: ModuleFn[M, P, R], /, wrt: type[V], *, has_aux: Literal[True], **options: Unpack[GradOptions]) -> ModuleFn[M, P, tuple[R, State[V]]]: ...  # noqa: E501
@overload
def value_and_grad(fun: ModuleFn[M, P, R], /, wrt: Filter, *, has_aux: Literal[True], **options: Unpack[GradOptions]) -> ModuleFn[M, P, tuple[R, State[Any]]]: ...  # noqa: E501
# fmt: on
def value_and_grad(
    fun: Callable[..., Any],
    /,
    wrt: Filter = Param,
    *,
    has_aux: bool = False,
    **options: Unpack[GradOptions],
) -> Callable[..., Any]:
    """Like `nnx.grad`, returning `(value, grads)` (`((value, aux), grads)` with
    `has_aux`)."""
    return _grad_transform(
        fun,
        wrt,
        has_aux,
        _grad_options(options, "nnx.value_and_grad"),
        with_value=True,
        name="nnx.value_and_grad",
    )

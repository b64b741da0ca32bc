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
    `has_aux` (`**options: Unpack[GradOptions]`): every key is optional, and a key
    not listed here raises `TypeError` when the transform is created:
    `nnx.grad(loss_fn, stateful=False)`.
    """

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

    `nnx.grad(fun)(module, *args, **kwargs)` partitions `module` into the entries
    `wrt` selects and the rest, differentiates `fun` (a scalar loss) with respect to
    the first with `jax.grad`, and returns them as a State: exactly the `wrt` paths,
    each gradient in the same Variable kind as its entry (`grads[path].value`). A
    parameter shared by two submodules appears once, with the summed gradient.

    Changes `fun` makes to the module (counters, batch statistics, new Variables,
    static attributes) are written back unless `stateful=False`. Contexts among the
    arguments (`ctx=`) are split and rebuilt inside. Only the first argument may be
    a Module. The options besides `wrt` and `has_aux` are those of
    `nnx.GradOptions`: `stateful` (default True), `holomorphic` (default False) and
    `allow_int` (default False; integer Variables selected by `wrt` need it), the
    last two as for `jax.grad`.

    Args:
        fun: A function of a Module, then any arguments, returning a scalar (or
            `(scalar, aux)` with `has_aux`).
        wrt: The filter selecting the entries to differentiate with respect to
            (a Variable class, a collection name, `nnx.PathContains(...)`, ...).
            Default `nnx.Param`.
        has_aux: `fun` returns `(loss, aux)`; the gradient function then returns
            `(grads, aux)`.
        **options: `stateful`, `holomorphic`, `allow_int` (see above).

    Returns:
        The gradient function, with `fun`'s parameters: it returns `grads` (a State),
        or `(grads, aux)` with `has_aux`.

    Raises:
        TypeError: If an option is unknown; at a call, if the first argument is not
            a Module, or another argument is a Module.
        ValueError: At a call, if `fun` adds or removes submodules (create them
            outside); the module is then left unchanged.

    Example:
        ```python
        model = nnx.BatchNorm(2, ctx=nnx.context(0))
        x = jnp.arange(8.0).reshape(4, 2)


        def loss_fn(model: nnx.BatchNorm, x: jax.Array) -> tuple[jax.Array, jax.Array]:
            y = model(x, use_running_average=False)  # updates the running statistics
            return jnp.mean(y**2), y


        grads, y = nnx.grad(loss_fn, has_aux=True)(model, x)
        assert set(grads) == {("bias",), ("scale",)}  # wrt=nnx.Param
        assert isinstance(grads[("scale",)], nnx.Param) and y.shape == (4, 2)
        assert float(model.mean.sum()) > 0.0  # written back

        stats_grads = nnx.grad(
            lambda m, x: jnp.mean(m(x, use_running_average=True)), wrt=nnx.BatchStat
        )(model, x)
        assert set(stats_grads) == {("mean",), ("var",)}
        ```
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
    """Like `nnx.grad`, also returning the value of `fun`.

    Everything (`wrt`, the options, what is written back) is as for `nnx.grad`.

    Args:
        fun: A function of a Module, then any arguments, returning a scalar (or
            `(scalar, aux)` with `has_aux`).
        wrt: The filter selecting the entries to differentiate with respect to.
            Default `nnx.Param`.
        has_aux: `fun` returns `(loss, aux)`.
        **options: `stateful`, `holomorphic`, `allow_int`, as for `nnx.grad`.

    Returns:
        A function returning `(value, grads)`, or `((value, aux), grads)` with
        `has_aux`.

    Raises:
        TypeError: As for `nnx.grad`.
        ValueError: As for `nnx.grad`.

    Example:
        ```python
        model = nnx.Linear(2, 1, ctx=nnx.context(0))
        x = jnp.ones((4, 2))
        loss_fn = nnx.value_and_grad(
            lambda m, x: jnp.sum(m(x)), wrt=nnx.PathContains("bias")
        )
        loss, grads = loss_fn(model, x)
        assert loss.shape == () and set(grads) == {("bias",)}
        np.testing.assert_allclose(grads[("bias",)].value, [4.0])
        ```
    """
    return _grad_transform(
        fun,
        wrt,
        has_aux,
        _grad_options(options, "nnx.value_and_grad"),
        with_value=True,
        name="nnx.value_and_grad",
    )

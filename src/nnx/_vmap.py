"""`nnx.vmap`: a lifted `jax.vmap` over a module's mapped (stacked) or broadcast state."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, cast, overload

from typing_extensions import ParamSpec

from ._compat import (
    jax_vmap,
)
from ._context import Context
from ._filters import Filter, FilterT
from ._lift import (
    Lifted,
    SplitContext,
    enter,
    is_tuple,
    leading_sizes,
    leave,
    move_axis,
    refuse_broadcast_changes,
)
from ._module import Module
from ._state import State

__all__ = ["vmap"]

P = ParamSpec("P")
R = TypeVar("R")


_BROADCAST_WHAT: Final = "the same for every example, not in variable_axes"
_BROADCAST_FIX: Final = (
    "Map that state with variable_axes={...: 0}, or return the new values instead."
)

# ------------------------------------------------------------------------------------
# vmap


def _per_arg(in_axes: Any, n: int) -> tuple[Any, ...]:
    return tuple(in_axes) if is_tuple(in_axes) else (in_axes,) * n


def _mapped_size(axes_states: tuple[Any, ...], args: tuple[Any, ...], in_axes: Any) -> int | None:
    sizes: set[int] = set()
    for s in axes_states:
        sizes |= leading_sizes(s, 0)
    for a, axis in zip(args, _per_arg(in_axes, len(args))):
        if isinstance(axis, int):
            sizes |= leading_sizes(a, axis)
    if len(sizes) > 1:
        raise ValueError(f"nnx.vmap: mapped inputs have different sizes {sorted(sizes)}")
    return next(iter(sizes)) if sizes else None


@overload
def vmap(
    fn: Callable[P, R],
    /,
    *,
    in_axes: int | tuple[Any, ...] | None = 0,
    out_axes: Any = 0,
    variable_axes: Mapping[FilterT, int] | None = None,
    split_rngs: Filter = None,
    axis_size: int | None = None,
) -> Callable[P, R]: ...
@overload
def vmap(
    fn: None = None,
    /,
    *,
    in_axes: int | tuple[Any, ...] | None = 0,
    out_axes: Any = 0,
    variable_axes: Mapping[FilterT, int] | None = None,
    split_rngs: Filter = None,
    axis_size: int | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def vmap(
    fn: Callable[P, R] | None = None,
    /,
    *,
    in_axes: int | tuple[Any, ...] | None = 0,
    out_axes: Any = 0,
    variable_axes: Mapping[FilterT, int] | None = None,
    split_rngs: Filter = None,
    axis_size: int | None = None,
) -> Any:
    """A lifted `jax.vmap`: `vmap(f)(module, *args, ctx=None, **kwargs)`.

    Calls `f(member, *args, **kwargs)` once per index of the mapped axis, vectorized.
    The module's `variable_axes` state is mapped: stacked along the given axis, one
    slice per call (an ensemble's parameters); `member` is the module rebuilt with
    one slice. The rest of its state is broadcast (the same for every call) and must
    come back unchanged. Without `variable_axes` the whole module is broadcast over
    the mapped `args`. Changes to the mapped state (and static attributes) are
    written back to `module`. With `ctx=`, the streams `split_rngs` names give each
    call its own key (passed on as `ctx=`); the others are shared. `kwargs` are not
    mapped. Works as a decorator, with or without options.

    Args:
        fn: The function, of a Module first. None: return a decorator.
        in_axes: The mapped axis of `args`: an int or None for all of them, or a
            tuple with one per argument (as for `jax.vmap`). Default 0.
        out_axes: Where the mapped axis goes in the output, as for `jax.vmap`.
        variable_axes: `{filter: axis}`: the state each filter selects is mapped
            along `axis`. Default: none (the module is broadcast).
        split_rngs: The streams of `ctx=` split into one key per call (a name, a
            tuple or list of names, `...`). Default None (all shared).
        axis_size: The size of the mapped axis. Default: from the mapped state and
            `args` (needed when nothing is mapped but streams are split).

    Returns:
        The vectorized function (or a decorator), with `fn`'s signature.

    Raises:
        TypeError: At a call, if the first argument is not a Module.
        ValueError: At a call, if the mapped inputs have different sizes, `f`
            changes broadcast state, or `split_rngs` cannot split (no size, or it
            splits nothing).

    Example:
        ```python
        # An ensemble: 4 Linears built under jax.vmap, their state stacked.
        keys = jax.random.split(jax.random.key(0), 4)
        pure = jax.vmap(lambda k: nnx.Linear(3, 2, ctx=nnx.context(params=k)).partition())(
            keys
        )
        ensemble = pure.merge()
        assert ensemble.kernel.shape == (4, 3, 2)


        @nnx.vmap(in_axes=None, variable_axes={nnx.Param: 0})
        def predict(member: nnx.Linear, x: jax.Array) -> jax.Array:
            return member(x)  # one member, the same x


        assert predict(ensemble, jnp.ones((5, 3))).shape == (4, 5, 2)  # per member

        single = nnx.Linear(3, 2, ctx=nnx.context(0))
        y = nnx.vmap(lambda m, x: m(x))(single, jnp.ones((7, 3)))  # module broadcast
        assert y.shape == (7, 2)
        ```
    """
    axes_map = dict(variable_axes or {})

    def decorate(f: Callable[P, R]) -> Callable[P, R]:
        body = cast("Callable[..., Any]", f)
        filters = (*axes_map, ...)
        axes = tuple(axes_map.values())

        def wrapper(module: Any, *args: Any, ctx: Context | None = None, **kwargs: Any) -> Any:
            if not isinstance(module, Module):
                raise TypeError(f"nnx.vmap expects a Module first, got {type(module).__name__}")
            lift = Lifted((module,), {}, filters)
            states: tuple[State[Any], ...] = lift.traced
            axes_states = tuple(move_axis(s, axis, 0) for s, axis in zip(states[:-1], axes))
            rest_state = states[-1]
            size = axis_size or _mapped_size(axes_states, args, in_axes)
            rngs = SplitContext(ctx, split_rngs, size, "nnx.vmap (axis_size=)")

            def inner(
                axes_states: tuple[Any, ...], rest: Any, args: tuple[Any, ...], step_keys: Any
            ) -> tuple[Any, Any]:
                traced = (*axes_states, rest)
                layer, _, _ = enter(lift.static, traced, lift.args, lift.kwargs)
                out = body(layer, *args, **rngs.add_to(kwargs, step_keys))
                new_states, new_moduledef = leave(layer, lift.static, traced, "nnx.vmap")
                refuse_broadcast_changes(
                    rest, new_states[-1], "nnx.vmap", _BROADCAST_WHAT, _BROADCAST_FIX
                )
                return out, (new_states, new_moduledef)

            args_axes = _per_arg(in_axes, len(args))
            out, (new_states, new_moduledef) = jax_vmap(
                inner,
                in_axes=((0,) * len(axes_states), None, args_axes, 0),
                out_axes=(out_axes, ((*(0,) * len(axes_states), None), None)),
                axis_size=size,
            )(axes_states, rest_state, args, rngs.split_keys)
            updates = [move_axis(s, 0, axis) for s, axis in zip(new_states[:-1], axes)]
            lift.write_back(((*updates, new_states[-1]), new_moduledef))
            return out

        return cast("Callable[P, R]", functools.wraps(f)(wrapper))

    return decorate if fn is None else decorate(fn)

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
from ._filters import Filter
from ._lift import Lifted, SplitContext, enter, is_tuple, leading_sizes, leave, move_axis
from ._module import Module
from ._state import State
from ._variables import is_node_box

__all__ = ["vmap"]

P = ParamSpec("P")
R = TypeVar("R")


MSG_BROADCAST_CHANGED: Final = (
    "nnx.vmap: the function changed {paths}, which is broadcast state (the same for every "
    "example, not in variable_axes), so the change cannot be written back. Map that "
    "state with variable_axes={{...: 0}}, or return the new values instead."
)


def _refuse_broadcast_changes(before: State[Any], after: State[Any]) -> None:
    """Broadcast state comes back from vmap unmapped: it must be what went in."""
    changed = [
        path
        for path, value in after.items()
        if path not in before or _raw(value) is not _raw(before[path])
    ]
    if changed:
        raise ValueError(MSG_BROADCAST_CHANGED.format(paths=changed[:5]))


def _raw(value: Any) -> Any:
    return value.value if is_node_box(value) else value


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
    variable_axes: Mapping[Filter, int] | None = None,
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
    variable_axes: Mapping[Filter, int] | None = None,
    split_rngs: Filter = None,
    axis_size: int | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def vmap(
    fn: Callable[P, R] | None = None,
    /,
    *,
    in_axes: int | tuple[Any, ...] | None = 0,
    out_axes: Any = 0,
    variable_axes: Mapping[Filter, int] | None = None,
    split_rngs: Filter = None,
    axis_size: int | None = None,
) -> Any:
    """A lifted `jax.vmap`: `vmap(f)(module, *args, ctx=None, **kwargs)`.

    The module's `variable_axes` state is mapped (stacked along the given axis, e.g.
    an ensemble's parameters); the rest of its state is broadcast and must come back
    unchanged. `in_axes` maps `args` (an int/None for all, or one per argument).
    With `ctx=`, the streams named by `split_rngs` give each example its own key,
    the others are shared. Changes to the mapped state are written back.
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
                _refuse_broadcast_changes(rest, new_states[-1])
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

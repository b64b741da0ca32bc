"""Pooling over the spatial axes of channels-last inputs: `avg_pool`, `max_pool`,
`min_pool` (as `flax.linen`'s)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["avg_pool", "max_pool", "min_pool"]

_reduce_window: Callable[..., jax.Array] = getattr(jax.lax, "reduce_window")  # noqa: B009

Padding = str | Sequence[tuple[int, int]]


def _pool(
    x: jax.Array,
    init: Any,
    op: Callable[[Any, Any], Any],
    window_shape: Sequence[int],
    strides: Sequence[int] | None,
    padding: Padding,
) -> jax.Array:
    n = len(window_shape)
    if x.ndim < n + 1:
        raise ValueError(
            f"pooling a window of {n} axes needs inputs of shape (batch..., {n} spatial "
            f"axes, features), got shape {x.shape}"
        )
    lead = x.ndim - n - 1  # batch axes in front, the features last
    strides = tuple(strides) if strides is not None else (1,) * n
    if len(strides) != n:
        raise ValueError(f"strides {strides} must have one entry per window axis ({n})")
    dims = (1,) * lead + tuple(window_shape) + (1,)
    steps = (1,) * lead + strides + (1,)
    pads: Any = padding
    if not isinstance(padding, str):
        pads = ((0, 0),) * lead + tuple(tuple(p) for p in padding) + ((0, 0),)
    return _reduce_window(x, init, op, dims, steps, pads)


def max_pool(
    x: jax.Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> jax.Array:
    """The maximum over each window of the spatial axes.

    Args:
        x: Channels last: `(batch..., *spatial, features)`.
        window_shape: The window's size along each spatial axis.
        strides: The step along each spatial axis. Default 1.
        padding: `"VALID"`, `"SAME"`, or a `(low, high)` pair per spatial axis.

    Returns:
        The pooled array.

    Example:
        ```python
        x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        y = nnx.max_pool(x, (2, 2), strides=(2, 2))
        assert y.shape == (1, 2, 2, 1) and float(y[0, 1, 1, 0]) == 15.0
        ```
    """
    return _pool(x, -jnp.inf, jax.lax.max, window_shape, strides, padding)


def min_pool(
    x: jax.Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> jax.Array:
    """The minimum over each window of the spatial axes (arguments as `max_pool`).

    Example:
        ```python
        x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        assert float(nnx.min_pool(x, (2, 2), strides=(2, 2))[0, 1, 1, 0]) == 10.0
        ```
    """
    return _pool(x, jnp.inf, jax.lax.min, window_shape, strides, padding)


def avg_pool(
    x: jax.Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> jax.Array:
    """The mean over each window of the spatial axes (padding counts as zeros, as in
    `flax.linen.avg_pool`; arguments as `max_pool`).

    Example:
        ```python
        x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        assert float(nnx.avg_pool(x, (2, 2), strides=(2, 2))[0, 0, 0, 0]) == 2.5
        ```
    """
    total = _pool(x, 0.0, jax.lax.add, window_shape, strides, padding)
    return total / math.prod(window_shape)

"""Normalization layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Shaped

from .._context import Context
from .._module import Module
from .._variables import BatchStat, Param
from . import initializers
from ._common import positive, reshape, resolve_flag
from ._dtypes import canonicalize_dtype

__all__ = ["BatchNorm", "GroupNorm", "LayerNorm", "RMSNorm"]


_default_bias_init = initializers.zeros()
_default_scale_init = initializers.ones()


def _optional_param(
    use: bool,
    init: initializers.Initializer,
    ctx: Context,
    shape: tuple[int, ...],
    dtype: Any,
) -> Param[Any]:
    """`Param(init(key, shape, dtype))`, or `Param(None)` (still a state entry) if unused."""
    return Param(init(ctx.make_rng("params"), shape, dtype) if use else None)


def _feature_shape(ndim: int, axis: int, size: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[axis % ndim] = size
    return tuple(shape)


class BatchNorm(Module):
    """Batch normalization over every axis but `axis` (the feature axis).

    Training (`use_running_average=False`) normalizes with the batch statistics and
    updates `mean`/`var` (BatchStat) as `m * old + (1 - m) * batch`; evaluation uses the
    stored statistics. The mode is the first of: the call argument, the attribute,
    the Context flag `use_running_average`.
    """

    mean: BatchStat[Float[Array, " num_features"]]
    var: BatchStat[Float[Array, " num_features"]]
    scale: Param[Shaped[Array, " num_features"] | None]
    bias: Param[Shaped[Array, " num_features"] | None]
    num_features: int

    def __init__(
        self,
        num_features: int,
        *,
        use_running_average: bool | None = None,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-5,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: initializers.Initializer = _default_bias_init,
        scale_init: initializers.Initializer = _default_scale_init,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        ctx: Context,
    ) -> None:
        feature_shape = (positive("BatchNorm", "num_features", num_features),)
        self.mean = BatchStat(jnp.zeros(feature_shape, jnp.float32))
        self.var = BatchStat(jnp.ones(feature_shape, jnp.float32))
        self.scale = _optional_param(use_scale, scale_init, ctx, feature_shape, param_dtype)
        self.bias = _optional_param(use_bias, bias_init, ctx, feature_shape, param_dtype)
        self.num_features = num_features
        self.use_running_average = use_running_average
        self.axis = axis
        self.momentum = momentum
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.use_bias = use_bias
        self.use_scale = use_scale
        self.axis_name = axis_name
        self.axis_index_groups = axis_index_groups

    def __call__(
        self, x: jax.Array, use_running_average: bool | None = None, *, ctx: Context | None = None
    ) -> jax.Array:
        use_running_average = resolve_flag(
            "BatchNorm",
            "use_running_average",
            "use the running statistics",
            use_running_average,
            self.use_running_average,
            ctx,
        )
        x = jnp.asarray(x)
        axis = self.axis % x.ndim
        reduction_axes = tuple(i for i in range(x.ndim) if i != axis)
        stat_shape = _feature_shape(x.ndim, axis, self.num_features)
        if use_running_average:
            mean, var = self.mean, self.var
        else:
            stat_dtype = jnp.promote_types(x.dtype, jnp.float32)
            xs = x.astype(stat_dtype)
            mean = jnp.mean(xs, reduction_axes)
            mean2 = jnp.mean(lax.square(xs), reduction_axes)
            if self.axis_name is not None:
                pmean = cast(Callable[..., tuple[jax.Array, jax.Array]], lax.pmean)  # pyright: ignore[reportUnknownMemberType]
                mean, mean2 = pmean(
                    (mean, mean2), self.axis_name, axis_index_groups=self.axis_index_groups
                )
            var = jnp.maximum(0.0, mean2 - lax.square(mean))
            m = self.momentum
            self.mean = m * self.mean + (1 - m) * mean
            self.var = m * self.var + (1 - m) * var
        dtype = canonicalize_dtype(x, self.scale, self.bias, dtype=self.dtype)
        y = (x - reshape(mean, stat_shape)) * lax.rsqrt(reshape(var, stat_shape) + self.epsilon)
        if self.scale is not None:
            y = y * reshape(self.scale, stat_shape)
        if self.bias is not None:
            y = y + reshape(self.bias, stat_shape)
        return jnp.asarray(y, dtype)


def _normalize(
    x: jax.Array,
    axes: tuple[int, ...],
    epsilon: float,
    *,
    center: bool = True,
) -> jax.Array:
    """`(x - mean) * rsqrt(var + epsilon)` over `axes` (float32 or wider statistics)."""
    xs = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean2 = jnp.mean(lax.square(xs), axes, keepdims=True)
    if not center:
        return xs * lax.rsqrt(mean2 + epsilon)
    mean = jnp.mean(xs, axes, keepdims=True)
    var = jnp.maximum(0.0, mean2 - lax.square(mean))
    return (xs - mean) * lax.rsqrt(var + epsilon)


class LayerNorm(Module):
    """Normalize each example over its last axis, then scale and shift."""

    scale: Param[Shaped[Array, " num_features"] | None]
    bias: Param[Shaped[Array, " num_features"] | None]
    num_features: int

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: initializers.Initializer = _default_bias_init,
        scale_init: initializers.Initializer = _default_scale_init,
        reduction_axes: int | tuple[int, ...] = -1,
        feature_axes: int = -1,
        ctx: Context,
    ) -> None:
        shape = (positive("LayerNorm", "num_features", num_features),)
        self.scale = _optional_param(use_scale, scale_init, ctx, shape, param_dtype)
        self.bias = _optional_param(use_bias, bias_init, ctx, shape, param_dtype)
        self.num_features = num_features
        self.epsilon = epsilon
        self.dtype = dtype
        self.reduction_axes = (
            (reduction_axes,) if isinstance(reduction_axes, int) else tuple(reduction_axes)
        )
        self.feature_axes = feature_axes

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        y = _normalize(x, self.reduction_axes, self.epsilon)
        feature_shape = _feature_shape(x.ndim, self.feature_axes, self.num_features)
        if self.scale is not None:
            y = y * reshape(self.scale, feature_shape)
        if self.bias is not None:
            y = y + reshape(self.bias, feature_shape)
        return jnp.asarray(y, canonicalize_dtype(x, self.scale, self.bias, dtype=self.dtype))


class RMSNorm(Module):
    """Scale each example by the inverse root mean square of its last axis."""

    scale: Param[Shaped[Array, " num_features"] | None]
    num_features: int

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        use_scale: bool = True,
        scale_init: initializers.Initializer = _default_scale_init,
        ctx: Context,
    ) -> None:
        shape = (positive("RMSNorm", "num_features", num_features),)
        self.scale = _optional_param(use_scale, scale_init, ctx, shape, param_dtype)
        self.num_features = num_features
        self.epsilon = epsilon
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        y = _normalize(jnp.asarray(x), (-1,), self.epsilon, center=False)
        if self.scale is not None:
            y = y * self.scale
        return jnp.asarray(y, canonicalize_dtype(x, self.scale, dtype=self.dtype))


class GroupNorm(Module):
    """Normalize groups of channels (channels last) over all non-batch axes."""

    scale: Param[Shaped[Array, " num_features"] | None]
    bias: Param[Shaped[Array, " num_features"] | None]
    num_features: int

    def __init__(
        self,
        num_features: int,
        *,
        num_groups: int = 32,
        epsilon: float = 1e-6,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: initializers.Initializer = _default_bias_init,
        scale_init: initializers.Initializer = _default_scale_init,
        ctx: Context,
    ) -> None:
        positive("GroupNorm", "num_features", num_features)
        positive("GroupNorm", "num_groups", num_groups)
        if num_features % num_groups != 0:
            raise ValueError(
                f"GroupNorm: num_features ({num_features}) must be divisible by "
                f"num_groups ({num_groups})"
            )
        shape = (num_features,)
        self.scale = _optional_param(use_scale, scale_init, ctx, shape, param_dtype)
        self.bias = _optional_param(use_bias, bias_init, ctx, shape, param_dtype)
        self.num_features = num_features
        self.num_groups = num_groups
        self.epsilon = epsilon
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        grouped = reshape(x, (*x.shape[:-1], self.num_groups, self.num_features // self.num_groups))
        axes = (*range(1, grouped.ndim - 2), grouped.ndim - 1)
        y = reshape(_normalize(grouped, axes, self.epsilon), x.shape)
        if self.scale is not None:
            y = y * self.scale
        if self.bias is not None:
            y = y + self.bias
        return jnp.asarray(y, canonicalize_dtype(x, self.scale, self.bias, dtype=self.dtype))

"""Normalization layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Shaped

from .._call_checks import check_axis_size
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

    `y = (x - mean) / sqrt(var + epsilon) * scale + bias`, per feature. Training
    (`use_running_average=False`) normalizes with the batch statistics (mean and
    biased variance over all other axes, in float32 or wider) and updates `mean`/`var`
    (BatchStat, float32) as `momentum * old + (1 - momentum) * batch`; evaluation
    (`use_running_average=True`) uses the stored statistics and changes nothing. The
    mode is the first non-None of: the call argument, the attribute, the Context flag
    `use_running_average`. `mean` starts at zeros, `var` at ones.

    Args:
        num_features: Size of the feature axis (> 0).
        use_running_average: The default mode (see above). Default None: decided
            per call.
        axis: The feature axis. Default -1 (channels last).
        momentum: Decay of the running statistics. Default 0.99.
        epsilon: Added to the variance. Default 1e-5.
        dtype: The output dtype. Default: promoted from the input, scale and bias
            (at least float32 for integer input).
        param_dtype: The dtype of `scale` and `bias`. Default float32.
        use_bias: Whether to add a `bias` Param (else `Param(None)`). Default True.
        use_scale: Whether to multiply by a `scale` Param (else `Param(None)`).
            Default True.
        bias_init: Initializer of `bias`. Default `nnx.initializers.zeros()`.
        scale_init: Initializer of `scale`. Default `nnx.initializers.ones()`.
        axis_name: A mapped axis (`jax.vmap(..., axis_name=...)`, `pmap`) to average the
            batch statistics over with `jax.lax.pmean`. Default: none.
        axis_index_groups: Groups of that axis to average within (see `pmean`).
        ctx: The Context to draw `scale` and `bias` keys from (stream `"params"`).

    Raises:
        ValueError: If `num_features` is not a positive int.

    Example:
        ```python
        bn = nnx.BatchNorm(3, ctx=nnx.context(0))
        x = jnp.arange(12.0).reshape(4, 3)
        y = bn(x, use_running_average=False)  # training: batch statistics
        assert jnp.allclose(y.mean(axis=0), 0.0, atol=1e-6)
        assert jnp.allclose(bn.mean, 0.01 * x.mean(axis=0))  # momentum 0.99
        frozen = bn.filter(nnx.BatchStat)
        eval_ctx = nnx.context(flags=dict(use_running_average=True))
        bn(x, ctx=eval_ctx)  # evaluation: stored statistics, no update
        assert bn.filter(nnx.BatchStat) == frozen
        ```
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
        """Normalize `x`; in training mode, also update `mean` and `var`.

        Args:
            x: An array whose `axis` has size `num_features`.
            use_running_average: True to use the stored statistics, False to use
                (and fold in) the batch's. Default: the attribute, then the flag.
            ctx: A Context whose flag `use_running_average` decides when neither the
                argument nor the attribute does.

        Returns:
            The normalized array, of `x`'s shape.

        Raises:
            ValueError: If no mode is given anywhere.
        """
        use_running_average = resolve_flag(
            "BatchNorm",
            "use_running_average",
            "use the running statistics",
            use_running_average,
            self.use_running_average,
            ctx,
        )
        x = jnp.asarray(x)
        check_axis_size(self, "__call__", "x", x, self.axis, "num_features")
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
    """Normalize each example over its last axis, then scale and shift.

    `y = (x - mean) / sqrt(var + epsilon) * scale + bias`, with the mean and biased
    variance of each example taken over `reduction_axes` (in float32 or wider). No
    running statistics: training and evaluation are the same.

    Args:
        num_features: Size of the feature axis (> 0), the shape of `scale` and
            `bias`.
        epsilon: Added to the variance. Default 1e-6.
        dtype: The output dtype. Default: promoted from the input, scale and bias.
        param_dtype: The dtype of `scale` and `bias`. Default float32.
        use_bias: Whether to add a `bias` Param (else `Param(None)`). Default True.
        use_scale: Whether to multiply by a `scale` Param (else `Param(None)`).
            Default True.
        bias_init: Initializer of `bias`. Default `nnx.initializers.zeros()`.
        scale_init: Initializer of `scale`. Default `nnx.initializers.ones()`.
        reduction_axes: The axis or axes the statistics are taken over. Default -1.
        feature_axes: The axis `scale` and `bias` apply along. Default -1.
        ctx: The Context to draw `scale` and `bias` keys from (stream `"params"`).

    Raises:
        ValueError: If `num_features` is not a positive int.

    Example:
        ```python
        ln = nnx.LayerNorm(4, ctx=nnx.context(0))
        x = jnp.arange(8.0).reshape(2, 4)
        y = ln(x)
        assert y.shape == (2, 4)
        assert jnp.allclose(y.mean(axis=-1), 0.0, atol=1e-6)
        assert jnp.allclose(y.std(axis=-1), 1.0, atol=1e-4)
        ```
    """

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
        """Normalize `x` over `reduction_axes`, then scale and shift.

        Args:
            x: An array whose `feature_axes` axis has size `num_features`.

        Returns:
            The normalized array, of `x`'s shape.
        """
        x = jnp.asarray(x)
        check_axis_size(self, "__call__", "x", x, self.feature_axes, "num_features")
        y = _normalize(x, self.reduction_axes, self.epsilon)
        feature_shape = _feature_shape(x.ndim, self.feature_axes, self.num_features)
        if self.scale is not None:
            y = y * reshape(self.scale, feature_shape)
        if self.bias is not None:
            y = y + reshape(self.bias, feature_shape)
        return jnp.asarray(y, canonicalize_dtype(x, self.scale, self.bias, dtype=self.dtype))


class RMSNorm(Module):
    """Scale each example by the inverse root mean square of its last axis.

    `y = x / sqrt(mean(x**2) + epsilon) * scale`, the mean over the last axis (in
    float32 or wider); no centering and no bias.

    Args:
        num_features: Size of the last axis (> 0), the shape of `scale`.
        epsilon: Added to the mean square. Default 1e-6.
        dtype: The output dtype. Default: promoted from the input and scale.
        param_dtype: The dtype of `scale`. Default float32.
        use_scale: Whether to multiply by a `scale` Param (else `Param(None)`).
            Default True.
        scale_init: Initializer of `scale`. Default `nnx.initializers.ones()`.
        ctx: The Context to draw the `scale` key from (stream `"params"`).

    Raises:
        ValueError: If `num_features` is not a positive int.

    Example:
        ```python
        rms = nnx.RMSNorm(3, ctx=nnx.context(0))
        y = rms(jnp.array([[1.0, 2.0, 3.0]]))
        assert jnp.allclose(jnp.sqrt(jnp.mean(y**2, axis=-1)), 1.0, atol=1e-5)
        ```
    """

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

    def __call__(
        self, x: Shaped[Array, "*batch num_features"]
    ) -> Shaped[Array, "*batch num_features"]:
        """Scale `x` by the inverse root mean square of its last axis, then by `scale`.

        Args:
            x: An array of shape `(..., num_features)`.

        Returns:
            The normalized array, of `x`'s shape.
        """
        y = _normalize(jnp.asarray(x), (-1,), self.epsilon, center=False)
        if self.scale is not None:
            y = y * self.scale
        return jnp.asarray(y, canonicalize_dtype(x, self.scale, dtype=self.dtype))


class GroupNorm(Module):
    """Normalize groups of channels (channels last) over all non-batch axes.

    The last axis (`num_features` channels) is split into `num_groups` groups of
    consecutive channels; each group is normalized with the mean and biased variance
    over the group's channels and every axis but the first (the batch axis), then
    `scale` and `bias` apply per channel.

    Args:
        num_features: Number of channels (> 0), divisible by `num_groups`.
        num_groups: Number of groups (> 0). Default 32.
        epsilon: Added to the variance. Default 1e-6.
        dtype: The output dtype. Default: promoted from the input, scale and bias.
        param_dtype: The dtype of `scale` and `bias`. Default float32.
        use_bias: Whether to add a `bias` Param (else `Param(None)`). Default True.
        use_scale: Whether to multiply by a `scale` Param (else `Param(None)`).
            Default True.
        bias_init: Initializer of `bias`. Default `nnx.initializers.zeros()`.
        scale_init: Initializer of `scale`. Default `nnx.initializers.ones()`.
        ctx: The Context to draw `scale` and `bias` keys from (stream `"params"`).

    Raises:
        ValueError: If a size is not a positive int or `num_features` is not divisible
            by `num_groups`.

    Example:
        ```python
        gn = nnx.GroupNorm(4, num_groups=2, ctx=nnx.context(0))
        x = jnp.arange(24.0).reshape(2, 3, 4)  # (batch, length, channels)
        y = gn(x)
        groups = y.reshape(2, 3, 2, 2)  # (batch, length, group, channel in group)
        assert jnp.allclose(groups.mean(axis=(1, 3)), 0.0, atol=1e-5)
        ```
    """

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

    def __call__(
        self, x: Shaped[Array, "*batch num_features"]
    ) -> Shaped[Array, "*batch num_features"]:
        """Normalize each group of channels of `x`, then scale and shift.

        Args:
            x: An array of shape `(batch, ..., num_features)`.

        Returns:
            The normalized array, of `x`'s shape.
        """
        x = jnp.asarray(x)
        grouped = reshape(x, (*x.shape[:-1], self.num_groups, self.num_features // self.num_groups))
        axes = (*range(1, grouped.ndim - 2), grouped.ndim - 1)
        y = reshape(_normalize(grouped, axes, self.epsilon), x.shape)
        if self.scale is not None:
            y = y * self.scale
        if self.bias is not None:
            y = y + self.bias
        return jnp.asarray(y, canonicalize_dtype(x, self.scale, self.bias, dtype=self.dtype))


class InstanceNorm(GroupNorm):
    """Normalize each example's channels over its spatial axes (channels last).

    For `x` of shape `(batch, *spatial, num_features)`, each example and channel is
    normalized over the spatial axes, then scaled and shifted per channel (as
    `flax.nnx.InstanceNorm`): a `GroupNorm` with one channel per group.

    Args:
        num_features: The number of channels (> 0), the shape of `scale` and `bias`.
        epsilon: Added to the variance. Default 1e-6.
        dtype: The output dtype. Default: promoted from the input and parameters.
        param_dtype: The parameters' dtype. Default float32.
        use_bias: Whether to add `bias`. Default True.
        use_scale: Whether to multiply by `scale`. Default True.
        bias_init: Initializer of `bias`. Default zeros.
        scale_init: Initializer of `scale`. Default ones.
        ctx: The Context to draw `scale` and `bias` keys from.

    Example:
        ```python
        norm = nnx.InstanceNorm(3, ctx=nnx.context(0))
        y = norm(jax.random.normal(jax.random.key(0), (2, 8, 8, 3)))
        assert jnp.allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
        assert jnp.allclose(y.std(axis=(1, 2)), 1.0, atol=1e-3)
        ```
    """

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
        ctx: Context,
    ) -> None:
        positive("InstanceNorm", "num_features", num_features)
        super().__init__(
            num_features,
            num_groups=num_features,
            epsilon=epsilon,
            dtype=dtype,
            param_dtype=param_dtype,
            use_bias=use_bias,
            use_scale=use_scale,
            bias_init=bias_init,
            scale_init=scale_init,
            ctx=ctx,
        )

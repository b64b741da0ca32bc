"""Convolution."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Shaped

from .._context import Context
from .._module import Module
from .._variables import Param
from . import initializers
from ._common import positive, reshape
from ._dtypes import promote_dtype

__all__ = ["Conv"]

_SPATIAL: Final = "HWDEFGJKL"
_conv: Callable[..., jax.Array] = getattr(lax, "conv_general_dilated")  # noqa: B009
_pad: Callable[..., jax.Array] = getattr(jnp, "pad")  # noqa: B009

PaddingLike = str | int | Sequence[int | tuple[int, int]]


def _tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (positive("Conv", name, value),) * n
    out = tuple(positive("Conv", name, v) for v in value)
    if len(out) != n:
        raise ValueError(f"Conv: {name} needs {n} values, got {out}")
    return out


class Conv(Module):
    """An n-D convolution over channels-last inputs (`(batch..., *spatial, features)`).

    `kernel` is `(*kernel_size, in_features // feature_group_count, out_features)`.
    `padding`: "SAME", "VALID", "CIRCULAR", "CAUSAL" (1-D only), an int, or one int or
    (low, high) pair per spatial dimension. Inputs without a batch axis are accepted.
    """

    kernel: Param[Shaped[Array, "*kernel_size in_per_group out_features"]]
    bias: Param[Shaped[Array, " out_features"] | None]
    kernel_size: tuple[int, ...]
    in_per_group: int
    out_features: int

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        padding: PaddingLike = "SAME",
        input_dilation: int | Sequence[int] = 1,
        kernel_dilation: int | Sequence[int] = 1,
        feature_group_count: int = 1,
        use_bias: bool = True,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        precision: lax.PrecisionLike = None,
        kernel_init: initializers.Initializer = initializers.lecun_normal(),  # noqa: B008
        bias_init: initializers.Initializer = initializers.zeros(),  # noqa: B008
        ctx: Context,
    ) -> None:
        if isinstance(kernel_size, int):
            raise TypeError(
                "Expected Conv kernel_size to be a tuple/list of integers (eg.: [3, 3]) "
                f"but got {kernel_size}."
            )
        positive("Conv", "in_features", in_features)
        positive("Conv", "out_features", out_features)
        positive("Conv", "feature_group_count", feature_group_count)
        for which, features in (("in_features", in_features), ("out_features", out_features)):
            if features % feature_group_count != 0:
                raise ValueError(
                    f"Conv: {which} ({features}) must be divisible by "
                    f"feature_group_count ({feature_group_count})"
                )
        kernel_size = tuple(positive("Conv", "kernel_size", k) for k in kernel_size)
        if not kernel_size:
            raise ValueError("Conv: kernel_size needs at least one spatial dimension, got ()")
        n = len(kernel_size)
        shape = (*kernel_size, in_features // feature_group_count, out_features)
        self.kernel = Param(kernel_init(ctx.make_rng("params"), shape, param_dtype))
        self.bias = Param(
            bias_init(ctx.make_rng("params"), (out_features,), param_dtype) if use_bias else None
        )
        self.in_features = in_features
        self.in_per_group = in_features // feature_group_count
        self.out_features = out_features
        self.kernel_size = kernel_size
        self.strides = _tuple(strides, n, "strides")
        self.padding = padding if isinstance(padding, (str, int)) else tuple(padding)
        self.input_dilation = _tuple(input_dilation, n, "input_dilation")
        self.kernel_dilation = _tuple(kernel_dilation, n, "kernel_dilation")
        self.feature_group_count = feature_group_count
        self.dtype = dtype
        self.precision = precision

    def _padding(self, x: jax.Array) -> tuple[jax.Array, str | list[tuple[int, int]]]:
        n = len(self.kernel_size)
        padding = self.padding
        if isinstance(padding, int):
            return x, [(padding, padding)] * n
        if isinstance(padding, str):
            mode = padding.upper()
            if mode in ("SAME", "VALID"):
                return x, mode
            sizes = [(k - 1) * d for k, d in zip(self.kernel_size, self.kernel_dilation)]
            if mode == "CIRCULAR":
                pads = [(0, 0)] + [(s // 2, s - s // 2) for s in sizes] + [(0, 0)]
                return _pad(x, pads, mode="wrap"), "VALID"
            if mode == "CAUSAL":
                if n != 1:
                    raise ValueError("Conv: CAUSAL padding is only defined for 1-D convolutions")
                return _pad(x, [(0, 0), (sizes[0], 0), (0, 0)]), "VALID"
            raise ValueError(f"Invalid padding format: {padding!r}")
        pairs: list[tuple[int, int]] = []
        for p in padding:
            if isinstance(p, int):
                pairs.append((p, p))
            elif len(p) == 2:
                pairs.append((int(p[0]), int(p[1])))
            else:
                raise ValueError(f"Invalid padding format: {padding!r} (pairs are (low, high))")
        if len(pairs) != n:
            raise ValueError(f"Invalid padding format: {padding!r} (need {n} entries)")
        return x, pairs

    def __call__(self, inputs: jax.Array) -> jax.Array:
        n = len(self.kernel_size)
        x = jnp.asarray(inputs)
        batch_shape = x.shape[: x.ndim - n - 1]
        x = reshape(x, (-1, *x.shape[x.ndim - n - 1 :]))  # one batch axis (added if absent)
        x, kernel, bias = promote_dtype(x, self.kernel, self.bias, dtype=self.dtype)
        x, padding = self._padding(x)
        spatial = _SPATIAL[:n]
        y = _conv(
            x,
            kernel,
            self.strides,
            padding,
            lhs_dilation=self.input_dilation,
            rhs_dilation=self.kernel_dilation,
            dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
            feature_group_count=self.feature_group_count,
            precision=self.precision,
        )
        if bias is not None:
            y = y + cast(jax.Array, bias)
        return reshape(y, (*batch_shape, *y.shape[1:]))

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

    The number of spatial dimensions is `len(kernel_size)`. `kernel` is a
    `(*kernel_size, in_features // feature_group_count, out_features)` Param, `bias`
    an `(out_features,)` one (or `Param(None)`); keys come from
    `ctx.make_rng("params")`, kernel first. Inputs may have any number of batch
    axes, none included.

    Args:
        in_features: Number of input channels (> 0).
        out_features: Number of output channels (> 0).
        kernel_size: The window size, one int per spatial dimension (a bare int is
            refused).
        strides: The stride, one int for all spatial dimensions or one per dimension.
            Default 1.
        padding: "SAME" (default), "VALID", "CIRCULAR" (wrap around), "CAUSAL"
            (1-D only: pad on the left), an int for every side, or one int or
            `(low, high)` pair per spatial dimension. Strings are case-insensitive.
        input_dilation: Dilation of the input (transposed-convolution style), an int
            or one per dimension. Default 1.
        kernel_dilation: Dilation of the kernel (atrous convolution), an int or one
            per dimension. Default 1.
        feature_group_count: Number of channel groups; `in_features` and
            `out_features` must be divisible by it. Default 1.
        use_bias: Whether to add a bias. Default True.
        dtype: The computation dtype. Default: promoted from inputs and parameters.
        param_dtype: The dtype of the parameters. Default float32.
        precision: The `jax.lax` precision of the convolution.
        kernel_init: Initializer of the kernel. Default
            `nnx.initializers.lecun_normal()`.
        bias_init: Initializer of the bias. Default `nnx.initializers.zeros()`.
        ctx: The Context to draw parameter keys from (stream `"params"`).

    Raises:
        TypeError: If `kernel_size` is an int.
        ValueError: If a size, stride or dilation is not a positive int, the number of
            per-dimension values is wrong, or a feature count is not divisible by
            `feature_group_count`. A bad `padding` raises ValueError when called.

    Example:
        ```python
        conv = nnx.Conv(3, 8, kernel_size=(3, 3), ctx=nnx.context(0))
        assert conv.kernel.shape == (3, 3, 3, 8)
        assert conv(jnp.ones((2, 5, 5, 3))).shape == (2, 5, 5, 8)  # SAME padding
        assert conv(jnp.ones((5, 5, 3))).shape == (5, 5, 8)  # no batch axis
        causal = nnx.Conv(2, 2, (3,), strides=2, padding="CAUSAL", ctx=nnx.context(0))
        assert causal(jnp.ones((1, 10, 2))).shape == (1, 5, 2)
        ```
    """

    kernel: Param[Shaped[Array, "*kernel_size in_per_group out_features"]]
    bias: Param[Shaped[Array, " out_features"] | None]
    kernel_size: tuple[int, ...]
    in_features: int
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

    def __call__(
        self, inputs: Shaped[Array, "... in_features"]
    ) -> Shaped[Array, "... out_features"]:
        """Convolve `inputs`.

        Args:
            inputs: An array of shape `(batch..., *spatial, in_features)`, with any
                number of batch axes (none included).

        Returns:
            An array of shape `(batch..., *out_spatial, out_features)`.

        Raises:
            ValueError: If `padding` is not a valid padding, or "CAUSAL" is used with
                more than one spatial dimension.
        """
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

"""General linear maps: `nnx.Einsum` (a kernel contracted by an einsum string),
`nnx.LinearGeneral` (several input and output axes) and `nnx.ConvTranspose`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Shaped

from .._context import Context
from .._errors import ShapeCheckError
from .._module import Module
from .._variables import Param
from . import initializers
from ._common import positive
from ._dtypes import promote_dtype

__all__ = ["ConvTranspose", "Einsum", "LinearGeneral"]

# jax types these with parameters pyright strict calls partially unknown
_einsum: Callable[..., jax.Array] = getattr(jnp, "einsum")  # noqa: B009
_dot_general: Callable[..., jax.Array] = getattr(lax, "dot_general")  # noqa: B009

_default_kernel_init = initializers.lecun_normal()
_default_bias_init = initializers.zeros()


def _sizes(layer: str, name: str, value: int | Sequence[int]) -> tuple[int, ...]:
    values = (value,) if isinstance(value, int) else tuple(value)
    if not values:
        raise ValueError(f"{layer}: {name} needs at least one size, got ()")
    return tuple(positive(layer, name, v) for v in values)


class Einsum(Module):
    """`jnp.einsum(einsum_str, x, kernel) (+ bias)`: a kernel of any shape contracted with
    the input as the einsum string says (`"...d,dhk->...hk"` projects to heads).

    Args:
        einsum_str: Two operands (input, kernel) and a result, e.g. `"bd,dk->bk"`.
        kernel_shape: The kernel's shape.
        bias_shape: The bias's shape (broadcast against the result), or None for no
            bias (then `bias` holds `Param(None)`, as `Linear(use_bias=False)`).
        param_dtype: The parameters' dtype. Default float32.
        kernel_init: Initializer of `kernel`. Default LeCun normal.
        bias_init: Initializer of `bias`. Default zeros.
        ctx: The Context to draw the parameters' keys from (stream `"params"`).

    Raises:
        ValueError: If `einsum_str` does not have two operands.

    Example:
        ```python
        layer = nnx.Einsum("...d,dhk->...hk", (8, 2, 4), (2, 4), ctx=nnx.context(0))
        y = layer(jnp.ones((3, 8)))
        assert y.shape == (3, 2, 4)
        assert jnp.allclose(y, jnp.einsum("...d,dhk->...hk", jnp.ones((3, 8)), layer.kernel))
        ```
    """

    kernel: Param[Shaped[Array, "*kernel_shape"]]
    bias: Param[Shaped[Array, "*bias_shape"] | None]

    def __init__(
        self,
        einsum_str: str,
        kernel_shape: Sequence[int],
        bias_shape: Sequence[int] | None = None,
        *,
        param_dtype: Any = jnp.float32,
        kernel_init: initializers.Initializer = _default_kernel_init,
        bias_init: initializers.Initializer = _default_bias_init,
        ctx: Context,
    ) -> None:
        operands = einsum_str.replace(" ", "").split("->")[0].split(",")
        if len(operands) != 2:
            raise ValueError(
                f"Einsum: einsum_str must have two operands (input, kernel), got {einsum_str!r}"
            )
        self.einsum_str = einsum_str.replace(" ", "")
        self.kernel = Param(kernel_init(ctx.make_rng("params"), tuple(kernel_shape), param_dtype))
        bias = None
        if bias_shape is not None:
            bias = bias_init(ctx.make_rng("params"), tuple(bias_shape), param_dtype)
        self.bias = Param(bias)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """`jnp.einsum(einsum_str, inputs, kernel)`, plus `bias` if there is one."""
        inputs, kernel, bias = promote_dtype(inputs, self.kernel, self.bias)
        y = _einsum(self.einsum_str, inputs, kernel)
        return y if bias is None else y + bias


class LinearGeneral(Module):
    """A linear map from several trailing (or chosen) input axes to several output axes:
    the kernel has shape `(*in_features, *out_features)`.

    Args:
        in_features: The sizes of the contracted input axes (an int for one).
        out_features: The sizes of the output axes (an int for one).
        axis: The input axes contracted, in the order of `in_features`. Default: the
            last `len(in_features)` axes.
        use_bias: Whether to add a bias of shape `out_features`. Default True.
        param_dtype: The parameters' dtype. Default float32.
        kernel_init: Initializer of `kernel`. Default LeCun normal.
        bias_init: Initializer of `bias`. Default zeros.
        ctx: The Context to draw the parameters' keys from.

    Example:
        ```python
        layer = nnx.LinearGeneral((2, 4), (3, 5), ctx=nnx.context(0))
        x = jnp.ones((7, 2, 4))
        y = layer(x)
        assert y.shape == (7, 3, 5)
        assert jnp.allclose(y, jnp.einsum("bij,ijkl->bkl", x, layer.kernel) + layer.bias)
        ```
    """

    kernel: Param[Shaped[Array, "*kernel_shape"]]
    bias: Param[Shaped[Array, "*bias_shape"] | None]

    def __init__(
        self,
        in_features: int | Sequence[int],
        out_features: int | Sequence[int],
        *,
        axis: int | Sequence[int] | None = None,
        use_bias: bool = True,
        param_dtype: Any = jnp.float32,
        kernel_init: initializers.Initializer = _default_kernel_init,
        bias_init: initializers.Initializer = _default_bias_init,
        ctx: Context,
    ) -> None:
        self.in_features = _sizes("LinearGeneral", "in_features", in_features)
        self.out_features = _sizes("LinearGeneral", "out_features", out_features)
        n = len(self.in_features)
        axes = tuple(range(-n, 0)) if axis is None else _axes(axis)
        if len(axes) != n:
            raise ValueError(
                f"LinearGeneral: axis {axes} must name one input axis per in_features size {n}"
            )
        self.axis = axes
        shape = (*self.in_features, *self.out_features)
        self.kernel = Param(kernel_init(ctx.make_rng("params"), shape, param_dtype))
        bias = (
            bias_init(ctx.make_rng("params"), self.out_features, param_dtype) if use_bias else None
        )
        self.bias = Param(bias)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Contract `inputs`' `axis` with the kernel; the output axes come last."""
        inputs, kernel, bias = promote_dtype(inputs, self.kernel, self.bias)
        axes = tuple(a % inputs.ndim for a in self.axis)
        for a, size in zip(axes, self.in_features):
            if inputs.shape[a] != size:
                raise ShapeCheckError(
                    f"LinearGeneral.__call__: argument inputs: expected size {size} at axis "
                    f"{a} (in_features {self.in_features}), got shape {tuple(inputs.shape)}"
                )
        y = _dot_general(inputs, kernel, ((axes, tuple(range(len(axes)))), ((), ())))
        return y if bias is None else y + bias


def _axes(axis: int | Sequence[int]) -> tuple[int, ...]:
    return (axis,) if isinstance(axis, int) else tuple(axis)


class ConvTranspose(Module):
    """A transposed convolution (channels last), `jax.lax.conv_transpose` with the
    kernel `(*kernel_size, in_features, out_features)`, plus a bias.

    Args:
        in_features: The input's channels.
        out_features: The output's channels.
        kernel_size: The window's size per spatial axis.
        strides: The step per spatial axis (the upsampling factor). Default 1.
        padding: `"SAME"`, `"VALID"`, or a `(low, high)` pair per spatial axis.
            Default `"SAME"`.
        use_bias: Whether to add a bias. Default True.
        param_dtype: The parameters' dtype. Default float32.
        kernel_init: Initializer of `kernel`. Default LeCun normal.
        bias_init: Initializer of `bias`. Default zeros.
        ctx: The Context to draw the parameters' keys from.

    Example:
        ```python
        up = nnx.ConvTranspose(3, 8, (2, 2), strides=2, ctx=nnx.context(0))
        assert up(jnp.ones((1, 4, 4, 3))).shape == (1, 8, 8, 8)
        ```
    """

    kernel: Param[Shaped[Array, "*kernel_size in_features out_features"]]
    bias: Param[Shaped[Array, " out_features"] | None]
    in_features: int
    out_features: int

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Sequence[int],
        strides: int | Sequence[int] = 1,
        *,
        padding: str | Sequence[tuple[int, int]] = "SAME",
        use_bias: bool = True,
        param_dtype: Any = jnp.float32,
        kernel_init: initializers.Initializer = _default_kernel_init,
        bias_init: initializers.Initializer = _default_bias_init,
        ctx: Context,
    ) -> None:
        self.kernel_size = _sizes("ConvTranspose", "kernel_size", kernel_size)
        n = len(self.kernel_size)
        self.strides = (strides,) * n if isinstance(strides, int) else tuple(strides)
        self.padding: str | tuple[tuple[int, int], ...] = (
            padding if isinstance(padding, str) else tuple((int(lo), int(hi)) for lo, hi in padding)
        )
        shape = (
            *self.kernel_size,
            positive("ConvTranspose", "in_features", in_features),
            positive("ConvTranspose", "out_features", out_features),
        )
        self.kernel = Param(kernel_init(ctx.make_rng("params"), shape, param_dtype))
        bias = bias_init(ctx.make_rng("params"), (out_features,), param_dtype) if use_bias else None
        self.bias = Param(bias)
        self.in_features = in_features
        self.out_features = out_features

    def __call__(
        self, inputs: Shaped[Array, "... in_features"]
    ) -> Shaped[Array, "... out_features"]:
        """Upsample `inputs` of shape `(batch..., *spatial, in_features)`."""
        inputs, kernel, bias = promote_dtype(inputs, self.kernel, self.bias)
        n = len(self.kernel_size)
        lead = inputs.shape[: inputs.ndim - n - 1]
        x = inputs.reshape((-1, *inputs.shape[len(lead) :]))
        letters = "HWDUVXYZ"[:n] if n <= 8 else None
        if letters is None:
            raise ValueError("ConvTranspose: at most 8 spatial axes")
        spec = ("N" + letters + "C", letters + "IO", "N" + letters + "C")
        y = lax.conv_transpose(x, kernel, self.strides, self.padding, dimension_numbers=spec)
        y = y.reshape((*lead, *y.shape[1:]))
        return y if bias is None else y + bias

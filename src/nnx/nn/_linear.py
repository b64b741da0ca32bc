"""Linear layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Shaped

from .._context import Context
from .._module import Module
from .._variables import Param
from . import initializers
from ._common import positive
from ._dtypes import promote_dtype

__all__ = ["Linear"]

default_kernel_init = initializers.lecun_normal()
default_bias_init = initializers.zeros()


class Linear(Module):
    """`y = x @ kernel + bias` over the last axis of `x`.

    `kernel` is a `(in_features, out_features)` Param, `bias` an `(out_features,)` one
    (or `Param(None)` with `use_bias=False`: still a State entry, with no leaves).
    Keys come from `ctx.make_rng("params")`, kernel first. Both are shape-checked on
    assignment (dimensions `in_features`, `out_features`).

    Args:
        in_features: Size of the last input axis (> 0).
        out_features: Size of the last output axis (> 0).
        use_bias: Whether to add a bias. Default True.
        dtype: The computation dtype: inputs and parameters are cast to it. Default:
            the promoted dtype of the inputs and parameters (integers become
            float32).
        param_dtype: The dtype of the parameters. Default float32.
        precision: The `jax.lax` precision of the matrix product.
        kernel_init: Initializer of the kernel, `init(key, shape, dtype)`. Default
            `nnx.initializers.lecun_normal()`.
        bias_init: Initializer of the bias. Default `nnx.initializers.zeros()`.
        dot_general: The contraction function (default `jax.lax.dot_general`), e.g. a
            quantized one.
        ctx: The Context to draw parameter keys from (stream `"params"`).

    Raises:
        ValueError: If a size is not a positive int.

    Example:
        ```python
        layer = nnx.Linear(3, 4, ctx=nnx.context(0))
        y = layer(jnp.ones((2, 3)))
        assert y.shape == (2, 4)
        assert layer.kernel.shape == (3, 4) and jnp.allclose(layer.bias, 0.0)
        assert layer(jnp.ones((5, 2, 3))).shape == (5, 2, 4)  # any leading axes
        ```
    """

    kernel: Param[Shaped[Array, "in_features out_features"]]
    bias: Param[Shaped[Array, " out_features"] | None]
    in_features: int
    out_features: int

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        precision: lax.PrecisionLike = None,
        kernel_init: initializers.Initializer = default_kernel_init,
        bias_init: initializers.Initializer = default_bias_init,
        dot_general: Callable[..., jax.Array] = lax.dot_general,  # pyright: ignore[reportUnknownMemberType]
        ctx: Context,
    ) -> None:
        positive("Linear", "in_features", in_features)
        positive("Linear", "out_features", out_features)
        kernel_key = ctx.make_rng("params")
        self.kernel = Param(kernel_init(kernel_key, (in_features, out_features), param_dtype))
        if use_bias:
            bias_key = ctx.make_rng("params")
            self.bias = Param(bias_init(bias_key, (out_features,), param_dtype))
        else:
            self.bias = Param(None)
        self.in_features = in_features
        self.out_features = out_features
        self.use_bias = use_bias
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.dot_general = dot_general

    def __call__(
        self, inputs: Shaped[Array, "*batch in_features"]
    ) -> Shaped[Array, "*batch out_features"]:
        """Apply the layer to the last axis of `inputs`.

        Args:
            inputs: An array of shape `(..., in_features)`.

        Returns:
            An array of shape `(..., out_features)`, of the computation dtype.
        """
        inputs, kernel, bias = promote_dtype(inputs, self.kernel, self.bias, dtype=self.dtype)
        y = self.dot_general(
            inputs,
            kernel,
            (((inputs.ndim - 1,), (0,)), ((), ())),
            precision=self.precision,
        )
        if bias is not None:
            y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
        return y

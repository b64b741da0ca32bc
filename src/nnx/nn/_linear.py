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

    `kernel` is `(in_features, out_features)`, `bias` `(out_features,)` (or
    `Param(None)` with `use_bias=False`). Keys come from `ctx.make_rng("params")`,
    kernel first.
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

    def __call__(self, inputs: jax.Array) -> jax.Array:
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

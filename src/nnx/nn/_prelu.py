"""`nnx.PReLU`: a leaky ReLU whose negative slope is learned."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Shaped

from .._module import Module
from .._variables import Param

__all__ = ["PReLU"]


class PReLU(Module):
    """`x` where `x >= 0`, `negative_slope * x` elsewhere, with a learned scalar slope.

    Args:
        negative_slope_init: The slope's initial value. Default 0.01.
        param_dtype: The slope's dtype. Default float32.

    Example:
        ```python
        act = nnx.PReLU(0.1)
        assert jnp.allclose(act(jnp.array([-2.0, 3.0])), jnp.array([-0.2, 3.0]))
        assert nnx.Param in {type(v) for v in act.get_state().values()}
        ```
    """

    negative_slope: Param[Shaped[Array, ""]]

    def __init__(self, negative_slope_init: float = 0.01, param_dtype: Any = jnp.float32) -> None:
        self.negative_slope = Param(jnp.asarray(negative_slope_init, param_dtype))

    def __call__(self, x: Shaped[Array, "*shape"]) -> Shaped[Array, "*shape"]:
        """Apply the activation elementwise.

        Args:
            x: Any array.

        Returns:
            An array of `x`'s shape.
        """
        return jnp.where(x >= 0, x, jnp.asarray(self.negative_slope, x.dtype) * x)

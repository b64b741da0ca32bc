"""Helper for tests/test_shape_checks.py: Modules annotated under
`from __future__ import annotations` (every annotation is a string), with forward
references to a class defined further down."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

import nnx


class FutureLinear(nnx.Module):
    w: nnx.Param[Float[Array, "din dout"]]
    b: Float[Array, " dout"] | None
    child: Helper | None  # a forward reference
    din: int

    def __init__(self, din: int, dout: int) -> None:
        self.w = nnx.Param(jnp.zeros((din, dout)))
        self.b = jnp.zeros((dout,))
        self.child = None
        self.din = din


class Helper(nnx.Module):
    pass

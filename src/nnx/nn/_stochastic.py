"""Stochastic layers."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from .._context import Context
from .._module import Module
from ._common import probability, resolve_flag

__all__ = ["Dropout"]


@dataclasses.dataclass(eq=False)
class Dropout(Module):
    """Zero each element with probability `rate`, scale the rest by `1 / (1 - rate)`.

    Deterministic (identity) when `deterministic` is true: the first of the call
    argument, the attribute, the Context flag `deterministic`. The mask uses
    `ctx.make_rng(rng_collection)`; `broadcast_dims` share it along those axes.
    """

    rate: float
    broadcast_dims: Sequence[int] = ()
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    def __post_init__(self) -> None:
        self.rate = probability("Dropout", "rate", self.rate)

    def __call__(
        self, inputs: jax.Array, *, deterministic: bool | None = None, ctx: Context | None = None
    ) -> jax.Array:
        if self.rate == 0.0:
            return inputs
        deterministic = resolve_flag(
            "Dropout", "deterministic", "drop out", deterministic, self.deterministic, ctx
        )
        if deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        if ctx is None:
            raise ValueError(
                "Dropout needs to generate a random mask but no 'ctx' was provided: "
                f"call it with ctx=nnx.context({self.rng_collection}=seed)."
            )
        keep_prob = 1.0 - self.rate
        shape = list(jnp.shape(inputs))
        for dim in self.broadcast_dims:
            shape[dim] = 1
        mask = jax.random.bernoulli(ctx.make_rng(self.rng_collection), keep_prob, tuple(shape))
        mask = jnp.broadcast_to(mask, jnp.shape(inputs))
        return lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))

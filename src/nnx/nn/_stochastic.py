"""Stochastic layers."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Shaped

from .._context import Context
from .._module import Module
from ._common import probability, resolve_flag

__all__ = ["Dropout"]


@dataclasses.dataclass(eq=False)
class Dropout(Module):
    """Zero each element with probability `rate`, scale the rest by `1 / (1 - rate)`.

    Deterministic (identity) when `deterministic` is true: the first non-None of the
    call argument, the attribute, the Context flag `deterministic`. The mask uses
    `ctx.make_rng(rng_collection)`; `broadcast_dims` share it along those axes. A
    dataclass Module with no state (`nnx.Dropout(0.5)`); `rate == 0` is the identity
    without asking for a mode, `rate == 1` gives zeros.

    Args:
        rate: The probability of dropping an element, in [0, 1].
        broadcast_dims: Axes along which one mask value is shared (e.g. `(0,)` to
            drop the same features for every example). Default: none.
        deterministic: The default mode. Default None: decided per call.
        rng_collection: The Context stream the mask is drawn from. Default
            `"dropout"`.

    Raises:
        ValueError: If `rate` is not a number in [0, 1].

    Example:
        ```python
        dropout = nnx.Dropout(0.5)
        x = jnp.ones((2, 8))
        assert jnp.allclose(dropout(x, deterministic=True), x)
        y = dropout(x, deterministic=False, ctx=nnx.context(dropout=0))
        assert set(np.unique(np.asarray(y)).tolist()) <= {0.0, 2.0}  # kept: x / (1 - rate)
        shared = nnx.Dropout(0.5, broadcast_dims=(0,))
        z = shared(x, deterministic=False, ctx=nnx.context(dropout=1))
        assert jnp.allclose(z[0], z[1])  # one mask for every row
        ```
    """

    rate: float
    broadcast_dims: Sequence[int] = ()
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    def __post_init__(self) -> None:
        self.rate = probability("Dropout", "rate", self.rate)

    def __call__(
        self,
        inputs: Shaped[Array, "*shape"],
        *,
        deterministic: bool | None = None,
        ctx: Context | None = None,
    ) -> Shaped[Array, "*shape"]:
        """Apply dropout to `inputs`, or return them unchanged in deterministic mode.

        Args:
            inputs: An array of any shape.
            deterministic: True for the identity, False to drop. Default: the
                attribute, then the Context flag.
            ctx: The Context to draw the mask from (and to read the flag from).

        Returns:
            An array of `inputs`' shape.

        Raises:
            ValueError: If `0 < rate` and no mode is given anywhere, or if dropping
                with `rate < 1` and no `ctx` is given.
        """
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

"""The honest limits of nnx's typing (README "Static typing"), pinned so that a change
in nnx or in a checker that lifts one shows up (checked by mypy and pyright, never run).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from typing_extensions import assert_type

import nnx


class Undeclared(nnx.Module):
    """A Variable assigned in __init__ only: the checkers infer the box type."""

    def __init__(self) -> None:
        self.w = nnx.Param(jnp.ones((2, 2)))

    def read(self) -> jax.Array:
        w: jax.Array = self.w  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
        return w


class Declared(nnx.Module):
    """The way out: declare it at class level."""

    w: nnx.Param[jax.Array]

    def __init__(self) -> None:
        self.w = nnx.Param(jnp.ones((2, 2)))

    def read(self) -> jax.Array:
        w: jax.Array = self.w
        return w

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.w


def lambdas(model: Declared, x: jax.Array) -> None:
    # pyright gives an unannotated lambda parameter the TypeVar's bound, nnx.Module,
    # which has no __call__ (mypy infers it from the call)
    nnx.grad(lambda m: jnp.sum(m(x)))(model)  # pyright: ignore[reportCallIssue, reportUnknownArgumentType]

    def loss(m: Declared) -> jax.Array:  # the way out: a def with the model's type
        return jnp.sum(m(x))

    assert_type(nnx.grad(loss)(model), nnx.State[nnx.Param])

"""Small helpers shared by the layers."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Final

import jax
import jax.numpy as jnp

from .._context import Context

_reshape: Callable[[jax.Array, tuple[int, ...]], jax.Array] = getattr(jnp, "reshape")  # noqa: B009


def reshape(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """`jnp.reshape`, typed (its annotations differ between JAX releases)."""
    return _reshape(x, shape)


MSG_SIZE: Final = "{layer}: {name} must be a positive int, got {value!r}."
MSG_RATE: Final = "{layer}: {name} must be a probability in [0, 1], got {value!r}."


def positive(layer: str, name: str, value: object) -> int:
    """`value` if it is an int > 0; else a ValueError naming the layer and argument
    (a zero or negative size otherwise fails deep inside XLA, or divides by zero)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise ValueError(MSG_SIZE.format(layer=layer, name=name, value=value))
    return int(value)


def probability(layer: str, name: str, value: object) -> float:
    """`value` if it is a number in [0, 1] (a rate of 1 drops everything)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 <= float(value) <= 1.0
    ):
        raise ValueError(MSG_RATE.format(layer=layer, name=name, value=value))
    return float(value)


MSG_NO_MODE: Final = (
    "{layer}: cannot tell whether to {what}. Pass `{arg}=...` to the call, set it on the "
    "layer ({layer}(..., {arg}=...)), or give a Context flag: "
    "ctx=nnx.context(flags=dict({arg}=...))."
)


def resolve_flag(
    layer: str,
    arg: str,
    what: str,
    call_value: bool | None,
    attribute: bool | None,
    ctx: Context | None,
) -> bool:
    """The first non-None of the call argument, the attribute, the Context flag."""
    if call_value is not None:
        return call_value
    if attribute is not None:
        return attribute
    if ctx is not None:
        flag = ctx.get_flag(arg)
        if flag is not None:
            return bool(flag)
    raise ValueError(MSG_NO_MODE.format(layer=layer, arg=arg, what=what))

"""Small helpers shared by the layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import jax
import jax.numpy as jnp

from .._context import Context

_reshape: Callable[[jax.Array, tuple[int, ...]], jax.Array] = getattr(jnp, "reshape")  # noqa: B009


def reshape(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """`jnp.reshape`, typed (its annotations differ between JAX releases)."""
    return _reshape(x, shape)


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

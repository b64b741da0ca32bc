"""Compact, readable reprs for the values nnx prints (arrays, Variables, States)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from typing_extensions import TypeIs

from ._compat import Tracer

__all__ = ["dtype_shape", "repr_value"]


def dtype_shape(x: Any) -> str:
    """`float32[2,3]` for anything with `.dtype` and `.shape`, else the type name."""
    dtype = getattr(x, "dtype", None)
    shape = getattr(x, "shape", None)
    if dtype is None or shape is None:
        return type(x).__name__
    name = getattr(dtype, "name", str(dtype))
    return f"{name}[{','.join(str(d) for d in shape)}]"


def _is_ndarray(x: object) -> TypeIs[np.ndarray[Any, Any]]:
    return isinstance(x, np.ndarray)


def repr_value(x: Any) -> str:
    """Scalars in full, other arrays as `Array(float32[12,2])`, tracers marked."""
    if isinstance(x, Tracer):
        return f"Traced<{dtype_shape(x)}>"
    if isinstance(x, jax.ShapeDtypeStruct):
        return f"ShapeDtypeStruct({dtype_shape(x)})"
    if isinstance(x, jax.Array):
        if x.shape == () and not jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return f"Array({x.item()!r})"
        return f"Array({dtype_shape(x)})"
    if _is_ndarray(x):
        if x.ndim == 0:
            return f"array({x.item()!r})"
        return f"ndarray({dtype_shape(x)})"
    return repr(x)


def indent(text: str, prefix: str = "  ") -> str:
    return text.replace("\n", "\n" + prefix)

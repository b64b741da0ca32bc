"""dtype helpers shared by the layers."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

__all__ = ["canonicalize_dtype", "promote_dtype"]


def canonicalize_dtype(*args: Any, dtype: Any = None, inexact: bool = True) -> Any:
    """`dtype` if given, else the promoted dtype of the non-None `args` (made inexact).

    Promotion follows `jnp.result_type` (JAX's rules, weak types included). With
    `inexact`, an integer or bool result is promoted with float32.

    Args:
        *args: Arrays, scalars or None (skipped).
        dtype: An explicit dtype, returned as is if it fits.
        inexact: Whether the dtype must be floating or complex. Default True.

    Returns:
        The dtype.

    Raises:
        ValueError: If `inexact` and the given `dtype` is not inexact.

    Example:
        ```python
        from nnx.nn import canonicalize_dtype

        assert canonicalize_dtype(jnp.ones(2, jnp.int32)) == jnp.float32
        assert canonicalize_dtype(jnp.ones(2, jnp.bfloat16), None) == jnp.bfloat16
        assert canonicalize_dtype(jnp.ones(2, jnp.int8), inexact=False) == jnp.int8
        ```
    """
    if dtype is None:
        present = [jnp.asarray(x) for x in args if x is not None]
        dtype = jnp.result_type(*present)
        if inexact and not jnp.issubdtype(dtype, jnp.inexact):
            dtype = jnp.promote_types(jnp.float32, dtype)
    if inexact and not jnp.issubdtype(dtype, jnp.inexact):
        raise ValueError(f"Dtype must be inexact: {dtype}")
    return dtype


def promote_dtype(*args: Any, dtype: Any = None, inexact: bool = True) -> list[Any]:
    """Cast every non-None argument to one dtype (see `canonicalize_dtype`).

    Args:
        *args: Arrays, scalars or None (kept as None).
        dtype: An explicit dtype. Default: the promoted dtype of the arguments.
        inexact: Whether the dtype must be floating or complex. Default True.

    Returns:
        A list of `jnp` arrays (and Nones), in the order of `args`.

    Raises:
        ValueError: If `inexact` and the given `dtype` is not inexact.

    Example:
        ```python
        from nnx.nn import promote_dtype

        x, none, w = promote_dtype(jnp.ones(2, jnp.int32), None, jnp.ones(2))
        assert x.dtype == w.dtype == jnp.float32 and none is None
        ```
    """
    dtype = canonicalize_dtype(*args, dtype=dtype, inexact=inexact)
    return [None if x is None else jnp.asarray(x, dtype) for x in args]

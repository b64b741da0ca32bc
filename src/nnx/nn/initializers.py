"""Initializers: everything in `jax.nn.initializers`, plus `zeros()`/`ones()` factories.

Each initializer is called as `init(key, shape, dtype)`. `zeros` and `ones` here are
*factories* (call them to get the initializer), like every other entry:
`bias_init=nnx.initializers.zeros()`.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
from jax.nn.initializers import (
    constant as constant,
    delta_orthogonal as delta_orthogonal,
    glorot_normal as glorot_normal,
    glorot_uniform as glorot_uniform,
    he_normal as he_normal,
    he_uniform as he_uniform,
    kaiming_normal as kaiming_normal,
    kaiming_uniform as kaiming_uniform,
    lecun_normal as lecun_normal,
    lecun_uniform as lecun_uniform,
    normal as normal,
    orthogonal as orthogonal,
    truncated_normal as truncated_normal,
    uniform as uniform,
    variance_scaling as variance_scaling,
    xavier_normal as xavier_normal,
    xavier_uniform as xavier_uniform,
)

__all__ = [
    "Initializer",
    "constant",
    "delta_orthogonal",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "truncated_normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]


class Initializer(Protocol):
    """`init(key, shape, dtype) -> array` (the result may carry metadata)."""

    def __call__(self, key: jax.Array, shape: Any, dtype: Any = ..., /) -> Any: ...


def zeros() -> Initializer:
    """The initializer that returns zeros."""
    init: Initializer = jax.nn.initializers.zeros
    return init


def ones() -> Initializer:
    """The initializer that returns ones."""
    init: Initializer = jax.nn.initializers.ones
    return init

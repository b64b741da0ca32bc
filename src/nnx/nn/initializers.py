"""Initializers: everything in `jax.nn.initializers`, plus `zeros()`/`ones()` factories.

Each initializer is called as `init(key, shape, dtype)`. `zeros` and `ones` here are
*factories* (call them to get the initializer), like every other entry:
`bias_init=nnx.initializers.zeros()`. The other names are JAX's own functions (see
`jax.nn.initializers` for their arguments). Wrap one with `nnx.with_metadata` or
`nnx.with_logical_partitioning` to give the Variable it initializes metadata.

Example:
    ```python
    init = nnx.initializers.normal(stddev=0.02)
    w = init(jax.random.key(0), (3, 4), jnp.float32)
    assert w.shape == (3, 4) and w.dtype == jnp.float32
    layer = nnx.Linear(
        3, 4, kernel_init=init, bias_init=nnx.initializers.ones(), ctx=nnx.context(0)
    )
    assert jnp.allclose(layer.bias, 1.0)
    ```
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
    """The type of an initializer: `init(key, shape, dtype) -> array`.

    `key` is a JAX PRNG key, `shape` a tuple of ints, `dtype` the parameter dtype
    (optional). The result may be a `ContainerMetadata` carrying metadata for the
    Variable built from it (see `nnx.with_metadata`).
    """

    def __call__(self, key: jax.Array, shape: Any, dtype: Any = ..., /) -> Any:
        """Make an initial value.

        Args:
            key: A PRNG key.
            shape: The shape of the value.
            dtype: Its dtype (each initializer has a default, usually float32).

        Returns:
            The array, or a `ContainerMetadata` holding it.
        """
        ...


def zeros() -> Initializer:
    """The initializer that returns zeros: `zeros()(key, shape, dtype)`.

    Returns:
        `jax.nn.initializers.zeros` (which ignores the key; dtype default float32).

    Example:
        ```python
        init = nnx.initializers.zeros()
        assert jnp.array_equal(init(jax.random.key(0), (2, 3)), jnp.zeros((2, 3)))
        ```
    """
    init: Initializer = jax.nn.initializers.zeros
    return init


def ones() -> Initializer:
    """The initializer that returns ones: `ones()(key, shape, dtype)`.

    Returns:
        `jax.nn.initializers.ones` (which ignores the key; dtype default float32).

    Example:
        ```python
        init = nnx.initializers.ones()
        assert init(jax.random.key(0), (2,), jnp.int32).tolist() == [1, 1]
        ```
    """
    init: Initializer = jax.nn.initializers.ones
    return init

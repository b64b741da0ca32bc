"""Activation functions, re-exported from `jax.nn` (and `tanh` from `jax.numpy`).

Each is JAX's own function (`nnx.relu is jax.nn.relu`), documented by JAX; `normalize`
is kept as an alias of `standardize`.

Example:
    ```python
    x = jnp.array([-1.0, 0.0, 2.0])
    assert jnp.allclose(nnx.relu(x), jnp.array([0.0, 0.0, 2.0]))
    assert jnp.allclose(nnx.softmax(x).sum(), 1.0)
    assert nnx.gelu(x).shape == (3,)
    ```
"""

from __future__ import annotations

from jax.nn import (
    celu as celu,
    elu as elu,
    gelu as gelu,
    glu as glu,
    hard_sigmoid as hard_sigmoid,
    hard_silu as hard_silu,
    hard_swish as hard_swish,
    hard_tanh as hard_tanh,
    leaky_relu as leaky_relu,
    log_sigmoid as log_sigmoid,
    log_softmax as log_softmax,
    logsumexp as logsumexp,
    one_hot as one_hot,
    relu as relu,
    relu6 as relu6,
    selu as selu,
    sigmoid as sigmoid,
    silu as silu,
    soft_sign as soft_sign,
    softmax as softmax,
    softplus as softplus,
    standardize as standardize,
    swish as swish,
)
from jax.numpy import tanh as tanh

normalize = standardize
"""Alias of `standardize` (`jax.nn.normalize` was removed from JAX).

Example:
    ```python
    y = nnx.normalize(jnp.array([1.0, 2.0, 3.0]))
    assert jnp.allclose(y.mean(), 0.0) and jnp.allclose(y.std(), 1.0, atol=1e-3)
    ```
"""

__all__ = [
    "celu",
    "elu",
    "gelu",
    "glu",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "normalize",
    "one_hot",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "soft_sign",
    "softmax",
    "softplus",
    "standardize",
    "swish",
    "tanh",
]

"""nnx.avg_pool / max_pool / min_pool against flax.linen's pooling and jax.lax."""

import jax.numpy as jnp
import numpy as np
import pytest

import nnx

flax_linen = pytest.importorskip("flax.linen")

X = jnp.arange(2 * 5 * 6 * 3, dtype=jnp.float32).reshape(2, 5, 6, 3) % 7.0
OPTIONS = [{}, {"strides": (2, 2)}, {"padding": "SAME"}, {"padding": ((1, 0), (0, 1))}]


@pytest.mark.parametrize("options", OPTIONS)
def test_max_and_avg_pool_equal_flax_linen(options):
    np.testing.assert_allclose(
        nnx.max_pool(X, (2, 3), **options), flax_linen.max_pool(X, (2, 3), **options)
    )
    np.testing.assert_allclose(
        nnx.avg_pool(X, (2, 3), **options),
        flax_linen.avg_pool(X, (2, 3), **options),
        rtol=1e-6,
    )


@pytest.mark.parametrize("options", OPTIONS)
def test_min_pool_is_max_pool_of_the_negation(options):
    np.testing.assert_allclose(
        nnx.min_pool(X, (2, 3), **options), -nnx.max_pool(-X, (2, 3), **options)
    )


def test_pooling_without_a_batch_axis_and_bad_shapes():
    y = nnx.max_pool(jnp.arange(8.0).reshape(8, 1), (2,), strides=(2,))
    np.testing.assert_allclose(y[:, 0], [1.0, 3.0, 5.0, 7.0])
    with pytest.raises(ValueError, match="needs inputs of shape"):
        nnx.avg_pool(jnp.ones((4, 4)), (2, 2))
    with pytest.raises(ValueError, match="one entry per window axis"):
        nnx.avg_pool(X, (2, 2), strides=(2,))

"""nnx.Einsum, nnx.LinearGeneral and nnx.ConvTranspose against jnp/lax formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import nnx


def test_einsum_equals_jnp_einsum_with_and_without_bias():
    layer = nnx.Einsum("bd,dhk->bhk", (6, 2, 3), (2, 3), ctx=nnx.context(0))
    x = jax.random.normal(jax.random.key(1), (4, 6))
    np.testing.assert_allclose(
        layer(x), jnp.einsum("bd,dhk->bhk", x, layer.kernel) + layer.bias, rtol=1e-5
    )
    plain = nnx.Einsum("bd,dk->bk", (6, 5), ctx=nnx.context(0))
    assert plain.bias is None and ("bias",) in plain.get_state()  # Param(None)
    np.testing.assert_allclose(plain(x), x @ plain.kernel, rtol=1e-5)
    with pytest.raises(ValueError, match="two operands"):
        nnx.Einsum("bd->b", (6,), ctx=nnx.context(0))


def test_linear_general_contracts_several_axes():
    layer = nnx.LinearGeneral((2, 4), (3, 5), ctx=nnx.context(0))
    x = jax.random.normal(jax.random.key(1), (7, 2, 4))
    expected = jnp.einsum("bij,ijkl->bkl", x, layer.kernel) + layer.bias
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5)
    first = nnx.LinearGeneral(2, 3, axis=0, use_bias=False, ctx=nnx.context(0))
    x0 = jax.random.normal(jax.random.key(2), (2, 6))
    np.testing.assert_allclose(first(x0), jnp.einsum("ib,ik->bk", x0, first.kernel), rtol=1e-5)
    with pytest.raises(nnx.ShapeCheckError, match=r"LinearGeneral.__call__: argument inputs"):
        layer(jnp.ones((7, 4, 2)))


@pytest.mark.parametrize(("strides", "padding"), [(1, "SAME"), (2, "SAME"), (2, "VALID")])
def test_conv_transpose_equals_lax_conv_transpose(strides, padding):
    layer = nnx.ConvTranspose(3, 4, (3, 3), strides=strides, padding=padding, ctx=nnx.context(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 3))
    expected = lax.conv_transpose(
        x, layer.kernel, (strides, strides), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(layer(x), expected + layer.bias, rtol=1e-5, atol=1e-6)
    assert layer(x[0]).shape == expected.shape[1:]  # no batch axis
    with pytest.raises(nnx.ShapeCheckError, match="ConvTranspose.__call__: argument inputs"):
        layer(jnp.ones((2, 5, 5, 4)))

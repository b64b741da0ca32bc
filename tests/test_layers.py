"""Layers: LayerNorm, RMSNorm, GroupNorm, Embed, Conv.

Numerics are checked against plain `jnp`/`lax` formulas written here, plus shapes,
dtypes, State paths/kinds, error types and messages, the run-time shape checks of
the layers' annotated attributes, and `nnx.jit` + `nnx.grad` through a small model.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import nnx


def _close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


# Test data is made in numpy: jax.random, jnp.ones, jnp.full, ... compile once per shape,
# which adds up to seconds here.


def _full(shape, value=1.0, dtype=np.float32):
    return jnp.asarray(np.full(shape, value, dtype))


def _randn(shape, seed=0, dtype=np.float32, scale=1.0, loc=0.0):
    values = loc + scale * np.random.default_rng(seed).standard_normal(shape)
    return jnp.asarray(values.astype(dtype))


def _randint(shape, high, seed=1):
    return jnp.asarray(np.random.default_rng(seed).integers(0, high, shape), jnp.int32)


def _np_init(key, shape, dtype=jnp.float32):
    """A random initializer that needs no compilation (it ignores `key`)."""
    del key
    fan_in = int(np.prod(shape[:-1])) or 1
    values = np.random.default_rng(sum(shape)).standard_normal(shape) / np.sqrt(fan_in)
    return jnp.asarray(values.astype(dtype))


# Layers are run under one jit: eager, every op compiles on its own for each new shape,
# which is ~5x slower here. Eager calls are compared with these in
# test_layers_under_jit_and_merge.
_call = nnx.jit(lambda layer, x: layer(x))
_attend = nnx.jit(lambda emb, q: emb.attend(q))


def _kinds(module):
    """State paths, in order, with the Variable kind of each entry."""
    return [(path, type(v)) for path, v in module.get_state().items()]


# ----------------------------------------------------------------------------------
# Reference formulas


@partial(jax.jit, static_argnames=("eps", "axes"))
def _layer_norm_ref(x, scale, bias, eps=1e-6, axes=(-1,)):
    mean = jnp.mean(x, axes, keepdims=True)
    var = jnp.maximum(jnp.mean(x**2, axes, keepdims=True) - mean**2, 0.0)
    y = (x - mean) / jnp.sqrt(var + eps)
    if scale is not None:
        y = y * scale
    if bias is not None:
        y = y + bias
    return y


@partial(jax.jit, static_argnames=("eps",))
def _rms_norm_ref(x, scale, eps=1e-6):
    y = x * lax.rsqrt(jnp.mean(x**2, -1, keepdims=True) + eps)
    return y if scale is None else y * scale


@partial(jax.jit, static_argnames=("num_groups", "eps"))
def _group_norm_ref(x, num_groups, scale, bias, eps=1e-6):
    c = x.shape[-1]
    xg = x.reshape(*x.shape[:-1], num_groups, c // num_groups)
    # every axis but the batch axis (0) and the group axis (-2)
    axes = (*range(1, xg.ndim - 2), xg.ndim - 1)
    mean = jnp.mean(xg, axes, keepdims=True)
    var = jnp.maximum(jnp.mean(xg**2, axes, keepdims=True) - mean**2, 0.0)
    y = ((xg - mean) / jnp.sqrt(var + eps)).reshape(x.shape)
    if scale is not None:
        y = y * scale
    if bias is not None:
        y = y + bias
    return y


_DNUMS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def _conv_ref(
    x,
    kernel,
    bias,
    strides,
    padding,
    input_dilation=None,
    kernel_dilation=None,
    feature_group_count=1,
):
    n = kernel.ndim - 2
    y = lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        lhs_dilation=input_dilation or (1,) * n,
        rhs_dilation=kernel_dilation or (1,) * n,
        dimension_numbers=_DNUMS[n],
        feature_group_count=feature_group_count,
    )
    return y if bias is None else y + bias


# ----------------------------------------------------------------------------------
# LayerNorm


def test_layernorm_state_and_init():
    ln = nnx.LayerNorm(4, ctx=nnx.context(0))
    assert _kinds(ln) == [(("bias",), nnx.Param), (("scale",), nnx.Param)]
    assert ln.scale.shape == (4,)
    assert ln.bias.shape == (4,)
    assert ln.scale.dtype == jnp.float32
    assert ln.bias.dtype == jnp.float32
    np.testing.assert_array_equal(ln.scale, _full(4))
    np.testing.assert_array_equal(ln.bias, _full(4, 0.0))


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_layernorm_call(batch):
    ln = nnx.LayerNorm(4, ctx=nnx.context(0))
    ln.scale = jnp.array([0.5, 1.0, 2.0, -1.0])
    ln.bias = jnp.array([0.1, -0.2, 0.3, 0.0])
    x = _randn((*batch, 4), scale=3.0, loc=1.0)
    y = _call(ln, x)
    assert y.shape == x.shape
    assert y.dtype == jnp.float32
    _close(y, _layer_norm_ref(x, ln.scale, ln.bias))


def test_layernorm_stats_are_per_example():
    ln = nnx.LayerNorm(4, ctx=nnx.context(0))
    x = _randn((3, 4))
    y = _call(ln, x)
    # changing another example does not change this one's output
    y2 = _call(ln, np.asarray(x) * np.array([[1.0], [100.0], [100.0]], np.float32))
    _close(y2[0], y[0])
    _close(np.mean(y, -1), np.zeros(3), atol=1e-5)
    _close(np.var(y, -1), np.ones(3), rtol=1e-4)


def test_layernorm_epsilon_and_custom_initializers():
    ln = nnx.LayerNorm(
        4,
        epsilon=0.5,
        scale_init=nnx.initializers.constant(2.0),
        bias_init=nnx.initializers.constant(0.25),
        ctx=nnx.context(0),
    )
    np.testing.assert_array_equal(ln.scale, _full(4, 2.0))
    np.testing.assert_array_equal(ln.bias, _full(4, 0.25))
    x = _randn((2, 4))
    _close(_call(ln, x), _layer_norm_ref(x, ln.scale, ln.bias, eps=0.5))


def test_layernorm_constant_input_clips_variance():
    ln = nnx.LayerNorm(4, ctx=nnx.context(0))
    ln.bias = jnp.array([1.0, 2.0, 3.0, 4.0])
    x = jnp.asarray(np.repeat(np.float32([[0.1], [3.7], [123.4]]), 4, axis=1))
    # in float32, E[x²] - E[x]² of the constant row 123.4 can come out below -epsilon
    # (it does on recent XLA; older releases round it to 0): unclipped,
    # rsqrt(var + epsilon) would be NaN
    y = _call(ln, x)
    assert np.isfinite(y).all()
    _close(y, np.broadcast_to(ln.bias, (3, 4)), atol=0.05)


@pytest.mark.parametrize(("use_bias", "use_scale"), [(False, True), (True, False), (False, False)])
def test_layernorm_without_bias_or_scale(use_bias, use_scale):
    ln = nnx.LayerNorm(4, use_bias=use_bias, use_scale=use_scale, ctx=nnx.context(0))
    state = ln.get_state()
    assert list(state) == [("bias",), ("scale",)]
    assert all(type(v) is nnx.Param for v in state.values())
    if not use_bias:
        assert ln.bias is None
        assert state[("bias",)] == nnx.Param(None)
    if not use_scale:
        assert ln.scale is None
        assert state[("scale",)] == nnx.Param(None)
    assert len(jax.tree_util.tree_leaves(state)) == int(use_bias) + int(use_scale)
    x = _randn((2, 4))
    _close(_call(ln, x), _layer_norm_ref(x, ln.scale, ln.bias))
    # merge restores the empty entries
    state, moduledef = ln.partition()
    _close(_call(moduledef.merge(state), x), _call(ln, x))


def test_layernorm_accepts_default_axes():
    ln = nnx.LayerNorm(4, reduction_axes=-1, feature_axes=-1, ctx=nnx.context(0))
    x = _randn((2, 4))
    _close(_call(ln, x), _layer_norm_ref(x, ln.scale, ln.bias))


def test_layernorm_reduction_axes():
    # statistics over the last two axes per example, scale and bias on the last one
    ln = nnx.LayerNorm(4, reduction_axes=(-2, -1), ctx=nnx.context(0))
    ln.scale = jnp.array([1.0, 2.0, 3.0, 4.0])
    x = _randn((2, 3, 4))
    _close(_call(ln, x), _layer_norm_ref(x, ln.scale, ln.bias, axes=(-2, -1)))


def test_layernorm_feature_axes():
    # statistics over the last two axes, scale and bias along axis -2
    ln = nnx.LayerNorm(3, reduction_axes=(-2, -1), feature_axes=-2, ctx=nnx.context(0))
    ln.scale = jnp.array([1.0, 2.0, 3.0])
    ln.bias = jnp.array([0.5, 0.0, -0.5])
    x = _randn((2, 3, 4))
    expected = _layer_norm_ref(x, None, None, axes=(-2, -1))
    expected = expected * np.array([[1.0], [2.0], [3.0]]) + np.array([[0.5], [0.0], [-0.5]])
    _close(_call(ln, x), expected)


def test_layernorm_dtypes():
    ln = nnx.LayerNorm(4, param_dtype=jnp.bfloat16, ctx=nnx.context(0))
    assert ln.scale.dtype == jnp.bfloat16
    assert ln.bias.dtype == jnp.bfloat16
    ln = nnx.LayerNorm(4, dtype=jnp.bfloat16, ctx=nnx.context(0))
    assert ln.scale.dtype == jnp.float32
    x = _randn((2, 4))
    y = _call(ln, x)
    assert y.dtype == jnp.bfloat16
    _close(np.asarray(y, np.float32), _layer_norm_ref(x, ln.scale, ln.bias), rtol=2e-2, atol=2e-2)


# ----------------------------------------------------------------------------------
# RMSNorm


def test_rmsnorm_state_and_init():
    rms = nnx.RMSNorm(4, ctx=nnx.context(0))
    assert _kinds(rms) == [(("scale",), nnx.Param)]
    assert rms.scale.shape == (4,)
    assert rms.scale.dtype == jnp.float32
    np.testing.assert_array_equal(rms.scale, _full(4))


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_rmsnorm_call(batch):
    rms = nnx.RMSNorm(4, ctx=nnx.context(0))
    rms.scale = jnp.array([0.5, 1.0, 2.0, -1.0])
    x = _randn((*batch, 4), scale=3.0, loc=1.0)
    y = _call(rms, x)
    assert y.shape == x.shape
    assert y.dtype == jnp.float32
    _close(y, _rms_norm_ref(x, rms.scale))
    # no centring: a constant row keeps its sign, unlike LayerNorm
    _close(_call(rms, _full((4,), -2.0)), -np.array([0.5, 1.0, 2.0, -1.0]), rtol=1e-5)


def test_rmsnorm_epsilon_and_scale_init():
    rms = nnx.RMSNorm(4, epsilon=0.5, scale_init=nnx.initializers.constant(3.0), ctx=nnx.context(0))
    np.testing.assert_array_equal(rms.scale, _full(4, 3.0))
    x = _randn((2, 4))
    _close(_call(rms, x), _rms_norm_ref(x, rms.scale, eps=0.5))


def test_rmsnorm_without_scale():
    rms = nnx.RMSNorm(4, use_scale=False, ctx=nnx.context(0))
    assert rms.scale is None
    state = rms.get_state()
    assert list(state) == [("scale",)]
    assert state[("scale",)] == nnx.Param(None)
    assert jax.tree_util.tree_leaves(state) == []
    x = _randn((2, 4))
    _close(_call(rms, x), _rms_norm_ref(x, None))


def test_rmsnorm_dtypes():
    rms = nnx.RMSNorm(4, param_dtype=jnp.bfloat16, ctx=nnx.context(0))
    assert rms.scale.dtype == jnp.bfloat16
    rms = nnx.RMSNorm(4, dtype=jnp.bfloat16, ctx=nnx.context(0))
    assert rms.scale.dtype == jnp.float32
    x = _randn((2, 4))
    y = _call(rms, x)
    assert y.dtype == jnp.bfloat16
    _close(np.asarray(y, np.float32), _rms_norm_ref(x, rms.scale), rtol=2e-2, atol=2e-2)


# ----------------------------------------------------------------------------------
# GroupNorm


def test_groupnorm_state_and_init():
    gn = nnx.GroupNorm(6, num_groups=3, ctx=nnx.context(0))
    assert _kinds(gn) == [(("bias",), nnx.Param), (("scale",), nnx.Param)]
    np.testing.assert_array_equal(gn.scale, _full(6))
    np.testing.assert_array_equal(gn.bias, _full(6, 0.0))
    assert gn.scale.dtype == jnp.float32


@pytest.mark.parametrize(
    ("shape", "num_groups"),
    [((4, 6), 3), ((2, 5, 6), 1), ((2, 5, 6), 2), ((2, 5, 6), 6), ((2, 3, 3, 6), 3)],
)
def test_groupnorm_call(shape, num_groups):
    gn = nnx.GroupNorm(6, num_groups=num_groups, ctx=nnx.context(0))
    gn.scale = jnp.asarray(np.arange(1.0, 7.0, dtype=np.float32))
    gn.bias = jnp.asarray(np.linspace(-1.0, 1.0, 6, dtype=np.float32))
    x = _randn(shape, scale=2.0, loc=0.5)
    y = _call(gn, x)
    assert y.shape == shape
    assert y.dtype == jnp.float32
    _close(y, _group_norm_ref(x, num_groups, gn.scale, gn.bias))


def test_groupnorm_groups_and_examples_are_independent():
    gn = nnx.GroupNorm(6, num_groups=3, ctx=nnx.context(0))
    x = _randn((2, 5, 6))
    y = _call(gn, x)
    # scale up the channels of group 0 in example 0 only
    x2 = np.array(x)
    x2[0, :, :2] = 50.0 * x2[0, :, :2] + 7.0
    y2 = _call(gn, x2)
    _close(y2[0, :, 2:], y[0, :, 2:])
    _close(y2[1], y[1])
    # each (example, group) is standardised over the spatial axis and its channels
    yg = np.asarray(y).reshape(2, 5, 3, 2)
    _close(yg.mean((1, 3)), np.zeros((2, 3)), atol=1e-5)
    _close(yg.var((1, 3)), np.ones((2, 3)), rtol=1e-4)


def test_groupnorm_default_num_groups_is_32():
    gn = nnx.GroupNorm(64, ctx=nnx.context(0))
    x = _randn((2, 3, 64))
    _close(_call(gn, x), _group_norm_ref(x, 32, gn.scale, gn.bias))
    # 16 groups would give other numbers
    assert not np.allclose(_call(gn, x), _group_norm_ref(x, 16, gn.scale, gn.bias), atol=1e-3)


def test_groupnorm_epsilon():
    gn = nnx.GroupNorm(4, num_groups=2, epsilon=0.5, ctx=nnx.context(0))
    x = _randn((3, 4))
    _close(_call(gn, x), _group_norm_ref(x, 2, gn.scale, gn.bias, eps=0.5))


@pytest.mark.parametrize("num_groups", [4, 5])
def test_groupnorm_features_must_be_divisible(num_groups):
    with pytest.raises(ValueError, match="divisible"):
        nnx.GroupNorm(6, num_groups=num_groups, ctx=nnx.context(0))


def test_groupnorm_default_groups_need_divisible_features():
    with pytest.raises(ValueError, match="divisible"):
        nnx.GroupNorm(48, ctx=nnx.context(0))


@pytest.mark.parametrize(("use_bias", "use_scale"), [(False, True), (True, False), (False, False)])
def test_groupnorm_without_bias_or_scale(use_bias, use_scale):
    gn = nnx.GroupNorm(6, num_groups=2, use_bias=use_bias, use_scale=use_scale, ctx=nnx.context(0))
    state = gn.get_state()
    assert list(state) == [("bias",), ("scale",)]
    assert (gn.bias is None) is not use_bias
    assert (gn.scale is None) is not use_scale
    assert len(jax.tree_util.tree_leaves(state)) == int(use_bias) + int(use_scale)
    x = _randn((2, 4, 6))
    _close(_call(gn, x), _group_norm_ref(x, 2, gn.scale, gn.bias))


# ----------------------------------------------------------------------------------
# Embed


def test_embed_state_and_init():
    emb = nnx.Embed(10, 4, ctx=nnx.context(0))
    assert _kinds(emb) == [(("embedding",), nnx.Param)]
    assert emb.embedding.shape == (10, 4)
    assert emb.embedding.dtype == jnp.float32
    # the first key drawn from "params", variance_scaling(1, fan_in, normal, out_axis=0)
    key = nnx.context(0).make_rng("params")
    init = nnx.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)
    np.testing.assert_array_equal(emb.embedding, init(key, (10, 4), jnp.float32))


@pytest.mark.parametrize("ids_shape", [(), (3,), (2, 3), (2, 1, 3)])
def test_embed_call(ids_shape):
    emb = nnx.Embed(10, 4, ctx=nnx.context(0))
    ids = _randint(ids_shape, 10)
    y = _call(emb, ids)
    assert y.shape == (*ids_shape, 4)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, np.asarray(emb.embedding)[np.asarray(ids)])


@pytest.mark.parametrize("dtype", [jnp.int8, jnp.int32, jnp.uint8, jnp.uint32])
def test_embed_integer_dtypes(dtype):
    emb = nnx.Embed(10, 4, ctx=nnx.context(0))
    ids = jnp.array([0, 9, 3], dtype)
    np.testing.assert_array_equal(_call(emb, ids), np.asarray(emb.embedding)[[0, 9, 3]])


@pytest.mark.parametrize("ids", [jnp.array([0.0, 1.0]), jnp.array(1.0, jnp.bfloat16)])
def test_embed_rejects_float_input(ids):
    emb = nnx.Embed(10, 4, ctx=nnx.context(0))
    with pytest.raises(ValueError, match="integer"):
        emb(ids)


def test_embed_attend():
    emb = nnx.Embed(10, 4, ctx=nnx.context(0))
    q = _randn((2, 3, 4))
    logits = _attend(emb, q)
    assert logits.shape == (2, 3, 10)
    assert logits.dtype == jnp.float32
    _close(logits, np.asarray(q) @ np.asarray(emb.embedding).T)
    # attending with an embedding row scores that row by its squared norm
    _close(_attend(emb, _call(emb, jnp.array(3)))[3], np.sum(np.asarray(emb.embedding[3]) ** 2))


def test_embed_custom_init_and_dtypes():
    emb = nnx.Embed(5, 3, embedding_init=nnx.initializers.ones(), ctx=nnx.context(0))
    np.testing.assert_array_equal(emb.embedding, _full((5, 3)))
    emb = nnx.Embed(5, 3, param_dtype=jnp.bfloat16, embedding_init=_np_init, ctx=nnx.context(0))
    assert emb.embedding.dtype == jnp.bfloat16
    emb = nnx.Embed(5, 3, dtype=jnp.bfloat16, embedding_init=_np_init, ctx=nnx.context(0))
    assert emb.embedding.dtype == jnp.float32
    assert _call(emb, jnp.array([1, 2])).dtype == jnp.bfloat16
    assert _attend(emb, _full((2, 3))).dtype == jnp.bfloat16


# ----------------------------------------------------------------------------------
# Conv


def test_conv_state_and_init():
    conv = nnx.Conv(3, 4, (3, 3), ctx=nnx.context(0))
    assert _kinds(conv) == [(("bias",), nnx.Param), (("kernel",), nnx.Param)]
    assert conv.kernel.shape == (3, 3, 3, 4)
    assert conv.bias.shape == (4,)
    assert conv.kernel.dtype == jnp.float32
    np.testing.assert_array_equal(conv.bias, _full(4, 0.0))
    # as Linear: lecun_normal with the first key drawn from "params"
    key = nnx.context(0).make_rng("params")
    expected = nnx.initializers.lecun_normal()(key, (3, 3, 3, 4), jnp.float32)
    np.testing.assert_array_equal(conv.kernel, expected)
    conv = nnx.Conv(3, 4, [2], kernel_init=_np_init, ctx=nnx.context(0))  # a list works too
    assert conv.kernel.shape == (2, 3, 4)


@pytest.mark.parametrize(
    ("strides", "padding", "input_dilation", "kernel_dilation"),
    [
        (1, "SAME", 1, 1),
        (1, "VALID", 1, 1),
        (2, "SAME", 1, 1),
        ((2, 1), "VALID", 1, 1),
        (1, "SAME", 1, 2),
        # lax only takes explicit padding with an input dilation
        (1, [(1, 1), (0, 2)], (1, 2), (2, 1)),
        (2, [(2, 2), (1, 1)], 2, 1),
    ],
)
def test_conv2d(strides, padding, input_dilation, kernel_dilation):
    conv = nnx.Conv(
        3,
        4,
        (3, 3),
        strides,
        padding=padding,
        input_dilation=input_dilation,
        kernel_dilation=kernel_dilation,
        kernel_init=_np_init,
        ctx=nnx.context(0),
    )
    conv.bias = jnp.array([0.5, -0.5, 1.0, 2.0])
    x = _randn((2, 8, 7, 3))

    def pair(v):
        return (v, v) if isinstance(v, int) else v

    expected = _conv_ref(
        x,
        conv.kernel,
        conv.bias,
        pair(strides),
        padding,
        pair(input_dilation),
        pair(kernel_dilation),
    )
    y = _call(conv, x)
    assert y.shape == expected.shape
    assert y.dtype == jnp.float32
    _close(y, expected)


def test_conv2d_output_shapes():
    x = _full((2, 8, 7, 3))

    def conv(*args, **kwargs):
        return nnx.Conv(3, 4, (3, 3), *args, kernel_init=_np_init, ctx=nnx.context(0), **kwargs)

    assert _call(conv(), x).shape == (2, 8, 7, 4)
    assert _call(conv(padding="VALID"), x).shape == (2, 6, 5, 4)
    assert _call(conv((2, 2), padding="VALID"), x).shape == (2, 3, 3, 4)
    assert _call(conv(2), x).shape == (2, 4, 4, 4)


def test_conv1d():
    conv = nnx.Conv(3, 5, (3,), kernel_init=_np_init, ctx=nnx.context(0))
    assert conv.kernel.shape == (3, 3, 5)
    conv.bias = jnp.asarray(np.arange(5.0, dtype=np.float32))
    x = _randn((2, 10, 3))
    y = _call(conv, x)
    assert y.shape == (2, 10, 5)
    _close(y, _conv_ref(x, conv.kernel, conv.bias, (1,), "SAME"))
    valid = nnx.Conv(3, 5, (3,), padding="VALID", kernel_init=_np_init, ctx=nnx.context(0))
    assert _call(valid, x).shape == (2, 8, 5)
    _close(_call(valid, x), _conv_ref(x, valid.kernel, valid.bias, (1,), "VALID"))


def test_conv1d_causal_padding():
    conv = nnx.Conv(
        2, 3, (3,), padding="CAUSAL", kernel_dilation=2, kernel_init=_np_init, ctx=nnx.context(0)
    )
    x = _randn((2, 9, 2))
    y = _call(conv, x)
    assert y.shape == (2, 9, 3)
    _close(y, _conv_ref(x, conv.kernel, conv.bias, (1,), [(4, 0)], kernel_dilation=(2,)))
    # output t depends only on inputs <= t
    x2 = np.array(x)
    x2[:, 5:] = 100.0
    y2 = _call(conv, x2)
    _close(y2[:, :5], y[:, :5])


def test_conv3d():
    conv = nnx.Conv(2, 3, (2, 2, 2), kernel_init=_np_init, ctx=nnx.context(0))
    x = _randn((1, 4, 4, 4, 2))
    _close(_call(conv, x), _conv_ref(x, conv.kernel, conv.bias, (1, 1, 1), "SAME"))


@pytest.mark.parametrize(
    ("padding", "pads"),
    [
        (1, [(1, 1), (1, 1)]),
        ((1, 0), [(1, 1), (0, 0)]),
        (((1, 2), (0, 1)), [(1, 2), (0, 1)]),
    ],
)
def test_conv_explicit_padding(padding, pads):
    conv = nnx.Conv(3, 4, (3, 3), padding=padding, kernel_init=_np_init, ctx=nnx.context(0))
    x = _randn((2, 6, 5, 3))
    _close(_call(conv, x), _conv_ref(x, conv.kernel, conv.bias, (1, 1), pads))


def test_conv_circular_padding():
    conv = nnx.Conv(2, 3, (3, 2), padding="CIRCULAR", kernel_init=_np_init, ctx=nnx.context(0))
    x = _randn((2, 5, 4, 2))
    y = _call(conv, x)
    assert y.shape == (2, 5, 4, 3)
    # wrap-pad (k - 1) // 2 before and k // 2 after, then a VALID convolution
    wrapped = np.pad(np.asarray(x), [(0, 0), (1, 1), (0, 1), (0, 0)], mode="wrap")
    _close(y, _conv_ref(wrapped, conv.kernel, conv.bias, (1, 1), "VALID"))


@pytest.mark.parametrize(
    "padding",
    [
        "FOO",
        [(1, 1)],  # one pair for two spatial dimensions
        ((1, 2, 3), (0, 0)),  # a triple is not a (low, high) pair
    ],
)
def test_conv_invalid_padding(padding):
    x = _full((1, 6, 6, 3))
    with pytest.raises(ValueError, match="Invalid padding format"):
        nnx.Conv(3, 4, (3, 3), padding=padding, kernel_init=_np_init, ctx=nnx.context(0))(x)


def test_conv_causal_padding_is_1d_only():
    conv = nnx.Conv(3, 4, (3, 3), padding="CAUSAL", kernel_init=_np_init, ctx=nnx.context(0))
    with pytest.raises(ValueError, match="CAUSAL"):
        conv(_full((1, 6, 6, 3)))


def test_conv_feature_groups():
    conv = nnx.Conv(4, 6, (3, 3), feature_group_count=2, kernel_init=_np_init, ctx=nnx.context(0))
    assert conv.kernel.shape == (3, 3, 2, 6)
    assert conv.bias.shape == (6,)
    x = _randn((2, 5, 5, 4))
    y = _call(conv, x)
    assert y.shape == (2, 5, 5, 6)
    _close(y, _conv_ref(x, conv.kernel, conv.bias, (1, 1), "SAME", feature_group_count=2))


@pytest.mark.parametrize("kernel_size", [(3, 3), (3,)])
def test_conv_unbatched_input(kernel_size):
    n = len(kernel_size)
    conv = nnx.Conv(3, 4, kernel_size, kernel_init=_np_init, ctx=nnx.context(0))
    conv.bias = jnp.asarray(np.arange(4.0, dtype=np.float32))
    x = _randn((6,) * n + (3,))
    y = _call(conv, x)
    assert y.shape == (6,) * n + (4,)
    expected = _conv_ref(np.asarray(x)[None], conv.kernel, conv.bias, (1,) * n, "SAME")
    _close(y, np.asarray(expected)[0])


def test_conv_several_batch_dims():
    conv = nnx.Conv(3, 4, (3, 3), kernel_init=_np_init, ctx=nnx.context(0))
    x = _randn((2, 3, 5, 5, 3))
    y = _call(conv, x)
    assert y.shape == (2, 3, 5, 5, 4)
    flat = _conv_ref(np.asarray(x).reshape(6, 5, 5, 3), conv.kernel, conv.bias, (1, 1), "SAME")
    _close(y, np.asarray(flat).reshape(2, 3, 5, 5, 4))


@pytest.mark.parametrize("kernel_size", [3, 1])
def test_conv_int_kernel_size(kernel_size):
    with pytest.raises(TypeError, match="kernel_size"):
        nnx.Conv(3, 4, kernel_size, ctx=nnx.context(0))


def test_conv_without_bias():
    conv = nnx.Conv(3, 4, (3, 3), use_bias=False, kernel_init=_np_init, ctx=nnx.context(0))
    state = conv.get_state()
    assert list(state) == [("bias",), ("kernel",)]
    assert state[("bias",)] == nnx.Param(None)
    assert conv.bias is None
    assert len(jax.tree_util.tree_leaves(state)) == 1
    x = _randn((1, 5, 5, 3))
    _close(_call(conv, x), _conv_ref(x, conv.kernel, None, (1, 1), "SAME"))


def test_conv_dtypes():
    conv = nnx.Conv(
        3, 4, (3, 3), param_dtype=jnp.bfloat16, kernel_init=_np_init, ctx=nnx.context(0)
    )
    assert conv.kernel.dtype == jnp.bfloat16
    assert conv.bias.dtype == jnp.bfloat16
    conv = nnx.Conv(3, 4, (3, 3), dtype=jnp.bfloat16, kernel_init=_np_init, ctx=nnx.context(0))
    assert conv.kernel.dtype == jnp.float32
    assert _call(conv, _full((1, 4, 4, 3))).dtype == jnp.bfloat16
    # integer inputs are promoted to float32
    conv = nnx.Conv(3, 4, (3, 3), kernel_init=_np_init, ctx=nnx.context(0))
    y = _call(conv, _full((1, 4, 4, 3), 1, np.int32))
    assert y.dtype == jnp.float32
    _close(y, _call(conv, _full((1, 4, 4, 3))))


def test_conv_custom_initializers():
    conv = nnx.Conv(
        2,
        3,
        (2, 2),
        kernel_init=nnx.initializers.ones(),
        bias_init=nnx.initializers.constant(0.5),
        padding="VALID",
        ctx=nnx.context(0),
    )
    np.testing.assert_array_equal(conv.kernel, _full((2, 2, 2, 3)))
    # a sum over a 2x2 window of every input channel, plus 0.5
    y = _call(conv, _full((1, 3, 3, 2)))
    np.testing.assert_allclose(y, _full((1, 2, 2, 3), 8.5))


# ----------------------------------------------------------------------------------
# Shape checks on the layers' attributes


def test_layernorm_shape_checks():
    ln = nnx.LayerNorm(4, ctx=nnx.context(0))
    with pytest.raises(nnx.ShapeCheckError, match=r"LayerNorm\.scale"):
        ln.scale = _full(5)
    with pytest.raises(nnx.ShapeCheckError, match=r"LayerNorm\.scale"):
        ln.scale = nnx.Param(_full(5))
    with pytest.raises(nnx.ShapeCheckError, match=r"LayerNorm\.bias"):
        ln.bias = _full((4, 1))
    np.testing.assert_array_equal(ln.scale, _full(4))
    np.testing.assert_array_equal(ln.bias, _full(4, 0.0))
    ln.scale = _full(4, 2.0)  # the right shape is accepted
    np.testing.assert_array_equal(ln.scale, _full(4, 2.0))


def test_rmsnorm_shape_checks():
    rms = nnx.RMSNorm(4, ctx=nnx.context(0))
    with pytest.raises(nnx.ShapeCheckError, match=r"RMSNorm\.scale"):
        rms.scale = _full(5)
    with pytest.raises(nnx.ShapeCheckError, match=r"RMSNorm\.scale"):
        rms.scale = nnx.Param(_full((2, 2)))
    np.testing.assert_array_equal(rms.scale, _full(4))
    rms.scale = _full(4, 2.0)
    np.testing.assert_array_equal(rms.scale, _full(4, 2.0))


def test_groupnorm_shape_checks():
    gn = nnx.GroupNorm(6, num_groups=3, ctx=nnx.context(0))
    with pytest.raises(nnx.ShapeCheckError, match=r"GroupNorm\.scale"):
        gn.scale = _full(5)
    with pytest.raises(nnx.ShapeCheckError, match=r"GroupNorm\.bias"):
        gn.bias = nnx.Param(_full(3))
    np.testing.assert_array_equal(gn.scale, _full(6))
    np.testing.assert_array_equal(gn.bias, _full(6, 0.0))


def test_embed_shape_checks():
    emb = nnx.Embed(10, 4, ctx=nnx.context(0))
    old = emb.embedding
    with pytest.raises(nnx.ShapeCheckError, match=r"Embed\.embedding"):
        emb.embedding = _full(40)
    with pytest.raises(nnx.ShapeCheckError, match=r"Embed\.embedding"):
        emb.embedding = _full((10, 5))
    with pytest.raises(nnx.ShapeCheckError, match=r"Embed\.embedding"):
        emb.embedding = nnx.Param(_full((11, 4)))
    np.testing.assert_array_equal(emb.embedding, old)
    emb.embedding = _full((10, 4), 0.0)
    np.testing.assert_array_equal(_call(emb, jnp.array([1])), _full((1, 4), 0.0))


def test_conv_shape_checks():
    conv = nnx.Conv(3, 4, (3, 3), kernel_init=_np_init, ctx=nnx.context(0))
    old = conv.kernel
    with pytest.raises(nnx.ShapeCheckError, match=r"Conv\.kernel"):
        conv.kernel = _full((3, 3, 3, 5))
    with pytest.raises(nnx.ShapeCheckError, match=r"Conv\.kernel"):
        conv.kernel = nnx.Param(_full((3, 3, 3, 2)))
    with pytest.raises(nnx.ShapeCheckError, match=r"Conv\.bias"):
        conv.bias = _full(5)
    np.testing.assert_array_equal(conv.kernel, old)
    np.testing.assert_array_equal(conv.bias, _full(4, 0.0))
    conv.kernel = _full((3, 3, 3, 4), 0.0)
    np.testing.assert_array_equal(_call(conv, _full((1, 4, 4, 3))), _full((1, 4, 4, 4), 0.0))


def test_conv_shape_checks_in_features():
    conv = nnx.Conv(3, 4, (3, 3), kernel_init=_np_init, ctx=nnx.context(0))
    with pytest.raises(nnx.ShapeCheckError, match=r"Conv\.kernel"):
        conv.kernel = nnx.Param(_full((3, 3, 2, 4)))


def test_conv_shape_checks_kernel_size():
    conv = nnx.Conv(3, 4, (3, 3), kernel_init=_np_init, ctx=nnx.context(0))
    with pytest.raises(nnx.ShapeCheckError, match=r"Conv\.kernel"):
        conv.kernel = _full((5, 5, 3, 4))
    with pytest.raises(nnx.ShapeCheckError, match=r"Conv\.kernel"):
        conv.kernel = _full((3, 3, 4))  # a 1-D kernel


# ----------------------------------------------------------------------------------
# Transforms


_LAYERS = {
    "layernorm": (lambda ctx: nnx.LayerNorm(4, ctx=ctx), lambda: _randn((2, 4))),
    "rmsnorm": (lambda ctx: nnx.RMSNorm(4, ctx=ctx), lambda: _randn((2, 4))),
    "groupnorm": (lambda ctx: nnx.GroupNorm(4, num_groups=2, ctx=ctx), lambda: _randn((2, 3, 4))),
    "embed": (lambda ctx: nnx.Embed(10, 4, ctx=ctx), lambda: jnp.array([[1, 2], [3, 9]])),
    "conv": (
        lambda ctx: nnx.Conv(4, 2, (3,), kernel_init=_np_init, ctx=ctx),
        lambda: _randn((2, 5, 4)),
    ),
}


@pytest.mark.parametrize("name", sorted(_LAYERS))
def test_layers_under_jit_and_merge(name):
    make, inputs = _LAYERS[name]
    layer, x = make(nnx.context(0)), inputs()
    eager = layer(x)
    _close(_call(layer, x), eager)
    state, moduledef = layer.partition()
    _close(moduledef.merge(state)(x), eager)
    _close(jax.jit(lambda s, x: moduledef.apply(s)(x)[0])(state, x), eager)


class TinyModel(nnx.Module):
    def __init__(self, *, ctx: nnx.Context):
        # numpy initializers keep the test fast; the default ones are tested above
        self.embed = nnx.Embed(10, 8, embedding_init=_np_init, ctx=ctx)
        self.conv = nnx.Conv(8, 8, (3,), kernel_init=_np_init, ctx=ctx)
        self.gn = nnx.GroupNorm(8, num_groups=4, ctx=ctx)
        self.ln = nnx.LayerNorm(8, use_bias=False, ctx=ctx)  # a Param(None) entry
        self.rms = nnx.RMSNorm(8, ctx=ctx)

    def __call__(self, ids):
        x = self.embed(ids)  # (B, L, 8)
        x = self.conv(x)
        x = nnx.relu(self.gn(x))
        x = self.ln(x)
        x = self.rms(x)
        return self.embed.attend(x)  # (B, L, 10)


def test_jit_and_grad_through_layers():
    model = TinyModel(ctx=nnx.context(0))
    ids = _randint((4, 6), 10)
    targets = jnp.asarray((np.asarray(ids) + 1) % 10)

    def loss_fn(model):
        logits = model(ids)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], -1))

    @nnx.jit
    def train_step(model):
        loss = loss_fn(model)
        grads = nnx.grad(loss_fn, wrt=nnx.Param)(model)
        model.update_state(jax.tree.map(lambda w, g: w - 0.1 * g, model.filter(nnx.Param), grads))
        return loss, grads

    params0 = {path: v.value for path, v in model.filter(nnx.Param).items()}
    loss0, grads = train_step(model)
    assert (
        list(grads)
        == list(params0)
        == [
            ("conv", "bias"),
            ("conv", "kernel"),
            ("embed", "embedding"),
            ("gn", "bias"),
            ("gn", "scale"),
            ("ln", "bias"),
            ("ln", "scale"),
            ("rms", "scale"),
        ]
    )
    assert grads[("ln", "bias")] == nnx.Param(None)
    for path, g in grads.items():
        assert type(g) is nnx.Param, path
        if path == ("ln", "bias"):
            continue
        assert g.value.shape == params0[path].shape, path
        assert np.isfinite(g.value).all(), path
        assert np.abs(g.value).sum() > 0, path
    # the SGD step was written back into the model; the Variables keep their kind
    new = model.filter(nnx.Param)
    for path, g in grads.items():
        if g.value is not None:
            expected = np.asarray(params0[path]) - 0.1 * np.asarray(g.value)
            _close(new[path].value, expected, rtol=1e-5, atol=1e-6)
    assert model.ln.bias is None
    assert type(vars(model.ln)["scale"]) is nnx.Param
    assert model.conv.kernel.shape == (3, 8, 8)
    # and lowered the loss
    loss1, _ = train_step(model)
    loss2, _ = train_step(model)
    assert float(loss2) < float(loss1) < float(loss0)


def test_instance_norm_normalizes_each_example_and_channel_over_space():
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3)) * 3.0 + 1.0
    norm = nnx.InstanceNorm(3, ctx=nnx.context(0))
    norm.scale = jnp.array([1.0, 2.0, 3.0])
    norm.bias = jnp.array([0.0, 1.0, -1.0])
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    expected = (x - mean) / jnp.sqrt(var + 1e-6) * norm.scale + norm.bias
    np.testing.assert_allclose(norm(x), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(nnx.ShapeCheckError, match="InstanceNorm.__call__: argument x"):
        norm(jnp.ones((2, 5, 6, 4)))


def test_prelu_learns_its_negative_slope():
    act = nnx.PReLU(0.25)
    x = jnp.array([-4.0, -1.0, 0.0, 2.0])
    np.testing.assert_allclose(act(x), jnp.where(x >= 0, x, 0.25 * x))
    grads = nnx.grad(lambda m: jnp.sum(m(x)))(act)
    np.testing.assert_allclose(grads[("negative_slope",)].value, -5.0)

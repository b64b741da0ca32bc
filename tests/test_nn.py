"""Layers: Linear, BatchNorm, Dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

# ----------------------------------------------------------------------------------
# Linear


def test_linear_shapes_and_init():
    linear = nnx.Linear(3, 4, ctx=nnx.context(0))
    assert linear.kernel.shape == (3, 4)
    assert linear.bias.shape == (4,)
    assert linear.kernel.dtype == jnp.float32
    np.testing.assert_array_equal(linear.bias, jnp.zeros(4))
    # the kernel uses the first key drawn from "params", with lecun_normal
    ctx = nnx.context(0)
    expected = nnx.initializers.lecun_normal()(ctx.make_rng("params"), (3, 4), jnp.float32)
    np.testing.assert_array_equal(linear.kernel, expected)

    state = linear.get_state()
    assert list(state) == [("bias",), ("kernel",)]
    assert all(type(v) is nnx.Param for v in state.values())


@pytest.mark.parametrize("batch", [(), (5,), (2, 5)])
def test_linear_call(batch):
    linear = nnx.Linear(3, 4, ctx=nnx.context(0))
    x = jnp.arange(np.prod(batch, dtype=int) * 3, dtype=jnp.float32).reshape((*batch, 3))
    y = linear(x)
    assert y.shape == (*batch, 4)
    np.testing.assert_allclose(y, x @ linear.kernel + linear.bias, rtol=1e-5, atol=1e-6)


def test_linear_without_bias():
    linear = nnx.Linear(3, 4, use_bias=False, ctx=nnx.context(0))
    state = linear.get_state()
    assert list(state) == [("bias",), ("kernel",)]
    assert state[("bias",)] == nnx.Param(None)
    assert linear.bias is None
    assert len(jax.tree_util.tree_leaves(state)) == 1
    x = jnp.ones((2, 3))
    np.testing.assert_allclose(linear(x), x @ linear.kernel, rtol=1e-6)
    # merge restores the empty bias
    state, moduledef = linear.partition()
    assert moduledef.merge(state).bias is None


def test_linear_int_input_is_promoted():
    linear = nnx.Linear(3, 2, ctx=nnx.context(0))
    y = linear(jnp.ones((1, 3), jnp.int32))
    assert y.dtype == jnp.float32


def test_linear_custom_initializers():
    linear = nnx.Linear(
        2,
        3,
        kernel_init=nnx.initializers.ones(),
        bias_init=nnx.initializers.constant(0.5),
        ctx=nnx.context(0),
    )
    np.testing.assert_array_equal(linear.kernel, jnp.ones((2, 3)))
    np.testing.assert_array_equal(linear.bias, jnp.full(3, 0.5))


# ----------------------------------------------------------------------------------
# BatchNorm


def _batch():
    return jnp.arange(12.0).reshape(4, 3)


def test_batchnorm_state():
    bn = nnx.BatchNorm(3, ctx=nnx.context(0))
    (params, stats), _ = bn.partition(nnx.Param, nnx.BatchStat)
    assert list(params) == [("bias",), ("scale",)]
    assert list(stats) == [("mean",), ("var",)]
    np.testing.assert_array_equal(bn.mean, jnp.zeros(3))
    np.testing.assert_array_equal(bn.var, jnp.ones(3))


def test_batchnorm_train_mode_updates_running_stats():
    bn = nnx.BatchNorm(3, momentum=0.9, ctx=nnx.context(0))
    x = _batch()
    y = bn(x, use_running_average=False)
    batch_mean = x.mean(0)
    batch_var = x.var(0)
    np.testing.assert_allclose(bn.mean, 0.1 * batch_mean, rtol=1e-6)
    np.testing.assert_allclose(bn.var, 0.9 + 0.1 * batch_var, rtol=1e-6)
    assert type(vars(bn)["mean"]) is nnx.BatchStat
    # normalised with the batch statistics
    np.testing.assert_allclose(y, (x - batch_mean) / jnp.sqrt(batch_var + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(y.mean(0), jnp.zeros(3), atol=1e-6)


def test_batchnorm_eval_mode_uses_and_keeps_running_stats():
    bn = nnx.BatchNorm(3, ctx=nnx.context(0))
    bn.mean = jnp.array([1.0, 2.0, 3.0])
    bn.var = jnp.array([4.0, 4.0, 4.0])
    x = _batch()
    y = bn(x, use_running_average=True)
    np.testing.assert_allclose(y, (x - bn.mean) / jnp.sqrt(4.0 + 1e-5), rtol=1e-6)
    np.testing.assert_array_equal(bn.mean, jnp.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(bn.var, jnp.full(3, 4.0))


def test_batchnorm_mode_sources():
    x = _batch()
    # the Context flag
    bn = nnx.BatchNorm(3, ctx=nnx.context(0))
    bn(x, ctx=nnx.context(flags=dict(use_running_average=True)))
    np.testing.assert_array_equal(bn.mean, jnp.zeros(3))
    bn(x, ctx=nnx.context(flags=dict(use_running_average=False)))
    assert not np.array_equal(bn.mean, jnp.zeros(3))
    # the attribute wins over the flag, the call argument over both
    bn = nnx.BatchNorm(3, use_running_average=True, ctx=nnx.context(0))
    bn(x, ctx=nnx.context(flags=dict(use_running_average=False)))
    np.testing.assert_array_equal(bn.mean, jnp.zeros(3))
    bn(x, use_running_average=False, ctx=nnx.context(flags=dict(use_running_average=True)))
    assert not np.array_equal(bn.mean, jnp.zeros(3))


def test_batchnorm_without_mode():
    bn = nnx.BatchNorm(3, ctx=nnx.context(0))
    with pytest.raises(ValueError, match="use_running_average"):
        bn(_batch())
    with pytest.raises(ValueError, match="use_running_average"):
        bn(_batch(), ctx=nnx.context(0))


def test_batchnorm_functional_train_step():
    bn = nnx.BatchNorm(3, ctx=nnx.context(0))
    state, moduledef = bn.partition()

    @jax.jit
    def step(state, x):
        return moduledef.apply(state)(x, use_running_average=False)

    y, (new_state, _) = step(state, _batch())
    assert y.shape == (4, 3)
    np.testing.assert_allclose(new_state[("mean",)].value, 0.01 * _batch().mean(0), rtol=1e-6)
    np.testing.assert_array_equal(state[("mean",)].value, jnp.zeros(3))
    bn.update_state(new_state)
    np.testing.assert_allclose(bn.mean, 0.01 * _batch().mean(0), rtol=1e-6)


# ----------------------------------------------------------------------------------
# Dropout


def test_dropout_rate_zero_needs_no_mode():
    x = _batch()
    assert nnx.Dropout(0.0)(x) is x


def test_dropout_deterministic():
    x = _batch()
    do = nnx.Dropout(0.5)
    assert do(x, deterministic=True) is x
    assert nnx.Dropout(0.5, deterministic=True)(x) is x
    assert do(x, ctx=nnx.context(flags=dict(deterministic=True))) is x


def test_dropout_needs_a_mode():
    with pytest.raises(ValueError, match="deterministic"):
        nnx.Dropout(0.5)(_batch())


def test_dropout_needs_ctx():
    with pytest.raises(ValueError, match="no 'ctx'"):
        nnx.Dropout(0.5)(_batch(), deterministic=False)


def test_dropout_mask():
    x = jnp.ones((64, 8))
    do = nnx.Dropout(0.5)
    y = do(x, deterministic=False, ctx=nnx.context(dropout=0))
    kept = np.asarray(y) != 0
    np.testing.assert_array_equal(np.asarray(y)[kept], np.full(kept.sum(), 2.0))
    assert 0 < kept.sum() < x.size
    # same key, same mask; another key, another mask
    y2 = do(x, deterministic=False, ctx=nnx.context(dropout=0))
    np.testing.assert_array_equal(y, y2)
    y3 = do(x, deterministic=False, ctx=nnx.context(dropout=1))
    assert not np.array_equal(y, y3)
    # the mask comes from ctx.make_rng("dropout")
    key = nnx.context(dropout=0).make_rng("dropout")
    mask = jax.random.bernoulli(key, 0.5, x.shape)
    np.testing.assert_array_equal(kept, np.asarray(mask))


def test_dropout_rate_one_and_broadcast_dims():
    x = jnp.ones((4, 6))
    y = nnx.Dropout(1.0)(x, deterministic=False)
    np.testing.assert_array_equal(y, jnp.zeros((4, 6)))
    y = nnx.Dropout(0.5, broadcast_dims=(0,))(x, deterministic=False, ctx=nnx.context(dropout=0))
    # the same mask for every row
    assert all(np.array_equal(y[0], y[i]) for i in range(4))


def test_dropout_custom_stream_and_no_state():
    do = nnx.Dropout(0.5, rng_collection="noise")
    with pytest.raises(ValueError, match="Unknown Rng Stream: 'noise'"):
        do(jnp.ones(3), deterministic=False, ctx=nnx.context(dropout=0))
    state, moduledef = do.partition()
    assert len(state) == 0
    assert hash(moduledef) == hash(nnx.Dropout(0.5, rng_collection="noise").get_module_def())
    assert moduledef.merge(state).rate == 0.5

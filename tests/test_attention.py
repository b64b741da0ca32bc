import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


def _attn(**kwargs):
    return nnx.MultiHeadAttention(4, 16, ctx=nnx.context(0), **kwargs)


def _x(shape=(2, 6, 16)):
    return jax.random.normal(jax.random.key(1), shape)


def _reference(attn, xq, xkv, mask=None):
    def heads(y):
        return y.reshape(*y.shape[:-1], 4, 4)

    q = heads(xq @ attn.query.kernel + attn.query.bias)
    k = heads(xkv @ attn.key.kernel + attn.key.bias)
    v = heads(xkv @ attn.value.kernel + attn.value.bias)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / 2.0
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
    w = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", w, v).reshape(*xq.shape[:-1], 16)
    return out @ attn.out.kernel + attn.out.bias


def test_self_and_cross_attention_match_the_formula():
    attn = _attn()
    x = _x()
    np.testing.assert_allclose(attn(x), _reference(attn, x, x), rtol=1e-4, atol=1e-5)
    kv = _x((2, 3, 16))
    np.testing.assert_allclose(attn(x, kv), _reference(attn, x, kv), rtol=1e-4, atol=1e-5)


def test_causal_mask_hides_the_future():
    attn = _attn()
    x = _x()
    mask = jnp.tril(jnp.ones((6, 6), bool))
    np.testing.assert_allclose(
        attn(x, causal=True), _reference(attn, x, x, mask), rtol=1e-4, atol=1e-5
    )
    # changing a later token leaves earlier outputs unchanged
    y = attn(x.at[:, 4].set(0.0), causal=True)
    np.testing.assert_allclose(y[:, :4], attn(x, causal=True)[:, :4], rtol=1e-5, atol=1e-6)


def test_kv_cache_decoding_matches_causal_attention_eagerly_and_under_jit():
    attn = _attn()
    x = _x()
    full = attn(x, causal=True)
    attn.init_cache(2, 6)
    eager = jnp.concatenate([attn(x[:, t : t + 1], decode=True) for t in range(6)], axis=1)
    np.testing.assert_allclose(eager, full, rtol=1e-4, atol=1e-5)
    assert int(attn.cache_index) == 6
    assert set(attn.filter(nnx.Cache)) == {("cache_index",), ("cached_key",), ("cached_value",)}

    attn.init_cache(2, 6)
    traces = []

    @nnx.jit
    def step(attn, token):
        traces.append(1)
        return attn(token, decode=True)

    jitted = jnp.concatenate([step(attn, x[:, t : t + 1]) for t in range(6)], axis=1)
    np.testing.assert_allclose(jitted, full, rtol=1e-4, atol=1e-5)
    assert len(traces) == 1
    assert int(attn.cache_index) == 6


def test_decode_without_a_cache_is_a_clear_error():
    with pytest.raises(ValueError, match="init_cache"):
        _attn()(_x(), decode=True)


def test_heads_must_divide_features_and_cache_shapes_are_checked():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nnx.MultiHeadAttention(3, 16, ctx=nnx.context(0))
    attn = _attn()
    attn.init_cache(2, 6)
    with pytest.raises(nnx.ShapeCheckError, match="cached_value"):
        attn.cached_value = jnp.zeros((2, 5, 4, 4))


def test_attention_dropout_needs_a_mode_and_a_context():
    attn = _attn(dropout_rate=0.5)
    x = _x()
    with pytest.raises(ValueError, match="deterministic"):
        attn(x)
    np.testing.assert_allclose(
        attn(x, deterministic=True), _reference(attn, x, x), rtol=1e-4, atol=1e-5
    )
    a = attn(x, deterministic=False, ctx=nnx.context(dropout=0))
    b = attn(x, deterministic=False, ctx=nnx.context(dropout=1))
    assert not np.allclose(a, b)


@pytest.mark.parametrize("name", ["qkv_features", "out_features"])
def test_zero_feature_sizes_are_refused_not_replaced(name):
    # regression: `qkv_features or in_features` silently read 0 as "in_features"
    with pytest.raises(ValueError, match=f"MultiHeadAttention.*{name}.*0"):
        nnx.MultiHeadAttention(2, 8, **{name: 0}, ctx=nnx.context(0))


def test_rotary_embedding_makes_scores_depend_on_relative_positions():
    q = jax.random.normal(jax.random.key(0), (1, 1, 1, 8))
    k = jax.random.normal(jax.random.key(1), (1, 1, 1, 8))

    def score(m: int, n: int) -> jax.Array:
        rq = nnx.rotary_embedding(q, jnp.array([m]))
        rk = nnx.rotary_embedding(k, jnp.array([n]))
        return jnp.sum(rq * rk)

    np.testing.assert_allclose(score(3, 1), score(7, 5), rtol=1e-5)  # both 2 apart
    assert not np.allclose(score(3, 1), score(3, 2))
    x = jax.random.normal(jax.random.key(2), (2, 5, 2, 8))
    np.testing.assert_allclose(nnx.rotary_embedding(x, jnp.zeros(5)), x)  # position 0: identity
    with pytest.raises(ValueError, match="head_dim must be even"):
        nnx.rotary_embedding(jnp.ones((1, 2, 1, 3)))


def test_rotary_attention_decodes_like_the_full_causal_pass():
    attn = nnx.MultiHeadAttention(2, 8, rotary=True, ctx=nnx.context(0))
    plain = nnx.MultiHeadAttention(2, 8, ctx=nnx.context(0))
    x = jax.random.normal(jax.random.key(3), (1, 4, 8))
    full = attn(x, causal=True)
    assert not np.allclose(full, plain(x, causal=True))  # the rotation changes scores
    attn.init_cache(batch_size=1, max_length=4)
    steps = [attn(x[:, i : i + 1], decode=True) for i in range(4)]
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5)
    with pytest.raises(ValueError, match="rotary=True needs an even head_dim"):
        nnx.MultiHeadAttention(2, 6, qkv_features=6, rotary=True, ctx=nnx.context(0))

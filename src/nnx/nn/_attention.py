"""Multi-head dot-product attention, with a causal mask and a kv-cache for decoding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int, Shaped

from .._context import Context
from .._module import Module
from .._module_object import vars_of
from .._variables import Cache
from ._common import positive, probability, reshape, resolve_flag
from ._linear import Linear

__all__ = ["MultiHeadAttention", "dot_product_attention"]

_dynamic_update_slice: Callable[..., jax.Array] = getattr(lax, "dynamic_update_slice")  # noqa: B009
_einsum: Callable[..., jax.Array] = getattr(jnp, "einsum")  # noqa: B009


def _lowest(dtype: Any) -> float:
    finfo: Callable[[Any], Any] = getattr(jnp, "finfo")  # noqa: B009
    return float(finfo(dtype).min)


def dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    mask: jax.Array | None = None,
    *,
    dropout_rate: float = 0.0,
    deterministic: bool = True,
    ctx: Context | None = None,
) -> jax.Array:
    """`softmax(q·kᵀ/√d + mask) · v` over `(batch..., length, heads, head_dim)` inputs.

    The logits of masked-out pairs are set to the lowest finite value of their dtype
    before the softmax (a row with nothing allowed attends uniformly).

    Args:
        query: Queries, `(batch..., q_length, heads, head_dim)`.
        key: Keys, `(batch..., kv_length, heads, head_dim)`.
        value: Values, `(batch..., kv_length, heads, v_dim)`.
        mask: Boolean, broadcastable to `(batch..., heads, q_length, kv_length)`, True
            where attending is allowed. Default: everything allowed.
        dropout_rate: Probability of dropping an attention weight (the rest are
            scaled by `1 / (1 - dropout_rate)`). Default 0.
        deterministic: If True (the default), no dropout.
        ctx: The Context to draw the dropout mask from (stream `"dropout"`).

    Returns:
        The attended values, `(batch..., q_length, heads, v_dim)`.

    Raises:
        ValueError: If dropout is applied and `ctx` is None.

    Example:
        ```python
        q = jnp.linspace(-1.0, 1.0, 64).reshape(1, 4, 2, 8)  # batch, length, heads, dim
        causal = jnp.tril(jnp.ones((4, 4), bool))
        out = nnx.dot_product_attention(q, q, q, causal)
        assert out.shape == (1, 4, 2, 8)
        assert jnp.allclose(out[:, 0], q[:, 0], atol=1e-6)  # position 0 sees only itself
        ```
    """
    depth = query.shape[-1]
    logits = _einsum("...qhd,...khd->...hqk", query / jnp.sqrt(depth).astype(query.dtype), key)
    if mask is not None:
        logits = jnp.where(mask, logits, _lowest(logits.dtype))
    weights = jax.nn.softmax(logits, axis=-1)
    if dropout_rate > 0.0 and not deterministic:
        if ctx is None:
            raise ValueError("dot_product_attention: attention dropout needs ctx=")
        keep = jax.random.bernoulli(ctx.make_rng("dropout"), 1.0 - dropout_rate, weights.shape)
        weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
    return _einsum("...hqk,...khd->...qhd", weights, value)


def rotary_embedding(
    x: Shaped[Array, "*batch seq heads head_dim"],
    positions: jax.Array | None = None,
    *,
    base: float = 10000.0,
) -> Shaped[Array, "*batch seq heads head_dim"]:
    """Rotary position embedding (RoPE): rotate pairs of features of each head by
    angles proportional to the position, so that `q . k` depends on positions only
    through their difference.

    The two halves of `head_dim` are the pairs' coordinates (the GPT-NeoX layout);
    frequencies are `base ** (-i / (head_dim / 2))`.

    Args:
        x: Queries or keys, `(..., seq, heads, head_dim)` with an even `head_dim`.
        positions: The position of each step, broadcastable to `(..., seq)`. Default
            `0, 1, ..., seq - 1`.
        base: The frequency base. Default 10000.

    Returns:
        `x` rotated, same shape and dtype.

    Raises:
        ValueError: If `head_dim` is odd.

    Example:
        ```python
        q = jax.random.normal(jax.random.key(0), (1, 6, 2, 8))
        k = jax.random.normal(jax.random.key(1), (1, 6, 2, 8))
        rq, rk = nnx.rotary_embedding(q), nnx.rotary_embedding(k)
        assert jnp.allclose(jnp.linalg.norm(rq, axis=-1), jnp.linalg.norm(q, axis=-1), atol=1e-5)
        shifted = nnx.rotary_embedding(q, jnp.arange(6) + 3)
        assert not jnp.allclose(shifted, rq)
        ```
    """
    head_dim = x.shape[-1]
    if head_dim % 2:
        raise ValueError(f"rotary_embedding: head_dim must be even, got {head_dim}")
    half = head_dim // 2
    seq = x.shape[-3]
    pos = jnp.arange(seq) if positions is None else jnp.asarray(positions)
    freqs = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = pos.astype(jnp.float32)[..., None] * freqs  # (..., seq, half)
    cos = jnp.cos(angles)[..., None, :]
    sin = jnp.sin(angles)[..., None, :]
    x1, x2 = x[..., :half], x[..., half:]
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)


class MultiHeadAttention(Module):
    """Multi-head attention: `attn(x)` (self-attention) or `attn(q_inputs, kv_inputs)`.

    `causal=True` masks future positions. For autoregressive decoding call
    `init_cache(batch, max_length)` once, then `attn(x_step, decode=True)` per step: the
    keys and values of each step go into `Cache` Variables (`cached_key`,
    `cached_value`, `cache_index`) and each query attends to the cache so far.

    The submodules `query`, `key`, `value` (`in_features -> qkv_features`) and `out`
    (`qkv_features -> out_features`) are `nnx.Linear` layers; the `qkv_features` are
    split into `num_heads` heads of `head_dim = qkv_features // num_heads`.

    Args:
        num_heads: Number of heads (> 0).
        in_features: Size of the last axis of the inputs (> 0).
        qkv_features: Total size of the queries, keys and values, divisible by
            `num_heads`. Default: `in_features`.
        out_features: Size of the last output axis. Default:
            `in_features`.
        dropout_rate: Dropout on the attention weights, in [0, 1]. Default 0.
        deterministic: The default dropout mode. Default None: decided per call
            (only asked for when `dropout_rate > 0`).
        rotary: Whether to apply `nnx.rotary_embedding` to the queries and keys (at
            their positions; when decoding, continuing from the cache). Default False.
        use_bias: Whether the projections have biases. Default True.
        dtype: The computation dtype of the projections. Default: promoted.
        param_dtype: The dtype of the parameters. Default float32.
        ctx: The Context to draw parameter keys from (stream `"params"`).

    Raises:
        ValueError: If a size is not a positive int, `dropout_rate` is not in [0, 1],
            or `qkv_features` is not divisible by `num_heads`.

    Example:
        ```python
        attn = nnx.MultiHeadAttention(num_heads=2, in_features=8, ctx=nnx.context(0))
        x = jnp.sin(jnp.arange(32.0)).reshape(1, 4, 8)
        full = attn(x, causal=True)
        assert full.shape == (1, 4, 8)

        attn.init_cache(batch_size=1, max_length=4)  # decode one position at a time
        steps = [attn(x[:, i : i + 1], decode=True) for i in range(4)]
        assert jnp.allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5)
        assert attn.cache_index == 4
        ```
    """

    cached_key: Cache[Float[Array, "batch max_length num_heads head_dim"]]
    cached_value: Cache[Float[Array, "batch max_length num_heads head_dim"]]
    cache_index: Cache[Int[Array, ""]]
    num_heads: int
    head_dim: int
    in_features: int
    out_features: int

    def __init__(
        self,
        num_heads: int,
        in_features: int,
        qkv_features: int | None = None,
        out_features: int | None = None,
        *,
        dropout_rate: float = 0.0,
        deterministic: bool | None = None,
        rotary: bool = False,
        use_bias: bool = True,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        ctx: Context,
    ) -> None:
        positive("MultiHeadAttention", "num_heads", num_heads)
        positive("MultiHeadAttention", "in_features", in_features)
        # None means in_features; 0 is a size like any other (and refused as one)
        qkv = in_features if qkv_features is None else qkv_features
        out = in_features if out_features is None else out_features
        qkv_features = positive("MultiHeadAttention", "qkv_features", qkv)
        out_features = positive("MultiHeadAttention", "out_features", out)
        probability("MultiHeadAttention", "dropout_rate", dropout_rate)
        if qkv_features % num_heads != 0:
            raise ValueError(
                f"MultiHeadAttention: qkv_features ({qkv_features}) must be divisible by "
                f"num_heads ({num_heads})"
            )

        def dense(din: int, dout: int) -> Linear:
            return Linear(
                din, dout, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, ctx=ctx
            )

        self.query = dense(in_features, qkv_features)
        self.key = dense(in_features, qkv_features)
        self.value = dense(in_features, qkv_features)
        self.out = dense(qkv_features, out_features)
        self.num_heads = num_heads
        self.head_dim = qkv_features // num_heads
        self.in_features = in_features
        self.out_features = out_features
        self.dropout_rate = dropout_rate
        self.deterministic = deterministic
        if rotary and self.head_dim % 2:
            raise ValueError(
                f"MultiHeadAttention: rotary=True needs an even head_dim, got {self.head_dim}"
            )
        self.rotary = rotary

    def init_cache(self, batch_size: int, max_length: int, dtype: Any = jnp.float32) -> None:
        """Create an empty kv-cache for decoding `max_length` positions.

        Sets the `Cache` Variables `cached_key` and `cached_value` (zeros of shape
        `(batch_size, max_length, num_heads, head_dim)`) and `cache_index` (int32 0),
        replacing any earlier cache.

        Args:
            batch_size: The batch size of the decoded inputs.
            max_length: The number of positions the cache holds. Nothing checks that
                decoding stays within it.
            dtype: The dtype of the cached keys and values. Default float32.
        """
        shape = (batch_size, max_length, self.num_heads, self.head_dim)
        self.cached_key = Cache(jnp.zeros(shape, dtype))
        self.cached_value = Cache(jnp.zeros(shape, dtype))
        self.cache_index = Cache(jnp.array(0, jnp.int32))

    def _heads(self, x: jax.Array) -> jax.Array:
        return reshape(x, (*x.shape[:-1], self.num_heads, self.head_dim))

    def __call__(
        self,
        inputs_q: Shaped[Array, "*batch_dims q_length in_features"],
        inputs_kv: Shaped[Array, "*batch_dims kv_length in_features"] | None = None,
        *,
        mask: jax.Array | None = None,
        causal: bool = False,
        decode: bool = False,
        deterministic: bool | None = None,
        ctx: Context | None = None,
    ) -> Shaped[Array, "*batch_dims q_length out_features"]:
        """Attend from `inputs_q` to `inputs_kv` (or to `inputs_q` itself).

        Args:
            inputs_q: Query inputs, `(batch..., q_length, in_features)`.
            inputs_kv: Key/value inputs, `(batch..., kv_length, in_features)`.
                Default: `inputs_q` (self-attention).
            mask: Boolean, broadcastable to `(batch..., num_heads, q_length,
                kv_length)` (with `decode`, `kv_length` is `max_length`), True where
                attending is allowed; combined with the causal or cache mask.
            causal: Whether query `i` may only attend to keys up to `i` (aligned at
                the end when `kv_length > q_length`). Ignored with `decode`.
            decode: Whether to append this step's keys and values to the cache at
                `cache_index` and attend to every cached position up to each query's
                own; advances `cache_index` by `q_length`.
            deterministic: Whether to skip attention dropout. Default: the attribute,
                then the Context flag `deterministic`; only used when
                `dropout_rate > 0`.
            ctx: The Context for dropout (stream `"dropout"`) and its flag.

        Returns:
            The output, `(batch..., q_length, out_features)`.

        Raises:
            ValueError: If `decode` is set and `init_cache` was not called, or dropout
                is on and no mode or no `ctx` is given.
        """
        inputs_kv = inputs_q if inputs_kv is None else inputs_kv
        query = self._heads(self.query(inputs_q))
        key = self._heads(self.key(inputs_kv))
        value = self._heads(self.value(inputs_kv))
        q_len = query.shape[-3]
        if self.rotary:  # positions continue from the cache when decoding
            offset = self.cache_index if decode and "cache_index" in vars_of(self) else 0
            query = rotary_embedding(query, jnp.add(offset, jnp.arange(q_len)))
            key = rotary_embedding(key, jnp.add(offset, jnp.arange(key.shape[-3])))
        if decode:
            key, value, allowed = self._decode_step(key, value, q_len)
            mask = allowed if mask is None else jnp.logical_and(mask, allowed)
        elif causal:
            kv_len = key.shape[-3]
            allowed = jnp.tril(jnp.ones((q_len, kv_len), bool), k=kv_len - q_len)
            mask = allowed if mask is None else jnp.logical_and(mask, allowed)
        if self.dropout_rate > 0.0:
            deterministic = resolve_flag(
                "MultiHeadAttention",
                "deterministic",
                "apply attention dropout",
                deterministic,
                self.deterministic,
                ctx,
            )
        else:
            deterministic = True
        out = dot_product_attention(
            query,
            key,
            value,
            mask,
            dropout_rate=self.dropout_rate,
            deterministic=deterministic,
            ctx=ctx,
        )
        return self.out(reshape(out, (*out.shape[:-2], self.num_heads * self.head_dim)))

    def _decode_step(
        self, key: jax.Array, value: jax.Array, q_len: int
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Write this step's keys and values into the cache: `(all cached keys, all
        cached values, the mask of what each new query may attend to)`."""
        if "cache_index" not in vars_of(self):
            raise ValueError(
                "MultiHeadAttention: decode=True needs a cache; call "
                "init_cache(batch_size, max_length) first"
            )
        index: jax.Array = self.cache_index
        start = (0, index, 0, 0)
        self.cached_key = _dynamic_update_slice(
            self.cached_key, key.astype(self.cached_key.dtype), start
        )
        self.cached_value = _dynamic_update_slice(
            self.cached_value, value.astype(self.cached_value.dtype), start
        )
        self.cache_index = index + q_len
        # query i (at position index + i) may attend to keys at positions <= its own
        positions = jnp.expand_dims(jnp.add(index, jnp.arange(q_len)), 1)
        cached_len = self.cached_key.shape[-3]
        allowed = jnp.less_equal(jnp.expand_dims(jnp.arange(cached_len), 0), positions)
        return self.cached_key, self.cached_value, allowed

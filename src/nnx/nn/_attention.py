"""Multi-head dot-product attention, with a causal mask and a kv-cache for decoding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int

from .._context import Context
from .._module import Module
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

    `mask` (broadcastable to `(batch..., heads, q_length, kv_length)`) is True where
    attending is allowed.
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


class MultiHeadAttention(Module):
    """Multi-head attention: `attn(x)` (self-attention) or `attn(q_inputs, kv_inputs)`.

    `causal=True` masks future positions. For autoregressive decoding call
    `init_cache(batch, max_length)` once, then `attn(x_step, decode=True)` per step: the
    keys and values of each step go into `Cache` Variables (`cached_key`,
    `cached_value`, `cache_index`) and each query attends to the cache so far.
    """

    cached_key: Cache[Float[Array, "batch max_length num_heads head_dim"]]
    cached_value: Cache[Float[Array, "batch max_length num_heads head_dim"]]
    cache_index: Cache[Int[Array, ""]]
    num_heads: int
    head_dim: int

    def __init__(
        self,
        num_heads: int,
        in_features: int,
        qkv_features: int | None = None,
        out_features: int | None = None,
        *,
        dropout_rate: float = 0.0,
        deterministic: bool | None = None,
        use_bias: bool = True,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        ctx: Context,
    ) -> None:
        positive("MultiHeadAttention", "num_heads", num_heads)
        positive("MultiHeadAttention", "in_features", in_features)
        qkv_features = positive("MultiHeadAttention", "qkv_features", qkv_features or in_features)
        out_features = positive("MultiHeadAttention", "out_features", out_features or in_features)
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
        self.dropout_rate = dropout_rate
        self.deterministic = deterministic

    def init_cache(self, batch_size: int, max_length: int, dtype: Any = jnp.float32) -> None:
        """Create an empty kv-cache for decoding `max_length` positions."""
        shape = (batch_size, max_length, self.num_heads, self.head_dim)
        self.cached_key = Cache(jnp.zeros(shape, dtype))
        self.cached_value = Cache(jnp.zeros(shape, dtype))
        self.cache_index = Cache(jnp.array(0, jnp.int32))

    def _heads(self, x: jax.Array) -> jax.Array:
        return reshape(x, (*x.shape[:-1], self.num_heads, self.head_dim))

    def __call__(
        self,
        inputs_q: jax.Array,
        inputs_kv: jax.Array | None = None,
        *,
        mask: jax.Array | None = None,
        causal: bool = False,
        decode: bool = False,
        deterministic: bool | None = None,
        ctx: Context | None = None,
    ) -> jax.Array:
        inputs_kv = inputs_q if inputs_kv is None else inputs_kv
        query = self._heads(self.query(inputs_q))
        key = self._heads(self.key(inputs_kv))
        value = self._heads(self.value(inputs_kv))
        q_len = query.shape[-3]
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
        if "cache_index" not in vars(self):
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

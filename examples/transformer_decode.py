"""A small decoder-only transformer that learns to sort digits, decoding with a kv-cache.

    pip install -e ".[examples]" && python examples/transformer_decode.py

Sequences look like `3 1 4 1 5 9 2 6 | 1 1 2 3 4 5 6 9`: given the digits and the
separator, the model writes them out sorted. It is built from nnx layers (token and
position `nnx.Embed`, causal `nnx.MultiHeadAttention`, `nnx.RMSNorm`, an MLP) and its
output logits reuse the token table (`Embed.attend`, tied weights). Training uses
`nnx.jit`, `nnx.value_and_grad` and optax. Generation is greedy and autoregressive:
`init_cache` gives every attention layer `nnx.Cache` Variables, and a jitted step feeds
one token at a time with `decode=True`; `nnx.jit` writes the updated caches back into
the model after each call. The script checks that the cached logits equal those of a
full causal forward pass over the generated sequences.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import NDArray

import nnx

DIGITS, SEP = 10, 10  # tokens 0-9 are digits, 10 separates the input from the output
N = 8  # digits per sequence; a sequence is N digits, SEP, N digits: 2N + 1 tokens
DIM, HEADS, LAYERS = 64, 4, 2


class DecoderBlock(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.attn_norm = nnx.RMSNorm(DIM, ctx=ctx)
        self.attn = nnx.MultiHeadAttention(HEADS, DIM, ctx=ctx)
        self.mlp_norm = nnx.RMSNorm(DIM, ctx=ctx)
        self.mlp_in = nnx.Linear(DIM, 4 * DIM, ctx=ctx)
        self.mlp_out = nnx.Linear(4 * DIM, DIM, ctx=ctx)

    def __call__(self, x: jax.Array, *, decode: bool) -> jax.Array:
        # decode=True reads and extends the kv-cache; otherwise a causal mask hides the future
        x = x + self.attn(self.attn_norm(x), causal=not decode, decode=decode)
        return x + self.mlp_out(nnx.gelu(self.mlp_in(self.mlp_norm(x))))


class Transformer(nnx.Module):
    position: nnx.Cache[jax.Array]

    def __init__(self, vocab: int, max_length: int, *, ctx: nnx.Context) -> None:
        self.tokens = nnx.Embed(vocab, DIM, ctx=ctx)
        self.positions = nnx.Embed(max_length, DIM, ctx=ctx)
        self.blocks = nnx.Sequence([DecoderBlock(ctx=ctx) for _ in range(LAYERS)])
        self.norm = nnx.RMSNorm(DIM, ctx=ctx)

    def init_cache(self, batch: int, max_length: int) -> None:
        for block in self.blocks:
            block.attn.init_cache(batch, max_length)
        self.position = nnx.Cache(jnp.array(0, jnp.int32))  # next position to decode

    def __call__(self, tokens: jax.Array, *, decode: bool = False) -> jax.Array:
        start = self.position if decode else 0
        x = self.tokens(tokens) + self.positions(start + jnp.arange(tokens.shape[-1]))
        if decode:
            self.position += tokens.shape[-1]
        for block in self.blocks:
            x = block(x, decode=decode)
        return self.tokens.attend(self.norm(x))  # tied output logits


def make_batch(rng: np.random.Generator, n: int) -> NDArray[np.int32]:
    digits = rng.integers(0, DIGITS, (n, N))
    sep = np.full((n, 1), SEP)
    return np.concatenate([digits, sep, np.sort(digits, axis=1)], axis=1, dtype=np.int32)


def loss_fn(model: Transformer, seqs: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits = model(seqs[:, :-1])[:, N:]  # only the positions that predict the output
    targets = seqs[:, N + 1 :]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
    return loss, jnp.mean(jnp.argmax(logits, axis=-1) == targets)


decode_traces: list[int] = []


@nnx.jit
def decode_step(model: Transformer, token: jax.Array) -> jax.Array:
    decode_traces.append(1)  # runs only while tracing
    return model(token[:, None], decode=True)[:, 0]  # the next-token logits


def generate(model: Transformer, prompts: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Greedy decoding: the prompt one token per step, then the model's own argmax."""
    model.init_cache(prompts.shape[0], 2 * N)
    tokens: list[jax.Array] = [prompts[:, 0]]
    step_logits: list[jax.Array] = []
    for t in range(2 * N):
        logits = decode_step(model, tokens[-1])  # position t in, logits for t + 1 out
        step_logits.append(logits)
        tokens.append(prompts[:, t + 1] if t + 1 < prompts.shape[1] else jnp.argmax(logits, -1))
    return jnp.stack(tokens, axis=1), jnp.stack(step_logits, axis=1)


def main() -> None:
    model = Transformer(DIGITS + 1, 2 * N + 1, ctx=nnx.context(0))
    tx = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 50, 400))
    opt_state = tx.init(model.filter(nnx.Param))

    @nnx.jit
    def train_step(
        model: Transformer, opt_state: optax.OptState, seqs: jax.Array
    ) -> tuple[jax.Array, jax.Array, optax.OptState]:
        (loss, acc), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, seqs)
        params = model.filter(nnx.Param)
        updates, opt_state = tx.update(grads, opt_state, params)
        model.update_state(optax.apply_updates(params, updates))
        return loss, acc, opt_state

    rng = np.random.default_rng(0)
    losses: list[float] = []
    for step in range(1, 401):
        loss, acc, opt_state = train_step(model, opt_state, jnp.asarray(make_batch(rng, 64)))
        losses.append(float(loss))
        if step % 50 == 0:
            print(f"step {step:4d}  loss {float(loss):.4f}  token accuracy {float(acc):.2%}")

    test = jnp.asarray(make_batch(np.random.default_rng(1), 256))
    generated, cached_logits = generate(model, test[:, : N + 1])
    token_acc = float(jnp.mean(generated[:, N + 1 :] == test[:, N + 1 :]))
    exact = float(jnp.mean(jnp.all(generated == test, axis=1)))
    print(f"greedy decoding of 256 new strings: token accuracy {token_acc:.2%}, exact {exact:.2%}")
    for row in np.asarray(generated[:3]):
        print("  " + " ".join("|" if t == SEP else str(t) for t in row))

    # A full causal forward pass over the generated sequences sees the same prefixes,
    # so it must give the logits the kv-cache gave, step by step.
    @nnx.jit
    def full_forward(model: Transformer, seqs: jax.Array) -> jax.Array:
        return model(seqs)

    full_logits = full_forward(model, generated[:, :-1])
    diff = float(jnp.max(jnp.abs(full_logits - cached_logits)))
    print(f"kv-cache vs full forward: max |logit difference| = {diff:.2e}")
    print(f"decode_step: {2 * N} calls, {len(decode_traces)} trace (the caches keep their shapes)")

    assert losses[-1] < 0.05 * losses[0], (losses[0], losses[-1])
    assert token_acc > 0.95 and exact > 0.8, (token_acc, exact)
    assert diff < 1e-3, diff
    # the same greedy tokens, read off the full forward pass
    assert bool(jnp.all(jnp.argmax(full_logits[:, N:], -1) == generated[:, N + 1 :]))
    assert len(decode_traces) == 1, len(decode_traces)
    assert int(model.position) == 2 * N and int(model.blocks[0].attn.cache_index) == 2 * N


if __name__ == "__main__":
    main()

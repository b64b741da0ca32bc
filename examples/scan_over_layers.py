"""Scan over layers: a deep MLP whose identical blocks are stacked and run by one scan.

    pip install -e ".[examples]" && python examples/scan_over_layers.py

`nnx.Scan(Block, variable_axes={nnx.Param: 0}, split_rngs="params", length=N)` builds
N Blocks at once (each from its own `params` key) as a single Block whose parameters
have a leading layer axis, and calls it with a lifted `jax.lax.scan`: JAX traces and
compiles one block instead of N. The "dropout" stream is split per layer too, so each
layer draws its own mask. The model is trained on two interleaved spirals with the
functional API (`nnx.TrainState`, optax Adam, `jax.jit`); then the script shows the
stacked parameter shapes, checks that the scan computes what a Python loop over the
per-layer slices computes, and uses `nnx.scan` (the function form) to collect a
per-layer statistic.
"""

from __future__ import annotations

from operator import itemgetter

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nnx

N_LAYERS, WIDTH = 12, 64


class Block(nnx.Module):
    """A pre-norm residual block. Under a scan it is called as `block(carry, x)` and
    returns `(carry, y)`: the hidden state is the carry, there is no per-step output."""

    def __init__(self, dim: int, *, ctx: nnx.Context) -> None:
        self.norm = nnx.LayerNorm(dim, ctx=ctx)
        self.linear = nnx.Linear(dim, dim, ctx=ctx)
        self.dropout = nnx.Dropout(0.1)

    def __call__(
        self, h: jax.Array, _: None, *, ctx: nnx.Context | None = None
    ) -> tuple[jax.Array, None]:
        y = nnx.gelu(self.linear(self.norm(h)))
        y = self.dropout(y, deterministic=ctx is None, ctx=ctx)
        return h + y, None


class DeepMLP(nnx.Module):
    def __init__(self, din: int, dout: int, *, ctx: nnx.Context) -> None:
        self.embed = nnx.Linear(din, WIDTH, ctx=ctx)
        self.blocks = nnx.Scan(
            Block,
            variable_axes={nnx.Param: 0},  # parameters stacked along axis 0, one slice per step
            split_rngs=("params", "dropout"),  # one key per layer for these streams
            length=N_LAYERS,
        )(WIDTH, ctx=ctx)
        self.head = nnx.Linear(WIDTH, dout, ctx=ctx)

    def __call__(self, x: jax.Array, *, ctx: nnx.Context | None = None) -> jax.Array:
        h, _ = self.blocks(self.embed(x), None, ctx=ctx)  # ctx=None: no dropout
        return self.head(h)


def loop_forward(model: DeepMLP, x: jax.Array) -> jax.Array:
    """The same forward pass as a Python loop over the N per-layer slices."""
    layer_state, layerdef = model.blocks.scan_module.partition()
    h = model.embed(x)
    for i in range(N_LAYERS):
        layer = layerdef.merge(jax.tree.map(itemgetter(i), layer_state))  # one Block: a[i]
        h, _ = layer(h, None)
    return model.head(h)


def spirals(n: int, seed: int) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.25, 1.0, n) * 3 * np.pi
    label = rng.integers(0, 2, n)
    angle = t + np.pi * label
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) / (3 * np.pi)
    x = (x + rng.normal(0, 0.02, x.shape)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(label.astype(np.int32))


def main() -> None:
    x_train, y_train = spirals(2048, seed=0)
    x_test, y_test = spirals(1024, seed=1)
    model = DeepMLP(2, 2, ctx=nnx.context(0))
    print("stacked block parameters (layer axis first):")
    for path, param in model.blocks.filter(nnx.Param).items():
        print(f"  {'.'.join(map(str, path)):32s} {tuple(param.value.shape)}")

    params, moduledef = model.partition(nnx.Param)
    state = nnx.TrainState(moduledef, params=params, tx=optax.adam(3e-3))

    @jax.jit
    def train_step(
        state: nnx.TrainState[DeepMLP], key: jax.Array, x: jax.Array, y: jax.Array
    ) -> tuple[nnx.TrainState[DeepMLP], jax.Array]:
        def loss_fn(params: nnx.State) -> jax.Array:
            logits, _ = state.apply(params)(x, ctx=nnx.context(dropout=key))
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads), loss

    @jax.jit
    def accuracy(params: nnx.State, x: jax.Array, y: jax.Array) -> jax.Array:
        logits, _ = moduledef.apply(params)(x)
        return jnp.mean(jnp.argmax(logits, axis=-1) == y)

    key = jax.random.key(1)
    rng = np.random.default_rng(2)
    losses: list[float] = []
    for step in range(1, 601):
        key, dropout_key = jax.random.split(key)
        idx = rng.integers(0, len(x_train), 128)
        state, loss = train_step(state, dropout_key, x_train[idx], y_train[idx])
        losses.append(float(loss))
        if step % 100 == 0:
            print(f"step {step:4d}  loss {np.mean(losses[-100:]):.4f}")
    acc = float(accuracy(state.params, x_test, y_test))
    print(f"test accuracy: {acc:.2%}")

    # The scan computes what a Python loop over the N per-layer slices computes.
    model = moduledef.merge(state.params)
    x = x_test[:256]
    scanned, looped = model(x), loop_forward(model, x)
    max_diff = float(jnp.max(jnp.abs(scanned - looped)))
    print(f"scan vs Python loop over {N_LAYERS} layers: max |difference| = {max_diff:.2e}")

    # One traced block: the scanned forward pass has the same number of operations
    # whatever N is; the loop is unrolled N times.
    full_state, fulldef = model.partition()

    def scanned_forward(state: nnx.State) -> jax.Array:
        return fulldef.apply(state)(x)[0]

    def looped_forward(state: nnx.State) -> jax.Array:
        return loop_forward(fulldef.merge(state), x)

    n_scan = len(jax.make_jaxpr(scanned_forward)(full_state).eqns)
    n_loop = len(jax.make_jaxpr(looped_forward)(full_state).eqns)
    print(f"operations in the traced forward pass: scan {n_scan}, Python loop {n_loop}")

    # nnx.scan, the function form: run the same stacked Block, collecting a per-layer
    # output (here the mean norm of the hidden state after each layer).
    @nnx.scan(variable_axes={nnx.Param: 0}, in_axes=None)
    def hidden_norms(layer: Block, h: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        h, _ = layer(h, None)
        return h, jnp.linalg.norm(h, axis=-1).mean()

    h_out, norms = hidden_norms(model.blocks.scan_module, model.embed(x), None)
    print("mean hidden-state norm after each layer:", np.round(np.asarray(norms), 2))

    first, last = np.mean(losses[:50]), np.mean(losses[-50:])
    assert last < 0.25 * first, (first, last)
    assert acc > 0.95, acc
    assert max_diff < 1e-4, max_diff
    np.testing.assert_allclose(model.head(h_out), looped, rtol=1e-4, atol=1e-4)
    assert norms.shape == (N_LAYERS,)
    assert n_scan * 5 < n_loop, (n_scan, n_loop)


if __name__ == "__main__":
    main()

"""The functional API: partition a model into States, train them with plain JAX, merge back.

    python examples/functional_api.py

An MLP with BatchNorm learns the "two moons" (a 2-D toy dataset generated with numpy).
`model.partition(nnx.Param, nnx.BatchStat)` splits it into two States (pytrees) and a
ModuleDef (its static structure). Training is ordinary `jax.jit` + `jax.value_and_grad`
on the params State; `moduledef.apply(params, batch_stats)(x)` runs the model on a
fresh copy and returns the updated state, from which the new batch statistics are
taken. At the end `moduledef.merge(...)` gives a trained Module back. Prints the loss
every 100 steps, then the test accuracy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import nnx

STEPS = 600
BATCH_SIZE = 128
LEARNING_RATE = 0.1


class MLP(nnx.Module):
    def __init__(self, din: int, dhidden: int, dout: int, *, ctx: nnx.Context) -> None:
        self.layer1 = nnx.Linear(din, dhidden, ctx=ctx)
        self.bn1 = nnx.BatchNorm(dhidden, ctx=ctx)
        self.layer2 = nnx.Linear(dhidden, dhidden, ctx=ctx)
        self.bn2 = nnx.BatchNorm(dhidden, ctx=ctx)
        self.head = nnx.Linear(dhidden, dout, ctx=ctx)

    def features(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = nnx.relu(self.bn1(self.layer1(x), use_running_average=not train))
        x = nnx.relu(self.bn2(self.layer2(x), use_running_average=not train))
        return x

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        return self.head(self.features(x, train=train))


def two_moons(n: int, rng: np.random.Generator) -> tuple[jax.Array, jax.Array]:
    labels = rng.integers(0, 2, n)
    t = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(labels[:, None] == 0, upper, lower) + rng.normal(0.0, 0.15, (n, 2))
    return jnp.asarray(x.astype(np.float32)), jnp.asarray(labels.astype(np.int32))


def sgd(param: jax.Array, grad: jax.Array) -> jax.Array:
    return param - LEARNING_RATE * grad


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def main() -> None:
    rng = np.random.default_rng(0)
    x_train, y_train = two_moons(2000, rng)
    x_test, y_test = two_moons(500, rng)

    model = MLP(2, 32, 2, ctx=nnx.context(0))
    # Two States (the Params, the BatchNorm statistics) and the static structure.
    (params, batch_stats), moduledef = model.partition(nnx.Param, nnx.BatchStat)
    print("param shapes:", jax.tree.map(jnp.shape, params))
    n_params = sum(p.size for p in jax.tree_util.tree_leaves(params))
    print(f"{n_params} parameters, {len(batch_stats)} batch-stat arrays")

    @jax.jit
    def train_step(
        params: nnx.State, batch_stats: nnx.State, x: jax.Array, y: jax.Array
    ) -> tuple[nnx.State, nnx.State, jax.Array]:
        def loss_fn(params: nnx.State) -> tuple[jax.Array, nnx.State]:
            # apply() merges a fresh copy, calls it, and returns the output and the
            # updated state; in train mode BatchNorm has moved its running statistics.
            logits, (updates, _) = moduledef.apply(params, batch_stats)(x, train=True)
            return cross_entropy(logits, y), updates.filter(nnx.BatchStat)

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        params = jax.tree.map(sgd, params, grads)
        return params, batch_stats, loss

    @jax.jit
    def evaluate(params: nnx.State, batch_stats: nnx.State, x: jax.Array) -> jax.Array:
        logits, _ = moduledef.apply(params, batch_stats)(x, train=False)
        return logits

    losses: list[float] = []
    for step in range(STEPS):
        idx = rng.choice(len(x_train), BATCH_SIZE, replace=False)
        params, batch_stats, loss = train_step(params, batch_stats, x_train[idx], y_train[idx])
        losses.append(float(loss))
        if step % 100 == 0 or step == STEPS - 1:
            print(f"step {step:4d}  loss {float(loss):.4f}")

    logits = evaluate(params, batch_stats, x_test)
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == y_test))

    # apply() reaches any method or submodule: here the hidden features.
    feats, _ = moduledef.apply(params, batch_stats).features(x_test, train=False)

    # merge() builds the trained Module; the original `model` is untouched, because a
    # State is a snapshot (partition copied the values out).
    trained = moduledef.merge(params, batch_stats)
    eager_logits = trained(x_test, train=False)
    print(f"hidden features of the test set: {feats.shape}")
    print(f"batch-norm running mean (bn1, first 3): {trained.bn1.mean[:3]}")
    print(f"final loss {np.mean(losses[-20:]):.4f}, test accuracy {accuracy:.2%}")

    assert np.mean(losses[-20:]) < 0.25 * np.mean(losses[:20]), "loss did not go down"
    assert accuracy > 0.95, f"test accuracy too low: {accuracy:.2%}"
    np.testing.assert_allclose(eager_logits, logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(model.bn1.mean, np.zeros(32))  # original: initial stats
    assert not np.allclose(trained.bn1.mean, 0.0)  # trained: moved by train-mode calls
    assert not np.allclose(model.layer1.kernel, trained.layer1.kernel)


if __name__ == "__main__":
    main()

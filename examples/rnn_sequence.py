"""Train a GRU on a generated sequence task: the running mean of a noisy signal.

    python examples/rnn_sequence.py

Each example is a sequence of 20 numbers; the target at step t is the mean of the
inputs up to t. An `nnx.RNN(nnx.GRUCell(...))` reads the sequence in one compiled
scan, a Linear head maps each hidden state to a prediction; `nnx.Optimizer` and
`nnx.metrics.Average` drive the training inside one `nnx.jit` step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import nnx


class Model(nnx.Module):
    rnn: nnx.RNN
    head: nnx.Linear

    def __init__(self, hidden: int, *, ctx: nnx.Context) -> None:
        self.rnn = nnx.RNN(nnx.GRUCell(1, hidden, ctx=ctx))
        self.head = nnx.Linear(hidden, 1, ctx=ctx)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden: jax.Array = self.rnn(x)
        return self.head(hidden)


def make_data(key: jax.Array, n: int, length: int = 20) -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(key, (n, length, 1))
    steps = jnp.arange(1, length + 1, dtype=jnp.float32)[None, :, None]
    return x, jnp.cumsum(x, axis=1) / steps


def loss_fn(model: Model, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((model(x) - y) ** 2)


@nnx.jit
def train_step(
    opt: nnx.Optimizer[Model], metrics: nnx.metrics.Average, x: jax.Array, y: jax.Array
) -> None:
    loss, grads = nnx.value_and_grad(loss_fn)(opt.model, x, y)
    opt.update(grads)
    metrics.update(values=loss)


def main() -> None:
    x_train, y_train = make_data(jax.random.key(0), 512)
    x_test, y_test = make_data(jax.random.key(1), 128)
    model = Model(16, ctx=nnx.context(0))
    opt = nnx.Optimizer(model, optax.adam(1e-2))
    metrics = nnx.metrics.Average()
    baseline = float(jnp.mean(y_test**2))  # predicting 0
    for epoch in range(1, 31):
        for i in range(0, 512, 64):
            train_step(opt, metrics, x_train[i : i + 64], y_train[i : i + 64])
        if epoch % 10 == 0:
            test = float(loss_fn(model, x_test, y_test))
            print(f"epoch {epoch}: train loss {float(metrics.compute()):.4f}, test {test:.4f}")
            metrics.reset()
    final = float(loss_fn(model, x_test, y_test))
    print(f"test MSE {final:.4f} vs {baseline:.4f} for predicting zero ({int(opt.step)} steps)")
    assert final < baseline / 5


if __name__ == "__main__":
    main()

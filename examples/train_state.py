"""Training with `nnx.TrainState` and optax: a small CNN on scikit-learn's 8x8 digits.

    pip install -e ".[examples]" && python examples/train_state.py

`nnx.TrainState` bundles the ModuleDef, the params State, an optax optimizer and its
state, and a step counter into one immutable pytree, so the whole training state goes
in and out of a `jax.jit` step. Extra fields ride along: here the BatchNorm statistics,
replaced on every step through `apply_gradients(grads, batch_stats=...)`; a subclass
that annotates the field (`CNNTrainState`) lets type checkers see it.
`state.apply("params", "batch_stats")(x)` runs the model from the stored States.
Prints the loss and test accuracy every 5 epochs, then the final accuracy.
"""

from __future__ import annotations

from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import NDArray
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import nnx

EPOCHS = 20
BATCH_SIZE = 64


class CNN(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.conv1 = nnx.Conv(1, 16, (3, 3), ctx=ctx)
        self.bn = nnx.BatchNorm(16, ctx=ctx)
        self.conv2 = nnx.Conv(16, 32, (3, 3), strides=2, ctx=ctx)  # 8x8 -> 4x4
        self.dropout = nnx.Dropout(0.25)
        self.head = nnx.Linear(32 * 4 * 4, 10, ctx=ctx)

    def __call__(self, x: jax.Array, *, train: bool, ctx: nnx.Context | None = None) -> jax.Array:
        x = nnx.relu(self.bn(self.conv1(x), use_running_average=not train))
        x = nnx.relu(self.conv2(x))
        x = self.dropout(x.reshape(x.shape[0], -1), deterministic=not train, ctx=ctx)
        return self.head(x)


class CNNTrainState(nnx.TrainState[CNN, nnx.Param[Any]]):
    batch_stats: nnx.State[nnx.BatchStat[Any]]  # the extra field, typed for the checkers


def load_data() -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The digits as (n, 8, 8, 1) images and labels: x_train, x_test, y_train, y_test.
    scikit-learn has no type annotations: its results are given their types here."""
    data, target = cast(
        "tuple[NDArray[np.float64], NDArray[np.int64]]", load_digits(return_X_y=True)
    )
    images = (np.reshape(data, (-1, 8, 8)) / 16.0).astype(np.float32)[..., None]  # (n, 8, 8, 1)
    splits = cast(
        "list[NDArray[Any]]",
        train_test_split(images, target.astype(np.int32), test_size=0.25, random_state=0),
    )
    x_train, x_test, y_train, y_test = (jnp.asarray(a) for a in splits)
    return x_train, x_test, y_train, y_test


def main() -> None:
    x_train, x_test, y_train, y_test = load_data()

    model = CNN(ctx=nnx.context(0))
    (params, batch_stats), moduledef = model.partition(nnx.Param, nnx.BatchStat)
    steps_per_epoch = len(x_train) // BATCH_SIZE
    schedule = optax.cosine_decay_schedule(3e-3, EPOCHS * steps_per_epoch)
    state = CNNTrainState(
        moduledef, params=params, tx=optax.adam(schedule), batch_stats=batch_stats
    )
    n_opt = len(jax.tree_util.tree_leaves(state.opt_state))
    print(f"TrainState: {len(params)} param arrays, {n_opt} optimizer-state arrays")

    @jax.jit
    def train_step(
        state: CNNTrainState, key: jax.Array, x: jax.Array, y: jax.Array
    ) -> tuple[CNNTrainState, jax.Array]:
        def loss_fn(params: nnx.State) -> tuple[jax.Array, nnx.State]:
            # States and field names mix: the params being differentiated, the stored
            # batch statistics. A Context built from a traced key is valid in here.
            logits, (updates, _) = state.apply(params, "batch_stats")(
                x, train=True, ctx=nnx.context(dropout=key)
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, updates.filter(nnx.BatchStat)

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        # One optax step (step + 1), and the new statistics replace the old field.
        return state.apply_gradients(grads, batch_stats=batch_stats), loss

    @jax.jit
    def evaluate(state: CNNTrainState, x: jax.Array) -> jax.Array:
        logits, _ = state.apply("params", "batch_stats")(x, train=False)
        return logits

    def accuracy(state: CNNTrainState, x: jax.Array, y: jax.Array) -> float:
        return float(jnp.mean(jnp.argmax(evaluate(state, x), axis=-1) == y))

    rng = np.random.default_rng(0)
    key = jax.random.key(0)
    epoch_losses: list[float] = []
    for epoch in range(1, EPOCHS + 1):
        order = rng.permutation(len(x_train))
        losses: list[float] = []
        for i in range(steps_per_epoch):
            idx = order[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]
            key, step_key = jax.random.split(key)
            state, loss = train_step(state, step_key, x_train[idx], y_train[idx])
            losses.append(float(loss))
        epoch_losses.append(float(np.mean(losses)))
        if epoch % 5 == 0 or epoch == 1:
            acc = accuracy(state, x_test, y_test)
            print(f"epoch {epoch:2d}  loss {epoch_losses[-1]:.4f}  test accuracy {acc:.2%}")

    test_acc = accuracy(state, x_test, y_test)
    trained = state.moduledef.merge(state.params, state.batch_stats)  # a Module again
    eager_logits = trained(jnp.asarray(x_test), train=False)
    print(f"after {int(state.step)} steps: test accuracy {test_acc:.2%} on {len(y_test)} digits")

    assert int(state.step) == EPOCHS * steps_per_epoch
    assert epoch_losses[-1] < 0.2 * epoch_losses[0], "loss did not go down"
    assert test_acc > 0.95, f"test accuracy too low: {test_acc:.2%}"
    # the merged Module computes what the jitted TrainState path computed
    np.testing.assert_allclose(eager_logits, evaluate(state, x_test), rtol=1e-4, atol=1e-4)
    assert not np.allclose(trained.bn.var, 1.0)  # batch statistics were carried along


if __name__ == "__main__":
    main()

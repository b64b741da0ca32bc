"""Train an MLP classifier on scikit-learn's handwritten digits (8x8 images, 10 classes).

    pip install -e ".[examples]" && python examples/train_digits.py

The model is a plain nnx Module; training uses the functional API: partition the
model once, run a `jax.jit`-compiled SGD step on the State, merge back at the end.
Prints a progress bar with the running loss, then the test accuracy.
"""

from __future__ import annotations

import argparse
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import NDArray
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import nnx


class MLP(nnx.Module):
    def __init__(self, din: int, dhidden: int, dout: int, *, ctx: nnx.Context) -> None:
        self.hidden = nnx.Linear(din, dhidden, ctx=ctx)
        self.bn = nnx.BatchNorm(dhidden, ctx=ctx)
        self.dropout = nnx.Dropout(0.1)
        self.out = nnx.Linear(dhidden, dout, ctx=ctx)

    def __call__(self, x: jax.Array, *, train: bool, ctx: nnx.Context | None = None) -> jax.Array:
        x = self.hidden(x)
        x = self.bn(x, use_running_average=not train)
        x = nnx.relu(x)
        x = self.dropout(x, deterministic=not train, ctx=ctx)
        return self.out(x)


def load_data(seed: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The digits as jax arrays (x_train, x_test, y_train, y_test). scikit-learn has no type
    annotations: its results are given their types here, so none of it leaks out."""
    data, target = cast(
        "tuple[NDArray[np.float64], NDArray[np.int64]]", load_digits(return_X_y=True)
    )
    x = (data / 16.0).astype(np.float32)
    y = target.astype(np.int32)
    splits = cast(
        "list[NDArray[Any]]", train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    )
    x_train, x_test, y_train, y_test = (jnp.asarray(a) for a in splits)
    return x_train, x_test, y_train, y_test


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x_train, x_test, y_train, y_test = load_data(args.seed)
    model = MLP(64, 128, 10, ctx=nnx.context(args.seed))
    (params, batch_stats), moduledef = model.partition(nnx.Param, nnx.BatchStat)
    lr: float = args.lr

    def sgd(param: jax.Array, grad: jax.Array) -> jax.Array:
        return param - lr * grad

    @jax.jit
    def train_step(
        params: nnx.State, batch_stats: nnx.State, key: jax.Array, x: jax.Array, y: jax.Array
    ) -> tuple[nnx.State, nnx.State, jax.Array]:
        def loss_fn(params: nnx.State) -> tuple[jax.Array, nnx.State]:
            ctx = nnx.context(dropout=key)
            logits, (updates, _) = moduledef.apply(params, batch_stats)(x, train=True, ctx=ctx)
            labels = jax.nn.one_hot(y, 10)
            loss = -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))
            return loss, updates.filter(nnx.BatchStat)

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        params = jax.tree.map(sgd, params, grads)
        return params, batch_stats, loss

    @jax.jit
    def predict(params: nnx.State, batch_stats: nnx.State, x: jax.Array) -> jax.Array:
        logits, _ = moduledef.apply(params, batch_stats)(x, train=False)
        return jnp.argmax(logits, axis=-1)

    rng = np.random.default_rng(args.seed)
    key = jax.random.key(args.seed)
    steps_per_epoch = len(x_train) // args.batch_size
    with tqdm(total=args.epochs * steps_per_epoch, desc="training", unit="step") as bar:
        for epoch in range(args.epochs):
            order = rng.permutation(len(x_train))
            loss = jnp.array(jnp.nan)  # the epoch's last loss (none if there is no batch)
            for i in range(steps_per_epoch):
                idx = order[i * args.batch_size : (i + 1) * args.batch_size]
                key, step_key = jax.random.split(key)
                params, batch_stats, loss = train_step(
                    params, batch_stats, step_key, x_train[idx], y_train[idx]
                )
                bar.update()
            bar.set_postfix_str(f"epoch={epoch + 1}, loss={float(loss):.4f}")

    predictions = predict(params, batch_stats, x_test)
    accuracy = float(jnp.mean(predictions == y_test))
    model = moduledef.merge(params, batch_stats)  # the trained model, a plain Module again
    print(f"test accuracy: {accuracy:.2%} on {len(y_test)} held-out digits")
    print(f"batch-norm running mean (first 3 features): {model.bn.mean[:3]}")
    return accuracy


if __name__ == "__main__":
    main()

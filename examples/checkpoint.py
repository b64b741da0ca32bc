"""Checkpoints with orbax: save a model, restore it into a fresh and into an abstract
model, resume training, and see what a structure mismatch reports.

    pip install -e ".[examples]" && python examples/checkpoint.py

A small classifier (Linear + BatchNorm + Dropout) trains for a few epochs on
scikit-learn's digits with `nnx.jit`. Then:

1. `nnx.checkpoints.save` writes the model's whole state (params *and* BatchNorm
   statistics, with their kinds and metadata) next to the optimizer state;
2. `nnx.checkpoints.restore` loads it into a freshly initialized model, and into an
   abstract one from `nnx.eval_shape` (no memory, no FLOPs spent on initialization);
   both predict exactly what the trained model predicts;
3. training resumes from the checkpoint and gives the same parameters, bit for bit,
   as training on without stopping;
4. restoring into a model of another width fails with a message listing every path.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import NDArray
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import nnx


class Classifier(nnx.Module):
    def __init__(self, hidden: int, *, ctx: nnx.Context) -> None:
        self.hidden = nnx.Linear(64, hidden, ctx=ctx)
        self.bn = nnx.BatchNorm(hidden, ctx=ctx)
        self.dropout = nnx.Dropout(0.1)
        self.out = nnx.Linear(hidden, 10, ctx=ctx)

    def __call__(self, x: jax.Array, *, train: bool, ctx: nnx.Context | None = None) -> jax.Array:
        x = nnx.relu(self.bn(self.hidden(x), use_running_average=not train))
        return self.out(self.dropout(x, deterministic=not train, ctx=ctx))


TX = optax.adam(3e-3)


@nnx.jit
def train_step(
    model: Classifier, opt_state: optax.OptState, x: jax.Array, y: jax.Array, *, ctx: nnx.Context
) -> tuple[jax.Array, optax.OptState]:
    def loss_fn(model: Classifier, ctx: nnx.Context) -> jax.Array:
        logits = model(x, train=True, ctx=ctx)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    # The Context goes in as an argument (not a closure), so nnx rebuilds it inside.
    loss, grads = nnx.value_and_grad(loss_fn)(model, ctx)
    params = model.filter(nnx.Param)
    updates, opt_state = TX.update(grads, opt_state, params)
    model.update_state(optax.apply_updates(params, updates))
    return loss, opt_state


@nnx.jit
def predict(model: Classifier, x: jax.Array) -> jax.Array:
    return model(x, train=False)


def train(
    model: Classifier,
    opt_state: optax.OptState,
    data: tuple[jax.Array, jax.Array],
    epochs: range,
    seed: int,
) -> optax.OptState:
    x_train, y_train = data
    for epoch in epochs:
        # Deterministic per epoch: resuming at epoch k replays exactly what an
        # uninterrupted run does from epoch k on.
        ctx = nnx.context(dropout=jax.random.fold_in(jax.random.key(seed), epoch))
        order = np.random.default_rng(epoch).permutation(len(x_train))
        loss = jnp.array(jnp.nan)  # the epoch's last loss (none if there is no batch)
        for i in range(0, len(order) - 63, 64):
            idx = order[i : i + 64]
            loss, opt_state = train_step(model, opt_state, x_train[idx], y_train[idx], ctx=ctx)
        print(f"  epoch {epoch + 1}: loss {float(loss):.4f}")
    return opt_state


def save_all(directory: Path, model: Classifier, opt_state: optax.OptState) -> None:
    nnx.checkpoints.save(directory / "model", model)
    # Any pytree of arrays can ride in a State: the optimizer state, kept in a TreeNode.
    nnx.checkpoints.save(directory / "optimizer", nnx.State({("adam",): nnx.TreeNode(opt_state)}))


def accuracy(model: Classifier, x: jax.Array, y: jax.Array) -> float:
    return float((predict(model, x).argmax(-1) == y).mean())


def load_data() -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The digits as jax arrays (x_train, x_test, y_train, y_test). scikit-learn has no
    type annotations: its results are given their types here, so none of it leaks out."""
    data, target = cast(
        "tuple[NDArray[np.float64], NDArray[np.int64]]", load_digits(return_X_y=True)
    )
    x = (data / 16.0).astype(np.float32)
    splits = cast(
        "list[NDArray[Any]]",
        train_test_split(
            x, target.astype(np.int32), test_size=0.25, random_state=0, stratify=target
        ),
    )
    x_train, x_test, y_train, y_test = (jnp.asarray(a) for a in splits)
    return x_train, x_test, y_train, y_test


def main() -> None:
    x_train, x_test, y_train, y_test = load_data()
    workdir = Path(tempfile.mkdtemp(prefix="nnx-checkpoint-"))

    print("training 3 epochs")
    model = Classifier(64, ctx=nnx.context(0))
    opt_state = train(model, TX.init(model.filter(nnx.Param)), (x_train, y_train), range(3), 1)
    save_all(workdir / "epoch3", model, opt_state)
    print(f"saved to {workdir / 'epoch3'}; test accuracy {accuracy(model, x_test, y_test):.2%}")

    # 1. Into a freshly initialized model (other seed): every value is replaced.
    fresh = nnx.checkpoints.restore(
        workdir / "epoch3" / "model", Classifier(64, ctx=nnx.context(9))
    )
    np.testing.assert_array_equal(predict(fresh, x_test), predict(model, x_test))

    # 2. Into an abstract model: eval_shape builds the structure without computing it.
    abstract = nnx.eval_shape(lambda: Classifier(64, ctx=nnx.context(0)))
    print("abstract kernel before restore:", abstract.hidden.kernel)
    restored = nnx.checkpoints.restore(workdir / "epoch3" / "model", abstract)
    np.testing.assert_array_equal(predict(restored, x_test), predict(model, x_test))
    assert restored.get_state() == model.get_state()  # kinds, metadata, dtypes, values
    print("restored into a fresh and an abstract model: identical predictions")

    # 3. Resume: restore model and optimizer, train epochs 4-5, compare with going on.
    print("uninterrupted run, epochs 4-5")
    opt_state = train(model, opt_state, (x_train, y_train), range(3, 5), 1)
    print("resumed run, epochs 4-5")
    resumed = nnx.checkpoints.restore(
        workdir / "epoch3" / "model", Classifier(64, ctx=nnx.context(0))
    )
    target = nnx.State({("adam",): nnx.TreeNode(TX.init(resumed.filter(nnx.Param)))})
    resumed_opt = nnx.checkpoints.restore(workdir / "epoch3" / "optimizer", target)[("adam",)].value
    train(resumed, resumed_opt, (x_train, y_train), range(3, 5), 1)
    assert resumed.get_state() == model.get_state(), "resuming must equal training on"
    final = accuracy(resumed, x_test, y_test)
    print(f"resumed == uninterrupted, bit for bit; test accuracy {final:.2%}")
    assert final > 0.9

    # 4. Another structure: one error, every differing path named; the model is untouched.
    wider = Classifier(128, ctx=nnx.context(0))
    try:
        nnx.checkpoints.restore(workdir / "epoch3" / "model", wider)
    except ValueError as error:
        print(f"\nrestoring into a wider model:\n{error}")
    else:
        raise AssertionError("a mismatched restore must fail")
    assert wider.hidden.kernel.shape == (64, 128)
    print(f"\ncheckpoint files: {sorted(p.name for p in (workdir / 'epoch3' / 'model').iterdir())}")
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()

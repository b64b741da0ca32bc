"""Parameter surgery: swap, transplant, freeze, inspect, add and remove parts of a model.

    pip install -e ".[examples]" && python examples/parameter_surgery.py

An MLP classifier is pretrained on the digits 0-4 of scikit-learn's 8x8 digits. Then,
on the same Module object: its head is replaced by a new one for the digits 5-9 and
only the head is trained (the encoder is frozen by a filter, `nnx.Not(nnx.PathContains(
"encoder"))`); the encoder's weights are transplanted into a fresh model through a State
and `update_state`; intermediate features are captured and removed with `pop_state`;
a layer initialized as the identity is appended (the outputs do not change), trained
alone, and removed again. Prints the parameter counts and accuracies along the way.
"""

from __future__ import annotations

from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import NDArray
from sklearn.datasets import load_digits

import nnx


class Classifier(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.encoder = nnx.Sequence([nnx.Linear(64, 64, ctx=ctx), nnx.Linear(64, 32, ctx=ctx)])
        self.head = nnx.Linear(32, 5, ctx=ctx)

    def encode(self, x: jax.Array) -> jax.Array:
        for layer in self.encoder:
            x = nnx.relu(layer(x))
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        features = self.encode(x)
        self.features = nnx.Intermediate(features)  # captured on every call, for inspection
        return self.head(features)


def fit(
    model: Classifier, x: jax.Array, y: jax.Array, wrt: nnx.Filter, steps: int, lr: float
) -> tuple[float, float]:
    """Full-batch SGD on the Params that `wrt` selects; everything else stays frozen."""

    def sgd(param: jax.Array, grad: jax.Array) -> jax.Array:
        return param - lr * grad

    @nnx.jit
    def step(model: Classifier, x: jax.Array, y: jax.Array) -> jax.Array:
        def loss_fn(model: Classifier) -> jax.Array:
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn, wrt)(model)  # grads: only `wrt` entries
        model.update_state(jax.tree.map(sgd, model.filter(wrt), grads))
        model.pop_state(nnx.Intermediate)  # drop the temporary: the structure stays fixed
        return loss

    losses = [float(step(model, x, y)) for _ in range(steps)]
    print(f"  loss {losses[0]:.3f} -> {losses[-1]:.3f} in {steps} steps")
    return losses[0], losses[-1]


def accuracy(model: Classifier, x: jax.Array, y: jax.Array) -> float:
    logits = model(x)
    model.pop_state(nnx.Intermediate)
    return float(jnp.mean(jnp.argmax(logits, axis=-1) == y))


def describe(label: str, model: nnx.Module) -> int:
    params = model.filter(nnx.Param)
    count = sum(int(p.value.size) for p in params.values())
    shapes = ", ".join(
        f"{'/'.join(map(str, k[:-1]))}:{v.value.shape}"
        for k, v in params.items()
        if k[-1] == "kernel"
    )
    print(f"{label}: {count} params; kernels {shapes}")
    return count


def load_data() -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    """The digits as (images flattened to 64 features in [0, 1], labels). scikit-learn has
    no type annotations: its results are given their types here, so none of it leaks out."""
    data, target = cast(
        "tuple[NDArray[np.float64], NDArray[np.int64]]", load_digits(return_X_y=True)
    )
    return (data / 16.0).astype(np.float32), target.astype(np.int32)


def task(
    x: NDArray[np.float32], y: NDArray[np.int32], test: NDArray[np.bool_], digits: range
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Train and test arrays for some of the digits, relabelled from 0."""
    keep = np.isin(y, digits)
    train_x, train_y = x[keep & ~test], y[keep & ~test] - digits[0]
    test_x, test_y = x[keep & test], y[keep & test] - digits[0]
    return jnp.asarray(train_x), jnp.asarray(train_y), jnp.asarray(test_x), jnp.asarray(test_y)


def main() -> None:
    x, y = load_data()
    test = np.random.default_rng(0).random(len(y)) < 0.25
    xa, ya, xa_test, ya_test = task(x, y, test, range(0, 5))  # pretraining: digits 0-4
    xb, yb, xb_test, yb_test = task(x, y, test, range(5, 10))  # transfer: 5-9, labels 0-4

    model = Classifier(ctx=nnx.context(0))
    n_base = describe("model", model)
    print("1. pretrain every Param on digits 0-4")
    loss_a = fit(model, xa, ya, nnx.Param, steps=300, lr=0.2)
    acc_a = accuracy(model, xa_test, ya_test)
    print(f"  accuracy on 0-4: {acc_a:.2%}")

    print("2. replace the head for digits 5-9, train it with the encoder frozen")
    model.head = nnx.Linear(32, 5, ctx=nnx.context(1))  # a new submodule, fresh weights
    encoder_before = model.filter(nnx.PathContains("encoder"))  # a State: a snapshot
    head_only = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("encoder")))
    loss_b = fit(model, xb, yb, head_only, steps=600, lr=0.2)
    acc_b = accuracy(model, xb_test, yb_test)
    print(f"  accuracy on 5-9 with the frozen 0-4 encoder: {acc_b:.2%}")
    encoder_after = model.filter(nnx.PathContains("encoder"))
    assert all(
        np.array_equal(encoder_before[k].value, encoder_after[k].value) for k in encoder_before
    )

    print("3. transplant the trained encoder into a fresh model")
    student = Classifier(ctx=nnx.context(2))
    student.update_state(model.filter(nnx.PathContains("encoder")))  # same paths, copied in
    x_probe = xb_test[:8]
    np.testing.assert_array_equal(student.encode(x_probe), model.encode(x_probe))
    assert not np.array_equal(student.head.kernel, model.head.kernel)  # its own head
    student.encoder[0].kernel = jnp.zeros((64, 64))  # Variables were copied, not shared:
    assert not np.allclose(model.encoder[0].kernel, 0.0)  # the teacher is unaffected
    print("  student encoder == teacher encoder; student head untouched")

    print("4. capture intermediates and pop them out of the module")
    model(xb_test)
    intermediates = model.pop_state(nnx.Intermediate)
    feats = intermediates[("features",)].value
    dead = float(jnp.mean(jnp.all(feats == 0.0, axis=0)))
    print(f"  features {feats.shape}, {dead:.0%} of the ReLU units never fire on 5-9")
    assert "features" not in vars(model) and feats.shape == (len(yb_test), 32)

    print("5. append an identity layer, train only it, then remove it")
    logits_before = model(xb_test)
    layer = nnx.Linear(32, 32, ctx=nnx.context(3))
    layer.kernel = jnp.eye(32)  # relu(I @ h + 0) == h for h >= 0: same function
    model.encoder.append(layer)
    n_added = describe("  with the extra layer", model)
    np.testing.assert_allclose(model(xb_test), logits_before, rtol=1e-6)

    def new_layer(path: nnx.Path, _: object) -> bool:  # a predicate filter
        return path[:2] == ("encoder", 2)

    loss_c = fit(model, xb, yb, new_layer, steps=200, lr=0.01)  # small lr: deep in the net
    print(
        f"  accuracy on 5-9 with the trained extra layer: {accuracy(model, xb_test, yb_test):.2%}"
    )
    model.encoder = nnx.Sequence(model.encoder[:2])  # a new Sequence of the first 2 layers
    n_removed = describe("  extra layer removed", model)
    # the layers trained before were frozen in step 5: the old function is back
    np.testing.assert_allclose(model(xb_test), logits_before, rtol=1e-6)

    assert loss_a[1] < 0.1 * loss_a[0] and loss_b[1] < 0.3 * loss_b[0] and loss_c[1] < loss_c[0]
    assert acc_a > 0.95 and acc_b > 0.85, f"accuracies too low: {acc_a:.2%}, {acc_b:.2%}"
    assert n_added == n_base + 32 * 32 + 32 and n_removed == n_base


if __name__ == "__main__":
    main()

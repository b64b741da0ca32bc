"""Lifted transforms: `nnx.jit`, `nnx.value_and_grad`, `nnx.remat` and `nnx.vmap` on Modules.

    python examples/lifted_transforms.py

A small regressor with BatchNorm and Dropout fits a noisy curve (generated with numpy).
The training step takes the Module itself: `nnx.jit` and `nnx.value_and_grad` split it
into pytrees, trace, and write every change back into it in place: the SGD update of
the Params and BatchNorm's running statistics, so the step returns only the loss.
Then `nnx.remat` recomputes activations on the backward pass (same gradients), and
`nnx.vmap` trains an ensemble of 4 regressors whose state is stacked along axis 0, each
with its own dropout masks. Prints the loss every 200 steps and the test errors.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import nnx

STEPS = 800
LEARNING_RATE = 0.05
N_MEMBERS = 4
STACKED = {nnx.Param: 0, nnx.BatchStat: 0}  # ensemble state: one slice per member


class Regressor(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.hidden = nnx.Linear(1, 64, ctx=ctx)
        self.bn = nnx.BatchNorm(64, ctx=ctx)
        self.dropout = nnx.Dropout(0.1)
        self.hidden2 = nnx.Linear(64, 64, ctx=ctx)
        self.out = nnx.Linear(64, 1, ctx=ctx)

    def __call__(self, x: jax.Array, *, train: bool, ctx: nnx.Context | None = None) -> jax.Array:
        x = nnx.relu(self.bn(self.hidden(x), use_running_average=not train))
        x = self.dropout(x, deterministic=not train, ctx=ctx)
        return self.out(nnx.tanh(self.hidden2(x)))


def predict(
    model: Regressor, x: jax.Array, *, train: bool, ctx: nnx.Context | None = None
) -> jax.Array:
    return model(x, train=train, ctx=ctx)


def predict_ensemble(
    models: Regressor, x: jax.Array, *, train: bool, ctx: nnx.Context | None = None
) -> jax.Array:
    # nnx.vmap maps the stacked state, broadcasts x (in_axes=None) and splits "dropout".
    ensemble = nnx.vmap(predict, in_axes=None, variable_axes=STACKED, split_rngs="dropout")
    return ensemble(models, x, train=train, ctx=ctx)


def sgd(param: jax.Array, grad: jax.Array) -> jax.Array:
    return param - LEARNING_RATE * grad


def make_train_step(
    forward: Callable[..., jax.Array], traces: list[int]
) -> Callable[..., jax.Array]:
    @nnx.jit
    def train_step(model: Regressor, x: jax.Array, y: jax.Array, *, ctx: nnx.Context) -> jax.Array:
        traces.append(1)  # runs only while tracing

        def loss_fn(model: Regressor, ctx: nnx.Context) -> jax.Array:
            pred = forward(model, x, train=True, ctx=ctx)
            return jnp.sum(jnp.mean((pred - y) ** 2, axis=(-2, -1)))  # summed over members

        # The Context is an argument (not a closure): nnx transforms rebuild it inside.
        loss, grads = nnx.value_and_grad(loss_fn)(model, ctx)
        params = model.filter(nnx.Param)
        model.update_state(jax.tree.map(sgd, params, grads))
        return loss

    return train_step


def train(
    model: Regressor, forward: Callable[..., jax.Array], data: tuple[jax.Array, jax.Array]
) -> int:
    x, y = data
    traces: list[int] = []
    train_step = make_train_step(forward, traces)
    rng = np.random.default_rng(0)
    # One Context for the whole loop: each nnx.jit call draws fresh dropout keys from
    # it, while its static part (stream names, flags) stays the same, so no retrace.
    ctx = nnx.context(dropout=1)
    for step in range(STEPS):
        idx = rng.choice(len(x), 64, replace=False)
        loss = train_step(model, x[idx], y[idx], ctx=ctx)
        if step % 200 == 0 or step == STEPS - 1:
            print(f"  step {step:3d}  loss {float(loss):.4f}")
    return len(traces)


def curve(n: int, rng: np.random.Generator) -> tuple[jax.Array, jax.Array]:
    x = rng.uniform(-2.0, 2.0, (n, 1)).astype(np.float32)
    y = (np.sin(2.0 * x) + 0.3 * x + rng.normal(0.0, 0.1, x.shape)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def main() -> None:
    rng = np.random.default_rng(42)
    data, (x_test, y_test) = curve(1024, rng), curve(256, rng)
    baseline = float(jnp.mean((y_test - y_test.mean()) ** 2))  # predicting the mean

    print("single model (nnx.jit + nnx.value_and_grad, updated in place):")
    model = Regressor(ctx=nnx.context(0))
    n_traces = train(model, predict, data)
    mse = float(jnp.mean((model(x_test, train=False) - y_test) ** 2))
    print(f"  test MSE {mse:.4f} (predicting the mean: {baseline:.4f}), traced {n_traces}x")

    def eval_loss(model: Regressor, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((model(x, train=False) - y) ** 2)

    grads = nnx.grad(eval_loss)(model, x_test, y_test)
    remat_grads = nnx.grad(nnx.remat(eval_loss))(model, x_test, y_test)
    for path in grads:
        np.testing.assert_allclose(remat_grads[path].value, grads[path].value, atol=1e-6)
    print(f"nnx.remat: same gradients for all {len(grads)} Params, activations recomputed")

    print(f"ensemble of {N_MEMBERS} (nnx.vmap over stacked state; loss summed over members):")

    # Build the members under jax.vmap, each from its own key: a Pure with stacked state.
    def member(key: jax.Array) -> nnx.PureModule[Regressor]:
        return Regressor(ctx=nnx.context(params=key)).partition()

    keys = jax.random.split(jax.random.key(1), N_MEMBERS)
    ensemble = jax.vmap(member)(keys).merge()
    print(f"  stacked kernel of `hidden2`: {ensemble.hidden2.kernel.shape}")
    ensemble_traces = train(ensemble, predict_ensemble, data)
    preds = predict_ensemble(ensemble, x_test, train=False)
    member_mse = np.asarray(jnp.mean((preds - y_test) ** 2, axis=(1, 2)))
    ensemble_mse = float(jnp.mean((preds.mean(0) - y_test) ** 2))
    print(f"  member test MSEs {np.round(member_mse, 4)}, ensemble mean {ensemble_mse:.4f}")

    assert mse < 0.1 * baseline, f"single model did not fit: {mse:.4f} vs {baseline:.4f}"
    assert n_traces == 1 and ensemble_traces == 1, "nnx.jit retraced"
    assert not np.allclose(model.bn.mean, 0.0), "BatchNorm statistics were not written back"
    assert np.all(member_mse < 0.1 * baseline), "an ensemble member did not fit"
    assert ensemble_mse <= member_mse.mean() + 1e-6
    assert ensemble.bn.mean.shape == (N_MEMBERS, 64)
    assert not np.allclose(ensemble.hidden.kernel[0], ensemble.hidden.kernel[1])


if __name__ == "__main__":
    main()

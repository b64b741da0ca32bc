"""`nnx.Pure` / `nnx.PureModule`: a whole Module as one pytree that crosses `jax.jit`.

    python examples/pure_module.py

`model.partition()` returns a `Pure`: the tuple `(state, moduledef)`, a pytree, with
helpers to work on it without rebuilding the Module by hand. The training step takes
and returns a `nnx.PureModule[MLP]`: inside `jax.jit` it merges the Module, steps it with
`nnx.value_and_grad` and partitions it again. Evaluation uses `pure.call` (output only,
updates discarded) and `pure.apply` (output and the updated Pure); `filter`,
`partition`, `pop_state` and `update_state` work on the Pure directly. An MLP fits a
2-D surface generated with numpy; prints the test loss every 300 steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import nnx

STEPS = 1500
LEARNING_RATE = 0.1


class Count(nnx.Variable[jax.Array]):  # its own collection of state: "count"
    pass


class MLP(nnx.Module):
    calls: Count  # read as the jax.Array it holds; assignments keep the Count

    def __init__(self, din: int, dhidden: int, dout: int, *, ctx: nnx.Context) -> None:
        self.calls = Count(jnp.array(0))
        self.linear1 = nnx.Linear(din, dhidden, ctx=ctx)
        self.linear2 = nnx.Linear(dhidden, dhidden, ctx=ctx)
        self.linear3 = nnx.Linear(dhidden, dout, ctx=ctx)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.calls += 1
        x = nnx.tanh(self.linear1(x))
        x = nnx.tanh(self.linear2(x))
        return self.linear3(x)


def sgd(param: jax.Array, grad: jax.Array) -> jax.Array:
    return param - LEARNING_RATE * grad


@jax.jit
def train_step(
    pure: nnx.PureModule[MLP], x: jax.Array, y: jax.Array
) -> tuple[nnx.PureModule[MLP], jax.Array]:
    model = pure.merge()  # a Module that belongs to this trace: free to mutate

    def loss_fn(model: MLP) -> jax.Array:
        return jnp.mean((model(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)  # also writes back `calls`
    model.update_state(jax.tree.map(sgd, model.filter(nnx.Param), grads))
    return model.partition(), loss


@jax.jit
def test_loss(pure: nnx.PureModule[MLP], x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((pure.call(x) - y) ** 2)  # `call`: just the output


def surface(n: int, rng: np.random.Generator) -> tuple[jax.Array, jax.Array]:
    x = rng.uniform(-1.0, 1.0, (n, 2)).astype(np.float32)
    y = np.sin(3.0 * x[:, :1]) * np.cos(2.0 * x[:, 1:]) + rng.normal(0.0, 0.05, (n, 1))
    return jnp.asarray(x), jnp.asarray(y.astype(np.float32))


def main() -> None:
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = surface(2048, rng), surface(512, rng)

    pure = MLP(2, 64, 1, ctx=nnx.context(0)).partition()
    state, moduledef = pure  # a Pure is a 2-tuple; also pure.states, pure.moduledef
    assert isinstance(pure, nnx.Pure) and state is pure.states and moduledef is pure.moduledef
    print(f"Pure: {len(state)} state entries, {len(jax.tree_util.tree_leaves(pure))} leaves")

    initial = float(test_loss(pure, x_test, y_test))
    for step in range(STEPS):
        idx = rng.choice(len(x_train), 128, replace=False)
        pure, _ = train_step(pure, x_train[idx], y_train[idx])
        if step % 300 == 0 or step == STEPS - 1:
            print(f"step {step:4d}  test loss {float(test_loss(pure, x_test, y_test)):.4f}")
    final = float(test_loss(pure, x_test, y_test))

    # apply: the output *and* a new Pure with the call's updates; `pure` is unchanged.
    _, called = pure.apply(x_test[:4])
    calls = pure.filter(Count)[("calls",)].value
    print(f"calls: {int(calls)} in pure, {int(called.merge().calls)} after one more apply")

    # Re-partition the same Pure: params apart from everything else.
    params, rest = pure.partition(nnx.Param, ...).states
    print(f"params: {sum(p.size for p in jax.tree_util.tree_leaves(params))} numbers")

    # pop_state takes the counters out; update_state puts reset ones back (updates win).
    counts, no_counts = pure.pop_state("count")  # a string filter names a collection
    reset = no_counts.update_state(jax.tree.map(jnp.zeros_like, counts))

    model = reset.merge()  # back to a plain Module
    eager = float(jnp.mean((model(x_test) - y_test) ** 2))
    print(f"merged after the reset and one call: calls = {int(model.calls)}")
    print(f"final test loss {final:.4f} (initial {initial:.4f})")

    assert final < 0.1 * initial, f"loss did not go down enough: {initial:.4f} -> {final:.4f}"
    assert int(calls) == STEPS  # test_loss used `call`, which discards the update
    assert int(called.merge().calls) == STEPS + 1
    assert set(params) | set(rest) == set(state) and ("calls",) in rest
    assert list(counts) == [("calls",)] and ("calls",) not in no_counts.states
    assert model.calls == 1  # reset to 0, then called once above
    np.testing.assert_allclose(eager, final, rtol=1e-4)


if __name__ == "__main__":
    main()

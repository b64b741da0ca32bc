"""The README's "Static typing" block, checked by mypy and pyright (tests/test_readme.py
keeps the two identical)."""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from typing_extensions import assert_type

import nnx


class MLP(nnx.Module):
    hidden: nnx.Linear  # submodules and Variables declared at class level
    out: nnx.Linear
    steps: nnx.BatchStat[jax.Array]

    def __init__(self, *, ctx: nnx.Context) -> None:
        self.hidden = nnx.Linear(4, 8, ctx=ctx)
        self.out = nnx.Linear(8, 2, ctx=ctx)
        self.steps = nnx.BatchStat(jnp.zeros(()))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.steps += 1
        return self.out(nnx.relu(self.hidden(x)))


mlp = MLP(ctx=nnx.context(0))
assert_type(mlp.steps, jax.Array)  # a declared Variable reads as its value
pure = mlp.partition()
assert_type(pure, nnx.Pure[nnx.State[Any], MLP])  # a Pure: merge, apply, filter ...
assert_type(pure.merge(), MLP)
(params, rest), moduledef = mlp.partition(nnx.Param, ...)
assert_type(params, nnx.State[nnx.Param[Any]])  # a type filter keeps its kind
y, updates = moduledef.apply(params, rest)(jnp.ones((1, 4)))
assert_type(y, jax.Array)  # the method's own return type
y, _ = moduledef.apply(params, rest).on(lambda m: m.hidden)(jnp.ones((1, 4)))


def loss(model: MLP, x: jax.Array) -> jax.Array:
    return jnp.sum(model(x))


grads = nnx.grad(loss)(mlp, jnp.ones((1, 4)))
assert_type(grads, nnx.State[nnx.Param[Any]])  # nnx.grad(f, wrt=K) gives State[K]
state = nnx.TrainState(moduledef, params=params, tx=optax.sgd(0.1))
assert_type(state.apply_gradients(grads), nnx.TrainState[MLP, nnx.Param[Any]])

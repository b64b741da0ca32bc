"""Small Modules and helpers shared by the transform tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import nnx


class Count(nnx.Variable):
    pass


class Linear(nnx.Module):
    """The README's Getting Started Linear."""

    def __init__(self, din: int, dout: int, *, ctx: nnx.Context):
        key = ctx.make_rng("params")
        self.w = nnx.Param(jax.random.uniform(key, (din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.count = Count(0)  # track the number of calls

    def __call__(self, x):
        self.count += 1
        return x @ self.w + self.b


class Counter(nnx.Module):
    def __init__(self):
        self.count = Count(jnp.array(0))

    def __call__(self, x):
        self.count += 1
        return x


class Holder(nnx.Module):
    """A module whose attributes are set by the test."""

    def __init__(self, **attrs):
        for name, value in attrs.items():
            setattr(self, name, value)


def mse(pred, y):
    return jnp.mean((pred - y) ** 2)


def allclose(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


class MLP(nnx.Module):
    def __init__(self, *, ctx: nnx.Context):
        self.l1 = nnx.Linear(3, 4, ctx=ctx)
        self.bn = nnx.BatchNorm(4, ctx=ctx)
        self.l2 = nnx.Linear(4, 1, ctx=ctx)
        self.calls = Count(jnp.array(0))

    def __call__(self, x):
        self.calls += 1
        h = nnx.relu(self.bn(self.l1(x), use_running_average=True))
        return self.l2(h)


def mlp_data():
    x = jnp.arange(15.0).reshape(5, 3) / 10
    y = jnp.linspace(-1, 1, 5).reshape(5, 1)
    return x, y


def mlp_loss(m, x, y):
    return mse(m(x), y)


class StackBlock(nnx.Module):
    def __init__(self, dim: int, *, ctx: nnx.Context) -> None:
        self.linear = nnx.Linear(dim, dim, ctx=ctx)
        self.calls = nnx.BatchStat(jnp.zeros(()))

    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
        self.calls += 1
        return jnp.tanh(self.linear(x)), None

    def doubled(self, x: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        y = 2.0 * self.linear(x)
        return y, jnp.sum(y)


def by_hand(kernels: jax.Array, biases: jax.Array, x: jax.Array) -> jax.Array:
    for k, b in zip(kernels, biases):
        x = jnp.tanh(x @ k + b)
    return x

"""Per-call cost of nnx.jit against plain JAX (and flax.nnx / equinox if installed).

    python benchmarks/bench_transforms.py [--repeats 7] [--number 300]

E — an empty step of a 4-layer MLP (9 state leaves: 4 kernels, 4 biases, a counter):
    `model.count += 1` under `nnx.jit`, against a raw `jax.jit` call that takes and
    returns the same 9 arrays.
D — a dropout call drawing a fresh key each call from one reused `nnx.Context`
    (`ctx=` of an `nnx.jit` function; one trace), against a raw `jax.jit` that takes a
    key, splits it and returns the new one.
T — a real SGD step of a 4 x Linear(256, 256) MLP, batch 32, written as in the README
    (`nnx.jit` + `nnx.grad` + `update_state`), against the same step in pure JAX on a
    params pytree; each also with its parameters donated (`donate_argnums=0`), and
    flax.nnx's step.

Variants run interleaved round-robin in one process; every timed block ends with
`block_until_ready`. Prints median/min microseconds per call and ratios. Never a test.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import nnx

WIDTH = 256
BATCH = 32
DEPTH = 4


class Count(nnx.Variable[Any]):
    pass


class MLP(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.layers = nnx.Sequence([nnx.Linear(WIDTH, WIDTH, ctx=ctx) for _ in range(DEPTH)])
        self.count = Count(jnp.array(0))

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < DEPTH - 1:
                x = jax.nn.relu(x)
        return x


def nnx_cases(x: jax.Array, y: jax.Array) -> dict[str, Callable[[], Any]]:
    model = MLP(ctx=nnx.context(0))

    @nnx.jit
    def empty(model: MLP) -> None:
        model.count += 1

    def sgd_step(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
        def loss_fn(model: MLP) -> jax.Array:
            return jnp.mean((model(x) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        model.update_state(jax.tree.map(lambda w, g: w - 0.01 * g, model.filter(nnx.Param), grads))
        return loss

    sgd = nnx.jit(sgd_step)
    donated_model = MLP(ctx=nnx.context(0))
    try:
        sgd_donated = nnx.jit(sgd_step, donate_argnums=0)
    except NotImplementedError:  # an nnx from before donation (a before/after run)
        sgd_donated = sgd

    def empty_call() -> Any:
        empty(model)
        return model.count

    dropout, ctx = nnx.Dropout(0.5), nnx.context(dropout=0)

    @nnx.jit
    def drop(m: nnx.Dropout, x: jax.Array, *, ctx: nnx.Context) -> jax.Array:
        return m(x, deterministic=False, ctx=ctx)

    return {
        "D nnx.jit, reused Context": lambda: drop(dropout, x, ctx=ctx),
        "E nnx.jit": empty_call,
        "T nnx.jit + nnx.grad": lambda: sgd(model, x, y),
        "T nnx.jit + nnx.grad, model donated": lambda: sgd_donated(donated_model, x, y),
    }


def jax_cases(x: jax.Array, y: jax.Array) -> dict[str, Callable[[], Any]]:
    keys = jax.random.split(jax.random.key(0), DEPTH)
    params = [
        {"kernel": jax.random.normal(k, (WIDTH, WIDTH)) / 16, "bias": jnp.zeros((WIDTH,))}
        for k in keys
    ]
    leaves = [*jax.tree_util.tree_leaves(params), jnp.array(0)]
    state: dict[str, Any] = {"leaves": leaves, "params": params}

    @jax.jit
    def empty(leaves: list[jax.Array]) -> list[jax.Array]:
        return [*leaves[:-1], leaves[-1] + 1]

    def forward(params: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
        for i, p in enumerate(params):
            x = x @ p["kernel"] + p["bias"]
            if i < DEPTH - 1:
                x = jax.nn.relu(x)
        return x

    @jax.jit
    def sgd(params: list[dict[str, jax.Array]], x: jax.Array, y: jax.Array) -> Any:
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((forward(p, x) - y) ** 2))(params)
        return jax.tree.map(lambda w, g: w - 0.01 * g, params, grads), loss

    def empty_call() -> Any:
        state["leaves"] = empty(state["leaves"])
        return state["leaves"]

    @jax.jit
    def drop(key: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        key, sub = jax.random.split(key)
        keep = jax.random.bernoulli(sub, 0.5, x.shape)
        return key, jnp.where(keep, x / 0.5, 0.0)

    state["key"] = jax.random.key(0)

    def drop_call() -> Any:
        state["key"], out = drop(state["key"], x)
        return out

    def sgd_call() -> Any:
        state["params"], loss = sgd(state["params"], x, y)
        return loss

    sgd_donated = jax.jit(sgd.__wrapped__, donate_argnums=0)
    state["donated"] = jax.tree.map(jnp.copy, params)

    def sgd_donated_call() -> Any:
        state["donated"], loss = sgd_donated(state["donated"], x, y)
        return loss

    return {
        "D raw jax.jit (key in, key out)": drop_call,
        "E raw jax.jit (9 arrays in, 9 out)": empty_call,
        "T pure JAX": sgd_call,
        "T pure JAX, params donated": sgd_donated_call,
    }


def flax_cases(x: jax.Array, y: jax.Array) -> dict[str, Callable[[], Any]]:
    try:
        from flax import nnx as fnnx
    except ImportError:
        return {}

    class FCount(fnnx.Variable[jax.Array]):
        pass

    class FMLP(fnnx.Module):
        def __init__(self, rngs: fnnx.Rngs) -> None:
            self.layers = fnnx.List([fnnx.Linear(WIDTH, WIDTH, rngs=rngs) for _ in range(DEPTH)])
            self.count = FCount(jnp.array(0))

        def __call__(self, x: jax.Array) -> jax.Array:
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i < DEPTH - 1:
                    x = jax.nn.relu(x)
            return x

    model = FMLP(fnnx.Rngs(0))
    trained = FMLP(fnnx.Rngs(0))

    @fnnx.jit
    def empty(model: FMLP) -> None:
        model.count[...] += 1

    @fnnx.jit
    def sgd(model: FMLP, x: jax.Array, y: jax.Array) -> jax.Array:
        def loss_fn(model: FMLP) -> jax.Array:
            return jnp.mean((model(x) - y) ** 2)

        loss, grads = fnnx.value_and_grad(loss_fn)(model)
        params = fnnx.state(model, fnnx.Param)
        fnnx.update(model, jax.tree.map(lambda w, g: w - 0.01 * g, params, grads))
        return loss

    return {
        "E flax.nnx.jit": lambda: (empty(model), model.count[...])[1],
        "T flax.nnx.jit + flax.nnx.grad": lambda: sgd(trained, x, y),
    }


def equinox_cases(x: jax.Array, y: jax.Array) -> dict[str, Callable[[], Any]]:
    try:
        import equinox as eqx
    except ImportError:
        return {}
    keys = jax.random.split(jax.random.key(0), DEPTH)
    model = ([eqx.nn.Linear(WIDTH, WIDTH, key=k) for k in keys], jnp.array(0))
    box = {"model": model}

    @eqx.filter_jit
    def empty(model: Any) -> Any:
        layers, count = model
        return layers, count + 1

    def call() -> Any:
        box["model"] = empty(box["model"])
        return box["model"][1]

    return {"E equinox.filter_jit": call}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=300)
    args = parser.parse_args(argv)
    x = jax.random.normal(jax.random.key(1), (BATCH, WIDTH))
    y = jax.random.normal(jax.random.key(2), (BATCH, WIDTH))
    cases: dict[str, Callable[[], Any]] = {}
    for make in (jax_cases, nnx_cases, flax_cases, equinox_cases):
        cases.update(make(x, y))
    for fn in cases.values():  # compile
        jax.block_until_ready(fn())
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():

            def run(fn: Callable[[], Any] = fn) -> None:
                for _ in range(args.number):
                    out = fn()
                jax.block_until_ready(out)

            samples[name].append(timeit.timeit(run, number=1) / args.number * 1e6)
    print(f"jax {jax.__version__}; microseconds per call (median / min of {args.repeats})")
    medians = {name: statistics.median(v) for name, v in samples.items()}
    for name, values in samples.items():
        group = name.split()[0]
        base_name = next(n for n in cases if n.startswith(group) and ("raw" in n or "pure" in n))
        ratio = medians[name] / medians[base_name]
        print(f"{name:<40} {medians[name]:9.1f} {min(values):9.1f}   {ratio:5.2f}x {base_name}")


if __name__ == "__main__":
    main()

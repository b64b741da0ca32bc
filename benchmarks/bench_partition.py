"""Cost of nnx's functional API on a model of 100 Linear(32, 32) layers.

    python benchmarks/bench_partition.py [--repeats 7] [--number 200]

Measures, in one process and interleaved round-robin (so machine load hits all
variants alike):

- `jax.tree_util.tree_flatten` of an equivalent list of 100 {kernel, bias} dicts
  (the floor of the splitting cases) and `tree_unflatten` back into that list (the
  floor of the merging cases: `merge`, flax.nnx `merge`, equinox `combine`);
- `model.partition()`: of an unchanged model (the structure is cached), of a fresh
  model (its first partition builds that cache), and after a structural change at
  the root (only the root's own layout is rebuilt);
- `moduledef.merge(state)`;
- `model.partition(nnx.Param)` and `model.update_state(state)`;
- flax.nnx `split`/`merge` and equinox `partition`, when those are installed.

Prints median and minimum microseconds per call and the ratio of medians to the
case's floor. Never run as a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import nnx

N_LAYERS = 100
WIDTH = 32
FRESH_POOL = 2000
FLATTEN = "jax tree_flatten(list of 100 {kernel, bias})"
UNFLATTEN = "jax tree_unflatten(...) of the same list"
MERGING = ("merge", "combine")  # cases whose floor is UNFLATTEN


def nnx_cases() -> dict[str, Callable[[], object]]:
    ctx = nnx.context(0)
    model = nnx.Sequence([nnx.Linear(WIDTH, WIDTH, ctx=ctx) for _ in range(N_LAYERS)])
    state, moduledef = model.partition()
    params = model.filter(nnx.Param)
    counter = [0]

    def partition_cold() -> object:
        # a structural change (a new static attribute) before each partition
        counter[0] += 1
        model.tag = counter[0]
        return model.partition()

    # Fresh models (clones share the arrays, not the modules) for first-time partitions:
    # each is partitioned once, so no structure cache exists yet.
    fresh = [model.clone() for _ in range(FRESH_POOL)]

    def partition_first_time() -> object:
        return (fresh.pop() if fresh else model.clone()).partition()

    return {
        "nnx partition()": model.partition,
        "nnx partition() of a fresh model": partition_first_time,
        "nnx partition() after a structural change": partition_cold,
        "nnx partition(nnx.Param)": lambda: model.partition(nnx.Param),
        "nnx moduledef.merge(state)": lambda: moduledef.merge(state),
        "nnx update_state(params)": lambda: model.update_state(params),
    }


def baseline_tree() -> list[dict[str, jax.Array]]:
    key = jax.random.key(0)
    return [
        {"kernel": jax.random.normal(key, (WIDTH, WIDTH)), "bias": jnp.zeros((WIDTH,))}
        for _ in range(N_LAYERS)
    ]


def flax_cases() -> dict[str, Callable[[], object]]:
    try:
        from flax import nnx as fnnx
    except ImportError:
        return {}
    rngs = fnnx.Rngs(0)
    model = fnnx.List([fnnx.Linear(WIDTH, WIDTH, rngs=rngs) for _ in range(N_LAYERS)])
    graphdef, state = fnnx.split(model)
    return {
        "flax.nnx split(model)": lambda: fnnx.split(model),
        "flax.nnx merge(graphdef, state)": lambda: fnnx.merge(graphdef, state),
    }


def equinox_cases() -> dict[str, Callable[[], object]]:
    try:
        import equinox as eqx
    except ImportError:
        return {}
    keys = jax.random.split(jax.random.key(0), N_LAYERS)
    model = [eqx.nn.Linear(WIDTH, WIDTH, key=k) for k in keys]
    params, static = eqx.partition(model, eqx.is_array)
    return {
        "equinox partition(model, is_array)": lambda: eqx.partition(model, eqx.is_array),
        "equinox combine(params, static)": lambda: eqx.combine(params, static),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=200)
    args = parser.parse_args(argv)

    tree = baseline_tree()
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    cases: dict[str, Callable[[], Any]] = {
        FLATTEN: lambda: jax.tree_util.tree_flatten(tree),
        UNFLATTEN: lambda: jax.tree_util.tree_unflatten(treedef, leaves),
    }
    cases.update(nnx_cases())
    cases.update(flax_cases())
    cases.update(equinox_cases())

    samples: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():  # warm up (first partition builds caches, first jit etc.)
        fn()
    for _ in range(args.repeats):
        for name, fn in cases.items():
            seconds = timeit.timeit(fn, number=args.number)
            samples[name].append(seconds / args.number * 1e6)

    floors = {name: statistics.median(samples[name]) for name in (FLATTEN, UNFLATTEN)}
    python = sys.version.split()[0]
    print(f"jax {jax.__version__}, python {python}, {N_LAYERS} x Linear({WIDTH}, {WIDTH})")
    print(f"{'case':<48} {'median us':>10} {'min us':>9} {'x floor':>8}  floor")
    for name, values in samples.items():
        median = statistics.median(values)
        floor = UNFLATTEN if name == UNFLATTEN or any(w in name for w in MERGING) else FLATTEN
        ratio = median / floors[floor]
        label = floor.split("(")[0].removeprefix("jax ")
        print(f"{name:<48} {median:>10.1f} {min(values):>9.1f} {ratio:>7.1f}x  {label}")


if __name__ == "__main__":
    main()

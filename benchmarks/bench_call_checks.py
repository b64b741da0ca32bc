"""Cost of a shape-checked call, with checks on and off.

    python benchmarks/bench_call_checks.py [--repeats 7] [--number 5000]

In one process, interleaved round-robin, per call (microseconds):

- `m.plain(x)`: a method without array annotations (not wrapped: the baseline);
- `m(x)`: the same body, annotated `(x: Float[Array, "n din"]) -> Float[Array, "n dout"]`
  against `w: nnx.Param[Float[Array, "din dout"]]`, checks on and off;
- an `nnx.jit` step calling `m(x)`, checks on and off (the check runs at trace time
  only, so a step should cost the same).

Targets: an eager annotated call <= 10 us more with checks on than off; the jitted
step unchanged. Never run as a test.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

import nnx


class Proj(nnx.Module):
    w: nnx.Param[Float[Array, "din dout"]]

    def __init__(self, din: int, dout: int) -> None:
        self.w = nnx.Param(jnp.ones((din, dout)))

    def __call__(self, x: Float[Array, "n din"]) -> Float[Array, "n dout"]:
        return x @ self.w

    def plain(self, x: jax.Array) -> jax.Array:
        return x @ self.w


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=5000)
    args = parser.parse_args(argv)

    m = Proj(3, 4)
    x = jnp.ones((2, 3))

    @nnx.jit
    def step(m: Proj, x: jax.Array) -> jax.Array:
        return m(x)

    step(m, x).block_until_ready()
    with nnx.shape_checks(False):
        step(m, x).block_until_ready()  # the same trace: checks do not key it

    cases: dict[str, tuple[bool, Callable[[], object]]] = {
        "unannotated method (baseline)": (True, lambda: m.plain(x)),
        "annotated, checks on": (True, lambda: m(x)),
        "annotated, checks off": (False, lambda: m(x)),
        "nnx.jit step, checks on": (True, lambda: step(m, x)),
        "nnx.jit step, checks off": (False, lambda: step(m, x)),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (checks, fn) in cases.items():
            with nnx.shape_checks(checks):
                seconds = timeit.timeit(fn, number=args.number)
            samples[name].append(seconds / args.number * 1e6)
    print(f"jax {jax.__version__}; microseconds per call (median / min of {args.repeats})")
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, values in samples.items():
        print(f"{name:<34} {medians[name]:8.2f} {min(values):8.2f}")
    eager = medians["annotated, checks on"] - medians["annotated, checks off"]
    jitted = medians["nnx.jit step, checks on"] / medians["nnx.jit step, checks off"]
    print(f"eager: checks on cost {eager:+.2f} us per call (target <= +10)")
    print(f"nnx.jit step: on/off {jitted:.2f}x (target 1.00x)")


if __name__ == "__main__":
    main()

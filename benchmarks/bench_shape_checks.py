"""Cost of one checked attribute assignment, with checks on and off.

    python benchmarks/bench_shape_checks.py [--repeats 7] [--number 20000]

In one process, interleaved round-robin, per assignment (microseconds):

- `m.w = x` where `w: nnx.Param[Float[Array, "din dout"]]`, checks on: repeated (the
  checks that passed are cached per shape, dtype and bindings, as in a training loop)
  and the first check of its kind (that cache emptied before each assignment);
- the same with `nnx.shape_checks(False)`;
- `m.u = x` on an unannotated Param attribute (the baseline for "off");
- `m.s = x` on a bare `Float[Array, " din"]` attribute, checks on;
- `m.n = 3` on an `int` attribute, checks on (beartype);
- `jnp.zeros((din, dout))`, for scale.

Targets: a repeated checked assignment <= 3x an unannotated one; off within 1 us of
unannotated. Never run as a test.
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


class Annotated(nnx.Module):
    w: nnx.Param[Float[Array, "din dout"]]
    b: nnx.Param[Float[Array, " dout"]]
    s: Float[Array, " din"]
    n: int

    def __init__(self, din: int, dout: int) -> None:
        self.w = nnx.Param(jnp.zeros((din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.s = jnp.ones((din,))
        self.n = 3
        self.u = nnx.Param(jnp.zeros((din, dout)))  # not annotated


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args(argv)

    m = Annotated(2, 3)
    w = jnp.ones((2, 3))
    s = jnp.ones((2,))

    def assign_off() -> None:  # timed inside `with nnx.shape_checks(False)` below
        m.w = w

    from nnx._shape_checks import class_specs  # internal: to empty the cache of checks

    passed = getattr(class_specs(Annotated)["w"], "passed", {})  # {}: a release without it

    def assign_first() -> None:
        passed.clear()
        m.w = w

    cases: dict[str, Callable[[], object]] = {
        "unannotated Param (m.u = x)": lambda: setattr(m, "u", w),
        "checks on:  Param[Float[Array, 'din dout']]": lambda: setattr(m, "w", w),
        "checks on:  the same, first check of its shape": assign_first,
        "checks on:  bare Float[Array, ' din']": lambda: setattr(m, "s", s),
        "checks on:  int (beartype)": lambda: setattr(m, "n", 3),
        "checks off: Param[Float[Array, 'din dout']]": assign_off,
        "jnp.zeros((2, 3))": lambda: jnp.zeros((2, 3)),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            if name.startswith("checks off"):
                with nnx.shape_checks(False):
                    seconds = timeit.timeit(fn, number=args.number)
            else:
                seconds = timeit.timeit(fn, number=args.number)
            samples[name].append(seconds / args.number * 1e6)
    print(f"jax {jax.__version__}; microseconds per assignment (median / min of {args.repeats})")
    base = statistics.median(samples["unannotated Param (m.u = x)"])
    for name, values in samples.items():
        median = statistics.median(values)
        print(
            f"{name:<46} {median:8.2f} {min(values):8.2f}   {median - base:+8.2f} us"
            f" {median / base:6.2f}x unannotated"
        )


if __name__ == "__main__":
    main()

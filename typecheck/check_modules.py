"""Static checks of the Module API (checked by mypy and pyright, never run)."""

from __future__ import annotations

from typing import Any

import jax
from typing_extensions import assert_type

import nnx


class Count(nnx.Variable[int]):
    pass


class Linear(nnx.Module):
    w: nnx.Param[jax.Array]
    b: nnx.Param[jax.Array]
    count: Count

    def __init__(self, w: jax.Array, b: jax.Array) -> None:
        self.w = nnx.Param(w)
        self.b = nnx.Param(b)
        self.count = Count(0)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.count += 1
        return x @ self.w + self.b


def reads_unbox(m: Linear) -> None:
    assert_type(m.w, jax.Array)
    assert_type(m.count, int)
    m.count += 1
    m.w = m.w * 2
    m.w = nnx.Param(m.w)


def partition(m: Linear, x: jax.Array) -> None:
    state, moduledef = m.partition()
    assert_type(state, nnx.State[Any])
    assert_type(moduledef, nnx.ModuleDef[Linear])
    params, _ = m.partition(nnx.Param)
    assert_type(params, nnx.State[nnx.Param[Any]])
    (params2, counts), _ = m.partition(nnx.Param, Count)
    assert_type(params2, nnx.State[nnx.Param[Any]])
    assert_type(counts, nnx.State[Count])
    assert_type(moduledef.merge(state), Linear)
    y, (new_state, new_def) = moduledef.apply(state)(x)
    assert_type(y, jax.Array)
    assert_type(new_state, nnx.State[Any])
    assert_type(new_def, nnx.ModuleDef[Linear])


def rejected(m: Linear) -> None:
    m.w = "not an array"  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
    m.unknown = 1  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]

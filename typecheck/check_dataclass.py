"""Static checks of `nnx.dataclass` (checked by mypy and pyright, never run).

The decorator is a PEP 681 `dataclass_transform` with nnx's field specifiers, so the
checkers synthesize `__init__`; a Variable-typed field takes the raw value or the
Variable (its descriptor `__set__` type).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from typing_extensions import assert_type

import nnx


def arr() -> jax.Array:
    raise NotImplementedError


class Count(nnx.Variable[int]):
    pass


@nnx.dataclass
class Affine(nnx.Module):
    w: nnx.Param[jax.Array] = nnx.param_field()
    b: nnx.Param[jax.Array] = nnx.param_field(sharding=(None,))
    scale: float = nnx.static_field(default=1.0)
    mean: nnx.BatchStat[jax.Array] = nnx.var_field(nnx.BatchStat, default=None)
    count: Count = nnx.var_field(Count, default=0)
    extra: nnx.Node[list[int]] = nnx.node_field(default_factory=list)
    note: str = nnx.field(default="")
    hidden: int = nnx.field(default=0, init=False)
    tag: str = dataclasses.field(default="affine")

    def __call__(self, x: jax.Array) -> jax.Array:
        self.count += 1
        return x @ self.w + self.b


@nnx.dataclass(eq=True)
class Point(nnx.Pytree):
    x: jax.Array
    y: nnx.TreeNode[jax.Array] = nnx.node_field()


def init_accepts() -> None:
    Affine(arr(), arr())
    Affine(nnx.Param(arr()), nnx.Param(arr(), sharding=(None,)))
    Affine(w=arr(), b=arr(), scale=2.0, count=3, note="n", tag="t")
    Affine(arr(), arr(), mean=arr(), extra=[1, 2])
    Affine(arr(), arr(), mean=nnx.BatchStat(arr()), count=Count(1))
    Point(arr(), arr())
    Point(x=arr(), y=arr())
    Point(x=arr(), y=nnx.TreeNode(arr()))


def reads(a: Affine, p: Point) -> None:
    assert_type(Affine(arr(), arr()), Affine)
    assert_type(a.w, jax.Array)
    assert_type(a.b, jax.Array)
    assert_type(a.scale, float)
    assert_type(a.mean, jax.Array)
    assert_type(a.count, int)
    assert_type(a.extra, list[int])
    assert_type(a.hidden, int)
    assert_type(a(arr()), jax.Array)
    assert_type(a.partition(nnx.Param), nnx.Pure[nnx.State[nnx.Param[Any]], Affine])
    assert_type(Point(arr(), arr()), Point)
    assert_type(p.x, jax.Array)
    assert_type(p.y, jax.Array)
    assert_type(p.replace(x=arr()), Point)


# -- rejected --------------------------------------------------------------------------


def rejected(a: Affine) -> None:
    Affine("not an array", arr())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Affine(arr())  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    Affine(arr(), arr(), scale="big")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Affine(arr(), arr(), count="one")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Affine(arr(), arr(), hidden=1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    Affine(arr(), arr(), bogus=1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    Point(arr())  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    a.w = "not an array"  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]

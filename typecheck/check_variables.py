"""Static checks of Variables and other Containers (checked by mypy and pyright, never run).

Positives use `assert_type`; a negative is a line that must be rejected, carrying
`# type: ignore[code]  # pyright: ignore[rule]` so that both checkers go red if the
error ever disappears (`--warn-unused-ignores` / `reportUnnecessaryTypeIgnoreComment`).
"""

from __future__ import annotations

from typing import Any

import jax
from typing_extensions import assert_type

import nnx


def arr() -> jax.Array:
    raise NotImplementedError


def init(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    raise NotImplementedError


class Count(nnx.Variable[int]):
    pass


# -- construction infers the value type --------------------------------------------------


def construction() -> None:
    assert_type(nnx.Param(arr()), nnx.Param[jax.Array])
    assert_type(nnx.Param(1), nnx.Param[int])
    assert_type(nnx.BatchStat(arr()), nnx.BatchStat[jax.Array])
    assert_type(nnx.Variable(1.5), nnx.Variable[float])
    assert_type(nnx.Cache("kv"), nnx.Cache[str])
    assert_type(nnx.Intermediate((arr(),)), nnx.Intermediate[tuple[jax.Array]])
    assert_type(nnx.Node([4, 5]), nnx.Node[list[int]])
    assert_type(nnx.TreeNode(arr()), nnx.TreeNode[jax.Array])
    assert_type(nnx.Static(3), nnx.Static[int])
    assert_type(Count(0), Count)
    # a sharding annotation is a keyword; the value type is unchanged
    assert_type(nnx.Param(arr(), sharding=("data", None)), nnx.Param[jax.Array])


def reading(p: nnx.Param[jax.Array], c: Count, s: nnx.Static[str]) -> None:
    assert_type(p.value, jax.Array)
    assert_type(c.value, int)
    assert_type(s.value, str)
    assert_type(p.metadata, dict[str, Any])
    assert_type(p.sharding, tuple[str | None, ...] | None)
    assert_type(p.replace(value=arr()), nnx.Param[jax.Array])
    assert_type(p.copy(), nnx.Param[jax.Array])
    assert_type(c.copy(), Count)
    assert_type(p.is_equivalent(c), bool)
    assert_type(nnx.Param.collection, str)


def writing(p: nnx.Param[jax.Array], c: Count) -> None:
    p.value = arr()
    c.value = c.value + 1


def default_type_argument(p: nnx.Param, v: nnx.Variable) -> None:
    # `A` defaults to Any: a bare `nnx.Param` annotation is `Param[Any]`
    assert_type(p, nnx.Param[Any])
    assert_type(v.value, Any)


def subclasses(p: nnx.Param[jax.Array], c: Count) -> None:
    def takes_variable(v: nnx.Variable[jax.Array]) -> None: ...
    def takes_int_variable(v: nnx.Variable[int]) -> None: ...
    def takes_node(v: nnx.Node[Any]) -> None: ...

    takes_variable(p)
    takes_int_variable(c)
    takes_node(c)


def metadata_helpers() -> None:
    tagged = nnx.with_metadata(init, sharding=("data", None))
    assert_type(tagged(arr(), (2, 3)), nnx.ContainerMetadata[jax.Array])
    assert_type(nnx.var("intermediates", arr()), nnx.Variable[jax.Array])
    assert_type(nnx.variable_type("params"), type[nnx.Variable[Any]])


# -- rejected --------------------------------------------------------------------------


def rejected(
    p: nnx.Param[jax.Array], c: Count, s: nnx.Static[int], b: nnx.BatchStat[jax.Array]
) -> None:
    def takes_param(v: nnx.Param[jax.Array]) -> None: ...

    p.value = "not an array"  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
    c.value = "not an int"  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
    Count("not an int")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.Param[int]("not an int")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    s.value = 2  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    takes_param(b)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.Param(arr(), sharding="data")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.var(1, arr())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

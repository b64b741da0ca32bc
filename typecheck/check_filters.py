"""Static checks of filters and paths (checked by mypy and pyright, never run).

`nnx.Filter` is a real type alias: what it does not list is a static error.
"""

from __future__ import annotations

from typing import Any

import jax
from typing_extensions import assert_type

import nnx


def takes_filter(f: nnx.Filter) -> None: ...


def takes_path(p: nnx.Path) -> None: ...


def is_kernel(path: nnx.Path, value: Any) -> bool:
    return path[-1] == "kernel"


def wrong_predicate(value: int) -> bool:
    raise NotImplementedError


def accepted() -> None:
    takes_filter(nnx.Param)
    takes_filter(jax.Array)
    takes_filter(...)
    takes_filter(None)
    takes_filter("params")
    takes_filter(is_kernel)
    takes_filter(lambda path, value: True)
    takes_filter((nnx.Param, "batch_stats", is_kernel))
    takes_filter(nnx.Not(nnx.Param))
    takes_filter(nnx.All(nnx.Param, nnx.PathContains("encoder")))
    takes_filter(nnx.OfType(nnx.BatchStat))
    takes_filter(nnx.PathContains(0))
    takes_filter(nnx.Everything())
    takes_filter(nnx.Nothing())
    takes_filter(nnx.buffers)
    takes_path(("layers", 0, "kernel"))
    takes_path(())


def types() -> None:
    assert_type(nnx.to_predicate(nnx.Param), nnx.Predicate)
    assert_type(nnx.to_predicate("params")(("w",), None), bool)
    assert_type(nnx.Not(nnx.Param).filter, nnx.Filter)
    assert_type(nnx.All(nnx.Param, "cache").filters, tuple[nnx.Filter, ...])
    assert_type(nnx.OfType(nnx.Param).type, type[Any])
    assert_type(nnx.PathContains("w").key, str | int)
    assert_type(nnx.Everything()(("w",), 1), bool)


def path_alias(p: nnx.Path) -> None:
    assert_type(p, tuple[str | int, ...])
    assert_type(p[0], str | int)


# -- rejected --------------------------------------------------------------------------


def rejected(m: nnx.Module, s: nnx.State[Any]) -> None:
    takes_filter(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    takes_filter(1.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    takes_filter([nnx.Param, 1])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    takes_filter(wrong_predicate)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    takes_filter((nnx.Param, 2))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.Not(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.All(nnx.Param, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.PathContains(1.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.to_predicate(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    takes_path(("layers", 1.5))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    takes_path(["layers", 0])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    m.filter(2)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    s.filter(2.5)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]

"""Static checks of State (checked by mypy and pyright, never run).

`State[V]` is a read-only Mapping from paths to `V`, covariant in `V`.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator
from typing import Any

import jax
from typing_extensions import assert_type

import nnx


def arr() -> jax.Array:
    raise NotImplementedError


class Count(nnx.Variable[int]):
    pass


def construction() -> None:
    assert_type(nnx.State([(("layers", 0, "w"), arr())]), nnx.State[jax.Array])


def mapping(params: nnx.State[nnx.Param[Any]]) -> None:
    assert_type(params[("w",)], nnx.Param[Any])
    assert_type(iter(params), Iterator[nnx.Path])
    assert_type(params.items(), ItemsView[nnx.Path, nnx.Param[Any]])
    assert_type(len(params), int)
    assert_type(("w",) in params, bool)
    for path, value in params.items():
        assert_type(path, tuple[str | int, ...])
        assert_type(value, nnx.Param[Any])


def partition_and_filter(state: nnx.State[Any], params: nnx.State[nnx.Param[Any]]) -> None:
    assert_type(state.partition(nnx.Param), nnx.State[nnx.Param[Any]])
    assert_type(state.partition("params"), nnx.State[Any])
    # a non-type filter keeps the State's own entry type
    assert_type(params.partition("params"), nnx.State[nnx.Param[Any]])
    assert_type(
        state.partition(nnx.Param, nnx.BatchStat),
        tuple[nnx.State[nnx.Param[Any]], nnx.State[nnx.BatchStat[Any]]],
    )
    assert_type(
        state.partition(nnx.Param, nnx.BatchStat, Count),
        tuple[nnx.State[nnx.Param[Any]], nnx.State[nnx.BatchStat[Any]], nnx.State[Count]],
    )
    assert_type(state.partition(nnx.Param, ...), tuple[nnx.State[Any], nnx.State[Any]])
    assert_type(
        params.partition(nnx.PathContains("w"), ...),
        tuple[nnx.State[nnx.Param[Any]], nnx.State[nnx.Param[Any]]],
    )
    assert_type(state.partition("a", "b", "c", ...), tuple[nnx.State[Any], ...])
    assert_type(state.filter(nnx.Param), nnx.State[nnx.Param[Any]])
    assert_type(state.filter(lambda path, value: "w" in path), nnx.State[Any])
    assert_type(state.filter(nnx.Param, Count), tuple[nnx.State[nnx.Param[Any]], nnx.State[Count]])
    assert_type(
        state.filter(nnx.Param, Count, nnx.Cache),
        tuple[nnx.State[nnx.Param[Any]], nnx.State[Count], nnx.State[nnx.Cache[Any]]],
    )
    assert_type(state.filter(nnx.Param, "cache"), tuple[nnx.State[Any], nnx.State[Any]])


def takes_params(s: nnx.State[nnx.Param[Any]]) -> None: ...


def combining(
    p1: nnx.State[nnx.Param[Any]], p2: nnx.State[nnx.Param[Any]], b: nnx.State[nnx.BatchStat[Any]]
) -> None:
    assert_type(nnx.State.merge(p1, p2), nnx.State[nnx.Param[Any]])
    # the result holds every argument's kinds (pyright once said State[Param] here)
    assert_type(nnx.State.merge(p1, b), nnx.State[nnx.Param[Any] | nnx.BatchStat[Any]])
    assert_type(nnx.State.merge(p1, b, p2), nnx.State[nnx.Param[Any] | nnx.BatchStat[Any]])
    assert_type(nnx.State.merge(p1), nnx.State[nnx.Param[Any]])
    takes_params(nnx.State.merge(p1, b))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    assert_type(p1 | b, nnx.State[nnx.Param[Any] | nnx.BatchStat[Any]])
    assert_type(p1 - b, nnx.State[nnx.Param[Any]])


def covariance(params: nnx.State[nnx.Param[Any]], counts: nnx.State[Count]) -> None:
    def takes_variables(s: nnx.State[nnx.Variable[Any]]) -> None: ...
    def takes_int_variables(s: nnx.State[nnx.Variable[int]]) -> None: ...
    def takes_any(s: nnx.State[Any]) -> None: ...

    takes_variables(params)
    takes_variables(counts)
    takes_int_variables(counts)
    takes_any(params)


# -- rejected --------------------------------------------------------------------------


def rejected(
    params: nnx.State[nnx.Param[Any]],
    stats: nnx.State[nnx.BatchStat[Any]],
    variables: nnx.State[nnx.Variable[Any]],
) -> None:
    def takes_params(s: nnx.State[nnx.Param[Any]]) -> None: ...

    takes_params(stats)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    takes_params(variables)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    params["w"]  # type: ignore[index]  # pyright: ignore[reportArgumentType]
    params[("w",)] = nnx.Param(arr())  # type: ignore[index]  # pyright: ignore[reportIndexIssue]
    nnx.State({"w": arr()})  # type: ignore[dict-item]  # pyright: ignore[reportCallIssue, reportArgumentType]
    params.partition(1)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    params.filter(nnx.Param, [nnx.BatchStat, nnx.Cache])  # a list of filters is a filter (any of)

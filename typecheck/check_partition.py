"""Static checks of Module.partition / filter / pop_state and ModuleDef.merge / apply
(checked by mypy and pyright, never run)."""

from __future__ import annotations

from typing import Any

import jax
from typing_extensions import assert_type

import nnx


def arr() -> jax.Array:
    raise NotImplementedError


class Count(nnx.Variable[int]):
    pass


class Linear(nnx.Module):
    w: nnx.Param[jax.Array]
    mean: nnx.BatchStat[jax.Array]
    count: Count

    def __init__(self, w: jax.Array) -> None:
        self.w = nnx.Param(w)
        self.mean = nnx.BatchStat(w)
        self.count = Count(0)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        self.count += 1
        return x @ self.w

    def loss(self, x: jax.Array) -> float:
        raise NotImplementedError


class Sub(Linear):
    pass


AnyState = nnx.State[Any]


# -- partition --------------------------------------------------------------------------


def partition_overloads(m: Linear, s: Sub) -> None:
    assert_type(m.partition(), nnx.Pure[AnyState, Linear])
    # the ModuleDef is typed by the receiver's class (Self)
    assert_type(s.partition(), nnx.Pure[AnyState, Sub])
    # one type filter: narrowed
    assert_type(m.partition(nnx.Param), nnx.Pure[nnx.State[nnx.Param[Any]], Linear])
    assert_type(m.partition(Count), nnx.Pure[nnx.State[Count], Linear])
    # two and three type filters: a tuple of narrowed States
    assert_type(
        m.partition(nnx.Param, nnx.BatchStat),
        tuple[
            tuple[nnx.State[nnx.Param[Any]], nnx.State[nnx.BatchStat[Any]]], nnx.ModuleDef[Linear]
        ],
    )
    assert_type(
        m.partition(nnx.Param, nnx.BatchStat, Count),
        tuple[
            tuple[nnx.State[nnx.Param[Any]], nnx.State[nnx.BatchStat[Any]], nnx.State[Count]],
            nnx.ModuleDef[Linear],
        ],
    )
    # non-type filters: State[Any]
    assert_type(m.partition("params"), nnx.Pure[AnyState, Linear])
    assert_type(m.partition(...), nnx.Pure[AnyState, Linear])
    assert_type(m.partition((nnx.Param, Count)), nnx.Pure[AnyState, Linear])
    # a type filter then others: the type filter's State keeps its kind
    assert_type(
        m.partition(nnx.Param, ...),
        tuple[tuple[nnx.State[nnx.Param[Any]], AnyState], nnx.ModuleDef[Linear]],
    )
    assert_type(
        m.partition("params", nnx.Not(nnx.Param)),
        tuple[tuple[AnyState, AnyState], nnx.ModuleDef[Linear]],
    )
    assert_type(
        m.partition(nnx.Param, nnx.BatchStat, ...),
        tuple[
            tuple[nnx.State[nnx.Param[Any]], nnx.State[nnx.BatchStat[Any]], AnyState],
            nnx.ModuleDef[Linear],
        ],
    )
    assert_type(
        m.partition(nnx.Param, nnx.BatchStat, Count, ...),
        tuple[tuple[AnyState, ...], nnx.ModuleDef[Linear]],
    )


def unpacking(m: Linear) -> None:
    (params, stats, counts), moduledef = m.partition(nnx.Param, nnx.BatchStat, Count)
    assert_type(params, nnx.State[nnx.Param[Any]])
    assert_type(stats, nnx.State[nnx.BatchStat[Any]])
    assert_type(counts, nnx.State[Count])
    assert_type(moduledef, nnx.ModuleDef[Linear])


def filter_and_pop_state(m: Linear) -> None:
    assert_type(m.filter(nnx.Param), nnx.State[nnx.Param[Any]])
    assert_type(m.filter("params"), AnyState)
    assert_type(m.filter(nnx.Param, Count), tuple[nnx.State[nnx.Param[Any]], nnx.State[Count]])
    assert_type(
        m.filter(nnx.Param, Count, nnx.BatchStat),
        tuple[nnx.State[nnx.Param[Any]], nnx.State[Count], nnx.State[nnx.BatchStat[Any]]],
    )
    assert_type(m.filter(nnx.Param, "batch_stats"), tuple[AnyState, AnyState])
    assert_type(m.filter(nnx.Param, Count, "cache", nnx.Cache), tuple[AnyState, ...])
    assert_type(m.pop_state(nnx.Intermediate), nnx.State[nnx.Intermediate[Any]])
    assert_type(m.pop_state("intermediates"), AnyState)
    assert_type(
        m.pop_state(nnx.Intermediate, nnx.Cache),
        tuple[nnx.State[nnx.Intermediate[Any]], nnx.State[nnx.Cache[Any]]],
    )
    assert_type(m.pop_state(nnx.Intermediate, "cache"), tuple[AnyState, AnyState])
    assert_type(m.pop_state("a", "b", "c"), tuple[AnyState, ...])
    assert_type(
        m.pop_state(nnx.Intermediate, nnx.Cache, nnx.Param),
        tuple[
            nnx.State[nnx.Intermediate[Any]], nnx.State[nnx.Cache[Any]], nnx.State[nnx.Param[Any]]
        ],
    )
    assert_type(nnx.State({("w",): nnx.Param(arr())}), nnx.State[nnx.Param[jax.Array]])


# -- ModuleDef --------------------------------------------------------------------------


def merge(m: Linear) -> None:
    (params, rest), moduledef = m.partition(nnx.Param, ...)
    assert_type(moduledef.merge(params, rest), Linear)
    assert_type(moduledef.merge(m.get_state()), Linear)
    assert_type(moduledef.type, type[Linear])
    state, subdef = Sub(arr()).partition()
    assert_type(subdef.merge(state), Sub)


def pure_idioms(m: Linear, x: jax.Array) -> nnx.PureModule[Linear]:
    # partition() is a Pure: its methods, and a PureModule return, type-check
    pure = m.partition()
    assert_type(pure.merge(), Linear)
    assert_type(pure.states, AnyState)
    assert_type(pure.moduledef, nnx.ModuleDef[Linear])
    y, updates = pure.apply(x)
    assert_type(y, jax.Array)
    assert_type(updates.merge(), Linear)  # the updates of apply are a Pure too
    assert_type(pure.filter(Count), nnx.State[Count])
    assert_type(pure.filter(nnx.Param, Count), tuple[nnx.State[nnx.Param[Any]], nnx.State[Count]])
    assert_type(pure.filter(Count)[("count",)], Count)
    # the README's main idiom keeps the Param kind (nested unpacking)
    (params, rest), moduledef = m.partition(nnx.Param, ...)
    assert_type(params, nnx.State[nnx.Param[Any]])
    assert_type(rest, AnyState)
    assert_type(moduledef, nnx.ModuleDef[Linear])
    return m.partition()


def apply(m: Linear, x: jax.Array) -> None:
    state, moduledef = m.partition()
    y, (new_state, new_def) = moduledef.apply(state)(x)
    assert_type(y, jax.Array)
    assert_type(new_state, AnyState)
    assert_type(new_def, nnx.ModuleDef[Linear])
    assert_type(
        moduledef.apply(state)(x, train=True),
        tuple[jax.Array, nnx.Pure[AnyState, Linear]],
    )
    (params, rest), _ = m.partition(nnx.Param, ...)
    assert_type(moduledef.apply(params, rest), nnx.ApplyCaller[Linear])
    # other methods: reachable by attribute, untyped (Any) ...
    assert_type(moduledef.apply(state).loss(x), tuple[Any, nnx.Pure[AnyState, Any]])
    # ... or typed, through `on`
    assert_type(
        moduledef.apply(state).on(lambda m: m.loss)(x), tuple[float, nnx.Pure[AnyState, Linear]]
    )
    assert_type(m.apply.on(lambda m: m.loss)(x), tuple[float, Linear])
    moduledef.apply(state).on(lambda m: m.loss)("not an array")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def covariance(s: Sub) -> None:
    def takes_linear_def(md: nnx.ModuleDef[Linear]) -> None: ...

    _, subdef = s.partition()
    takes_linear_def(subdef)


# -- rejected --------------------------------------------------------------------------


def rejected(m: Linear, x: jax.Array, state: nnx.State[Any], lindef: nnx.ModuleDef[Linear]) -> None:
    def takes_sub_def(md: nnx.ModuleDef[Sub]) -> None: ...
    def takes_sub(s: Sub) -> None: ...

    m.partition(3)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    m.filter(nnx.Param, 3)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    m.pop_state(1.5)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    lindef.merge("not a state")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    takes_sub(lindef.merge(state))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    takes_sub_def(lindef)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    lindef.apply(state)("not an array")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    lindef.apply(state)(x, bogus=True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    lindef.apply(state)()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]

"""Static checks of the Module API (checked by mypy and pyright, never run).

A class-level annotation `w: nnx.Param[X]` on a Module is a descriptor for the
checkers: `m.w` reads as `X`, and `m.w = ...` accepts `X` or a `Param[X]` only.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    b: nnx.Param[jax.Array]
    count: Count

    def __init__(self, w: jax.Array, b: jax.Array) -> None:
        self.w = nnx.Param(w)
        self.b = nnx.Param(b)
        self.count = Count(0)

    def __call__(self, x: jax.Array) -> jax.Array:
        self.count += 1
        return x @ self.w + self.b


class Block(nnx.Module):
    linear: Linear
    stats: nnx.BatchStat[jax.Array]
    name: str

    def __init__(self, linear: Linear) -> None:
        self.linear = linear
        self.stats = nnx.BatchStat(arr())
        self.name = "block"

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.linear(x)


class Sub(Linear):
    pass


# -- reads are unboxed; writes take the value or the Variable ------------------------------


def reads_unbox(m: Linear, blk: Block) -> None:
    assert_type(m.w, jax.Array)
    assert_type(m.b, jax.Array)
    assert_type(m.count, int)
    assert_type(blk.linear, Linear)
    assert_type(blk.linear.w, jax.Array)
    assert_type(blk.stats, jax.Array)
    assert_type(blk.name, str)
    assert_type(m(arr()), jax.Array)


def writes(m: Linear, blk: Block) -> None:
    m.count += 1
    m.count = m.count * 2
    m.count = Count(3)
    m.w = m.w * 2
    m.w = nnx.Param(m.w)
    m.w = arr()
    blk.stats = arr()
    blk.stats = nnx.BatchStat(arr())
    blk.linear = Linear(arr(), arr())
    blk.linear = Sub(arr(), arr())


def module_methods(m: Linear, s: Sub, blk: Block) -> None:
    assert_type(m.clone(), Linear)
    assert_type(s.clone(), Sub)
    assert_type(m.get_state(), nnx.State[Any])
    assert_type(m.get_module_def(), nnx.ModuleDef[Linear])
    assert_type(s.get_module_def(), nnx.ModuleDef[Sub])
    assert_type(m.modules(), Iterator[tuple[nnx.Path, nnx.Module]])
    # module.apply runs on a copy and returns it (DECISIONS 7)
    assert_type(m.apply, nnx.CloneCaller[Linear, Linear])
    assert_type(m.apply(arr()), tuple[jax.Array, Linear])
    out, clone = blk.apply(arr(), train=True)
    assert_type(out, jax.Array)
    assert_type(clone, Block)
    _, clone2 = blk.apply.linear(arr())
    assert_type(clone2, Block)
    _, (_, new_def) = blk.get_module_def().apply(blk.get_state())(arr(), train=True)
    assert_type(new_def, nnx.ModuleDef[Block])

    def visit(lin: Linear) -> None: ...

    blk.for_each(Linear, visit)
    m.sow(nnx.Intermediate, "h", arr())
    m.update_state(m.get_state())
    m.update_state((m.get_state(), m.get_state()))
    m.update_state(m.clone())
    m.update_state(m.partition(nnx.Param, ...)[0])


def containers() -> None:
    seq = nnx.Sequence([Linear(arr(), arr()), Linear(arr(), arr())])
    assert_type(seq, nnx.Sequence[Linear])
    assert_type(seq[0], Linear)
    assert_type(seq[0:1], list[Linear])
    assert_type(len(seq), int)
    for item in seq:
        assert_type(item, Linear)
    d = nnx.Dict(a=Linear(arr(), arr()))
    assert_type(d, nnx.Dict[Linear])
    assert_type(d["a"], Linear)
    assert_type(d.a, Linear)  # items are attributes
    assert_type(d.get("a"), Linear | None)
    assert_type(d.get("a", 0), Linear | int)
    typed: nnx.Sequence[Linear] = nnx.Sequence()
    assert_type(typed[0], Linear)
    mixed = nnx.Sequence[Any]([1, Linear(arr(), arr())])
    assert_type(mixed[0], Any)
    dict_state, dict_def = nnx.Dict(a=1).partition()
    assert_type(dict_def.merge(dict_state), nnx.Dict[int])


# -- rejected --------------------------------------------------------------------------


def rejected(m: Linear, blk: Block) -> None:
    def visit_block(b: Block) -> None: ...

    m.w = "not an array"  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
    m.w = nnx.Param("not an array")  # type: ignore[arg-type]  # pyright: ignore[reportAttributeAccessIssue]
    m.count = "not an int"  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
    # a Variable of another kind (the run-time check raises ValueError; now the checkers see it)
    m.w = nnx.BatchStat(arr())  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
    blk.stats = nnx.Param(arr())  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
    blk.linear = blk  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
    # a declared Variable attribute has nothing to read on the class (AttributeError at
    # run time): an error for both checkers too
    _ = Linear.w  # type: ignore[arg-type]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    _ = Linear.count  # type: ignore[arg-type]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    m.unknown = 1  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
    _ = m.typo  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    m("not an array")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    m.apply("not an array")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    blk.for_each(Linear, visit_block)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    m.update_state(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    m.sow(int, "h", 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

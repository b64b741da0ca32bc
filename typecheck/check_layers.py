"""Static checks of the built-in layers (checked by mypy and pyright, never run)."""

from __future__ import annotations

from typing import Any

import jax
from typing_extensions import assert_type

import nnx


def arr() -> jax.Array:
    raise NotImplementedError


def linear(ctx: nnx.Context, x: jax.Array) -> None:
    lin = nnx.Linear(2, 3, ctx=ctx)
    assert_type(lin, nnx.Linear)
    assert_type(lin.kernel, jax.Array)
    assert_type(lin.bias, jax.Array | None)
    assert_type(lin(x), jax.Array)
    assert_type(lin.partition(nnx.Param), nnx.Pure[nnx.State[nnx.Param[Any]], nnx.Linear])
    assert_type(
        nnx.Linear(2, 3, use_bias=False, kernel_init=nnx.initializers.zeros(), ctx=ctx),
        nnx.Linear,
    )
    lin.kernel = arr()
    lin.kernel = nnx.Param(arr())
    lin.bias = None


def batch_norm(ctx: nnx.Context, x: jax.Array) -> None:
    bn = nnx.BatchNorm(3, momentum=0.9, ctx=ctx)
    assert_type(bn.mean, jax.Array)
    assert_type(bn.var, jax.Array)
    assert_type(bn.scale, jax.Array | None)
    assert_type(bn(x), jax.Array)
    assert_type(bn(x, use_running_average=True), jax.Array)
    assert_type(bn(x, ctx=ctx), jax.Array)
    assert_type(
        bn.partition(nnx.Param, nnx.BatchStat),
        tuple[
            tuple[nnx.State[nnx.Param[Any]], nnx.State[nnx.BatchStat[Any]]],
            nnx.ModuleDef[nnx.BatchNorm],
        ],
    )
    bn.mean = arr()


def dropout(ctx: nnx.Context, x: jax.Array) -> None:
    drop = nnx.Dropout(0.5)
    assert_type(drop, nnx.Dropout)
    assert_type(drop.rate, float)
    assert_type(drop(x, deterministic=False, ctx=ctx), jax.Array)
    assert_type(nnx.Dropout(rate=0.1, broadcast_dims=(0,), deterministic=True)(x), jax.Array)


def breadth(ctx: nnx.Context, x: jax.Array) -> None:
    assert_type(nnx.LoRALinear(2, 3, lora_rank=1, ctx=ctx)(x), jax.Array)
    assert_type(nnx.LoRA(2, 1, 3, ctx=ctx).lora_a, jax.Array)
    assert_type(nnx.Einsum("bd,dk->bk", (2, 3), ctx=ctx)(x), jax.Array)
    assert_type(nnx.LinearGeneral((2,), (3, 4), ctx=ctx)(x), jax.Array)
    assert_type(nnx.ConvTranspose(2, 3, (2,), ctx=ctx)(x), jax.Array)
    assert_type(nnx.InstanceNorm(2, ctx=ctx)(x), jax.Array)
    assert_type(nnx.PReLU()(x), jax.Array)
    assert_type(nnx.GRUCell(2, 3, ctx=ctx)(x, x), tuple[jax.Array, jax.Array])
    lstm = nnx.LSTMCell(2, 3, ctx=ctx)
    assert_type(lstm.initialize_carry((4, 2)), tuple[jax.Array, jax.Array])
    assert_type(nnx.max_pool(x, (2,)), jax.Array)
    assert_type(nnx.rotary_embedding(x), jax.Array)
    seq = nnx.Sequential(nnx.Linear(2, 3, ctx=ctx), nnx.Linear(3, 3, ctx=ctx))
    assert_type(seq, nnx.Sequential[nnx.Linear])
    assert_type(seq[0], nnx.Linear)
    assert_type(nnx.summary(seq), str)
    for path, module in nnx.iter_modules(seq):
        assert_type(path, tuple[str | int, ...])
        assert_type(module, nnx.Module)


# -- rejected --------------------------------------------------------------------------


def rejected(
    ctx: nnx.Context, lin: nnx.Linear, bn: nnx.BatchNorm, drop: nnx.Dropout, x: jax.Array
) -> None:
    nnx.Linear(2, 3)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    nnx.Linear(2.0, 3, ctx=ctx)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    lin.kernel = "not an array"  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
    lin.kernel = None  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
    lin("not an array")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    bn(x, ctx=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.Dropout("half")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    drop(x, True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    nnx.LoRALinear(2, 3, ctx=ctx)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    nnx.GRUCell(2, 3, ctx=ctx)(x)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]

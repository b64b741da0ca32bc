"""Static checks of Context (checked by mypy and pyright, never run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from typing_extensions import assert_type

import nnx


def key() -> jax.Array:
    raise NotImplementedError


def construction() -> None:
    assert_type(nnx.context(0), nnx.Context)
    assert_type(nnx.context(params=0, dropout=1), nnx.Context)
    assert_type(nnx.context(key(), dropout=nnx.RngStream(key())), nnx.Context)
    assert_type(nnx.context(flags={"use_running_average": True}), nnx.Context)
    assert_type(nnx.Context({"params": nnx.RngStream(key())}), nnx.Context)


def methods(ctx: nnx.Context) -> None:
    assert_type(ctx.make_rng("params"), jax.Array)
    assert_type(ctx.has_rng("dropout"), bool)
    assert_type(ctx.rng_names, tuple[str, ...])
    assert_type(ctx.flags, Mapping[str, Any])
    assert_type(ctx.get_flag("deterministic", False), Any)
    assert_type(ctx.copy(), nnx.Context)


def partition_merge(ctx: nnx.Context) -> None:
    pure = ctx.partition()
    assert_type(pure, nnx.PureContext)
    assert_type(pure.merge(), nnx.Context)
    assert_type(pure.contextdef, nnx.ContextDef)
    assert_type(pure.keys, dict[str, Any])
    keys, contextdef = pure
    assert_type(contextdef, nnx.ContextDef)
    assert_type(contextdef.merge(keys), nnx.Context)
    assert_type(nnx.RngStream(key()).make_rng("params"), jax.Array)
    assert_type(nnx.RngStream(key()).fork(), nnx.RngStream)


# -- rejected --------------------------------------------------------------------------


def rejected(ctx: nnx.Context, pure: nnx.PureContext) -> None:
    nnx.context("seed")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.context(dropout=1.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.context(flags=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    ctx.make_rng(0)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    ctx.make_rng()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    pure.merge(ctx)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    ctx.merge()  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]

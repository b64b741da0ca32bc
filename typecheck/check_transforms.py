"""Static checks of the lifted transforms (checked by mypy and pyright, never run).

`nnx.jit` and `nnx.remat` keep the wrapped function's signature (ParamSpec) and
return type, as plain calls, as decorators, on methods, and in the decorator-factory
form; `nnx.grad` / `nnx.value_and_grad` type the gradients by `wrt`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from typing_extensions import assert_type

import nnx


def arr() -> jax.Array:
    raise NotImplementedError


class Linear(nnx.Module):
    w: nnx.Param[jax.Array]
    mean: nnx.BatchStat[jax.Array]

    def __init__(self, w: jax.Array) -> None:
        self.w = nnx.Param(w)
        self.mean = nnx.BatchStat(w)

    @nnx.jit
    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.w

    @nnx.jit(static_argnames="train")
    def forward(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return x @ self.w

    @nnx.remat
    def checkpointed(self, x: jax.Array) -> jax.Array:
        return x @ self.w

    @nnx.remat(prevent_cse=False)
    def checkpointed2(self, x: jax.Array, scale: float) -> jax.Array:
        return x @ self.w * scale


def step(model: Linear, x: jax.Array) -> jax.Array:
    return model(x)


def step_ctx(model: Linear, x: jax.Array, *, ctx: nnx.Context) -> jax.Array:
    return model(x)


def loss(model: Linear, x: jax.Array, y: jax.Array) -> jax.Array:
    raise NotImplementedError


def loss_aux(model: Linear, x: jax.Array) -> tuple[jax.Array, dict[str, int]]:
    raise NotImplementedError


@nnx.jit
def decorated(model: Linear, x: jax.Array) -> jax.Array:
    return model(x)


@nnx.jit(static_argnums=1)
def decorated_static(model: Linear, n: int) -> list[jax.Array]:
    raise NotImplementedError


@nnx.remat
def remat_decorated(model: Linear, x: jax.Array) -> tuple[jax.Array, int]:
    raise NotImplementedError


# -- jit / remat ----------------------------------------------------------------------------


def jit_and_remat(m: Linear, x: jax.Array, ctx: nnx.Context) -> None:
    assert_type(nnx.jit(step)(m, x), jax.Array)
    assert_type(nnx.jit(step, static_argnums=(1,), stateful=False)(m, x), jax.Array)
    assert_type(nnx.jit(step_ctx)(m, x, ctx=ctx), jax.Array)
    assert_type(nnx.jit(step, donate_argnums=0)(m, x), jax.Array)
    assert_type(nnx.jit(step, donate_argnames=("model",))(m, x), jax.Array)
    nnx.jit(step, donate_argnums="model")  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
    assert_type(decorated(m, x), jax.Array)
    assert_type(decorated_static(m, 3), list[jax.Array])
    assert_type(m(x), jax.Array)
    assert_type(m.forward(x, train=True), jax.Array)
    assert_type(nnx.remat(step)(m, x), jax.Array)
    assert_type(remat_decorated(m, x), tuple[jax.Array, int])
    assert_type(m.checkpointed(x), jax.Array)
    assert_type(m.checkpointed2(x, 2.0), jax.Array)


def signatures_kept(m: Linear) -> None:
    jitted: Callable[[Linear, jax.Array], jax.Array] = nnx.jit(step)
    rematted: Callable[[Linear, jax.Array], jax.Array] = nnx.remat(step)
    factory: Callable[[Linear, int], list[jax.Array]] = decorated_static
    method: Callable[[jax.Array], jax.Array] = m.checkpointed
    del jitted, rematted, factory, method


# -- grad / value_and_grad ----------------------------------------------------------------------


def gradients(m: Linear, x: jax.Array) -> None:
    assert_type(nnx.grad(loss)(m, x, x), nnx.State[nnx.Param[Any]])
    assert_type(nnx.grad(loss, nnx.Param)(m, x, x), nnx.State[nnx.Param[Any]])
    assert_type(nnx.grad(loss, wrt=nnx.BatchStat)(m, x, x), nnx.State[nnx.BatchStat[Any]])
    assert_type(
        nnx.grad(loss_aux, has_aux=True)(m, x), tuple[nnx.State[nnx.Param[Any]], dict[str, int]]
    )
    assert_type(
        nnx.grad(loss_aux, wrt=nnx.BatchStat, has_aux=True)(m, x),
        tuple[nnx.State[nnx.BatchStat[Any]], dict[str, int]],
    )
    assert_type(nnx.grad(loss, stateful=False, allow_int=True)(m, x, x), nnx.State[nnx.Param[Any]])
    value, grads = nnx.value_and_grad(loss)(m, x, x)
    assert_type(value, jax.Array)
    assert_type(grads, nnx.State[nnx.Param[Any]])
    assert_type(
        nnx.value_and_grad(loss, wrt=nnx.BatchStat)(m, x, x),
        tuple[jax.Array, nnx.State[nnx.BatchStat[Any]]],
    )
    (value2, aux), _ = nnx.value_and_grad(loss_aux, has_aux=True)(m, x)
    assert_type(value2, jax.Array)
    assert_type(aux, dict[str, int])
    # a lifted gradient can itself be jitted
    assert_type(nnx.jit(nnx.grad(loss))(m, x, x), nnx.State[nnx.Param[Any]])


# -- Scan / scan / Remat / eval_shape ----------------------------------------------------------


class Block(nnx.Module):
    linear: nnx.Linear

    def __init__(self, dim: int, *, ctx: nnx.Context) -> None:
        self.linear = nnx.Linear(dim, dim, ctx=ctx)

    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.linear(carry) + x, carry

    def doubled(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, int]:
        return 2 * carry + x, 0


def block_step(layer: Block, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return layer(carry, x)


def scan_over_layers(ctx: nnx.Context, x: jax.Array) -> None:
    make = nnx.Scan(Block, variable_axes={nnx.Param: 0}, split_rngs="params", length=4)
    stack = make(3, ctx=ctx)
    assert_type(stack, nnx.ScanModule[Block])
    assert_type(stack.scan_module, Block)
    assert_type(stack(x, x), tuple[Any, Any])
    assert_type(stack.partition(nnx.Param)[1], nnx.ModuleDef[nnx.ScanModule[Block]])
    nnx.scan(block_step, variable_axes={nnx.Param: 0}, split_rngs=("params", "dropout"))
    assert_type(stack, nnx.Scan[Block])  # ScanModule is an alias of Scan
    assert isinstance(stack, nnx.Scan)
    # .call carries the layer's signatures (the stacked outputs have the same types)
    assert_type(stack.call(x, x), tuple[jax.Array, jax.Array])
    assert_type(stack.call.doubled(x, x), tuple[jax.Array, int])
    nnx.Scan(Block, split_rngs=["params", "dropout"], length=2, metadata_params={"a": "b"})
    remat_block = nnx.Remat(Block, prevent_cse=False)(3, ctx=ctx)
    assert_type(remat_block, nnx.RematModule[Block])
    assert_type(remat_block, nnx.Remat[Block])
    assert_type(remat_block.remat_module, Block)
    remat_of_scan = nnx.Remat(nnx.Scan(Block, length=4), static_argnums=(1,))(3, ctx=ctx)
    assert_type(remat_of_scan.remat_module, nnx.Scan[Block])
    assert_type(remat_of_scan.call.call(x, x), tuple[jax.Array, jax.Array])
    assert_type(remat_block.call(x, x), tuple[jax.Array, jax.Array])
    assert_type(remat_block.call.doubled(x, x), tuple[jax.Array, int])
    assert_type(nnx.eval_shape(Block, 3, ctx=ctx), Block)
    assert_type(nnx.eval_shape(lambda: Block(3, ctx=ctx)), Block)


# -- rejected --------------------------------------------------------------------------


def no_module(x: jax.Array) -> jax.Array:
    raise NotImplementedError


def rejected(m: Linear, x: jax.Array) -> None:
    nnx.jit(step)(m, "not an array")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.jit(step)(m)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    decorated(m, x, 1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    decorated_static(m, "three")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    m.forward(x, train="yes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    m("not an array")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.remat(step)(m, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    m.checkpointed2(x)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    nnx.jit(step, static_argnums="model")  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
    nnx.grad(loss)(m, x, "not an array")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.grad(loss)(x, x, x)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.grad(no_module)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]
    nnx.grad(loss, has_aux=True)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    nnx.grad(loss, wrt=1)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    nnx.value_and_grad(loss)(m, x)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


def rejected_scan(ctx: nnx.Context) -> None:
    nnx.Scan(Block, length=4)("three", ctx=ctx)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.Scan(Block, length=4)(3)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    stack = nnx.Scan(Block, length=4)(3, ctx=ctx)
    stack.call("not an array", None)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    stack.call.other_method(None, None)  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    nnx.Scan(Block, variable_axes={1: 0})  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]
    nnx.vmap(block_step, variable_axes={1: 0})  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportCallIssue]
    nnx.Scan(Block, length="four")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.scan(block_step, split_rngs=1)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    nnx.Remat(Block)(3, ctx="ctx")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.Remat(Block, static_argnums="x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.Scan(Block, metadata_params=["layers"])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.eval_shape(Block, "three", ctx=ctx)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def gradients_filter_kinds(m: Linear, x: jax.Array) -> None:
    # a non-type filter selects state of no single kind
    assert_type(nnx.grad(loss, wrt="batch_stats")(m, x, x), nnx.State[Any])
    assert_type(nnx.grad(loss, wrt=nnx.Not(nnx.Param))(m, x, x), nnx.State[Any])
    assert_type(
        nnx.value_and_grad(loss, wrt=nnx.PathContains("w"))(m, x, x),
        tuple[jax.Array, nnx.State[Any]],
    )
    assert_type(
        nnx.value_and_grad(loss_aux, wrt=nnx.BatchStat, has_aux=True)(m, x),
        tuple[tuple[jax.Array, dict[str, int]], nnx.State[nnx.BatchStat[Any]]],
    )
    assert_type(
        nnx.grad(loss_aux, wrt="params", has_aux=True)(m, x),
        tuple[nnx.State[Any], dict[str, int]],
    )


def scan_keeps_the_signature(layer: Block, x: jax.Array) -> None:
    scanned = nnx.scan(block_step, variable_axes={nnx.Param: 0})
    assert_type(scanned(layer, x, x), tuple[jax.Array, jax.Array])
    scanned(layer, x)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    decorator = nnx.scan(variable_axes={nnx.Param: 0}, length=3)
    assert_type(decorator(block_step)(layer, x, x), tuple[jax.Array, jax.Array])


def vmap_keeps_the_signature(layer: Block, x: jax.Array) -> None:
    mapped = nnx.vmap(block_step, in_axes=None, variable_axes={nnx.Param: 0})
    # a dict of axes kept in a variable (its key type is type[Param[Any]], not Filter)
    axes = {nnx.Param: 0, nnx.BatchStat: 0}
    nnx.vmap(block_step, variable_axes=axes)
    nnx.scan(block_step, variable_axes=axes, length=3)
    nnx.Scan(Block, variable_axes=axes, length=3)
    by_name = {"params": 0}
    nnx.vmap(block_step, variable_axes=by_name)
    assert_type(mapped(layer, x, x), tuple[jax.Array, jax.Array])
    decorator = nnx.vmap(variable_axes={nnx.Param: 0}, split_rngs="dropout", axis_size=4)
    assert_type(decorator(block_step)(layer, x, x), tuple[jax.Array, jax.Array])
    nnx.vmap(block_step, axis_size="four")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]


def control_flow(m: nnx.Linear, x: jax.Array) -> None:
    def run(model: nnx.Linear, x: jax.Array) -> jax.Array:
        return model(x)

    assert_type(nnx.cond(x.sum() > 0, run, run, m, x), jax.Array)
    assert_type(nnx.switch(1, [run, run], m, x), jax.Array)

    def body(i: jax.Array, val: tuple[nnx.Linear, jax.Array]) -> tuple[nnx.Linear, jax.Array]:
        return val

    assert_type(nnx.fori_loop(0, 3, body, (m, x)), tuple[nnx.Linear, jax.Array])
    assert_type(nnx.while_loop(lambda model: True, lambda model: model, m), nnx.Linear)
    nnx.fori_loop(0, 3, body, x)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

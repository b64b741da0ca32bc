"""Static checks of `nnx.TrainState` (checked by mypy and pyright, never run)."""

from __future__ import annotations

from typing import Any

import jax
import optax
from typing_extensions import assert_type

import nnx


class BNTrainState(nnx.TrainState[nnx.BatchNorm, nnx.Param[Any]]):
    batch_stats: nnx.State[nnx.BatchStat[Any]]


def train_state(model: nnx.Linear, bn: nnx.BatchNorm, grads: nnx.State[Any]) -> None:
    params, moduledef = model.partition(nnx.Param)
    state = nnx.TrainState(moduledef, params=params, tx=optax.sgd(0.1))
    # generic in the model and in the kind of params
    assert_type(state, nnx.TrainState[nnx.Linear, nnx.Param[Any]])
    assert_type(state.params, nnx.State[nnx.Param[Any]])
    assert_type(state.step, jax.Array)
    assert_type(state.moduledef, nnx.ModuleDef[nnx.Linear])
    # apply_gradients keeps the class
    assert_type(state.apply_gradients(grads), nnx.TrainState[nnx.Linear, nnx.Param[Any]])
    y, _ = state.apply()(jax.numpy.ones((1, 3)))
    assert_type(y, jax.Array)
    # one type argument leaves the params kind Any
    loose: nnx.TrainState[nnx.Linear] = state
    assert_type(loose.params, nnx.State[Any])
    # extra fields: a subclass declares them; apply_gradients/replace return the subclass
    (bn_params, stats), bn_def = bn.partition(nnx.Param, nnx.BatchStat)
    bn_state = BNTrainState(bn_def, params=bn_params, tx=optax.adam(1e-3), batch_stats=stats)
    assert_type(bn_state.batch_stats, nnx.State[nnx.BatchStat[Any]])
    assert_type(bn_state.apply_gradients(grads, batch_stats=stats), BNTrainState)
    assert_type(bn_state.replace(batch_stats=stats), BNTrainState)
    assert_type(bn_state.apply_gradients(grads).batch_stats, nnx.State[nnx.BatchStat[Any]])


def rejected(model: nnx.Linear) -> None:
    params, moduledef = model.partition(nnx.Param)
    state = nnx.TrainState(moduledef, params=params, tx=optax.sgd(0.1))
    nnx.TrainState(moduledef, params=1, tx=optax.sgd(0.1))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    _ = state.batch_stats  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
    bn_only: nnx.TrainState[nnx.Linear, nnx.BatchStat[Any]] = state  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    del bn_only


def optimizer(model: nnx.Linear, grads: nnx.State[Any]) -> None:
    opt = nnx.Optimizer(model, optax.adam(1e-3))
    assert_type(opt, nnx.Optimizer[nnx.Linear])
    assert_type(opt.model, nnx.Linear)  # generic in the model type
    opt.update(grads)
    metrics = nnx.metrics.MultiMetric(loss=nnx.metrics.Average("loss"))
    metrics.update(loss=jax.numpy.ones(()))
    assert_type(metrics.compute(), dict[str, jax.Array])
    nnx.Optimizer(1, optax.adam(1e-3))  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]

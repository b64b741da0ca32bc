"""TrainState: a model's ModuleDef, parameters and optimizer state in one pytree."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import jax.numpy as jnp
import optax

from ._module import ApplyCaller, ModuleDef
from ._pytree import Pytree
from ._state import State
from ._variables import TreeNode

__all__ = ["TrainState"]

M = TypeVar("M")


def _is_instance(x: object, cls: type[Any]) -> bool:
    """isinstance, for arguments whose annotation already says the type (callers that
    are not type-checked may still pass anything)."""
    return isinstance(x, cls)


class TrainState(Pytree, Generic[M]):
    """`TrainState(moduledef, params=params, tx=optax.adam(1e-3), **extra)`.

    A pytree (pass it through `jax.jit`): `params`, `opt_state` and `step` are its
    leaves, `moduledef` and `tx` are static; extra keyword fields (e.g.
    `batch_stats=...`) are leaves if they are arrays or States. `optax` is needed
    (`pip install nnx[train]`).
    """

    moduledef: ModuleDef[M]
    tx: optax.GradientTransformation
    params: TreeNode[State[Any]]
    opt_state: TreeNode[Any]
    step: TreeNode[Any]

    def __init__(
        self,
        moduledef: ModuleDef[M],
        *,
        params: State[Any],
        tx: optax.GradientTransformation,
        step: int = 0,
        **kwargs: Any,
    ) -> None:
        if not _is_instance(moduledef, ModuleDef):
            raise TypeError(
                f"TrainState: the first argument is the model's ModuleDef, got a "
                f"{type(moduledef).__name__}; e.g. `params, moduledef = "
                "model.partition(nnx.Param)`, then TrainState(moduledef, params=params, tx=tx)."
            )
        if not _is_instance(params, State):
            raise TypeError(
                f"TrainState: params= must be a State (model.partition(nnx.Param)[0]), "
                f"got a {type(params).__name__}."
            )
        if not callable(getattr(tx, "init", None)) or not callable(getattr(tx, "update", None)):
            raise TypeError(
                f"TrainState: tx= must be an optax GradientTransformation (with init and "
                f"update), e.g. optax.adam(1e-3); got a {type(tx).__name__}."
            )
        self.moduledef = moduledef
        self.tx = tx
        self.params = TreeNode(params)
        self.opt_state = TreeNode(tx.init(params))
        self.step = TreeNode(jnp.asarray(step))
        for name, value in kwargs.items():
            setattr(self, name, value)

    def apply(self, *states: State[Any] | str) -> ApplyCaller[M]:
        """`moduledef.apply` over the given States, or field names (`"params"`)."""
        resolved: list[State[Any]] = [getattr(self, s) if isinstance(s, str) else s for s in states]
        first, *rest = resolved or [self.params]
        return self.moduledef.apply(first, *rest)

    def apply_gradients(self, grads: State[Any], **kwargs: Any) -> TrainState[M]:
        """One optimizer step: new params and opt_state, `step + 1`, and any fields
        given as keywords replaced."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(params=params, opt_state=opt_state, step=self.step + 1, **kwargs)

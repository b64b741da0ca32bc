"""`nnx.Optimizer`: a Module that updates a model's parameters in place with optax."""

from __future__ import annotations

from typing import Any, Generic

import jax.numpy as jnp
import optax
from typing_extensions import TypeVar

from ._filters import Filter
from ._module import Module
from ._state import State
from ._variables import Param, Variable, is_node_box

__all__ = ["OptState", "Optimizer"]

M = TypeVar("M", bound=Module)


class OptState(Variable[Any]):
    """The optimizer's state and step count (collection `"opt_state"`): a Variable, so
    an `nnx.Optimizer` passed to `nnx.jit` carries it in and writes it back."""

    __slots__ = ()


def _is_instance(x: object, cls: type[Any]) -> bool:
    return isinstance(x, cls)


class Optimizer(Module, Generic[M]):
    """An optax transformation bound to a model: `opt.update(grads)` steps the model's
    `wrt` state in place.

    The Optimizer holds a shared reference to the model (`opt.model is model`, so the
    two partition as one graph and may be passed to `nnx.jit` together or alone), the
    optax transformation (static), its state (`opt_state`) and a `step` counter (both
    `OptState` Variables).

    Args:
        model: The Module to optimize.
        tx: An optax `GradientTransformation`.
        wrt: The filter of the state `tx` updates (default `nnx.Param`); the gradients
            given to `update` must have exactly these entries (`nnx.grad(..., wrt=...)`).

    Raises:
        TypeError: If `model` is not a Module or `tx` has no `init`/`update`.

    Example:
        ```python
        import optax

        model = nnx.Linear(2, 1, ctx=nnx.context(0))
        opt = nnx.Optimizer(model, optax.sgd(0.1))

        @nnx.jit
        def train_step(opt: nnx.Optimizer[nnx.Linear], x: jax.Array, y: jax.Array) -> None:
            def loss(m: nnx.Linear) -> jax.Array:
                return jnp.mean((m(x) - y) ** 2)

            opt.update(nnx.grad(loss)(opt.model))

        before = model.kernel
        train_step(opt, jnp.ones((4, 2)), jnp.zeros((4, 1)))
        assert opt.model is model and int(opt.step) == 1
        assert not jnp.allclose(model.kernel, before)
        ```
    """

    model: M
    opt_state: OptState
    step: OptState

    def __init__(self, model: M, tx: optax.GradientTransformation, wrt: Filter = Param) -> None:
        if not _is_instance(model, Module):
            raise TypeError(f"nnx.Optimizer expects a Module first, got {type(model).__name__}")
        if not callable(getattr(tx, "init", None)) or not callable(getattr(tx, "update", None)):
            raise TypeError(
                f"nnx.Optimizer: tx must be an optax GradientTransformation (with init and "
                f"update), e.g. optax.adam(1e-3); got a {type(tx).__name__}."
            )
        self.model = model
        self.tx = tx
        self.wrt = wrt
        self.opt_state = OptState(tx.init(_raw(model.filter(self.wrt))))
        self.step = OptState(jnp.array(0, jnp.uint32))

    def update(self, grads: State[Any]) -> None:
        """Apply `tx` to the model's `wrt` state, in place, and count the step.

        Args:
            grads: Gradients with exactly the entries of the model's `wrt` state, e.g.
                `nnx.grad(loss, wrt=...)(model)`.

        Raises:
            ValueError: If `grads` has other paths than the model's `wrt` state.
        """
        params = self.model.filter(self.wrt)
        if set(grads) != set(params):
            extra = sorted(map(str, set(grads) - set(params)))[:5]
            missing = sorted(map(str, set(params) - set(grads)))[:5]
            raise ValueError(
                f"nnx.Optimizer.update: the gradients do not match the model's {self.wrt} "
                f"state (extra paths {extra}, missing paths {missing}). Take them with "
                "nnx.grad(loss, wrt=...) with the Optimizer's wrt."
            )
        raw_params = _raw(params)
        updates, new_state = self.tx.update(_raw(grads), self.opt_state, raw_params)
        new_params = optax.apply_updates(raw_params, updates)
        self.model.update_state(new_params)
        self.opt_state = new_state
        self.step = self.step + 1


def _raw(state: State[Any]) -> State[Any]:
    """The State with its Variables unboxed (optax works on the values)."""
    return State({p: v.value if is_node_box(v) else v for p, v in state.items()})

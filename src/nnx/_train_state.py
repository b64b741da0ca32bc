"""TrainState: a model's ModuleDef, parameters and optimizer state in one pytree."""

from __future__ import annotations

from typing import Any, Generic

import jax
import jax.numpy as jnp
import optax
from typing_extensions import Self, TypeVar

from ._module import ApplyCaller, ModuleDef
from ._pytree import Pytree
from ._state import State
from ._variables import TreeNode

__all__ = ["TrainState"]

M = TypeVar("M")
V = TypeVar("V", default=Any)


def _is_instance(x: object, cls: type[Any]) -> bool:
    """isinstance, for arguments whose annotation already says the type (callers that
    are not type-checked may still pass anything)."""
    return isinstance(x, cls)


class TrainState(Pytree, Generic[M, V]):
    """`TrainState(moduledef, params=params, tx=optax.adam(1e-3), **extra)`.

    A model's ModuleDef, parameters and optimizer state in one immutable `nnx.Pytree`
    (pass it through `jax.jit`): `params`, `opt_state` and `step` are its children
    (kept in `TreeNode`s, read unboxed), `moduledef` and `tx` are static; extra
    keyword fields (e.g. `batch_stats=...`) are children if they are nodes (arrays,
    States, Variables), else static. Fields cannot be assigned; `apply_gradients` and
    `replace` return new TrainStates. `optax` is needed (`pip install nnx[train]`);
    `nnx.TrainState` imports it on first use.

    Generic in the model type and the kind of `params`: built from
    `model.partition(nnx.Param)`, it is a `TrainState[Model, nnx.Param[Any]]`, its
    `params` a `State[nnx.Param[Any]]` (`nnx.TrainState[Model]` leaves the kind `Any`).
    To type extra fields, subclass and annotate them; `apply_gradients` and `replace`
    return the subclass:

    ```python
    from typing import Any

    import optax

    class BNTrainState(nnx.TrainState[nnx.BatchNorm, nnx.Param[Any]]):
        batch_stats: nnx.State[nnx.BatchStat[Any]]  # read as a State by the checkers

    bn = nnx.BatchNorm(3, ctx=nnx.context(0))
    (params, stats), moduledef = bn.partition(nnx.Param, nnx.BatchStat)
    state = BNTrainState(moduledef, params=params, tx=optax.sgd(0.1), batch_stats=stats)
    new = state.apply_gradients(jax.tree.map(jnp.zeros_like, params))
    assert isinstance(new, BNTrainState) and int(new.step) == 1
    assert set(new.batch_stats) == {("mean",), ("var",)}
    ```

    Args:
        moduledef: The model's ModuleDef, e.g. from `model.partition(nnx.Param)`.
        params: The State the optimizer updates; `opt_state` is `tx.init(params)`.
        tx: An optax `GradientTransformation`.
        step: The initial step count (stored as a jax array). Default 0.
        **kwargs: Extra fields.

    Raises:
        TypeError: If `moduledef` is not a ModuleDef, `params` not a State, or `tx`
            has no `init`/`update`.

    Example:
        ```python
        import optax

        model = nnx.Linear(3, 1, ctx=nnx.context(0))
        params, moduledef = model.partition(nnx.Param)
        state = nnx.TrainState(moduledef, params=params, tx=optax.sgd(0.1))

        @jax.jit
        def train_step(state: nnx.TrainState[nnx.Linear], x: jax.Array, y: jax.Array):
            def loss_fn(params: nnx.State) -> jax.Array:
                y_pred, _ = state.apply(params)(x)
                return jnp.mean((y_pred - y) ** 2)

            return state.apply_gradients(jax.grad(loss_fn)(state.params))

        new = train_step(state, jnp.ones((4, 3)), jnp.zeros((4, 1)))
        assert int(new.step) == 1 and int(state.step) == 0
        assert not jnp.allclose(new.params[("kernel",)].value, params[("kernel",)].value)
        ```
    """

    moduledef: ModuleDef[M]
    tx: optax.GradientTransformation
    params: TreeNode[State[V]]
    opt_state: TreeNode[optax.OptState]
    step: TreeNode[jax.Array]

    def __init__(
        self,
        moduledef: ModuleDef[M],
        *,
        params: State[V],
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
        """`moduledef.apply` over the given States, or field names (`"params"`).

        Args:
            *states: States, or names of this TrainState's fields holding States.
                Default: `params`.

        Returns:
            An `ApplyCaller`: `state.apply(...)(x)` (or `.method(x)`) runs the model
            on a fresh copy and returns `(out, nnx.Pure(updated_state, moduledef))`.

        Example:
            ```python
            import optax

            params, moduledef = nnx.Linear(3, 2, ctx=nnx.context(0)).partition(nnx.Param)
            state = nnx.TrainState(moduledef, params=params, tx=optax.sgd(0.1))
            y, _ = state.apply("params")(jnp.ones((4, 3)))
            assert y.shape == (4, 2)
            ```
        """
        resolved: list[State[Any]] = [getattr(self, s) if isinstance(s, str) else s for s in states]
        first, *rest = resolved or [self.params]
        return self.moduledef.apply(first, *rest)

    def apply_gradients(self, grads: State[Any], **kwargs: Any) -> Self:
        """One optimizer step: new params and opt_state, `step + 1`, and any fields
        given as keywords replaced.

        Args:
            grads: Gradients with the structure of `params` (e.g. from `jax.grad`).
            **kwargs: Fields to replace as well (e.g. `batch_stats=...`).

        Returns:
            A new TrainState of this one's class (a subclass stays a subclass); this
            one is unchanged.
        """
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(params=params, opt_state=opt_state, step=self.step + 1, **kwargs)

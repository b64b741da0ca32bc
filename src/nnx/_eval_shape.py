"""`nnx.eval_shape`: run a function, e.g. a model's constructor, abstractly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from typing_extensions import ParamSpec

from ._compat import (
    jax_eval_shape,
)
from ._lift import Lifted, StaticBox, enter
from ._module import (
    Module,
)

__all__ = ["eval_shape"]

P = ParamSpec("P")
R = TypeVar("R")


def eval_shape(fun: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `fun` abstractly (no FLOPs, no memory): arrays come back as
    `jax.ShapeDtypeStruct`s. A Module result comes back as a Module whose state is
    abstract, e.g. to restore a checkpoint into: `nnx.eval_shape(lambda: Model(ctx=...))`.
    """
    f: Callable[..., Any] = fun

    def inner(*a: Any, **k: Any) -> Any:
        _, call_args, call_kwargs = enter(lift.static, lift.traced, a, k)  # Contexts rebuilt
        out = f(*call_args, **call_kwargs)
        if isinstance(out, Module):
            state, moduledef = out.partition()
            return StaticBox(True), state, moduledef
        return StaticBox(False), out, None

    lift = Lifted(args, kwargs)
    if lift.root is not None:
        raise TypeError("nnx.eval_shape: Module arguments are not supported; build them inside")
    is_module, out, moduledef = jax_eval_shape(inner, *lift.args, **lift.kwargs)
    if is_module.value:
        return moduledef.merge(out)  # type: ignore[no-any-return]
    return out  # type: ignore[no-any-return]

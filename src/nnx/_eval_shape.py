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
    """Run `fun(*args, **kwargs)` abstractly (no FLOPs, no memory), as `jax.eval_shape`.

    Arrays in the result come back as `jax.ShapeDtypeStruct`s. A Module result comes
    back as a Module of the same structure whose state is abstract (each Variable
    holding a `jax.ShapeDtypeStruct`): the shapes of a model too big to build, or a
    target to restore a checkpoint into (`nnx.checkpoints.restore`). The arguments are
    abstract inside, as for `jax.eval_shape` (a Python int argument arrives as a
    tracer: close over sizes instead); Contexts among them are split and rebuilt
    inside, so a Context can be passed as well as built inside `fun`.

    Args:
        fun: The function, e.g. `lambda: Model(ctx=nnx.context(0))`.
        *args: Its positional arguments (arrays, `jax.ShapeDtypeStruct`s, Contexts).
        **kwargs: Its keyword arguments.

    Returns:
        `fun`'s result with arrays as `jax.ShapeDtypeStruct`s, or an abstract Module.

    Raises:
        TypeError: If an argument is a Module (build it inside `fun` instead).

    Example:
        ```python
        abstract = nnx.eval_shape(lambda: nnx.Linear(1024, 4096, ctx=nnx.context(0)))
        assert isinstance(abstract, nnx.Linear)
        assert abstract.kernel == jax.ShapeDtypeStruct((1024, 4096), jnp.float32)

        same = nnx.eval_shape(lambda ctx: nnx.Linear(8, 16, ctx=ctx), nnx.context(0))
        assert same.bias == jax.ShapeDtypeStruct((16,), jnp.float32)
        ```
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

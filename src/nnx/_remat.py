"""`nnx.remat` (`jax.checkpoint` for functions of Modules) and `nnx.Remat`, a Module
whose calls are rematerialized."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from typing_extensions import ParamSpec

from ._compat import (
    jax_checkpoint,
)
from ._lift import (
    Lifted,
    LiftedCall,
    LiftStatic,
    StaticBox,
    argnums_tuple,
    call_named,
    enter,
    leave,
)
from ._module import Module

__all__ = ["Remat", "RematModule", "RematOptions", "remat"]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=Module)


# ------------------------------------------------------------------------------------
# remat


@overload
def remat(
    fun: Callable[P, R],
    /,
    *,
    prevent_cse: bool = True,
    static_argnums: int | Sequence[int] = (),
    policy: Callable[..., bool] | None = None,
) -> Callable[P, R]: ...
@overload
def remat(
    fun: None = None,
    /,
    *,
    prevent_cse: bool = True,
    static_argnums: int | Sequence[int] = (),
    policy: Callable[..., bool] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def remat(
    fun: Callable[P, R] | None = None,
    /,
    *,
    prevent_cse: bool = True,
    static_argnums: int | Sequence[int] = (),
    policy: Callable[..., bool] | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """`jax.checkpoint` for functions of Modules: activations are recomputed on the
    backward pass instead of stored.

    `nnx.remat(fun)(*args, **kwargs)` splits the Module arguments into their state,
    runs `fun` under `jax.checkpoint` on the rebuilt Modules, and writes the changes
    made inside (counters, batch statistics, static attributes) back into them.
    Contexts among the arguments are split and rebuilt inside. Values and gradients
    are those of `fun`; only memory and compute trade places. Works as a decorator,
    with or without options; on an `__init__` it returns the function unchanged
    (building a module has no backward pass).

    Args:
        fun: The function to rematerialize. None: return a decorator with these
            options.
        prevent_cse: As for `jax.checkpoint`: keep XLA from merging the
            recomputation with the forward pass (True; False may be faster under
            `jax.lax.scan`).
        static_argnums: Positions of arguments that are Python values used in the
            trace (e.g. in an `if`), not traced.
        policy: As for `jax.checkpoint`: which intermediate values may be saved
            instead of recomputed (`jax.checkpoint_policies.*`). None: save nothing.

    Returns:
        The rematerialized function, with `fun`'s signature (or a decorator).

    Raises:
        ValueError: At a call, if `fun` adds or removes submodules (create them
            outside).

    Example:
        ```python
        model = nnx.Linear(3, 1, ctx=nnx.context(0))
        x = jnp.ones((4, 3))


        @nnx.remat(static_argnums=2)
        def loss(model: nnx.Linear, x: jax.Array, square: bool) -> jax.Array:
            y = model(x)
            return jnp.mean(y**2 if square else y)  # `square`: a Python bool


        plain = nnx.grad(lambda m, x: jnp.mean(m(x) ** 2))(model, x)
        recomputed = nnx.grad(loss)(model, x, True)
        for path in plain:
            np.testing.assert_allclose(recomputed[path].value, plain[path].value, rtol=1e-6)
        ```
    """
    if fun is None:  # used as @nnx.remat(...)
        options = dict(prevent_cse=prevent_cse, static_argnums=static_argnums, policy=policy)
        return cast(
            "Callable[[Callable[P, R]], Callable[P, R]]", functools.partial(remat, **options)
        )
    if getattr(fun, "__name__", None) == "__init__":
        return fun
    f: Callable[..., Any] = fun
    static_positions = argnums_tuple(static_argnums)

    checkpointed = jax_checkpoint(_traced(f), prevent_cse=prevent_cse, policy=policy)

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        call_args, statics = _take_static(args, static_positions)
        lift = Lifted(call_args, kwargs)
        out, changes = checkpointed(
            lift.traced, StaticBox((lift.static, statics)), lift.args, lift.kwargs
        )
        lift.write_back(changes)
        return out  # type: ignore[no-any-return]

    return wrapper


def _traced(
    f: Callable[..., Any],
) -> Callable[[list[Any], StaticBox, tuple[Any, ...], dict[str, Any]], tuple[Any, Any]]:
    """The function `jax.checkpoint` traces: rebuild the modules and the static
    arguments, call `f`, and return its output with what changed."""

    def inner(
        leaves: list[Any], static_box: StaticBox, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, Any]:
        static: LiftStatic
        static, statics = static_box.value
        root, call_args, call_kwargs = enter(static, leaves, args, kwargs)
        for i, value in statics:
            call_args[i] = value
        out = f(*call_args, **call_kwargs)
        return out, leave(root, static, leaves, "nnx.remat")

    return inner


def _take_static(
    args: tuple[Any, ...], positions: tuple[int, ...]
) -> tuple[tuple[Any, ...], tuple[tuple[int, Any], ...]]:
    """`(args with the static ones blanked, ((position, value), ...))`."""
    if not positions:
        return args, ()
    n = len(args)
    chosen = sorted({i % n for i in positions if -n <= i < n})
    statics = tuple((i, args[i]) for i in chosen)
    return tuple(None if i in chosen else a for i, a in enumerate(args)), statics


@dataclasses.dataclass(frozen=True)
class RematOptions:
    """The `jax.checkpoint` options of an `nnx.Remat`, its static attribute `options`.

    Built by `nnx.Remat(constructor, **options)` (frozen, hashable); the fields are
    those options.
    """

    prevent_cse: bool = True
    """As for `jax.checkpoint` (default True)."""
    static_argnums: tuple[int, ...] = ()
    """Positions of the call's static arguments, 0 being the first after the module."""
    policy: Callable[..., bool] | None = None
    """As for `jax.checkpoint`: which values may be saved (default None: none)."""


class Remat(Module, Generic[M]):
    """A module whose calls are rematerialized (run under `jax.checkpoint`).

    `nnx.Remat(Block, prevent_cse=True, static_argnums=(), policy=None)` returns a
    constructor, not a module: calling it with Block's own arguments builds a Block,
    held as the submodule `remat_module`, in an `nnx.Remat` (static attributes
    `module_constructor` and `options`, an `nnx.RematOptions`). The options are those
    of `nnx.remat`; `static_argnums` count the call's own arguments (0 is the first
    after the module).

    Calling the Remat calls the Block under `nnx.remat` (activations recomputed on the
    backward pass, changes written back); `m.call.method(*args)` runs another method
    of the Block the same way. A Remat is an ordinary Module otherwise (partition,
    `nnx.jit`, `nnx.grad`: paths start with `"remat_module"`). It composes with
    `nnx.Scan`: `nnx.Remat(nnx.Scan(Block, ...))` rematerializes the scan, called as
    `m.call.call(carry, xs)`.

    Example:
        ```python
        class Block(nnx.Module):
            def __init__(self, dim: int, *, ctx: nnx.Context) -> None:
                self.linear = nnx.Linear(dim, dim, ctx=ctx)

            def __call__(self, x: jax.Array) -> jax.Array:
                return jnp.tanh(self.linear(x))

            def scaled(self, x: jax.Array, scale: float) -> jax.Array:
                return self(x) * scale


        block = nnx.Remat(Block, static_argnums=(1,))(3, ctx=nnx.context(0))
        assert isinstance(block, nnx.Remat) and isinstance(block.remat_module, Block)
        x = jnp.ones((2, 3))
        np.testing.assert_allclose(block(x), block.remat_module(x))
        assert block.call.scaled(x, 2.0).shape == (2, 3)  # `scale` is static
        grads = nnx.grad(lambda m, x: jnp.sum(m(x)))(block, x)
        assert ("remat_module", "linear", "kernel") in grads
        ```
    """

    module_constructor: Callable[..., M]
    """The constructor given to `nnx.Remat` (static)."""
    options: RematOptions
    """The `jax.checkpoint` options (static)."""
    remat_module: M
    """The wrapped module, built by `module_constructor` (a submodule)."""

    if TYPE_CHECKING:

        def __new__(  # type: ignore[misc]
            cls,
            constructor: Callable[P, M],
            /,
            *,
            prevent_cse: bool = True,
            static_argnums: int | Sequence[int] = (),
            policy: Callable[..., bool] | None = None,
        ) -> Callable[P, Remat[M]]: ...

    else:

        def __new__(cls, *args, **kwargs):
            if not args and not kwargs:  # copy/pickle: an empty instance
                return Module.__new__(cls)
            return _remat_factory(cls, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped module under `jax.checkpoint`; changes are written back.

        Args:
            *args: The wrapped module's call arguments.
            **kwargs: Its keyword arguments (Contexts are split and rebuilt inside).

        Returns:
            What the wrapped module's `__call__` returns.
        """
        return self._remat_method("__call__", args, kwargs)

    if TYPE_CHECKING:

        @property
        def call(self) -> M:
            """Run any method of the wrapped module under `jax.checkpoint`.

            `m.call(*args)` is `m(*args)`; `m.call.method(*args)` runs `method`.

            Returns:
                An `nnx.LiftedCall`. For the type checkers it is the wrapped module type,
                so `m.call(...)` and `m.call.method(...)` carry the layer's signatures.
            """
            ...

    else:

        @property
        def call(self) -> LiftedCall:
            # the runtime accessor; documented in the branch above
            return LiftedCall(self._remat_method)

    def _remat_method(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        options = self.options
        run = remat(
            functools.partial(call_named, name),
            prevent_cse=options.prevent_cse,
            static_argnums=tuple(i + 1 for i in options.static_argnums),
            policy=options.policy,
        )
        return run(self.remat_module, *args, **kwargs)


RematModule = Remat
"""`nnx.Remat` under the name nnx gave the class of its instances before 0.1 (when
`nnx.Remat` was a factory function); an alias kept for older code:
`isinstance(m, nnx.RematModule)` is `isinstance(m, nnx.Remat)`."""


def _remat_factory(
    cls: type[Remat[Any]],
    constructor: Callable[..., Any],
    /,
    *,
    prevent_cse: bool = True,
    static_argnums: int | Sequence[int] = (),
    policy: Callable[..., bool] | None = None,
) -> Callable[..., Remat[Any]]:
    options = RematOptions(prevent_cse, argnums_tuple(static_argnums), policy)

    def build(*args: Any, **kwargs: Any) -> Remat[Any]:
        module = Module.__new__(cls)
        module.module_constructor = constructor
        module.options = options
        module.remat_module = constructor(*args, **kwargs)
        return module

    build.__name__ = f"{cls.__name__}({getattr(constructor, '__name__', 'constructor')})"
    build.__doc__ = getattr(constructor, "__doc__", None)
    return build

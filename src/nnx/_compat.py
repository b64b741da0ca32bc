"""Every version-dependent JAX internal nnx relies on, resolved once at import.

nnx supports every JAX release from 0.4.36 (the first with "stackless" tracing) to
the newest. The only internals it needs are:

- the *opaque trace state*: a value that compares equal while the same JAX trace is
  current and differs under `jax.jit`, `jax.vmap`, `jax.grad`, `jax.lax.scan`, ...
  It lives in `jax.extend.core` from JAX 0.10 on and in `jax.core` before (where it
  is deprecated in 0.10 and removed in 0.11).
- the `Tracer` class, to tell abstract values from concrete arrays.

Both are looked up here and nowhere else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import jax
from jax.core import Tracer as Tracer

__all__ = ["JAX_VERSION", "Tracer", "TraceState", "current_trace"]

JAX_VERSION: tuple[int, ...] = tuple(
    int(part) for part in jax.__version__.split(".")[:3] if part.isdigit()
)


def _find_opaque_trace_state() -> Callable[[str], object]:
    # `"name" in dir(module)` does not trigger JAX's deprecation machinery, which a
    # plain `getattr` or `hasattr` on a deprecated attribute would.
    for module_name in ("jax.extend.core", "jax.core"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # pragma: no cover - both modules exist on every supported JAX
            continue
        if "get_opaque_trace_state" in dir(module):
            fn: Any = getattr(module, "get_opaque_trace_state")  # noqa: B009
            return cast("Callable[[str], object]", fn)
    # jax 0.10 hides deprecated names from dir(); fall back to the private home, which
    # has held the function since 0.4.35.
    src_core = importlib.import_module("jax._src.core")
    return cast("Callable[[str], object]", getattr(src_core, "get_opaque_trace_state"))  # noqa: B009


_get_opaque_trace_state = _find_opaque_trace_state()


class TraceState:
    """The JAX trace that was current when an nnx object was created.

    `TraceState()` records the current trace. `is_valid()` is true while that same
    trace is current again: not inside a `jax.jit`, `jax.vmap`, `jax.grad`,
    `jax.lax.scan`, ... that started after it, nor after leaving the trace it was
    taken in. Two TraceStates compare equal when they were taken under the same
    trace. Modules and Contexts keep one to raise `nnx.TraceContextError` when used
    under another trace.

    Example:
        ```python
        outer = nnx.TraceState()
        assert outer.is_valid()

        @jax.jit
        def f(x: jax.Array) -> jax.Array:
            assert not outer.is_valid() and nnx.TraceState() != outer
            return x

        f(jnp.ones(1))
        assert outer.is_valid() and nnx.TraceState() == outer
        ```
    """

    __slots__ = ("_opaque",)

    def __init__(self) -> None:
        self._opaque = _get_opaque_trace_state("nnx")

    def is_valid(self) -> bool:
        """Whether the trace this TraceState was taken under is the current one."""
        return bool(self._opaque == _get_opaque_trace_state("nnx"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TraceState) and bool(self._opaque == other._opaque)

    def __hash__(self) -> int:  # TraceStates are only compared, never used as keys
        return 0

    def __repr__(self) -> str:
        return "TraceState(current)" if self.is_valid() else "TraceState(other)"


def current_trace() -> TraceState:
    return TraceState()


# jax's pytree registration functions are "partially unknown" to pyright (their key
# type comes from an untyped extension module); these typed wrappers keep that in
# one place.
_T = TypeVar("_T")


def register_pytree_with_keys(
    nodetype: type[_T],
    flatten_with_keys: Callable[[_T], tuple[Iterable[tuple[Any, Any]], Any]],
    unflatten: Callable[[Any, Iterable[Any]], _T],
    flatten: Callable[[_T], tuple[Iterable[Any], Any]],
) -> None:
    jax.tree_util.register_pytree_with_keys(  # pyright: ignore[reportUnknownMemberType]
        nodetype, flatten_with_keys, unflatten, flatten
    )


def register_pytree_node(
    nodetype: type[_T],
    flatten: Callable[[_T], tuple[Iterable[Any], Any]],
    unflatten: Callable[[Any, Iterable[Any]], _T],
) -> None:
    jax.tree_util.register_pytree_node(  # pyright: ignore[reportUnknownMemberType]
        nodetype, flatten, unflatten
    )


# JAX's transforms, typed loosely once here: their own annotations are partially
# unknown to pyright and differ between releases. nnx's wrappers carry the precise
# types (ParamSpec) for users.
_AnyFn = Callable[..., Any]
jax_jit: Callable[..., _AnyFn] = getattr(jax, "jit")  # noqa: B009
jax_grad: Callable[..., _AnyFn] = getattr(jax, "grad")  # noqa: B009
jax_value_and_grad: Callable[..., _AnyFn] = getattr(jax, "value_and_grad")  # noqa: B009
jax_checkpoint: Callable[..., _AnyFn] = getattr(jax, "checkpoint")  # noqa: B009
jax_vmap: Callable[..., _AnyFn] = getattr(jax, "vmap")  # noqa: B009
jax_eval_shape: Callable[..., Any] = getattr(jax, "eval_shape")  # noqa: B009

# Pytree utilities whose treedef type is unknown to the checkers (it comes from an
# extension module), and ShapeDtypeStruct, whose constructor is untyped in old jax.
tree_flatten: Callable[..., tuple[list[Any], Any]] = getattr(jax.tree_util, "tree_flatten")  # noqa: B009
tree_unflatten: Callable[[Any, Iterable[Any]], Any] = getattr(jax.tree_util, "tree_unflatten")  # noqa: B009
device_put: Callable[..., Any] = getattr(jax, "device_put")  # noqa: B009
wrap_key_data: Callable[..., jax.Array] = getattr(jax.random, "wrap_key_data")  # noqa: B009
shape_dtype_struct: Callable[..., jax.ShapeDtypeStruct] = getattr(jax, "ShapeDtypeStruct")  # noqa: B009


process_index: Callable[[], int] = getattr(jax, "process_index")  # noqa: B009
"""This process's index in a multi-process job (`jax.distributed`); 0 alone."""
process_count: Callable[[], int] = getattr(jax, "process_count")  # noqa: B009
"""The number of processes in the job; 1 without `jax.distributed`."""


def distributed_client() -> Any:
    """The key-value client of `jax.distributed` (None before `initialize`)."""
    from jax._src import distributed  # internal, but the same from 0.4.36 to 0.12

    return getattr(distributed.global_state, "client", None)


def distributed_client_type() -> type | None:
    """The class of that client (its methods differ between jaxlib releases)."""
    from jax._src import lib

    for name in ("_jax", "xla_extension"):
        found = getattr(getattr(lib, name, None), "DistributedRuntimeClient", None)
        if isinstance(found, type):
            return found
    return None


def default_sharding() -> jax.sharding.Sharding:
    """Placement on the device jax puts new arrays on."""
    devices: Callable[[], list[Any]] = getattr(jax, "devices")  # noqa: B009
    sharding: jax.sharding.Sharding = jax.sharding.SingleDeviceSharding(devices()[0])
    return sharding


def is_prng_key_dtype(dtype: Any) -> bool:
    """Whether `dtype` is a typed PRNG key dtype (`key<fry>`, ...)."""
    return bool(jax.numpy.issubdtype(dtype, jax.dtypes.prng_key))

"""Container metadata: the metadata fields a Variable carries (`sharding`, ...), and
`with_metadata`, which tags an initializer's result with them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final, Generic

from typing_extensions import ParamSpec, TypeIs, TypeVar

__all__ = ["ContainerMetadata", "with_metadata"]

A = TypeVar("A", default=Any)
B = TypeVar("B")
P = ParamSpec("P")

Metadata = tuple[tuple[str, Any], ...]
"""A Container's metadata: `(name, value)` pairs sorted by name (hashable, static)."""
EMPTY: Final[Metadata] = ()


@dataclasses.dataclass(frozen=True)
class ContainerMetadata(Generic[A]):
    """A value plus metadata, returned by initializers wrapped with `with_metadata`.

    Passing it to a Container constructor unwraps the value and adds the metadata:
    `nnx.Param(init(key, shape))` gets the `sharding` that `init` was tagged with.
    Metadata given to the constructor as keywords win over these.

    Attributes:
        value: The wrapped value (e.g. an initialized array).
        metadata: The metadata fields a Container built from it gets.

    Example:
        ```python
        tagged = nnx.ContainerMetadata(jnp.zeros(3), {"sharding": ("embed",)})
        p = nnx.Param(tagged)
        assert p.sharding == ("embed",) and p.value.shape == (3,)
        ```
    """

    value: A
    metadata: dict[str, Any]


def with_metadata(
    initializer: Callable[P, B], **metadata: Any
) -> Callable[P, ContainerMetadata[B]]:
    """Wrap `initializer` so that its result carries `metadata` into a Container.

    The wrapper calls `initializer` with the arguments it is given and returns
    `ContainerMetadata(result, metadata)`; the Container built from that (e.g. the
    `Param` a layer makes from its `kernel_init`) unwraps the value and gets the
    metadata. The wrapper keeps the initializer's `__name__` and `__doc__`.

    Args:
        initializer: Any callable, typically `init(key, shape, dtype)`.
        **metadata: The metadata fields to attach, e.g. `sharding=("embed", "mlp")`.
            A field whose value is None is not stored by the Container.

    Returns:
        A callable taking `initializer`'s arguments and returning a
        `ContainerMetadata`.

    Example:
        ```python
        init = nnx.with_metadata(nnx.initializers.lecun_normal(), sharding=("in", "out"))
        layer = nnx.Linear(3, 4, kernel_init=init, ctx=nnx.context(0))
        kernel = layer.get_state()[("kernel",)]
        assert kernel.sharding == ("in", "out") and kernel.value.shape == (3, 4)
        ```
    """

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> ContainerMetadata[B]:
        return ContainerMetadata(initializer(*args, **kwargs), dict(metadata))

    wrapper.__name__ = getattr(initializer, "__name__", "initializer")
    wrapper.__doc__ = getattr(initializer, "__doc__", None)
    return wrapper


def is_tagged(x: object) -> TypeIs[ContainerMetadata[Any]]:
    return isinstance(x, ContainerMetadata)


def merge_metadata(metadata: Metadata, updates: dict[str, Any]) -> Metadata:
    merged = dict(metadata)
    merged.update(updates)
    return tuple(sorted((k, v) for k, v in merged.items() if v is not None))

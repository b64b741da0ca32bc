"""Which attribute values are state (nodes), which are submodules, which are static.

`is_node(x)` is `isinstance(x, <registered node types>)`. The graph traversal asks the
same question millions of times, so it classifies by `type(x)` through a dict that
is filled on first sight of each type and cleared when the registry changes.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import jax
import numpy as np

from ._compat import Tracer
from ._module_object import ModuleObject
from ._variables import Container, Node

__all__ = ["is_node", "register_node_type"]

_node_types: tuple[type[Any], ...] = (jax.Array, np.ndarray, jax.ShapeDtypeStruct, Node)


class Kind(enum.IntEnum):
    """What an attribute value is to the graph traversal (`kind_of`)."""

    STATIC = 0  # any other value: part of the ModuleDef, compared by equality
    ARRAY = 1  # a raw array or another registered node type: a State leaf as is
    BOXED_NODE = 2  # a Node/Variable box: a State leaf, copied across boundaries
    MODULE = 3  # a submodule: traversed
    BOXED_STATIC = 4  # an nnx.Static box: static, read unboxed
    MUTABLE_STATIC = 5  # a list, dict, set or bytearray: static, snapshotted


STATIC: Final = Kind.STATIC
ARRAY: Final = Kind.ARRAY
BOXED_NODE: Final = Kind.BOXED_NODE
MODULE: Final = Kind.MODULE
BOXED_STATIC: Final = Kind.BOXED_STATIC
MUTABLE_STATIC: Final = Kind.MUTABLE_STATIC

_MUTABLE_STATIC_TYPES: Final = (list, dict, set, bytearray)

_kind_cache: dict[type[Any], Kind] = {}


def _is_class(x: object) -> bool:
    return isinstance(x, type)


def register_node_type(node_type: type[Any]) -> None:
    """Make instances of `node_type` state (nodes) wherever they appear in a Module.

    From then on a Module attribute (or `nnx.Pytree` field) holding an instance is a
    State entry, kept as is (like a raw array), instead of a static attribute. The
    registration is global and permanent. `node_type` should be a JAX pytree (or an
    array type) for the State to be usable with JAX transforms.

    Args:
        node_type: The class.

    Raises:
        TypeError: If `node_type` is not a class.

    Example:
        ```python
        class Pair:
            def __init__(self, a: jax.Array, b: jax.Array) -> None:
                self.a, self.b = a, b

        jax.tree_util.register_pytree_node(
            Pair, lambda p: ((p.a, p.b), None), lambda _, children: Pair(*children)
        )
        nnx.register_node_type(Pair)
        assert nnx.is_node(Pair(jnp.ones(1), jnp.zeros(1)))

        class Holder(nnx.Module):
            def __init__(self) -> None:
                self.pair = Pair(jnp.ones(1), jnp.zeros(1))

        assert list(Holder().get_state()) == [("pair",)]
        ```
    """
    global _node_types
    if not _is_class(node_type):
        raise TypeError(f"register_node_type expects a class, got {node_type!r}")
    if node_type not in _node_types:
        _node_types = (*_node_types, node_type)
        _kind_cache.clear()


def is_node(x: Any) -> bool:
    """True for values a Module keeps as state: arrays, Variables, registered types.

    Node types are `jax.Array` (tracers included), `np.ndarray`,
    `jax.ShapeDtypeStruct`, `nnx.Node` (every Variable), `nnx.State`, `nnx.Pure`,
    `nnx.Pytree` and those added by `register_node_type`. Python scalars, lists, tuples and dicts
    are not nodes, even when they hold arrays.

    Args:
        x: Any value.

    Returns:
        Whether `x` is an instance of a node type.

    Example:
        ```python
        assert nnx.is_node(jnp.ones(2)) and nnx.is_node(np.ones(2))
        assert nnx.is_node(nnx.Param(1.0))
        assert not nnx.is_node(1.0) and not nnx.is_node([jnp.ones(2)])
        ```
    """
    return isinstance(x, _node_types)


def kind_of_type(tp: type[Any]) -> Kind:
    kind = _kind_cache.get(tp)
    if kind is None:
        if issubclass(tp, ModuleObject):
            kind = MODULE
        elif issubclass(tp, Node):
            kind = BOXED_NODE
        elif issubclass(tp, Container):
            kind = BOXED_STATIC
        elif issubclass(tp, _node_types) or issubclass(tp, Tracer):
            # jax.Array accepts tracers through an instance check, not by subclass
            kind = ARRAY
        elif issubclass(tp, _MUTABLE_STATIC_TYPES):
            kind = MUTABLE_STATIC
        else:
            kind = STATIC
        _kind_cache[tp] = kind
    return kind


def kind_of(x: object) -> Kind:
    kind = _kind_cache.get(type(x))
    if kind is None:
        kind = kind_of_type(type(x))
    return kind

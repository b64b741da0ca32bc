"""Pytree: an immutable (by default) class whose node attributes are pytree children."""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from jax.tree_util import GetAttrKey
from typing_extensions import Self

from ._compat import register_pytree_with_keys
from ._nodes import is_node, register_node_type
from ._variables import Container, is_container

__all__ = ["Pytree", "PytreeMeta"]

_object_getattribute = object.__getattribute__


class PytreeMeta(type):
    """The metaclass of `Pytree`: runs `__init__` in "initializing" mode, after which
    fields are frozen (no new fields; no updates unless `mutable=True`)."""

    if not TYPE_CHECKING:

        def __call__(cls, *args, **kwargs):
            obj = cls.__new__(cls, *args, **kwargs)
            if not isinstance(obj, cls):
                return obj  # as type.__call__: a __new__ that returns something else
            vars(obj)["_pytree__initializing"] = True
            try:
                obj.__init__(*args, **kwargs)
            finally:
                del vars(obj)["_pytree__initializing"]
            return obj


class Pytree(metaclass=PytreeMeta):
    """A class whose instances are pytrees: attributes holding nodes (arrays,
    Variables, `nnx.TreeNode(x)`) are children, the rest is static aux data.

    `class Point(nnx.Pytree, mutable=False)`: after `__init__`, adding or (unless
    `mutable=True`) changing fields raises AttributeError; use `replace(**fields)`.
    Reading an attribute that holds a Container gives its value; assigning a raw
    value to one keeps the Container's kind and metadata. Children are ordered by
    attribute name (keys `GetAttrKey(name)`); the static fields are the tree's aux
    data, compared by `==`. Subclasses are registered with JAX when defined (and
    with `flax.serialization` if flax is already imported). A Pytree is itself a
    node (`nnx.is_node`), so a Module can hold one as state. `nnx.dataclass` works on
    Pytrees, `frozen=True` included.

    Example:
        ```python
        class Point(nnx.Pytree):
            def __init__(self, x: jax.Array, label: str) -> None:
                self.x = x  # a child
                self.label = label  # static

        p = Point(jnp.ones(2), "a")
        doubled = jax.jit(lambda p: p.replace(x=2 * p.x))(p)
        assert jnp.allclose(doubled.x, 2.0) and doubled.label == "a"
        try:
            p.x = jnp.zeros(2)
        except AttributeError as e:
            assert "immutable" in str(e)
        ```
    """

    _pytree__mutable: bool = False

    def __init_subclass__(cls, mutable: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._pytree__mutable = mutable
        register_pytree_with_keys(
            cls, _pytree_flatten_with_keys, cls._pytree__unflatten, _pytree_flatten
        )
        _register_flax_serialization(cls)

    if not TYPE_CHECKING:

        def __getattribute__(self, name):
            value = _object_getattribute(self, name)
            if isinstance(value, Container):
                return value._value
            return value

        def __setattr__(self, name, value):
            d = vars(self)
            if "_pytree__initializing" not in d:
                if name not in d:
                    raise AttributeError(
                        "Cannot add new fields to an initialized Pytree: "
                        f"{type(self).__name__}.{name}"
                    )
                if not type(self)._pytree__mutable:
                    raise AttributeError(
                        f"{type(self)} is immutable, trying to update field {name}. "
                        "Use .replace(...) or declare the class with mutable=True."
                    )
            old = d.get(name)
            if isinstance(old, Container) and not isinstance(value, Container):
                value = old.replace(value=value)
            object.__setattr__(self, name, value)

    @classmethod
    def _pytree__unflatten(
        cls, aux: tuple[tuple[str, ...], tuple[tuple[str, Any], ...]], children: Iterable[Any]
    ) -> Self:
        node_names, static = aux
        obj = object.__new__(cls)
        d = vars(obj)
        d.update(static)
        d.update(zip(node_names, children))
        return obj

    def replace(self, **kwargs: Any) -> Self:
        """A copy with the given fields replaced (`dataclasses.replace` for a dataclass).

        A raw value given for a field holding a Container keeps the Container's kind
        and metadata. This Pytree is unchanged.

        Args:
            **kwargs: New values, by field name.

        Returns:
            The new Pytree (`__init__` is not run again, except by a dataclass).

        Raises:
            ValueError: If a name is not a field (not a dataclass).
        """
        if dataclasses.is_dataclass(self):
            return dataclasses.replace(self, **kwargs)
        unknown = set(kwargs) - set(vars(self))
        if unknown:
            raise ValueError(
                f"Trying to replace unknown fields {unknown} for '{type(self).__name__}'"
            )
        obj = object.__new__(type(self))
        d = vars(obj)
        d.update(vars(self))
        for name, value in kwargs.items():
            old = d[name]
            d[name] = (
                old.replace(value=value)
                if isinstance(old, Container) and not isinstance(value, Container)
                else value
            )
        return obj


def _split_fields(obj: Pytree) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    nodes: list[tuple[str, Any]] = []
    static: dict[str, Any] = {}
    for name, value in sorted(vars(obj).items()):
        if is_node(value):
            nodes.append((name, value))
        else:
            static[name] = value
    return nodes, static


def _pytree_flatten(
    obj: Pytree,
) -> tuple[tuple[Any, ...], tuple[tuple[str, ...], tuple[tuple[str, Any], ...]]]:
    nodes, static = _split_fields(obj)
    return tuple(v for _, v in nodes), (tuple(n for n, _ in nodes), tuple(static.items()))


def _pytree_flatten_with_keys(
    obj: Pytree,
) -> tuple[tuple[tuple[Any, Any], ...], tuple[tuple[str, ...], tuple[tuple[str, Any], ...]]]:
    nodes, static = _split_fields(obj)
    return tuple((GetAttrKey(n), v) for n, v in nodes), (
        tuple(n for n, _ in nodes),
        tuple(static.items()),
    )


def _register_flax_serialization(cls: type[Pytree]) -> None:
    """As NNX 0.0.8: where flax is in use (already imported), `flax.serialization`
    turns a Pytree into a state dict of its node fields (values unboxed) and back.
    nnx never imports flax itself."""
    serialization: Any = sys.modules.get("flax.serialization")
    if serialization is None:
        return
    serialization.register_serialization_state(
        cls,
        functools.partial(_to_state_dict, serialization),
        functools.partial(_from_state_dict, serialization),
        override=True,
    )


def _to_state_dict(serialization: Any, obj: Pytree) -> dict[str, Any]:
    nodes, _ = _split_fields(obj)
    return {name: serialization.to_state_dict(_unboxed(value)) for name, value in nodes}


def _unboxed(value: Any) -> Any:
    return value.value if is_container(value) else value


def _from_state_dict(serialization: Any, target: Pytree, state: dict[str, Any]) -> Pytree:
    nodes, _ = _split_fields(target)
    names = [name for name, _ in nodes]
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise ValueError(
            f"Unknown field(s) {unknown} in the state dict for {type(target).__name__}; "
            f"its node fields are {names}"
        )
    updates: dict[str, Any] = {}
    for name, value in nodes:
        if name not in state:
            raise ValueError(
                f"Missing field {name!r} in the state dict for {type(target).__name__}"
            )
        updates[name] = serialization.from_state_dict(_unboxed(value), state[name])
    obj = object.__new__(type(target))
    d = vars(obj)
    d.update(vars(target))
    for name, new in updates.items():
        old = d[name]
        d[name] = old.replace(value=new) if is_container(old) else new
    return obj


register_node_type(Pytree)

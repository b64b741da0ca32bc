"""`nnx.dataclass`: dataclass Modules (and Pytrees) whose fields can be Variables.

    @nnx.dataclass
    class Affine(nnx.Module):
        w: nnx.Param[jax.Array] = nnx.param_field()
        scale: float = nnx.static_field(default=1.0)

`param_field`, `var_field(kind)` and `node_field` wrap the value passed to `__init__`
in that container (a value that already is one must be of the same kind);
`static_field` wraps it in `nnx.Static`. Type checkers see the synthesized
`__init__` (PEP 681), with a Variable field accepting its value type or the Variable.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, overload

from typing_extensions import dataclass_transform

from ._module import Module
from ._variables import Node, Param, Static, Variable

__all__ = ["dataclass", "field", "node_field", "param_field", "static_field", "var_field"]

T = TypeVar("T")
_CONTAINER_FN: Final = "nnx_container_fn"
_MISSING: Any = dataclasses.MISSING


def field(
    *,
    default: Any = _MISSING,
    default_factory: Any = _MISSING,
    init: bool = True,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """`dataclasses.field`, usable in an `nnx.dataclass`."""
    return dataclasses.field(
        default=default,
        default_factory=default_factory,
        init=init,
        repr=repr,
        hash=hash,
        compare=compare,
        metadata=metadata,
    )


def _container_field(
    container_fn: Callable[[Any], Any],
    *,
    default: Any,
    default_factory: Any,
    init: bool,
    repr: bool,
    metadata: Mapping[str, Any] | None,
) -> Any:
    metadata = dict(metadata or {})
    if _CONTAINER_FN in metadata:
        raise ValueError(f"metadata already has a {_CONTAINER_FN!r} key: {metadata}")
    metadata[_CONTAINER_FN] = container_fn
    return field(
        default=default, default_factory=default_factory, init=init, repr=repr, metadata=metadata
    )


def node_field(
    *,
    default: Any = _MISSING,
    default_factory: Any = _MISSING,
    init: bool = True,
    repr: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """A field whose value is wrapped in `nnx.Node` (state of no particular kind)."""
    return _container_field(
        Node,
        default=default,
        default_factory=default_factory,
        init=init,
        repr=repr,
        metadata=metadata,
    )


def static_field(
    *,
    default: Any = _MISSING,
    default_factory: Any = _MISSING,
    init: bool = True,
    repr: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """A field whose value is wrapped in `nnx.Static` (never state)."""
    return _container_field(
        Static,
        default=default,
        default_factory=default_factory,
        init=init,
        repr=repr,
        metadata=metadata,
    )


def var_field(
    variable_type: type[Variable[Any]],
    *,
    default: Any = _MISSING,
    default_factory: Any = _MISSING,
    init: bool = True,
    repr: bool = True,
    metadata: Mapping[str, Any] | None = None,
    sharding: tuple[str | None, ...] | None = None,
) -> Any:
    """A field whose value is wrapped in `variable_type` (with `sharding`, if given)."""
    container_fn: Callable[[Any], Any] = (
        functools.partial(variable_type, sharding=sharding)
        if sharding is not None
        else variable_type
    )
    return _container_field(
        container_fn,
        default=default,
        default_factory=default_factory,
        init=init,
        repr=repr,
        metadata=metadata,
    )


def param_field(
    *,
    default: Any = _MISSING,
    default_factory: Any = _MISSING,
    init: bool = True,
    repr: bool = True,
    metadata: Mapping[str, Any] | None = None,
    sharding: tuple[str | None, ...] | None = None,
) -> Any:
    """A field whose value is wrapped in `nnx.Param`."""
    return var_field(
        Param,
        default=default,
        default_factory=default_factory,
        init=init,
        repr=repr,
        metadata=metadata,
        sharding=sharding,
    )


def _container_fields(cls: type[Any]) -> dict[str, Callable[[Any], Any]]:
    return {
        f.name: f.metadata[_CONTAINER_FN]
        for f in dataclasses.fields(cls)
        if _CONTAINER_FN in f.metadata
    }


def _wrap_init(cls: type[Any]) -> None:
    wrapped = list(_container_fields(cls).items())
    if not wrapped:
        return
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        stored: dict[str, Any] = self.__dict__
        for name, container_fn in wrapped:
            if name in stored:  # a Container of another kind raises in container_fn
                # stored directly: a frozen dataclass refuses setattr, even in __init__
                stored[name] = container_fn(stored[name])

    cls.__init__ = __init__


MSG_FROZEN_MODULE: Final = (
    "nnx.dataclass(frozen=True) cannot decorate the Module {cls}: Modules are mutable "
    "objects whose assignments nnx checks and tracks. Drop frozen=True, or make {cls} an "
    "nnx.Pytree (a frozen Pytree is an immutable pytree)."
)


@overload
def dataclass(cls: type[T], /) -> type[T]: ...
@overload
def dataclass(
    *,
    init: bool = True,
    repr: bool = True,
    eq: bool = False,
    order: bool = False,
    unsafe_hash: bool = False,
    frozen: bool = False,
    match_args: bool = True,
    kw_only: bool = False,
) -> Callable[[type[T]], type[T]]: ...
@dataclass_transform(
    eq_default=False,
    field_specifiers=(
        dataclasses.field,
        field,
        node_field,
        param_field,
        static_field,
        var_field,
    ),
)
def dataclass(
    cls: type[T] | None = None,
    /,
    *,
    init: bool = True,
    repr: bool = True,
    eq: bool = False,
    order: bool = False,
    unsafe_hash: bool = False,
    frozen: bool = False,
    match_args: bool = True,
    kw_only: bool = False,
) -> type[T] | Callable[[type[T]], type[T]]:
    """`dataclasses.dataclass` for Modules and Pytrees, with nnx field helpers.

    The options mean what they mean for `dataclasses.dataclass`, with one difference:
    equality is by identity unless `eq=True` (Modules are objects, not values).
    `frozen=True` makes an immutable Pytree; a Module cannot be frozen.
    """

    def decorate(cls: type[T]) -> type[T]:
        if frozen and issubclass(cls, Module):
            raise TypeError(MSG_FROZEN_MODULE.format(cls=cls.__name__))
        new_cls = dataclasses.dataclass(
            init=init,
            repr=repr,
            eq=eq,
            order=order,
            unsafe_hash=unsafe_hash,
            frozen=frozen,
            match_args=match_args,
            kw_only=kw_only,
        )(cls)
        if issubclass(new_cls, Module):
            # Modules wrap such fields on every assignment (and shape-check them)
            fields = dict(getattr(new_cls, "_nnx_field_containers", None) or {})
            fields.update(_container_fields(new_cls))
            type.__setattr__(new_cls, "_nnx_field_containers", fields)
        else:
            _wrap_init(new_cls)
        return new_cls

    return decorate if cls is None else decorate(cls)

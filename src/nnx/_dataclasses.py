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
    """`dataclasses.field`, usable in an `nnx.dataclass`; the value is not wrapped.

    Args:
        default: The default value.
        default_factory: A zero-argument callable making the default.
        init: Whether the field is an `__init__` parameter. Default True.
        repr: Whether the field is in the generated `__repr__`. Default True.
        hash: Whether the field is in the generated `__hash__` (see `dataclasses`).
        compare: Whether the field is in the generated comparisons. Default True.
        metadata: `dataclasses.field` metadata.

    Returns:
        A `dataclasses.Field` (typed `Any`, so it can stand as a default value).
    """
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
    """A field whose value is wrapped in `nnx.Node` (state of no particular kind).

    Args:
        default: The default value (wrapped too).
        default_factory: A zero-argument callable making the default.
        init: Whether the field is an `__init__` parameter. Default True.
        repr: Whether the field is in the generated `__repr__`. Default True.
        metadata: `dataclasses.field` metadata (the key `"nnx_container_fn"` is
            nnx's).

    Returns:
        A `dataclasses.Field`.

    Raises:
        ValueError: If `metadata` already has the key `"nnx_container_fn"`.

    Example:
        ```python
        @nnx.dataclass
        class Table(nnx.Module):
            rows: list[int] = nnx.node_field()

        t = Table([1, 2])
        assert isinstance(t.get_state()[("rows",)], nnx.Node) and t.rows == [1, 2]
        ```
    """
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
    """A field whose value is wrapped in `nnx.Static` (never state).

    Reading the attribute gives the value; it goes into the ModuleDef, compared by
    value (so it should be hashable).

    Args:
        default: The default value (wrapped too).
        default_factory: A zero-argument callable making the default.
        init: Whether the field is an `__init__` parameter. Default True.
        repr: Whether the field is in the generated `__repr__`. Default True.
        metadata: `dataclasses.field` metadata (the key `"nnx_container_fn"` is
            nnx's).

    Returns:
        A `dataclasses.Field`.

    Raises:
        ValueError: If `metadata` already has the key `"nnx_container_fn"`.
    """
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
    """A field whose value is wrapped in `variable_type` (with `sharding`, if given).

    A value that already is a `variable_type` with the same metadata is kept; a
    Container of another kind or metadata raises ValueError when assigned.

    Args:
        variable_type: The Variable class, e.g. `nnx.BatchStat`.
        default: The default value (wrapped too).
        default_factory: A zero-argument callable making the default.
        init: Whether the field is an `__init__` parameter. Default True.
        repr: Whether the field is in the generated `__repr__`. Default True.
        metadata: `dataclasses.field` metadata (the key `"nnx_container_fn"` is
            nnx's).
        sharding: Logical axis names for the Variable's `sharding` metadata.

    Returns:
        A `dataclasses.Field`.

    Raises:
        ValueError: If `metadata` already has the key `"nnx_container_fn"`.

    Example:
        ```python
        @nnx.dataclass
        class Stats(nnx.Module):
            mean: jax.Array = nnx.var_field(nnx.BatchStat, sharding=("features",))

        s = Stats(jnp.zeros(3))
        box = s.get_state()[("mean",)]
        assert isinstance(box, nnx.BatchStat) and box.sharding == ("features",)
        ```
    """
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
    """A field whose value is wrapped in `nnx.Param`: `var_field(nnx.Param, ...)`.

    Args:
        default: The default value (wrapped too).
        default_factory: A zero-argument callable making the default.
        init: Whether the field is an `__init__` parameter. Default True.
        repr: Whether the field is in the generated `__repr__`. Default True.
        metadata: `dataclasses.field` metadata (the key `"nnx_container_fn"` is
            nnx's).
        sharding: Logical axis names for the Param's `sharding` metadata.

    Returns:
        A `dataclasses.Field`.

    Raises:
        ValueError: If `metadata` already has the key `"nnx_container_fn"`.
    """
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
    `frozen=True` makes an immutable Pytree; a Module cannot be frozen. Fields made
    with `param_field`, `var_field`, `node_field` or `static_field` wrap the value
    they are given in that container: on every assignment for a Module (checked
    against the annotation like any attribute), after `__init__` for a Pytree. Type
    checkers see the synthesized `__init__` (PEP 681).

    Args:
        cls: The class, when used as `@nnx.dataclass` without arguments.
        init: Generate `__init__`. Default True.
        repr: Generate `__repr__`. Default True.
        eq: Generate field-wise `__eq__` (and make the class unhashable unless
            `unsafe_hash` or `frozen`). Default False: identity.
        order: Generate ordering methods (needs `eq=True`). Default False.
        unsafe_hash: Generate `__hash__` from the fields. Default False.
        frozen: Make instances immutable (Pytrees only). Default False.
        match_args: Generate `__match_args__`. Default True.
        kw_only: Make every field keyword-only. Default False.

    Returns:
        The class, or a decorator when called with options only.

    Raises:
        TypeError: If `frozen=True` decorates a Module.

    Example:
        ```python
        @nnx.dataclass
        class Affine(nnx.Module):
            w: nnx.Param[jax.Array] = nnx.param_field()
            scale: float = nnx.static_field(default=1.0)

            def __call__(self, x: jax.Array) -> jax.Array:
                return self.scale * (x @ self.w)

        m = Affine(jnp.ones((2, 3)))
        assert m(jnp.ones((1, 2))).shape == (1, 3)
        assert list(m.get_state()) == [("w",)]  # scale is static
        assert isinstance(m.get_state()[("w",)], nnx.Param)
        assert m != Affine(jnp.ones((2, 3)))  # identity, unless eq=True
        ```
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

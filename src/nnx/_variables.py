"""Containers: boxes that give a value a kind (Param, BatchStat, ...) and metadata.

A `Variable` held by a Module is read *unboxed* (`module.w` is the array) and written
through the Module (`module.w = x` keeps the Variable's kind and metadata). Inside a
`State` Variables are boxed objects with `.value` and metadata. Every Node subclass is
a pytree whose only child is its value; its kind and metadata are static aux data.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic

import jax
import numpy as np
from jax.tree_util import GetAttrKey
from typing_extensions import ParamSpec, Self, TypeIs, TypeVar

from ._compat import (
    is_prng_key_dtype,
    register_pytree_node,
    register_pytree_with_keys,
    tree_flatten,
)
from ._metadata import EMPTY, ContainerMetadata, Metadata, is_tagged, merge_metadata
from ._repr import indent, repr_value
from ._treescope import render_constructor

if TYPE_CHECKING:
    from ._module_object import ModuleObject
    from ._pytree import Pytree

__all__ = [
    "BatchStat",
    "Cache",
    "Container",
    "Intermediate",
    "Node",
    "Param",
    "Static",
    "TreeNode",
    "Variable",
]

A = TypeVar("A", default=Any)
B = TypeVar("B")
P = ParamSpec("P")


MSG_INCOMPATIBLE: Final = (
    "Cannot build a {new} from a {old} (input value of type '{old}' is not compatible "
    "with return type '{new}'): a Container keeps its kind and metadata. Pass the raw "
    "value instead, e.g. `{new}(x.value)`."
)


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_ARRAY_TYPES: Final = (jax.Array, np.ndarray)


def _is_array(x: object) -> bool:
    return isinstance(x, _ARRAY_TYPES)


def _is_key_array(x: Any) -> bool:
    return isinstance(x, jax.Array) and is_prng_key_dtype(x.dtype)


def _values_equal(a: Any, b: Any) -> bool:
    """Equal values: arrays by dtype, shape and elements (typed PRNG keys by key data),
    pytrees leaf by leaf, anything else by `==`."""
    if a is b:
        return True
    if _is_array(a) or _is_array(b):
        if _is_key_array(a) or _is_key_array(b):
            if not (_is_key_array(a) and _is_key_array(b)) or a.dtype != b.dtype:
                return False
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        xa = np.asarray(a)
        xb = np.asarray(b)
        return xa.shape == xb.shape and xa.dtype == xb.dtype and bool((xa == xb).all())
    leaves_a, tree_a = tree_flatten(a)
    leaves_b, tree_b = tree_flatten(b)
    if tree_a != tree_b:
        return False
    if tree_a.num_nodes == 1 and tree_a.num_leaves == 1:  # a and b are leaves themselves
        return bool(a == b)
    return all(_values_equal(x, y) for x, y in zip(leaves_a, leaves_b))


def is_container(x: object) -> TypeIs[Container[Any]]:
    return isinstance(x, Container)


def is_node_box(x: object) -> TypeIs[Node[Any]]:
    return isinstance(x, Node)


def is_variable(x: object) -> TypeIs[Variable[Any]]:
    return isinstance(x, Variable)


class Container(Generic[A]):
    """Base of every box: a value and read-only metadata.

    Not used directly: `Node` and its subclasses (`Variable`, `Param`, ...) hold
    state, `Static` holds a static value. Metadata fields are stored sorted by name,
    fields whose value is None are dropped, and each one reads as an attribute
    (`p.sharding`, `p.tag`). Two Containers are equal when they have the same class,
    the same metadata and equal values (arrays by dtype, shape and elements).

    Args:
        value: The value to hold. A `ContainerMetadata` is unwrapped and its metadata
            added (the keyword arguments win). A Container of exactly this class and
            metadata gives its value, so `nnx.Param(nnx.Param(x))` equals
            `nnx.Param(x)`.
        **metadata: Metadata fields.

    Raises:
        ValueError: If `value` is a Container of another class or with other metadata
            (a Container keeps its kind and metadata; pass `x.value` instead).
    """

    __slots__ = ("_metadata", "_value")

    _value: A
    _metadata: Metadata

    def __init__(self, value: A | ContainerMetadata[A] | Container[A], **metadata: Any) -> None:
        raw: Any = value
        if is_tagged(raw):
            metadata = {**raw.metadata, **metadata}
            raw = raw.value
        meta = merge_metadata(EMPTY, metadata) if metadata else EMPTY
        if is_container(raw):
            if type(raw) is not type(self) or raw._metadata != meta:
                raise ValueError(
                    MSG_INCOMPATIBLE.format(new=_describe(type(self), meta), old=raw.describe())
                )
            raw = raw._value
        self._value = raw
        self._metadata = meta

    # -- reading ------------------------------------------------------------------
    @property
    def value(self) -> A:
        """The held value."""
        return self._value

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the metadata, as a dict (fields set to None are not stored)."""
        return dict(self._metadata)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_"):
            for key, value in object.__getattribute__(self, "_metadata"):
                if key == name:
                    return value
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute or metadata {name!r}"
        )

    # -- functional updates ---------------------------------------------------------
    def replace(self, **updates: Any) -> Self:
        """A new Container of the same kind with `value` and/or metadata replaced.

        The original is unchanged; the new one is owned by no Module. Setting a
        metadata field to None removes it.

        Args:
            **updates: `value=` (a raw value, or a Container of the same class and
                metadata, whose value is taken) and/or metadata fields this Container
                already has (a Variable also accepts `sharding`).

        Returns:
            The new Container.

        Raises:
            ValueError: If `value` is a Container of another class or metadata, or a
                metadata key is unknown (build a new Container to add metadata).

        Example:
            ```python
            p = nnx.Param(jnp.zeros(2), tag="w")
            q = p.replace(value=jnp.ones(2))
            assert type(q) is nnx.Param and q.tag == "w" and float(p.value.sum()) == 0.0
            try:
                p.replace(other=1)
            except ValueError as e:
                assert "Unknown metadata key 'other'" in str(e)
            ```
        """
        new = object.__new__(type(self))
        meta = self._metadata
        value: Any = self._value
        if "value" in updates:
            value = updates.pop("value")
            if is_container(value):
                if not self.is_equivalent(value):
                    raise ValueError(
                        f"Cannot replace the value of {self.describe()} with an incompatible "
                        f"container {value.describe()}: kinds and metadata must match."
                    )
                value = value._value
        if updates:
            known = {k for k, _ in meta} | self._known_metadata()
            unknown = sorted(set(updates) - known)
            if unknown:
                raise ValueError(
                    f"Unknown metadata key {unknown[0]!r} for {type(self).__name__}; "
                    f"known keys: {sorted(known)}. Build a new {type(self).__name__}(value, "
                    f"{unknown[0]}=...) to add metadata."
                )
            meta = merge_metadata(meta, updates)
        new._init_copy(value, meta)
        return new

    def copy(self) -> Self:
        """A new Container with the same value (not copied itself) and metadata."""
        new = object.__new__(type(self))
        new._init_copy(self._value, self._metadata)
        return new

    def is_equivalent(self, other: object) -> bool:
        """Whether `other` has the same kind and the same metadata (values may differ).

        Args:
            other: Any object.

        Returns:
            True if `other` is a Container of exactly this class with equal metadata.
        """
        return (
            is_container(other) and type(other) is type(self) and self._metadata == other._metadata
        )

    def describe(self) -> str:
        """The kind and metadata without the value, e.g. `"Param(sharding=('a',))"`."""
        return _describe(type(self), self._metadata)

    # -- internals --------------------------------------------------------------------
    @classmethod
    def _known_metadata(cls) -> set[str]:
        return set()

    def _init_copy(self, value: Any, metadata: Metadata) -> None:
        self._value = value
        self._metadata = metadata

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Container)
        return self._metadata == other._metadata and _values_equal(self._value, other._value)

    def __repr__(self) -> str:
        fields = [f"value={indent(repr_value(self._value))}"]
        fields += [f"{k}={v!r}" for k, v in self._metadata]
        return f"{type(self).__name__}({', '.join(fields)})"

    def __treescope_repr__(self, path: str | None, subtree_renderer: Any) -> Any:
        """treescope's rich repr: `Kind(value=..., metadata...)`."""
        return render_constructor(
            self, {"value": self._value, **dict(self._metadata)}, path, subtree_renderer
        )

    def __getstate__(self) -> tuple[Any, Metadata]:
        return (self._value, self._metadata)

    def __setstate__(self, state: tuple[Any, Metadata]) -> None:
        self._init_copy(*state)

    if TYPE_CHECKING:
        # For type checkers only: a class-level annotation `w: nnx.Param[X]` on a
        # Module (or Pytree) reads as `X` and accepts `X` or a `Param[X]`. At run time
        # the Module's own __getattribute__/__setattr__ do the unboxing. There is no
        # overload for `obj: None`: `Affine.w` on the class is an error for the
        # checkers, as it is an AttributeError at run time (only instances hold it).
        # (`value: A | Container[A]`, not `A | Self`: mypy resolves a `Self` here to
        # the *owner* class when it synthesizes a dataclass __init__, which would
        # reject `Affine(w=nnx.Param(x))`. A Variable of another kind is rejected at
        # run time.)
        def __get__(self, obj: ModuleObject | Pytree, owner: type[Any], /) -> A: ...
        def __set__(self, obj: object, value: A | Container[A], /) -> None: ...


def _describe(cls: type[Any], metadata: Metadata) -> str:
    if not metadata:
        return cls.__name__
    return f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in metadata)})"


# ------------------------------------------------------------------------------------
# Nodes: pytree containers that partition() puts into a State.

_COLLECTIONS: dict[str, type[Node[Any]]] = {}
_DEFINED: dict[str, type[Node[Any]]] = {}
"""Every Node class defined in this process, by `module:qualname` (the newest
definition of a name wins): what a checkpoint may name (DECISIONS 9)."""


def known_collections() -> frozenset[str]:
    """The collection names of every Node class defined so far."""
    return frozenset(_COLLECTIONS)


def collection_class(collection: str) -> type[Node[Any]] | None:
    """The (first defined) Node class of `collection`, if any."""
    return _COLLECTIONS.get(collection)


def defined_node_class(name: str) -> type[Node[Any]] | None:
    """The Node class called `name` (`module:qualname`) defined in this process, if
    any. Never imports anything."""
    return _DEFINED.get(name)


def _define(cls: type[Node[Any]]) -> None:
    _DEFINED[f"{cls.__module__}:{cls.__qualname__}"] = cls


class Node(Container[A]):
    """A container whose value is part of a Module's state (a pytree node).

    `Node` holds any pytree (e.g. `nnx.Node([4, 5])`); `Variable` and its subclasses
    (`Param`, `BatchStat`, ...) name the kinds of state a model keeps. Every Node class
    is a pytree whose only child is its value (key `.value`); its class and metadata
    are static aux data, so `jax.tree.map` keeps both. A Module stores a copy of each
    Node assigned to it.

    Every Node class has a `collection` name: string filters match it
    (`state.filter("params")`). A subclass defaults to its class name in snake_case;
    set `collection = "..."` in the class body to choose another.

    Args:
        value: The value (any pytree); see `Container` for `ContainerMetadata` and
            Container inputs.
        **metadata: Metadata fields.

    Raises:
        ValueError: If `value` is a Container of another class or metadata.

    Example:
        ```python
        node = nnx.Node([jnp.ones(2), 3])
        doubled = jax.tree.map(lambda x: x * 2, node)
        assert type(doubled) is nnx.Node and doubled.value[1] == 6
        assert nnx.Node.collection == "node"
        ```
    """

    __slots__ = ("_owner",)

    collection: ClassVar[str] = "node"

    # The Module holding this box, if any (merge and assignment set it). The attribute
    # name is not stored: a write through `.value` looks it up (a rare path), so each
    # box built by merge costs one store less.
    _owner: weakref.ReferenceType[Any] | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "collection" not in cls.__dict__:
            cls.collection = _snake_case(cls.__name__)
        _COLLECTIONS.setdefault(cls.collection, cls)
        _define(cls)
        register_pytree_with_keys(cls, _node_flatten_with_keys, cls._unflatten, _node_flatten)

    def __init__(self, value: A | ContainerMetadata[A] | Container[A], **metadata: Any) -> None:
        super().__init__(value, **metadata)
        self._owner = None

    def _init_copy(self, value: Any, metadata: Metadata) -> None:
        self._value = value
        self._metadata = metadata
        self._owner = None

    def copy(self) -> Self:
        """A new box with the same value and metadata, owned by no Module."""
        new = object.__new__(type(self))
        new._value = self._value
        new._metadata = self._metadata
        new._owner = None
        return new

    @classmethod
    def _unflatten(cls, metadata: Metadata, children: Iterable[Any]) -> Self:
        new = object.__new__(cls)
        (new._value,) = children
        new._metadata = metadata
        new._owner = None
        return new

    @property
    def value(self) -> A:
        """The held value; writable.

        Writing it on a Node that a Module holds (`vars(module)["w"].value = x`) is
        an assignment through that Module, as `module.w = x` is: it checks the trace
        and the attribute's annotation. On a free-standing box (one taken from a
        State, or replaced in its Module since) it only sets the value.
        """
        return self._value

    @value.setter
    def value(self, new_value: A) -> None:
        owner = self._owner() if self._owner is not None else None
        name = None if owner is None else _name_in(owner, self)
        if owner is not None and name is not None:
            # The owning Module checks the trace and the declared shape first.
            owner._nnx_write_variable(name, self, new_value)
        else:
            self._value = new_value


def _name_in(module: Any, node: Node[Any]) -> str | None:
    """The attribute of `module` that holds `node`, or None if it holds it no more."""
    for name, value in object.__getattribute__(module, "__dict__").items():
        if value is node:
            return str(name)
    return None


def _node_flatten(node: Node[Any]) -> tuple[tuple[Any], Metadata]:
    return (node._value,), node._metadata


def _node_flatten_with_keys(node: Node[Any]) -> tuple[tuple[tuple[Any, Any]], Metadata]:
    return ((GetAttrKey("value"), node._value),), node._metadata


register_pytree_with_keys(Node, _node_flatten_with_keys, Node._unflatten, _node_flatten)
_COLLECTIONS["node"] = Node
_define(Node)


class Variable(Node[A]):
    """A named kind of model state. Subclass it to make a new collection.

    In a Module, a Variable attribute reads *unboxed* (`module.w` is the array) and a
    raw value assigned to it keeps its kind and metadata (`self.count += 1` keeps a
    `Count`). The box itself is seen in a `State` (`state[("w",)].value`) or as
    `vars(module)["w"]`. A subclass `Foo` is the collection `"foo"` (the snake_case
    class name) unless it sets `collection`; `Param`, `BatchStat`, `Cache` and
    `Intermediate` are the built-in kinds. The type parameter (`Variable[int]`) is
    what a read returns, for type checkers.

    Args:
        value: The value; see `Container` for `ContainerMetadata` and Container
            inputs.
        sharding: Logical axis names, one per array axis (None for an unsharded
            axis), stored as a tuple in the metadata; see `nnx.get_partition_spec`.
            Default: no sharding.
        **metadata: Other metadata fields, read back as attributes.

    Raises:
        ValueError: If `value` is a Container of another class or metadata.

    Example:
        ```python
        class Count(nnx.Variable[int]):
            pass

        class Counter(nnx.Module):
            count: Count

            def __init__(self) -> None:
                self.count = Count(0)

            def __call__(self) -> None:
                self.count += 1  # reads unbox, writes keep the kind

        m = Counter()
        m()
        assert Count.collection == "count" and m.count == 1
        box = m.get_state()[("count",)]
        assert isinstance(box, Count) and box.value == 1
        assert nnx.Param(jnp.ones(3), sharding=("embed",)).sharding == ("embed",)
        ```
    """

    __slots__ = ()

    collection: ClassVar[str] = "variable"

    def __init__(
        self,
        value: A | ContainerMetadata[A] | Container[A],
        *,
        sharding: tuple[str | None, ...] | None = None,
        **metadata: Any,
    ) -> None:
        if sharding is not None:
            metadata["sharding"] = tuple(sharding)
        super().__init__(value, **metadata)

    @property
    def sharding(self) -> tuple[str | None, ...] | None:
        """The logical axis names given as `sharding`, or None."""
        for key, value in self._metadata:
            if key == "sharding":
                return value  # type: ignore[no-any-return]
        return None

    @classmethod
    def _known_metadata(cls) -> set[str]:
        return {"sharding"}


class Param(Variable[A]):
    """A trainable parameter (collection `"params"`).

    What the layers' weights are, what `nnx.grad` differentiates by default, and
    what `TrainState` optimizes. No behaviour beyond `Variable`'s.

    Example:
        ```python
        layer = nnx.Linear(2, 3, ctx=nnx.context(0))
        params = layer.filter(nnx.Param)
        assert set(params) == {("bias",), ("kernel",)}
        assert layer.filter("params") == params
        assert isinstance(params[("kernel",)], nnx.Param)
        ```
    """

    __slots__ = ()
    collection: ClassVar[str] = "params"

    if TYPE_CHECKING:
        # An annotated attribute takes its value or a Param, not another kind
        # (narrower than Container.__set__ on purpose).
        def __set__(self, obj: object, value: A | Param[A], /) -> None: ...  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]


class BatchStat(Variable[A]):
    """A running statistic, e.g. BatchNorm's mean (collection `"batch_stats"`).

    Example:
        ```python
        bn = nnx.BatchNorm(3, ctx=nnx.context(0))
        stats = bn.filter(nnx.BatchStat)
        assert set(stats) == {("mean",), ("var",)}
        bn(jnp.ones((4, 3)), use_running_average=False)  # training updates them
        assert bn.filter("batch_stats") != stats
        ```
    """

    __slots__ = ()
    collection: ClassVar[str] = "batch_stats"

    if TYPE_CHECKING:
        # An annotated attribute takes its value or a BatchStat, not another kind
        # (narrower than Container.__set__ on purpose).
        def __set__(self, obj: object, value: A | BatchStat[A], /) -> None: ...  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]


class Cache(Variable[A]):
    """A cache, e.g. an attention kv-cache (collection `"cache"`).

    Example:
        ```python
        attn = nnx.MultiHeadAttention(2, 8, ctx=nnx.context(0))
        attn.init_cache(batch_size=1, max_length=4)
        cache = attn.filter(nnx.Cache)
        assert set(cache) == {("cache_index",), ("cached_key",), ("cached_value",)}
        ```
    """

    __slots__ = ()
    collection: ClassVar[str] = "cache"

    if TYPE_CHECKING:
        # An annotated attribute takes its value or a Cache, not another kind
        # (narrower than Container.__set__ on purpose).
        def __set__(self, obj: object, value: A | Cache[A], /) -> None: ...  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]


class Intermediate(Variable[A]):
    """A captured intermediate value (collection `"intermediates"`).

    `module.sow(nnx.Intermediate, name, value)` appends to one; `merge` tolerates a
    State that lacks them, so they can be popped between calls.

    Example:
        ```python
        class Probe(nnx.Module):
            def __call__(self, x: jax.Array) -> jax.Array:
                self.sow(nnx.Intermediate, "seen", x)
                return x * 2

        m = Probe()
        m(jnp.ones(2))
        captured = m.pop_state(nnx.Intermediate)
        assert list(captured) == [("seen",)] and len(captured[("seen",)].value) == 1
        assert m.filter("intermediates") == nnx.State({})
        ```
    """

    __slots__ = ()
    collection: ClassVar[str] = "intermediates"

    if TYPE_CHECKING:
        # An annotated attribute takes its value or a Intermediate, not another kind
        # (narrower than Container.__set__ on purpose).
        def __set__(self, obj: object, value: A | Intermediate[A], /) -> None: ...  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]


class TreeNode(Node[A]):
    """Marks any value as a pytree child of an `nnx.Pytree` (collection `"tree_node"`).

    An `nnx.Pytree` attribute is a child only if it is a node (an array, a Variable,
    ...); wrapping another value, e.g. an optax state or a `State`, in `TreeNode`
    makes it one. Reading the attribute gives the value.

    Example:
        ```python
        class Holder(nnx.Pytree):
            def __init__(self, items: dict[str, jax.Array], name: str) -> None:
                self.items = nnx.TreeNode(items)
                self.name = name  # static

        h = Holder({"a": jnp.ones(2)}, "h")
        assert len(jax.tree.leaves(h)) == 1 and h.items["a"].shape == (2,)
        ```
    """

    __slots__ = ()
    collection: ClassVar[str] = "tree_node"


# ------------------------------------------------------------------------------------
# Static: a value that is *not* state.


class Static(Container[A]):
    """Marks a value as static: it goes into the ModuleDef, never into a State.

    A pytree with no children (the value is aux data); hashable and compared by its
    value, which must then be hashable. A Module attribute holding one reads as the
    value.

    Args:
        value: The static value.
        **metadata: Metadata fields.

    Example:
        ```python
        s = nnx.Static("relu")
        assert jax.tree.leaves(s) == [] and s == nnx.Static("relu")
        assert hash(s) == hash(nnx.Static("relu"))
        ```
    """

    __slots__ = ()

    def __hash__(self) -> int:
        return hash((type(self), self._value))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Static)
        return bool(self._value == other._value) and self._metadata == other._metadata


def _static_flatten(x: Static[Any]) -> tuple[tuple[()], tuple[Any, Metadata]]:
    return (), (x._value, x._metadata)


def _static_unflatten(aux: tuple[Any, Metadata], _: Iterable[Any]) -> Static[Any]:
    new: Static[Any] = object.__new__(Static)
    new._init_copy(*aux)
    return new


register_pytree_node(Static, _static_flatten, _static_unflatten)

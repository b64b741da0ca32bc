"""Filters select state entries by kind, collection, path or any predicate.

A filter is one of:

- a class: matches values that are instances of it (`nnx.Param`, `jax.Array`);
- `...`: matches everything (only allowed as the last filter of a call);
- `None`: matches nothing;
- a `str`: matches Variables of that collection (`"params"`, `"intermediates"`);
- a predicate `(path, value) -> bool`, `path` being a tuple of `str`/`int` keys;
- a tuple or list of filters: matches what any of them matches;
- `nnx.Not(f)`, `nnx.All(f, g, ...)`, `nnx.OfType(t)`, `nnx.PathContains(key)`,
  `nnx.Everything()`, `nnx.Nothing()`, and `nnx.buffers` (raw arrays).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from types import EllipsisType
from typing import Any, Final, TypeAlias, TypeVar, cast

import jax
import numpy as np
from typing_extensions import TypeIs

__all__ = [
    "All",
    "Everything",
    "Filter",
    "Not",
    "Nothing",
    "OfType",
    "Path",
    "PathContains",
    "Predicate",
    "buffers",
    "to_predicate",
]

Key: TypeAlias = "str | int"
Path: TypeAlias = tuple[str | int, ...]
"""A State key: attribute names as `str`, `nnx.Sequence` positions as `int`.

E.g. `("encoder", "layers", 0, "kernel")`.
"""

Predicate: TypeAlias = Callable[[Path, Any], bool]
"""A filter function: `(path, value) -> bool`.

`value` is the entry as a State holds it: a Variable box, or a raw array.
"""


MSG_INVALID_FILTER: Final = (
    "Invalid filter of type {type!r}: {filter!r}. A filter is a class (nnx.Param), "
    '`...`, None, a collection name ("params"), a predicate `(path, value) -> bool`, '
    "a tuple or list of filters, or nnx.Not/All/OfType/PathContains/Everything/Nothing."
)
MSG_ELLIPSIS_NOT_LAST: Final = (
    "Ellipsis `...` can only be used as the last filter, got it at index {index} of "
    "{count}. Move `...` to the end: partition(nnx.Param, nnx.BatchStat, ...)."
)


@dataclasses.dataclass(frozen=True)
class OfType:
    """Matches entries that are instances of `type` (what a class used as a filter means).

    Args:
        type: The class, e.g. `nnx.Param` (its subclasses match too) or `jax.Array`.

    Example:
        ```python
        state = nnx.State({("w",): nnx.Param(jnp.ones(2)), ("n",): jnp.array(0)})
        assert list(state.filter(nnx.OfType(nnx.Variable))) == [("w",)]
        assert state.filter(nnx.OfType(nnx.Param)) == state.filter(nnx.Param)
        ```
    """

    type: type[Any]

    def __call__(self, path: Path, value: Any) -> bool:
        """Whether the entry at `path` with `value` matches: an instance of `type`.

        Args:
            path: The entry's path.
            value: The entry (a Variable box or a raw array).

        Returns:
            True if `value` is an instance of `type`.
        """
        return isinstance(value, self.type)


@dataclasses.dataclass(frozen=True)
class Collection:
    """Matches Variables whose `collection` is `name` (what a `str` filter means)."""

    name: str

    def __call__(self, path: Path, value: Any) -> bool:
        collection: object = getattr(value.__class__, "collection", None)
        return collection == self.name


@dataclasses.dataclass(frozen=True)
class PathContains:
    """Matches entries whose path contains `key` at any depth.

    Args:
        key: An attribute name (`str`) or a Sequence position (`int`).

    Example:
        ```python
        state = nnx.State({
            ("encoder", "kernel"): nnx.Param(jnp.ones(2)),
            ("decoder", "kernel"): nnx.Param(jnp.ones(2)),
            ("decoder", "bias"): nnx.Param(jnp.zeros(2)),
        })
        assert list(state.filter(nnx.PathContains("kernel"))) == [
            ("decoder", "kernel"),
            ("encoder", "kernel"),
        ]
        ```
    """

    key: str | int

    def __call__(self, path: Path, value: Any) -> bool:
        """Whether the entry at `path` with `value` matches: `key` is in `path`.

        Args:
            path: The entry's path.
            value: The entry (a Variable box or a raw array).

        Returns:
            True if `key` is one of `path`'s keys.
        """
        return self.key in path


def freeze_filter(filter: Filter) -> Filter:
    """`filter` with its lists made tuples (recursively), so that it is hashable and
    equal to the same filter spelt with tuples."""
    if _is_filter_sequence(filter):
        return tuple(freeze_filter(f) for f in filter)
    return filter


def _is_filter_sequence(x: object) -> TypeIs[tuple[Filter, ...] | list[Filter]]:
    return isinstance(x, (tuple, list))


class Not:
    """Matches what `filter` does not match.

    Equal to another `Not` of an equal filter.

    Args:
        filter: Any filter.

    Raises:
        TypeError: If `filter` is not a filter.

    Example:
        ```python
        state = nnx.State({("w",): nnx.Param(jnp.ones(2)), ("mean",): nnx.BatchStat(jnp.zeros(2))})
        assert list(state.filter(nnx.Not(nnx.Param))) == [("mean",)]
        ```
    """

    __slots__ = ("_predicate", "filter")

    def __init__(self, filter: Filter, /) -> None:
        self.filter = freeze_filter(filter)
        self._predicate = to_predicate(filter)

    def __call__(self, path: Path, value: Any) -> bool:
        """Whether the entry at `path` with `value` matches.

        Args:
            path: The entry's path.
            value: The entry (a Variable box or a raw array).

        Returns:
            True if `filter` does not match.
        """
        return not self._predicate(path, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Not) and other.filter == self.filter

    def __hash__(self) -> int:
        return hash((Not, self.filter))

    def __repr__(self) -> str:
        return f"Not({self.filter!r})"


class All:
    """Matches what every one of `filters` matches (a tuple of filters matches any).

    `All()` with no filters matches everything. Equal to another `All` of equal
    filters.

    Args:
        *filters: Filters.

    Raises:
        TypeError: If one of `filters` is not a filter.

    Example:
        ```python
        state = nnx.State({
            ("encoder", "kernel"): nnx.Param(jnp.ones(2)),
            ("encoder", "mean"): nnx.BatchStat(jnp.zeros(2)),
            ("decoder", "kernel"): nnx.Param(jnp.ones(2)),
        })
        encoder_params = state.filter(nnx.All(nnx.Param, nnx.PathContains("encoder")))
        assert list(encoder_params) == [("encoder", "kernel")]
        ```
    """

    __slots__ = ("_predicates", "filters")

    def __init__(self, *filters: Filter) -> None:
        self.filters = tuple(freeze_filter(f) for f in filters)
        self._predicates = tuple(to_predicate(f) for f in filters)

    def __call__(self, path: Path, value: Any) -> bool:
        """Whether the entry at `path` with `value` matches.

        Args:
            path: The entry's path.
            value: The entry (a Variable box or a raw array).

        Returns:
            True if every filter matches.
        """
        return all(p(path, value) for p in self._predicates)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, All) and other.filters == self.filters

    def __hash__(self) -> int:
        return hash((All, self.filters))

    def __repr__(self) -> str:
        return f"All({', '.join(map(repr, self.filters))})"


class _AnyOf:
    __slots__ = ("_predicates",)

    def __init__(self, predicates: tuple[Predicate, ...]) -> None:
        self._predicates = predicates

    def __call__(self, path: Path, value: Any) -> bool:
        return any(p(path, value) for p in self._predicates)


@dataclasses.dataclass(frozen=True)
class Everything:
    """Matches everything (like `...`, but allowed at any position)."""

    def __call__(self, path: Path, value: Any) -> bool:
        """Whether the entry at `path` with `value` matches.

        Args:
            path: The entry's path.
            value: The entry (a Variable box or a raw array).

        Returns:
            Always True.
        """
        return True


@dataclasses.dataclass(frozen=True)
class Nothing:
    """Matches nothing (like `None`)."""

    def __call__(self, path: Path, value: Any) -> bool:
        """Whether the entry at `path` with `value` matches.

        Args:
            path: The entry's path.
            value: The entry (a Variable box or a raw array).

        Returns:
            Always False.
        """
        return False


Filter: TypeAlias = (
    type[Any]
    | EllipsisType
    | str
    | All
    | Not
    | OfType
    | PathContains
    | Everything
    | Nothing
    | Predicate
    | tuple["Filter", ...]
    | list["Filter"]
    | None
)
"""Anything `partition`, `filter`, `pop_state` and `nnx.grad(wrt=)` accept.

A filter selects State entries; `to_predicate` turns it into the predicate
`(path, value) -> bool` it stands for. The forms:

- a class: instances of it (`nnx.Param`, a Variable subclass, `jax.Array`);
- a `str`: Variables of that collection (`"params"`, `"batch_stats"`); a name
  that no Variable class has, where it matches nothing, raises ValueError;
- a predicate `(path, value) -> bool`, `path` a tuple of `str`/`int` keys;
- `...` (or `nnx.Everything()`): everything; `...` only as the last filter;
- `None` (or `nnx.Nothing()`): nothing;
- a tuple or list of filters: what any of them matches;
- `nnx.Not(f)`, `nnx.All(f, g, ...)`, `nnx.OfType(t)`, `nnx.PathContains(key)`;
- `nnx.buffers`: raw arrays (not Variables).

Example:
    ```python
    state = nnx.State({
        ("dense", "kernel"): nnx.Param(jnp.ones((2, 2))),
        ("dense", "bias"): nnx.Param(jnp.zeros(2)),
        ("bn", "mean"): nnx.BatchStat(jnp.zeros(2)),
        ("steps",): jnp.array(0),
    })
    assert list(state.filter(nnx.Param)) == [("dense", "bias"), ("dense", "kernel")]
    assert state.filter("params") == state.filter(nnx.Param)
    assert list(state.filter(lambda path, value: path[-1] == "kernel")) == [
        ("dense", "kernel")
    ]
    assert list(state.filter((nnx.BatchStat, nnx.buffers))) == [("bn", "mean"), ("steps",)]
    assert list(state.filter(nnx.Not(nnx.Variable))) == [("steps",)]
    assert list(state.filter(nnx.All(nnx.Param, nnx.PathContains("bias")))) == [
        ("dense", "bias")
    ]
    params, rest = state.partition(nnx.Param, ...)
    assert len(params) == 2 and len(rest) == 2
    ```
"""

FilterT = TypeVar("FilterT", bound=Filter)
"""A filter's own type, where a container of filters is taken (`variable_axes={nnx.Param:
0}` is a `dict[type[Param[Any]], int]`, which a `Mapping[Filter, int]` would refuse: its key
type is invariant)."""


buffers: Final = (jax.Array, np.ndarray)
"""Matches raw array attributes (not Variables): the tuple `(jax.Array, np.ndarray)`.

Example:
    ```python
    state = nnx.State({("w",): nnx.Param(jnp.ones(2)), ("steps",): jnp.array(0)})
    assert list(state.filter(nnx.buffers)) == [("steps",)]
    ```
"""

_EVERYTHING: Final = Everything()
_NOTHING: Final = Nothing()


def _build_predicate(filter: Any) -> Predicate:
    if isinstance(filter, type):
        return OfType(filter)
    if filter is Ellipsis:
        return _EVERYTHING
    if filter is None:
        return _NOTHING
    if isinstance(filter, str):
        return Collection(filter)
    if isinstance(filter, (tuple, list)):
        members = cast("tuple[Filter, ...]", filter)
        return _AnyOf(tuple(to_predicate(f) for f in members))
    if callable(filter) and not isinstance(filter, (bool, int, float)):
        return cast(Predicate, filter)
    raise TypeError(MSG_INVALID_FILTER.format(type=type(filter).__name__, filter=filter))


@functools.lru_cache(maxsize=1024)
def _cached_predicate(filter: Any) -> Predicate:
    return _build_predicate(filter)


def _cacheable(filter: object) -> bool:
    """Types, names, `...`, None and tuples of them: the filters worth caching. A
    predicate is its own predicate, and caching it (or a tuple holding one) would keep
    it and everything it closes over alive."""
    if filter is None or filter is Ellipsis or isinstance(filter, (type, str)):
        return True
    if isinstance(filter, tuple):
        return all(_cacheable(f) for f in cast("tuple[object, ...]", filter))
    return False


def to_predicate(filter: Filter) -> Predicate:
    """The predicate `(path, value) -> bool` that `filter` stands for.

    Predicates of classes, collection names, `...`, None and tuples of them are
    cached; a predicate passed in is returned as is. `...` is accepted anywhere here
    (the "last only" rule is checked by `partition`/`filter`).

    Args:
        filter: Any form of `nnx.Filter`.

    Returns:
        A callable `predicate(path, value) -> bool`.

    Raises:
        TypeError: If `filter` is not a filter (e.g. an int).

    Example:
        ```python
        is_param = nnx.to_predicate("params")
        assert is_param(("w",), nnx.Param(1.0))
        assert not is_param(("w",), nnx.BatchStat(1.0))
        try:
            nnx.to_predicate(3)
        except TypeError as e:
            assert "Invalid filter" in str(e)
        ```
    """
    if _cacheable(filter):
        return _cached_predicate(cast(Any, filter))
    return _build_predicate(filter)


def unknown_collections(predicate: Predicate, known: frozenset[str]) -> list[str]:
    """The collection names (`str` filters) in `predicate` that are not in `known`."""
    if isinstance(predicate, Collection):
        return [] if predicate.name in known else [predicate.name]
    if isinstance(predicate, _AnyOf):
        return [n for p in predicate._predicates for n in unknown_collections(p, known)]
    return []


def check_filters(filters: tuple[Filter, ...]) -> tuple[Predicate, ...]:
    """Predicates for `filters`, checking that `...` comes last if at all."""
    count = len(filters)
    for i, f in enumerate(filters):
        if f is Ellipsis and i != count - 1:
            raise ValueError(MSG_ELLIPSIS_NOT_LAST.format(index=i, count=count))
    return tuple(to_predicate(f) for f in filters)

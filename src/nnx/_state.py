"""State: the flat, sorted, path-keyed pytree of a Module's state."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, overload

from jax.tree_util import DictKey
from typing_extensions import Self, TypeVar

from ._compat import register_pytree_with_keys
from ._filters import Filter, Path, Predicate, check_filters, unknown_collections
from ._nodes import register_node_type
from ._repr import indent, repr_value
from ._treescope import render_mapping
from ._variables import Container, _values_equal, known_collections

__all__ = ["State", "path_sort_key"]

V = TypeVar("V", covariant=True, default=Any)
V1 = TypeVar("V1")
V2 = TypeVar("V2")
V3 = TypeVar("V3")

MSG_NON_EXHAUSTIVE: Final = (
    "Non-exhaustive filters, got a non-empty remainder: {paths}.\n"
    "Use `...` as the last filter to match all remaining entries, e.g. "
    "partition(nnx.Param, ...), or use filter() to take only what matches."
)
MSG_UNKNOWN_COLLECTION: Final = (
    "The filter names the collection(s) {names}, which no Variable class has, and so "
    "matched nothing.{hints} A str filter is a collection name; the known ones are "
    "{known}. (A Variable subclass `Foo` is the collection 'foo' unless it sets "
    "`collection = ...`.)"
)
MSG_PREDICATE_ARITY: Final = (
    "The filter {predicate!r} cannot be called as predicate(path, value) ({error}). A "
    "function used as a filter takes two arguments: the entry's path (a tuple of str/int "
    "keys) and its value, e.g. `lambda path, value: path[-1] == 'kernel'`."
)


def path_sort_key(path: Path) -> tuple[tuple[bool, str | int], ...]:
    """Sort key for paths mixing `int` (Sequence positions) and `str` keys.

    Within one level, ints come first (in numeric order), then strings. This is the
    order of a State's entries.

    Args:
        path: A State path.

    Returns:
        A key for `sorted(paths, key=path_sort_key)`.
    """
    return tuple((type(k) is str, k) for k in path)


def _leaf_equal(a: Any, b: Any) -> bool:
    if isinstance(a, Container) or isinstance(b, Container):
        return bool(a == b)
    return _values_equal(a, b)


class State(Mapping[Path, V]):
    """An immutable, sorted mapping from paths to state entries; a JAX pytree.

    Paths are tuples of attribute names (`str`) and `nnx.Sequence` positions (`int`),
    e.g. `("layers", 0, "kernel")`; entries are kept sorted by path (`path_sort_key`).
    Entries are Variables (boxed, with `.value` and metadata) or raw arrays. A State
    is what `Module.partition`, `filter`, `get_state` and `pop_state` return: a
    snapshot holding copies of the Module's Variables, so writing to one of its
    boxes does not change the Module (`update_state` or `merge` do).

    As a pytree, its children are its entries, keyed by `DictKey(path)`, and each
    Variable's child is its value: `jax.tree.map` keeps paths, kinds and metadata.
    Two States are equal when they have the same paths and equal entries (arrays by
    dtype, shape and elements). A State is a `Mapping`, not hashable.

    Args:
        mapping: A mapping of paths to entries, or an iterable of `(path, entry)`
            pairs. Default: empty.

    Raises:
        TypeError: If `mapping` is neither, or a key is not a non-empty tuple of
            `str`/`int`.

    Example:
        ```python
        state = nnx.State({("w",): nnx.Param(jnp.ones(2)), ("b",): nnx.Param(jnp.zeros(2))})
        assert list(state) == [("b",), ("w",)]  # sorted
        doubled = jax.tree.map(lambda x: 2 * x, state)
        assert isinstance(doubled[("w",)], nnx.Param)
        assert jnp.allclose(doubled[("w",)].value, 2.0)
        ```
    """

    __slots__ = ("_mapping",)

    _mapping: dict[Path, V]

    @overload
    def __init__(self, mapping: Mapping[Path, V], /) -> None: ...
    @overload
    def __init__(self, mapping: Iterable[tuple[Path, V]] = (), /) -> None: ...
    def __init__(self, mapping: Mapping[Path, V] | Iterable[tuple[Path, V]] = (), /) -> None:
        pairs: list[tuple[Path, V]] = []
        try:
            entries = dict(mapping)
        except (TypeError, ValueError) as e:
            raise TypeError(
                "nnx.State expects a mapping of paths to values, or (path, value) pairs, "
                f"got a {type(mapping).__name__} ({e}). E.g. nnx.State({{('w',): nnx.Param(x)}})."
            ) from None
        for path, value in entries.items():
            if type(path) is not tuple:
                raise TypeError(
                    f"State keys are tuples of str/int (paths), got {path!r} of type "
                    f"{type(path).__name__}. Write ('{path}',) for a top-level attribute."
                )
            if not path or not all(type(k) in (str, int) for k in path):
                raise TypeError(
                    f"State keys are non-empty tuples of str (attribute names) and int "
                    f"(nnx.Sequence positions), got {path!r}."
                )
            pairs.append((path, value))
        pairs.sort(key=lambda kv: path_sort_key(kv[0]))
        self._mapping = dict(pairs)

    @classmethod
    def _from_sorted(cls, mapping: dict[Path, V]) -> Self:
        state = object.__new__(cls)
        state._mapping = mapping
        return state

    # -- Mapping ----------------------------------------------------------------------
    def __getitem__(self, path: Path) -> V:
        return self._mapping[path]

    def __iter__(self) -> Iterator[Path]:
        return iter(self._mapping)

    def __len__(self) -> int:
        return len(self._mapping)

    def __contains__(self, path: object) -> bool:
        return path in self._mapping

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        other_map: Mapping[Any, Any] = other  # pyright: ignore[reportUnknownVariableType]
        if len(other_map) != len(self._mapping):
            return False
        for path, value in self._mapping.items():
            if path not in other_map or not _leaf_equal(value, other_map[path]):
                return False
        return True

    # -- filtering ----------------------------------------------------------------------
    @overload
    def partition(self, first: type[V1], /) -> State[V1]: ...
    @overload
    def partition(self, first: Filter, /) -> State[V]: ...
    @overload
    def partition(self, first: type[V1], second: type[V2], /) -> tuple[State[V1], State[V2]]: ...
    @overload
    def partition(self, first: Filter, second: Filter, /) -> tuple[State[V], State[V]]: ...
    @overload
    def partition(
        self, first: type[V1], second: type[V2], third: type[V3], /
    ) -> tuple[State[V1], State[V2], State[V3]]: ...
    @overload
    def partition(
        self, first: Filter, second: Filter, third: Filter, /, *filters: Filter
    ) -> tuple[State[V], ...]: ...
    def partition(self, first: Filter, /, *filters: Filter) -> State[Any] | tuple[State[Any], ...]:
        """Split into one State per filter; every entry must match one of them.

        Each entry goes to the first filter that matches it (see `nnx.Filter` for the
        forms a filter takes); entries are shared with this State, not copied.

        Args:
            first: The first filter.
            *filters: More filters; `...` may only come last.

        Returns:
            One State for a single filter, else a tuple of States, one per filter.

        Raises:
            ValueError: If some entries match no filter (use `...` last to catch the
                rest), if `...` is not last, or if a `str` filter that matched
                nothing names no known collection (a typo such as `"param"`).
            TypeError: If a filter is not a filter, or a function filter does not take
                `(path, value)`.

        Example:
            ```python
            state = nnx.State({
                ("w",): nnx.Param(jnp.ones(2)),
                ("mean",): nnx.BatchStat(jnp.zeros(2)),
                ("steps",): jnp.array(0),
            })
            params, rest = state.partition(nnx.Param, ...)
            assert list(params) == [("w",)] and list(rest) == [("mean",), ("steps",)]
            try:
                state.partition(nnx.Param)
            except ValueError as e:
                assert "Non-exhaustive filters" in str(e)
            ```
        """
        predicates = check_filters((first, *filters))
        states = split_pairs(self._mapping.items(), predicates, exhaustive=True)
        return states[0] if len(states) == 1 else states

    @overload
    def filter(self, first: type[V1], /) -> State[V1]: ...
    @overload
    def filter(self, first: Filter, /) -> State[V]: ...
    @overload
    def filter(self, first: type[V1], second: type[V2], /) -> tuple[State[V1], State[V2]]: ...
    @overload
    def filter(self, first: Filter, second: Filter, /) -> tuple[State[V], State[V]]: ...
    @overload
    def filter(
        self, first: type[V1], second: type[V2], third: type[V3], /
    ) -> tuple[State[V1], State[V2], State[V3]]: ...
    @overload
    def filter(
        self, first: Filter, second: Filter, third: Filter, /, *filters: Filter
    ) -> tuple[State[V], ...]: ...
    def filter(self, first: Filter, /, *filters: Filter) -> State[Any] | tuple[State[Any], ...]:
        """Like `partition`, but entries that match no filter are left out.

        Args:
            first: The first filter.
            *filters: More filters; `...` may only come last.

        Returns:
            One State for a single filter, else a tuple of States, one per filter.

        Raises:
            ValueError: If `...` is not last, or a `str` filter that matched nothing
                names no known collection.
            TypeError: If a filter is not a filter, or a function filter does not take
                `(path, value)`.

        Example:
            ```python
            state = nnx.State({
                ("w",): nnx.Param(jnp.ones(2)),
                ("mean",): nnx.BatchStat(jnp.zeros(2)),
                ("steps",): jnp.array(0),
            })
            assert list(state.filter("params")) == [("w",)]
            params, stats = state.filter(nnx.Param, nnx.BatchStat)
            assert list(stats) == [("mean",)]
            assert list(state.filter(lambda path, value: path[0] == "steps")) == [("steps",)]
            ```
        """
        predicates = check_filters((first, *filters))
        states = split_pairs(self._mapping.items(), predicates, exhaustive=False)
        return states[0] if len(states) == 1 else states

    # -- combining ------------------------------------------------------------------------
    # The result holds the kinds of every argument: `State.merge(params, rest)` is not
    # a `State[Param]` when `rest` holds other kinds.
    @overload
    @staticmethod
    def merge(state: State[V1], /) -> State[V1]: ...
    @overload
    @staticmethod
    def merge(state: State[V1], second: State[V2], /) -> State[V1 | V2]: ...
    @overload
    @staticmethod
    def merge(state: State[V1], second: State[V2], third: State[V3], /) -> State[V1 | V2 | V3]: ...
    @overload
    @staticmethod
    def merge(
        state: State[Any],
        second: State[Any],
        third: State[Any],
        fourth: State[Any],
        /,
        *states: State[Any],
    ) -> State[Any]: ...
    @staticmethod
    def merge(state: State[Any], /, *states: State[Any]) -> State[Any]:
        """One State with the entries of all; for a repeated path the last one wins.

        The inverse of `partition`: `State.merge(*state.partition(f, ...)) == state`.
        `a | b` is `State.merge(a, b)`.

        Args:
            state: The first State.
            *states: More States.

        Returns:
            A new State (or `state` itself when it is the only argument).

        Example:
            ```python
            state = nnx.State({("w",): nnx.Param(jnp.ones(2)), ("n",): jnp.array(0)})
            params, rest = state.partition(nnx.Param, ...)
            assert nnx.State.merge(params, rest) == state
            newer = nnx.State({("n",): jnp.array(5)})
            assert (state | newer)[("n",)] == 5
            ```
        """
        if not states:
            return state
        combined: dict[Path, Any] = dict(state._mapping)
        for s in states:
            combined.update(s._mapping)
        return State(combined)

    def __or__(self, other: State[V1]) -> State[V | V1]:
        """`State.merge(self, other)`: `other` wins for a repeated path."""
        return State.merge(self, other)

    def __sub__(self, other: Mapping[Path, Any]) -> State[V]:
        """The entries of `self` whose paths are not in `other`, order kept."""
        return State._from_sorted({p: v for p, v in self._mapping.items() if p not in other})

    # -- display ----------------------------------------------------------------------------
    def __treescope_repr__(self, path: str | None, subtree_renderer: Any) -> Any:
        """treescope's rich repr: `State({path: entry, ...})`."""
        return render_mapping(self, self._mapping, path, subtree_renderer)

    def __repr__(self) -> str:
        if not self._mapping:
            return "State({})"
        lines = [f"  {path!r}: {indent(_repr_entry(v))}," for path, v in self._mapping.items()]
        lines[-1] = lines[-1][:-1]
        return "State({\n" + "\n".join(lines) + "\n})"


def _repr_entry(value: Any) -> str:
    if isinstance(value, Container):
        return repr(value)  # pyright: ignore[reportUnknownArgumentType]
    return repr_value(value)


def split_pairs(
    items: Iterable[tuple[Path, Any]],
    predicates: tuple[Predicate, ...],
    *,
    exhaustive: bool,
) -> tuple[State[Any], ...]:
    """Route each `(path, value)` (in sorted order) to the first matching predicate."""
    buckets: list[dict[Path, Any]] = [{} for _ in predicates]
    rest: list[Path] = []
    indexed = tuple(enumerate(predicates))
    try:
        for path, value in items:
            for i, predicate in indexed:
                if predicate(path, value):
                    buckets[i][path] = value
                    break
            else:
                rest.append(path)
    except TypeError as e:
        raise _predicate_error(predicates, e) or e from None
    for bucket, predicate in zip(buckets, predicates):
        if not bucket:
            _check_collection_names(predicate)
    if exhaustive and rest:
        raise ValueError(MSG_NON_EXHAUSTIVE.format(paths=rest))
    return tuple(State._from_sorted(b) for b in buckets)


def _check_collection_names(predicate: Predicate) -> None:
    """A `str` filter that matched nothing and names no collection any Variable class
    has is a typo (`wrt="param"`): say so, rather than return an empty State."""
    known = known_collections()
    unknown = unknown_collections(predicate, known)
    if unknown:
        close = {n: difflib.get_close_matches(n, sorted(known), n=1) for n in unknown}
        hints = "".join(f" Did you mean {c[0]!r} for {n!r}?" for n, c in close.items() if c)
        raise ValueError(
            MSG_UNKNOWN_COLLECTION.format(names=unknown, known=sorted(known), hints=hints)
        )


def _predicate_error(predicates: tuple[Predicate, ...], error: TypeError) -> TypeError | None:
    """nnx's words for a predicate that does not take `(path, value)`."""
    for predicate in predicates:
        try:
            inspect.signature(predicate).bind(("path",), "value")
        except TypeError:
            return TypeError(MSG_PREDICATE_ARITY.format(predicate=predicate, error=error))
        except ValueError:  # no signature (a builtin): nothing to say
            continue
    return None


def _state_flatten_with_keys(
    state: State[Any],
) -> tuple[tuple[tuple[Any, Any], ...], tuple[Path, ...]]:
    mapping = state._mapping
    return tuple((DictKey(k), v) for k, v in mapping.items()), tuple(mapping)


def _state_flatten(state: State[Any]) -> tuple[tuple[Any, ...], tuple[Path, ...]]:
    mapping = state._mapping
    return tuple(mapping.values()), tuple(mapping)


def _state_unflatten(paths: tuple[Path, ...], leaves: Iterable[Any]) -> State[Any]:
    return State._from_sorted(dict(zip(paths, leaves)))


register_pytree_with_keys(State, _state_flatten_with_keys, _state_unflatten, _state_flatten)
register_node_type(State)

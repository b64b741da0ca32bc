"""Module collections: `nnx.Sequence` (a list of items) and `nnx.Dict` (a mapping)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import TYPE_CHECKING, Any, Generic, overload

from typing_extensions import TypeIs, TypeVar

from ._module import Module

__all__ = ["Dict", "Sequence"]

T = TypeVar("T", default=Any)
D = TypeVar("D")


@functools.lru_cache(maxsize=512)
def _accepts_ctx(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "ctx" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _is_tuple(x: object) -> TypeIs[tuple[Any, ...]]:
    return isinstance(x, tuple)


def _is_dict(x: object) -> TypeIs[dict[str, Any]]:
    return isinstance(x, dict)


class Sequence(Module, Generic[T]):
    """A Module holding a list of items (Modules, Variables, arrays or callables).

    Generic in the item type: `nnx.Sequence[nnx.Linear]` (items read as `T`).

    Items are attributes `"0"`, `"1"`, ...; in State paths they are the ints
    `0, 1, ...`. Calling a Sequence chains its items: a tuple output becomes the
    next item's positional arguments, a dict its keyword arguments; `ctx=` is passed
    to the items that take it.
    """

    _nnx_int_keys = True

    def __init__(self, items: Iterable[T] = (), /) -> None:
        for i, item in enumerate(items):
            setattr(self, str(i), item)

    def _count(self) -> int:
        return sum(1 for name in self.__dict__ if name.isdigit())

    def __len__(self) -> int:
        return self._count()

    def _index(self, index: int) -> str:
        n = self._count()
        if not -n <= index < n:
            raise IndexError(f"Sequence index {index} out of range for length {n}")
        return str(index % n)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [getattr(self, str(i)) for i in range(*index.indices(self._count()))]
        item: T = getattr(self, self._index(index))
        return item

    def __setitem__(self, index: int, value: T) -> None:
        setattr(self, self._index(index), value)

    def append(self, item: T) -> None:
        setattr(self, str(self._count()), item)

    def __iter__(self) -> Iterator[T]:
        for i in range(self._count()):
            item: T = getattr(self, str(i))
            yield item

    def __call__(self, *args: Any, ctx: Any = None, **kwargs: Any) -> Any:
        result: Any = None
        for i, item in enumerate(self):
            if not callable(item):
                raise TypeError(f"Sequence[{i}] is not callable: {item!r}")
            if ctx is not None and _accepts_ctx(
                item if inspect.isroutine(item) else type(item).__call__
            ):
                kwargs = {**kwargs, "ctx": ctx}
            result = item(*args, **kwargs)
            if _is_tuple(result):
                args, kwargs = result, {}
            elif _is_dict(result):
                args, kwargs = (), result
            else:
                args, kwargs = (result,), {}
        return result


class Dict(Module, Generic[T]):
    """A Module that is a mapping: items are attributes (`d["k"]` is `d.k`).

    `nnx.Dict(a=..., b=...)` or `nnx.Dict({"a": ...})`, like `dict(...)`; any key may
    be used, `cls` and `self` included. A missing key raises `KeyError`. Generic in
    the item type: `nnx.Dict[nnx.Linear]`.
    """

    def __init__(self, /, *args: Mapping[str, T] | Iterable[tuple[str, T]], **kwargs: T) -> None:
        for key, value in dict(*args, **kwargs).items():
            setattr(self, key, value)

    def __getitem__(self, key: str) -> T:
        if key not in self.__dict__:
            raise KeyError(key)
        item: T = getattr(self, key)
        return item

    def __setitem__(self, key: str, value: T) -> None:
        setattr(self, key, value)

    def __delitem__(self, key: str) -> None:
        if key not in self.__dict__:
            raise KeyError(key)
        delattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__

    def __len__(self) -> int:
        return len(self.__dict__)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.__dict__))

    @overload
    def get(self, key: str, /) -> T | None: ...
    @overload
    def get(self, key: str, /, default: T | D) -> T | D: ...
    def get(self, key: str, /, default: Any = None) -> Any:
        return getattr(self, key) if key in self.__dict__ else default

    def keys(self) -> KeysView[str]:
        return KeysView(self)

    def values(self) -> ValuesView[T]:
        return ValuesView(self)

    def items(self) -> ItemsView[str, T]:
        return ItemsView(self)

    if TYPE_CHECKING:
        # Items are attributes: `nnx.Dict(logits=lin).logits` reads as the item type.
        def __getattr__(self, name: str) -> T: ...
    else:

        def __getattr__(self, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute or key {name!r}")


Mapping.register(Dict)  # pyright: ignore[reportUnknownMemberType, reportAttributeAccessIssue]

"""Container Modules: `Sequence` (a list of modules) and `Dict` (a mapping)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import TYPE_CHECKING, Any, overload

from typing_extensions import TypeIs, TypeVar

from ._module import Module

__all__ = ["Dict", "Sequence"]

T = TypeVar("T", default=Any)


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


class Sequence(Module):
    """A Module holding a list of items (Modules, Variables, arrays or callables).

    Items are attributes `"0"`, `"1"`, ...; in State paths they are the ints
    `0, 1, ...`. Calling a Sequence chains its items: a tuple output becomes the
    next item's positional arguments, a dict its keyword arguments; `ctx=` is passed
    to the items that take it.
    """

    _nnx_int_keys = True

    def __init__(self, items: Iterable[Any] = ()) -> None:
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
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [getattr(self, str(i)) for i in range(*index.indices(self._count()))]
        return getattr(self, self._index(index))

    def __setitem__(self, index: int, value: Any) -> None:
        setattr(self, self._index(index), value)

    def append(self, item: Any) -> None:
        setattr(self, str(self._count()), item)

    def __iter__(self) -> Iterator[Any]:
        for i in range(self._count()):
            yield getattr(self, str(i))

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


class Dict(Module):
    """A Module that is a mapping: items are attributes (`d["k"]` is `d.k`)."""

    def __init__(self, *args: Mapping[str, Any] | Iterable[tuple[str, Any]], **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            setattr(self, key, value)

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dict__:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
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

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.__dict__ else default

    def keys(self) -> KeysView[str]:
        return KeysView(self)

    def values(self) -> ValuesView[Any]:
        return ValuesView(self)

    def items(self) -> ItemsView[str, Any]:
        return ItemsView(self)

    if not TYPE_CHECKING:

        def __getattr__(self, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute or key {name!r}")


Mapping.register(Dict)  # pyright: ignore[reportUnknownMemberType, reportAttributeAccessIssue]

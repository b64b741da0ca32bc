"""Module collections: `nnx.Sequence` (a list of items) and `nnx.Dict` (a mapping)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import TYPE_CHECKING, Any, Generic, overload

from typing_extensions import TypeIs, TypeVar

from ._module import Module
from ._module_object import vars_of

__all__ = ["Dict", "Sequence", "Sequential"]

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
    to the items that take it. Indexing supports negative indices and slices (a
    slice gives a list); `len`, iteration and `append` work as for a list. Items are
    assigned as attributes, with the usual rules (Variables copied, Modules shared).

    Args:
        items: The initial items. Default: none.

    Example:
        ```python
        ctx = nnx.context(0)
        mlp = nnx.Sequence([nnx.Linear(2, 8, ctx=ctx), nnx.relu, nnx.Linear(8, 1, ctx=ctx)])
        assert mlp(jnp.ones((4, 2))).shape == (4, 1)
        assert len(mlp) == 3 and mlp[-1] is mlp[2]
        assert ("0", "kernel") not in mlp.get_state()
        assert (0, "kernel") in mlp.get_state()  # int keys in paths
        ```
    """

    _nnx_int_keys = True

    def __init__(self, items: Iterable[T] = (), /) -> None:
        for i, item in enumerate(items):
            setattr(self, str(i), item)

    def _count(self) -> int:
        return sum(1 for name in vars_of(self) if name.isdigit())

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
        """Add `item` at the end (as attribute `str(len(self))`)."""
        setattr(self, str(self._count()), item)

    def __iter__(self) -> Iterator[T]:
        for i in range(self._count()):
            item: T = getattr(self, str(i))
            yield item

    def __call__(self, *args: Any, ctx: Any = None, **kwargs: Any) -> Any:
        """Call the items in order, each on what the previous one returned.

        A tuple result becomes the next item's positional arguments, a dict its
        keyword arguments, anything else its single argument.

        Args:
            *args: The first item's positional arguments.
            ctx: A Context, passed to each item whose call takes `ctx` (or `**kwargs`).
            **kwargs: The first item's keyword arguments.

        Returns:
            The last item's result (None for an empty Sequence).

        Raises:
            TypeError: If an item is not callable.
        """
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


class Sequential(Sequence[T]):
    """Layers called in order: `nnx.Sequential(a, b, c)(x)` is `c(b(a(x)))`.

    An `nnx.Sequence` built from positional arguments (flax.nnx and equinox spell it
    so): Modules or plain callables, chained as `Sequence` chains them (a tuple output
    is unpacked into the next call, `ctx=` reaches the layers that take it); its state
    partitions like any module's (paths `(0, "kernel")`, ...).

    Args:
        *layers: The layers, in call order.

    Example:
        ```python
        ctx = nnx.context(0)
        model = nnx.Sequential(nnx.Linear(2, 8, ctx=ctx), nnx.relu, nnx.Linear(8, 1, ctx=ctx))
        assert model(jnp.ones((4, 2))).shape == (4, 1)
        params, _ = model.partition(nnx.Param)
        assert (2, "kernel") in params
        ```
    """

    def __init__(self, *layers: T) -> None:
        super().__init__(layers)


class Dict(Module, Generic[T]):
    """A Module that is a mapping: items are attributes (`d["k"]` is `d.k`).

    `nnx.Dict(a=..., b=...)` or `nnx.Dict({"a": ...})`, like `dict(...)`; any key may
    be used, `cls` and `self` included. A missing key raises `KeyError`. Generic in
    the item type: `nnx.Dict[nnx.Linear]`. Iteration is over the keys, sorted; `in`,
    `len`, `get`, `keys`, `values`, `items`, item assignment and `del` work as for a
    dict. Items are assigned as attributes, with the usual rules.

    Args:
        *args: A mapping, or an iterable of `(key, item)` pairs.
        **kwargs: More items, by key.

    Example:
        ```python
        ctx = nnx.context(0)
        heads = nnx.Dict(logits=nnx.Linear(4, 10, ctx=ctx), value=nnx.Linear(4, 1, ctx=ctx))
        x = jnp.ones((2, 4))
        assert heads["value"](x).shape == (2, 1) and heads.logits is heads["logits"]
        assert list(heads) == ["logits", "value"] and "policy" not in heads
        assert ("value", "kernel") in heads.get_state()
        del heads["value"]
        assert len(heads) == 1
        ```
    """

    def __init__(self, /, *args: Mapping[str, T] | Iterable[tuple[str, T]], **kwargs: T) -> None:
        for key, value in dict(*args, **kwargs).items():
            setattr(self, key, value)

    def __getitem__(self, key: str) -> T:
        if key not in vars_of(self):
            raise KeyError(key)
        item: T = getattr(self, key)
        return item

    def __setitem__(self, key: str, value: T) -> None:
        setattr(self, key, value)

    def __delitem__(self, key: str) -> None:
        if key not in vars_of(self):
            raise KeyError(key)
        delattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in vars_of(self)

    def __len__(self) -> int:
        return len(vars_of(self))

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(vars_of(self)))

    @overload
    def get(self, key: str, /) -> T | None: ...
    @overload
    def get(self, key: str, /, default: T | D) -> T | D: ...
    def get(self, key: str, /, default: Any = None) -> Any:
        """The item at `key`, or `default` (None) if there is none."""
        return getattr(self, key) if key in vars_of(self) else default

    def keys(self) -> KeysView[str]:
        """A view of the keys, sorted."""
        return KeysView(self)

    def values(self) -> ValuesView[T]:
        """A view of the items, in key order."""
        return ValuesView(self)

    def items(self) -> ItemsView[str, T]:
        """A view of the `(key, item)` pairs, in key order."""
        return ItemsView(self)

    if TYPE_CHECKING:
        # Items are attributes: `nnx.Dict(logits=lin).logits` reads as the item type.
        def __getattr__(self, name: str) -> T: ...
    else:

        def __getattr__(self, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute or key {name!r}")


Mapping.register(Dict)  # pyright: ignore[reportUnknownMemberType, reportAttributeAccessIssue]

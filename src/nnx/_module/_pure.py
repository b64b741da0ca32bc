"""The functional calls: `moduledef.apply(state).method(x)` (ApplyCaller), `module.apply
.method(x)` (CloneCaller), and `Pure`, the `(states, moduledef)` pair that
`partition` returns."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, cast

from typing_extensions import ParamSpec, TypeVar

from .. import _nodes
from .._compat import register_pytree_node
from .._filters import Filter, Path, check_filters
from .._state import State, split_pairs
from ._moduledef import ModuleDef

if TYPE_CHECKING:
    from ._module import Module

A = TypeVar("A")
M = TypeVar("M", covariant=True, default=Any)
S = TypeVar("S", covariant=True, default=Any)
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T", covariant=True)
Root = TypeVar("Root", covariant=True)
ModuleT = TypeVar("ModuleT", bound="Module")


class _Caller:
    """What `ApplyCaller` and `CloneCaller` share: the ModuleDef and States to merge,
    and the attribute/item accesses (`.blocks[0].linear`) to follow before the call."""

    __slots__ = ("_accessors", "_moduledef", "_states")

    def __init__(
        self,
        moduledef: ModuleDef[Any],
        states: tuple[State[Any], ...],
        accessors: tuple[tuple[bool, Any], ...],
    ) -> None:
        self._moduledef = moduledef
        self._states = states
        self._accessors = accessors

    def _access(self, is_attr: bool, key: Any) -> Any:
        if is_attr and isinstance(key, str) and key.startswith("__"):
            raise AttributeError(key)
        return type(self)(self._moduledef, self._states, (*self._accessors, (is_attr, key)))

    def _call_on_copy(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Module]:
        """Merge a fresh module, reach the accessed attribute/item, call it:
        `(output, the fresh module)`."""
        module: Module = self._moduledef.merge(*self._states)
        target: Any = module
        for is_attr, key in self._accessors:
            target = getattr(target, key) if is_attr else target[key]
        return target(*args, **kwargs), module


class ApplyCaller(_Caller, Generic[M]):
    """`moduledef.apply(state)` — call it, or reach any attribute/item first; the call
    returns `(output, Pure(new_state, new_moduledef))`."""

    __slots__ = ()

    def __getattr__(self, name: str) -> ApplyCaller[Any]:
        accessed: ApplyCaller[Any] = self._access(True, name)
        return accessed

    def __getitem__(self, key: Any) -> ApplyCaller[Any]:
        accessed: ApplyCaller[Any] = self._access(False, key)
        return accessed

    def __call__(
        self: ApplyCaller[Callable[P, R]], *args: P.args, **kwargs: P.kwargs
    ) -> tuple[R, tuple[State[Any], ModuleDef[M]]]:
        out, module = self._call_on_copy(args, kwargs)
        return out, cast("tuple[State[Any], ModuleDef[M]]", module.partition())


class CloneCaller(_Caller, Generic[T, Root]):
    """`module.apply` — call it, or reach any attribute/item first; the call runs on
    a copy of the module and returns `(output, copy)`, the original untouched."""

    __slots__ = ()

    def __getattr__(self, name: str) -> CloneCaller[Any, Root]:
        accessed: CloneCaller[Any, Root] = self._access(True, name)
        return accessed

    def __getitem__(self, key: Any) -> CloneCaller[Any, Root]:
        accessed: CloneCaller[Any, Root] = self._access(False, key)
        return accessed

    def __call__(
        self: CloneCaller[Callable[P, R], Root], *args: P.args, **kwargs: P.kwargs
    ) -> tuple[R, Root]:
        out, module = self._call_on_copy(args, kwargs)
        return out, cast(Root, module)


# ------------------------------------------------------------------------------------
# Pure: (states, moduledef)


class Pure(tuple[S, ModuleDef[M]]):
    """`(states, moduledef)`, what `Module.partition` returns; a pytree.

    `states` is one State or a tuple of States (one per filter).
    """

    __slots__ = ()

    def __new__(cls, states: S, moduledef: ModuleDef[M]) -> Pure[S, M]:
        return super().__new__(cls, (states, moduledef))

    @property
    def states(self) -> S:
        return self[0]

    @property
    def moduledef(self) -> ModuleDef[M]:
        return self[1]

    def _state_tuple(self) -> tuple[State[Any], ...]:
        states: Any = self[0]
        return states if isinstance(states, tuple) else (states,)  # pyright: ignore[reportUnknownVariableType]

    def merge(self) -> M:
        """The Module these states and this moduledef describe."""
        return self[1].merge(*self._state_tuple())

    @property
    def apply(self) -> ApplyCaller[M]:
        return ApplyCaller(self[1], self._state_tuple(), ())

    @property
    def call(self) -> _OutputOnly[M]:
        """`pure.call.method(*args)` → only the output (updates discarded)."""
        return _OutputOnly(self.apply)

    def get_state(self) -> State[Any]:
        return State.merge(*self._state_tuple())

    def filter(self, first: Filter, /, *filters: Filter) -> State[Any] | tuple[State[Any], ...]:
        return self.get_state().filter(first, *filters)

    def partition(self, *filters: Filter) -> Pure[Any, M]:
        state = self.get_state()
        if not filters:
            return Pure(state, self[1])
        first, *rest = filters
        return Pure(state.partition(first, *rest), self[1])

    def pop_state(self, first: Filter, /, *filters: Filter) -> tuple[Any, Pure[State[Any], M]]:
        """`(popped, Pure(rest))`: the entries matching the filters, and the rest."""
        state = self.get_state()
        predicates = check_filters((first, *filters))
        *popped, rest = split_pairs(
            state._mapping.items(), (*predicates, _everything), exhaustive=True
        )
        return (popped[0] if len(popped) == 1 else tuple(popped)), Pure(rest, self[1])

    def update_state(self, updates: State[Any] | tuple[State[Any], ...]) -> Pure[State[Any], M]:
        """A new Pure whose state is this one's with `updates` applied (updates win)."""
        new = updates if isinstance(updates, tuple) else (updates,)
        return Pure(State.merge(self.get_state(), *new), self[1])


def _everything(path: Path, value: Any) -> bool:
    return True


class _OutputOnly(Generic[M]):
    __slots__ = ("_caller",)

    def __init__(self, caller: ApplyCaller[Any]) -> None:
        self._caller = caller

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _OutputOnly(getattr(self._caller, name))

    def __getitem__(self, key: Any) -> Any:
        return _OutputOnly(self._caller[key])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._caller(*args, **kwargs)[0]


def _pure_flatten(pure: Pure[Any, Any]) -> tuple[tuple[Any, Any], None]:
    return (pure[0], pure[1]), None


def _pure_unflatten(_: None, children: Iterable[Any]) -> Pure[Any, Any]:
    states, moduledef = children
    return Pure(states, moduledef)


register_pytree_node(Pure, _pure_flatten, _pure_unflatten)
_nodes.register_node_type(Pure)

if TYPE_CHECKING:
    from typing import TypeAlias

    PureModule: TypeAlias = "Pure[State[Any] | tuple[State[Any], ...], ModuleT]"
else:
    PureModule = Pure[State | tuple, ModuleT]

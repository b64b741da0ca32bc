"""The functional calls: `moduledef.apply(state).method(x)` (ApplyCaller), `module.apply
.method(x)` (CloneCaller), and `Pure`, the `(states, moduledef)` pair that
`partition` returns."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, cast, overload

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
V1 = TypeVar("V1")
V2 = TypeVar("V2")
V3 = TypeVar("V3")
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

    def _reach(self, module: Module) -> Any:
        """The attribute/item of `module` that the accesses lead to."""
        target: Any = module
        for is_attr, key in self._accessors:
            target = getattr(target, key) if is_attr else target[key]
        return target

    def _call_on_copy(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Module]:
        """Merge a fresh module, reach the accessed attribute/item, call it:
        `(output, the fresh module)`."""
        module: Module = self._moduledef.merge(*self._states)
        return self._reach(module)(*args, **kwargs), module

    def _on(self, select: Callable[[Any], Callable[..., Any]]) -> Callable[..., tuple[Any, Module]]:
        """`_call_on_copy` of what `select` picks from the reached attribute/item."""

        def call(*args: Any, **kwargs: Any) -> tuple[Any, Module]:
            module: Module = self._moduledef.merge(*self._states)
            return select(self._reach(module))(*args, **kwargs), module

        return call


class ApplyCaller(_Caller, Generic[M]):
    """What `moduledef.apply(*states)` and `pure.apply` return: a functional call.

    Call it to call the module's `__call__`, or reach any attribute or item first
    (`caller.encode(x)`, `caller.blocks[0].linear(x)`): each access gives a new
    ApplyCaller, and nothing runs until the call. The call merges a fresh module from
    the States, calls the method reached, and returns the output together with the
    whole module's updated state; the States given are not changed. Not constructed
    directly.

    Example:
        ```python
        model = nnx.Sequence([nnx.Linear(2, 3, ctx=nnx.context(0)), nnx.relu])
        state, moduledef = model.partition()
        y, (new_state, new_moduledef) = moduledef.apply(state)(jnp.ones((1, 2)))
        first, _ = moduledef.apply(state)[0](jnp.ones((1, 2)))  # item 0 only
        assert y.shape == first.shape == (1, 3)
        assert new_moduledef == moduledef and set(new_state) == set(state)
        ```
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> ApplyCaller[Any]:
        accessed: ApplyCaller[Any] = self._access(True, name)
        return accessed

    def __getitem__(self, key: Any) -> ApplyCaller[Any]:
        accessed: ApplyCaller[Any] = self._access(False, key)
        return accessed

    def __call__(
        self: ApplyCaller[Callable[P, R]], *args: P.args, **kwargs: P.kwargs
    ) -> tuple[R, Pure[State[Any], M]]:
        """Merge a fresh module, call the method reached with these arguments.

        Args:
            *args: The method's positional arguments.
            **kwargs: The method's keyword arguments.

        Returns:
            `(output, nnx.Pure(new_state, new_moduledef))`: the method's output, and
            the partition (one State) of the whole module after the call.
        """
        out, module = self._call_on_copy(args, kwargs)
        return out, cast("Pure[State[Any], M]", module.partition())

    def on(
        self, select: Callable[[M], Callable[P, R]]
    ) -> Callable[P, tuple[R, Pure[State[Any], M]]]:
        """Call what `select` picks from the module: attribute access typed for the checkers.

        `caller.bn(x)` works too, but its result is `Any` for the checkers (an
        attribute of the module is not part of the caller's type);
        `caller.on(lambda m: m.bn)(x)` is typed from `m.bn`'s signature.

        Args:
            select: Takes the (fresh) module, returns the callable to call on it.

        Returns:
            A function taking `select`'s callable's arguments and returning
            `(output, nnx.Pure(new_state, new_moduledef))`, like a call of this caller.

        Example:
            ```python
            model = nnx.Dict(enc=nnx.Linear(2, 3, ctx=nnx.context(0)))
            state, moduledef = model.partition()
            y, updates = moduledef.apply(state).on(lambda m: m["enc"])(jnp.ones((1, 2)))
            assert y.shape == (1, 3) and updates.moduledef == moduledef
            ```
        """
        run = self._on(select)

        def call(*args: P.args, **kwargs: P.kwargs) -> tuple[R, Pure[State[Any], M]]:
            out, module = run(*args, **kwargs)
            return out, cast("Pure[State[Any], M]", module.partition())

        return call


class CloneCaller(_Caller, Generic[T, Root]):
    """What `module.apply` returns: a call on a copy of the module.

    Call it to call the module's `__call__`, or reach any attribute or item first
    (`module.apply.blocks[0].linear(x)`); nothing runs until the call. The call copies
    the whole module, calls the method reached on the copy, and returns the output
    and the copy (holding the updated state); the original is left untouched. Not
    constructed directly.

    Example:
        ```python
        model = nnx.Sequence([nnx.Linear(2, 3, ctx=nnx.context(0))])
        y, copy = model.apply[0](jnp.ones((1, 2)))
        assert y.shape == (1, 3)
        assert type(copy) is nnx.Sequence and copy is not model
        ```
    """

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
        """Copy the module, call the method reached on the copy.

        Args:
            *args: The method's positional arguments.
            **kwargs: The method's keyword arguments.

        Returns:
            `(output, copy)`: the copy is the whole module, not the part reached.
        """
        out, module = self._call_on_copy(args, kwargs)
        return out, cast(Root, module)

    def on(self, select: Callable[[T], Callable[P, R]]) -> Callable[P, tuple[R, Root]]:
        """Call what `select` picks from the copy: attribute access typed for the checkers.

        `model.apply.bn(x)` works too, but its result is `Any` for the checkers;
        `model.apply.on(lambda m: m.bn)(x)` is typed from `m.bn`'s signature.

        Args:
            select: Takes the copy, returns the callable to call on it.

        Returns:
            A function taking that callable's arguments and returning `(output, copy)`.

        Example:
            ```python
            model = nnx.Dict(enc=nnx.Linear(2, 3, ctx=nnx.context(0)))
            y, copy = model.apply.on(lambda m: m["enc"])(jnp.ones((1, 2)))
            assert y.shape == (1, 3) and copy is not model
            ```
        """
        run = self._on(select)

        def call(*args: P.args, **kwargs: P.kwargs) -> tuple[R, Root]:
            out, module = run(*args, **kwargs)
            return out, cast(Root, module)

        return call


# ------------------------------------------------------------------------------------
# Pure: (states, moduledef)


class Pure(tuple[S, ModuleDef[M]]):
    """`(states, moduledef)`: a module as a pytree, what `Module.partition` returns.

    A 2-tuple (unpack it: `state, moduledef = model.partition()`) and a pytree whose
    leaves are the States' leaves, the ModuleDef being static: pass it through
    `jax.jit`, `jax.vmap` or `jax.tree.map` whole. Its methods work on it without
    rebuilding the module by hand: `merge()` rebuilds it, `apply` and `call` run
    a method, `filter`, `partition`, `pop_state` and `update_state` work on the states.
    A Pure is immutable: these return new values. `nnx.PureModule[M]` is the type of
    the Pure of a module of type `M`.

    Args:
        states: One State, or a tuple of States (one per filter of `partition`).
        moduledef: The ModuleDef they fit.

    Example:
        ```python
        pure = nnx.Linear(2, 3, ctx=nnx.context(0)).partition()
        state, moduledef = pure
        assert state is pure.states and moduledef is pure.moduledef


        @jax.jit
        def step(pure: nnx.PureModule[nnx.Linear], x: jax.Array):
            model = pure.merge()  # a module of this trace: free to mutate
            model.bias = model.bias + 1.0
            return model.partition(), model(x)


        new, y = step(pure, jnp.ones((1, 2)))
        assert y.shape == (1, 3) and float(new.states[("bias",)].value.sum()) == 3.0
        assert pure.call(jnp.ones((1, 2))).shape == (1, 3)  # output only
        ```
    """

    __slots__ = ()

    def __new__(cls, states: S, moduledef: ModuleDef[M]) -> Pure[S, M]:
        return super().__new__(cls, (states, moduledef))

    @property
    def states(self) -> S:
        """The first item: a State, or a tuple of States."""
        return self[0]

    @property
    def moduledef(self) -> ModuleDef[M]:
        """The second item: the ModuleDef."""
        return self[1]

    def _state_tuple(self) -> tuple[State[Any], ...]:
        states: Any = self[0]
        return states if isinstance(states, tuple) else (states,)  # pyright: ignore[reportUnknownVariableType]

    def merge(self) -> M:
        """Build the module: `moduledef.merge(*states)`.

        Returns:
            A new module (see `ModuleDef.merge`).

        Raises:
            ValueError: If the states do not fit the ModuleDef.
        """
        return self[1].merge(*self._state_tuple())

    @property
    def apply(self) -> ApplyCaller[M]:
        """`moduledef.apply(*states)`: `pure.apply.method(*args)` returns
        `(output, new_pure)`, `new_pure` holding the whole updated state as one State.

        Returns:
            An `nnx.ApplyCaller`.

        Example:
            ```python
            pure = nnx.BatchNorm(2, ctx=nnx.context(0)).partition()
            x = jnp.arange(8.0).reshape(4, 2)
            y, new = pure.apply(x, use_running_average=False)
            assert isinstance(new, nnx.Pure) and y.shape == (4, 2)
            assert float(new.states[("mean",)].value.sum()) > 0.0
            ```
        """
        return ApplyCaller(self[1], self._state_tuple(), ())

    @property
    def call(self) -> _OutputOnly[M]:
        """Like `apply`, returning only the output: `pure.call.method(*args)`.

        State updates made by the call are discarded. Attribute and item access chain
        as for `apply`.

        Returns:
            A caller: calling it returns the method's output.

        Example:
            ```python
            pure = nnx.Linear(2, 3, ctx=nnx.context(0)).partition()
            assert pure.call(jnp.ones((4, 2))).shape == (4, 3)
            ```
        """
        return _OutputOnly(self.apply)

    def get_state(self) -> State[Any]:
        """The states merged into one State (`nnx.State.merge(*states)`).

        Returns:
            One State with every entry.
        """
        return State.merge(*self._state_tuple())

    @overload
    def filter(self, first: type[V1], /) -> State[V1]: ...
    @overload
    def filter(self, first: Filter, /) -> State[Any]: ...
    @overload
    def filter(self, first: type[V1], second: type[V2], /) -> tuple[State[V1], State[V2]]: ...
    @overload
    def filter(self, first: Filter, second: Filter, /) -> tuple[State[Any], State[Any]]: ...
    @overload
    def filter(
        self, first: type[V1], second: type[V2], third: type[V3], /
    ) -> tuple[State[V1], State[V2], State[V3]]: ...
    @overload
    def filter(
        self, first: Filter, second: Filter, third: Filter, /, *filters: Filter
    ) -> tuple[State[Any], ...]: ...
    def filter(self, first: Filter, /, *filters: Filter) -> State[Any] | tuple[State[Any], ...]:
        """The entries each filter selects, as `Module.filter` (non-exhaustive).

        Args:
            first: The first filter.
            *filters: More filters.

        Returns:
            A State for one filter, else a tuple of States.
        """
        return self.get_state().filter(first, *filters)

    def partition(self, *filters: Filter) -> Pure[Any, M]:
        """Re-partition the states by other filters, as `Module.partition`.

        Args:
            *filters: Filters that must cover every entry. None: one State.

        Returns:
            A new Pure with the same ModuleDef.

        Raises:
            ValueError: If some entry matches no filter.

        Example:
            ```python
            pure = nnx.BatchNorm(2, ctx=nnx.context(0)).partition()
            (params, stats), moduledef = pure.partition(nnx.Param, nnx.BatchStat)
            assert set(stats) == {("mean",), ("var",)}
            assert moduledef is pure.moduledef
            ```
        """
        state = self.get_state()
        if not filters:
            return Pure(state, self[1])
        first, *rest = filters
        return Pure(state.partition(first, *rest), self[1])

    def pop_state(self, first: Filter, /, *filters: Filter) -> tuple[Any, Pure[State[Any], M]]:
        """Split off the entries the filters select: `(popped, Pure(rest))`.

        Unlike `Module.pop_state` nothing is changed in place: the rest comes back as
        a new Pure (one State), e.g. to merge without the captured intermediates.

        Args:
            first: The first filter.
            *filters: More filters: one popped State per filter.

        Returns:
            `(popped, rest)`: a State (a tuple of States for several filters), and a
            Pure holding the entries no filter matched.

        Example:
            ```python
            pure = nnx.BatchNorm(2, ctx=nnx.context(0)).partition()
            stats, rest = pure.pop_state(nnx.BatchStat)
            assert set(stats) == {("mean",), ("var",)}
            assert set(rest.states) == {("bias",), ("scale",)}
            ```
        """
        state = self.get_state()
        predicates = check_filters((first, *filters))
        *popped, rest = split_pairs(
            state._mapping.items(), (*predicates, _everything), exhaustive=True
        )
        return (popped[0] if len(popped) == 1 else tuple(popped)), Pure(rest, self[1])

    def update_state(self, updates: State[Any] | tuple[State[Any], ...]) -> Pure[State[Any], M]:
        """A new Pure whose state is this one's with `updates` applied.

        Args:
            updates: A State or a tuple of States; for a path in both, the update
                wins; new paths are added.

        Returns:
            A new Pure (one State, the same ModuleDef); this one is unchanged.

        Example:
            ```python
            pure = nnx.Linear(2, 3, ctx=nnx.context(0)).partition()
            zeros = jax.tree.map(jnp.zeros_like, pure.filter(nnx.Param))
            new = pure.update_state(zeros)
            assert float(jnp.abs(new.merge().kernel).sum()) == 0.0
            assert float(jnp.abs(pure.merge().kernel).sum()) > 0.0
            ```
        """
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
    """`nnx.PureModule[M]`: the type of `module.partition()` for a module of type `M`, an
    `nnx.Pure` whose states are a State or a tuple of States (annotate the pytree a
    `jax.jit` step takes and returns with it)."""
else:
    PureModule = Pure[State | tuple, ModuleT]

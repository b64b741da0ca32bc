"""The Module class: a plain, mutable Python object whose attribute reads unbox
Variables and whose assignments go through `_writes.set_attribute`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, overload

from typing_extensions import Self, TypeVar

from .._call_checks import wrap_checked_methods
from .._compat import current_trace
from .._filters import Filter, Path, check_filters
from .._module_object import ModuleObject, claim_variables, init_internals, vars_of
from .._nodes import MODULE, kind_of
from .._repr import indent, repr_value
from .._state import State, split_pairs
from .._treescope import render_constructor, render_mapping
from .._variables import Container, Node, Variable, is_node_box, is_variable
from ._graph import flatten_graph, module_items
from ._moduledef import ModuleDef, combine_states, is_tuple, owned_copy, unflatten
from ._pure import CloneCaller, Pure
from ._writes import (
    delete_attribute,
    pop_state_entries,
    set_attribute,
    update_state_entries,
    write_variable,
)

_object_getattribute = object.__getattribute__

A = TypeVar("A")
V1 = TypeVar("V1")
V2 = TypeVar("V2")
V3 = TypeVar("V3")
ModuleT = TypeVar("ModuleT", bound="Module")


_repr_state = threading.local()


class _NoOrigClass:
    """`typing` sets `__orig_class__` on an instance made through a subscripted
    generic (`nnx.Sequence[nnx.Linear](...)`). A Module keeps no such attribute: it
    would become a static field and make two equal models' ModuleDefs differ. Raising
    AttributeError here makes `typing` skip it."""

    def __get__(self, obj: object, owner: type[Any] | None = None) -> Any:
        raise AttributeError("__orig_class__")

    def __set__(self, obj: object, value: object) -> None:
        raise AttributeError("Modules do not record __orig_class__")


class Module(ModuleObject):
    """Base class of every nnx module: a plain, mutable Python object.

    Subclass it and assign attributes in `__init__` (layers take their RNG keys from a
    keyword argument `ctx`, an `nnx.Context`). What an attribute holds decides its role:

    - **state**: a Variable (`nnx.Param`, `nnx.BatchStat`, a subclass of your own), a
      JAX or NumPy array, or another registered node;
    - **submodule**: another Module, shared by reference (the same submodule under
      two attributes, and cycles, survive `partition`/`merge` and every transform);
    - **static**: anything else (ints, strings, functions, dtypes), kept in the
      `ModuleDef`.

    Reading an attribute that holds a Variable gives its value (an array, not the
    Variable); assigning a raw value to it replaces the value and keeps the Variable's
    kind and metadata (`self.count += 1` keeps a `Count`). Assigning a Variable stores
    a copy the module owns. A plain `list`, `tuple` or `dict` holding Modules,
    Variables or arrays raises `TypeError` (use `nnx.Sequence`, `nnx.Dict`).

    A module belongs to the JAX trace it was created in: mutating it under another
    trace (inside a `jax.jit` it was not passed into, ...) raises
    `nnx.TraceContextError`. Pass it through an nnx transform (`nnx.jit`, `nnx.grad`,
    ...) or split it with `partition` instead. Class-level annotations are optional;
    they type the reads and drive the run-time shape checks (`nnx.shape_checks`).

    Example:
        ```python
        class Count(nnx.Variable[jax.Array]):  # a kind of state of its own
            pass


        class MLP(nnx.Module):
            def __init__(self, din: int, dout: int, *, ctx: nnx.Context) -> None:
                self.hidden = nnx.Linear(din, 8, ctx=ctx)  # submodules
                self.out = nnx.Linear(8, dout, ctx=ctx)
                self.calls = Count(jnp.array(0))  # state
                self.dout = dout  # static

            def __call__(self, x: jax.Array) -> jax.Array:
                self.calls += 1  # the read unboxes, the write keeps the Count
                return self.out(nnx.relu(self.hidden(x)))


        model = MLP(3, 2, ctx=nnx.context(0))
        assert model(jnp.ones((4, 3))).shape == (4, 2)
        assert model.calls == 1 and isinstance(model.hidden.kernel, jax.Array)
        assert set(model.get_state()) == {
            ("calls",), ("hidden", "bias"), ("hidden", "kernel"),
            ("out", "bias"), ("out", "kernel"),
        }
        try:
            model.extra = [nnx.Linear(2, 2, ctx=nnx.context(1))]
        except TypeError:
            model.extra = nnx.Sequence([nnx.Linear(2, 2, ctx=nnx.context(1))])
        else:
            raise AssertionError("expected a TypeError")
        ```
    """

    __slots__ = ()  # the private slots are ModuleObject's (_module_object.py)

    _nnx_int_keys: bool = False  # Sequence: digit attribute names are int path keys

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # methods annotated with array types check their calls (zero cost otherwise)
        wrap_checked_methods(cls)

    if not TYPE_CHECKING:
        __orig_class__ = _NoOrigClass()

        def __new__(cls, /, *args, **kwargs):
            module = object.__new__(cls)
            init_internals(module, current_trace())
            return module

        # `vars(module)` and `module.__dict__` come here (internal code reads the dict
        # with `vars_of`): the Variables that merge left without an owner get it now.
        __dict__ = property(claim_variables)

        def __getattribute__(self, name):
            value = _object_getattribute(self, name)
            if isinstance(value, Container):
                return value._value
            return value

        def __setattr__(self, name, value):
            set_attribute(self, name, value)

        def __delattr__(self, name):
            delete_attribute(self, name)

    # -- functional API ---------------------------------------------------------------
    # The result is a `Pure` (a `(states, moduledef)` tuple): unpack it, or use its
    # methods. A type filter keeps its kind; `(nnx.Param, ...)` keeps Param's. With
    # several filters it is typed as the plain tuple: mypy loses the item types when a
    # generic tuple *subclass* is unpacked in a nested target, which is the idiom here
    # (`(params, rest), moduledef = model.partition(nnx.Param, ...)`; python/mypy#16310).
    @overload
    def partition(self) -> Pure[State[Any], Self]: ...
    @overload
    def partition(self, first: type[V1], /) -> Pure[State[V1], Self]: ...
    @overload
    def partition(self, first: Filter, /) -> Pure[State[Any], Self]: ...
    @overload
    def partition(
        self, first: type[V1], second: type[V2], /
    ) -> tuple[tuple[State[V1], State[V2]], ModuleDef[Self]]: ...
    @overload
    def partition(
        self, first: type[V1], second: Filter, /
    ) -> tuple[tuple[State[V1], State[Any]], ModuleDef[Self]]: ...
    @overload
    def partition(
        self, first: Filter, second: Filter, /
    ) -> tuple[tuple[State[Any], State[Any]], ModuleDef[Self]]: ...
    @overload
    def partition(
        self, first: type[V1], second: type[V2], third: type[V3], /
    ) -> tuple[tuple[State[V1], State[V2], State[V3]], ModuleDef[Self]]: ...
    @overload
    def partition(
        self, first: type[V1], second: type[V2], third: Filter, /
    ) -> tuple[tuple[State[V1], State[V2], State[Any]], ModuleDef[Self]]: ...
    @overload
    def partition(
        self, first: Filter, second: Filter, third: Filter, /, *filters: Filter
    ) -> tuple[tuple[State[Any], ...], ModuleDef[Self]]: ...
    def partition(self, *filters: Filter) -> tuple[Any, ModuleDef[Self]]:
        """Split the module graph into its state and its static structure.

        No filter: one State with every entry. One filter: one State, which must hold
        every entry. Several: a tuple of States, each entry going to the first filter
        that matches it; every entry must be matched (end with `...` to catch the
        rest). The States hold copies of the Variables (a snapshot: later changes to
        the module do not show in them); shared submodules appear once. The module is
        not changed. `moduledef.merge(*states)` rebuilds an equal module.

        Args:
            *filters: Filters (a Variable class, a collection name, `...`, a
                predicate, ... see `nnx.Filter`).

        Returns:
            An `nnx.Pure`, the pair `(states, moduledef)`: `states` is a State, or a
            tuple of States with two or more filters.

        Raises:
            ValueError: If some entry matches no filter ("Non-exhaustive filters"),
                or `...` is not the last filter.
            TypeError: If a filter is not a valid filter.

        Example:
            ```python
            model = nnx.BatchNorm(3, ctx=nnx.context(0))
            state, moduledef = model.partition()
            assert set(state) == {("bias",), ("mean",), ("scale",), ("var",)}
            (params, stats), moduledef = model.partition(nnx.Param, nnx.BatchStat)
            assert set(stats) == {("mean",), ("var",)}
            copy = moduledef.merge(params, stats)
            assert type(copy) is nnx.BatchNorm and copy is not model
            try:
                model.partition(nnx.Param)  # the BatchStats are left over
            except ValueError:
                pass
            else:
                raise AssertionError("expected a ValueError")
            ```
        """
        moduledef, paths, leaves = flatten_graph(self)
        if not filters:
            return Pure(State._from_sorted(dict(zip(paths, leaves))), moduledef)
        states = split_pairs(zip(paths, leaves), check_filters(filters), exhaustive=True)
        return Pure(states[0] if len(states) == 1 else states, moduledef)

    def get_state(self) -> State[Any]:
        """Every state entry, as one State: `partition()`'s State without the
        ModuleDef.

        Returns:
            A State mapping each path to a copy of its entry.

        Example:
            ```python
            model = nnx.Linear(2, 3, ctx=nnx.context(0))
            state = model.get_state()
            assert set(state) == {("bias",), ("kernel",)}
            assert state[("kernel",)].value.shape == (2, 3)
            ```
        """
        _, paths, leaves = flatten_graph(self)
        return State._from_sorted(dict(zip(paths, leaves)))

    def get_module_def(self) -> ModuleDef[Self]:
        """The ModuleDef alone: `partition()`'s static half, without copying the state.

        Returns:
            The ModuleDef of this module graph (equal to `partition()[1]`).

        Example:
            ```python
            model = nnx.Linear(2, 3, ctx=nnx.context(0))
            moduledef = model.get_module_def()
            assert moduledef == model.partition()[1] and moduledef.type is nnx.Linear
            ```
        """
        return flatten_graph(self, copy_leaves=False)[0]

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
        """The state entries each filter selects; entries matching none are left out.

        Unlike `partition`, the filters need not cover every entry; an entry goes to
        the first filter that matches it. The module is not changed.

        Args:
            first: The first filter.
            *filters: More filters: one State is returned per filter.

        Returns:
            A State for one filter, else a tuple of States, one per filter.

        Raises:
            TypeError: If a filter is not a valid filter.

        Example:
            ```python
            model = nnx.BatchNorm(3, ctx=nnx.context(0))
            assert set(model.filter(nnx.BatchStat)) == {("mean",), ("var",)}
            params, stats = model.filter("params", "batch_stats")
            assert set(params) == {("bias",), ("scale",)}
            ```
        """
        _, paths, leaves = flatten_graph(self)
        states = split_pairs(zip(paths, leaves), check_filters((first, *filters)), exhaustive=False)
        return states[0] if len(states) == 1 else states

    @overload
    def pop_state(self, first: type[V1], /) -> State[V1]: ...
    @overload
    def pop_state(self, first: Filter, /) -> State[Any]: ...
    @overload
    def pop_state(self, first: type[V1], second: type[V2], /) -> tuple[State[V1], State[V2]]: ...
    @overload
    def pop_state(self, first: Filter, second: Filter, /) -> tuple[State[Any], State[Any]]: ...
    @overload
    def pop_state(
        self, first: type[V1], second: type[V2], third: type[V3], /
    ) -> tuple[State[V1], State[V2], State[V3]]: ...
    @overload
    def pop_state(
        self, first: Filter, second: Filter, third: Filter, /, *filters: Filter
    ) -> tuple[State[Any], ...]: ...
    def pop_state(self, *filters: Filter) -> State[Any] | tuple[State[Any], ...]:
        """Remove the state entries the filters select and return them.

        Each entry goes to the first filter that matches it; entries matching none
        stay. The matching attributes are deleted from their modules, in place (a
        shared submodule is visited once; cycles are fine). Typically used for
        captured `nnx.Intermediate`s.

        Args:
            *filters: One or more filters.

        Returns:
            A State for one filter, else a tuple of States, one per filter.

        Raises:
            ValueError: If no filter is given.
            nnx.TraceContextError: If a module losing an entry belongs to another
                JAX trace.

        Example:
            ```python
            class Tap(nnx.Module):
                def __init__(self, *, ctx: nnx.Context) -> None:
                    self.linear = nnx.Linear(3, 2, ctx=ctx)

                def __call__(self, x: jax.Array) -> jax.Array:
                    self.y = nnx.Intermediate(self.linear(x))  # capture
                    return self.y


            tap = Tap(ctx=nnx.context(0))
            tap(jnp.ones((1, 3)))
            captured = tap.pop_state(nnx.Intermediate)
            assert set(captured) == {("y",)} and not hasattr(tap, "y")
            ```
        """
        if not filters:
            raise ValueError(
                "pop_state expects at least one filter, e.g. pop_state(nnx.Intermediate)"
            )
        return pop_state_entries(self, check_filters(filters))

    def update_state(
        self, updates: State[Any] | tuple[State[Any], ...] | Pure[Any, Any] | Module
    ) -> None:
        """Write state entries into this module graph, in place.

        Existing entries get the new values (a Variable update must be of the kind of
        the Variable it replaces); a path to an absent attribute of an existing module
        creates it. Paths not in `updates` are left as they are. Every path is checked
        before anything changes; no run-time shape check runs (the values are
        restored, not computed).

        Args:
            updates: A State, a tuple of States, an `nnx.Pure` (its states), or a
                module of exactly this type (its whole state).

        Raises:
            ValueError: If a path leads through a missing submodule (updates add
                entries, not submodules), would replace a submodule, or a Variable's
                kind differs from the entry's.
            TypeError: If `updates` is a module of another type, or a value is not
                state (an array, a Variable or a node).
            nnx.TraceContextError: If a module written to belongs to another trace.

        Example:
            ```python
            model = nnx.Linear(2, 3, ctx=nnx.context(0))
            zeros = jax.tree.map(jnp.zeros_like, model.filter(nnx.Param))
            model.update_state(zeros)
            assert float(jnp.abs(model.kernel).sum()) == 0.0
            ```
        """
        if isinstance(updates, Module):
            if type(updates) is not type(self):
                raise TypeError(
                    f"update_state expects a {type(self).__name__}, got a {type(updates).__name__}"
                )
            mapping = combine_states((updates.get_state(),))
        elif isinstance(updates, Pure):
            mapping = combine_states(updates._state_tuple())
        else:
            mapping = combine_states((updates,))
        update_state_entries(self, mapping)

    def clone(self) -> Self:
        """A deep copy of the module graph: new modules and Variables, same structure.

        Shared submodules stay shared (and cycles cycles) within the copy; arrays are
        immutable, so they are not copied. Mutating the copy leaves this module as it
        is. Equivalent to `self.partition().merge()`.

        Returns:
            A new module of the same type.

        Example:
            ```python
            model = nnx.Linear(2, 3, ctx=nnx.context(0))
            copy = model.clone()
            copy.kernel = jnp.zeros((2, 3))
            assert copy is not model and float(jnp.abs(model.kernel).sum()) > 0
            ```
        """
        moduledef, paths, leaves = flatten_graph(self, copy_leaves=False)
        return unflatten(moduledef, dict(zip(paths, leaves)))  # type: ignore[no-any-return]

    @property
    def apply(self) -> CloneCaller[Self, Self]:
        """Call a method on a copy: `module.apply.method(*args)` returns `(out, copy)`.

        The copy holds the updated state (counters, intermediates, ...); this module
        is left untouched (as in NNX 0.0.8). `module.apply(*args)` calls `__call__`;
        attribute and item access chain to any depth before the call:
        `module.apply.blocks[0].linear(x)` (the copy returned is the whole module).

        Returns:
            An `nnx.CloneCaller` for this module.

        Example:
            ```python
            model = nnx.BatchNorm(2, ctx=nnx.context(0))
            x = jnp.arange(8.0).reshape(4, 2)
            y, updated = model.apply(x, use_running_average=False)
            assert y.shape == (4, 2) and type(updated) is nnx.BatchNorm
            assert float(jnp.abs(model.mean).sum()) == 0.0  # untouched
            assert float(jnp.abs(updated.mean).sum()) > 0.0
            ```
        """
        moduledef, paths, leaves = flatten_graph(self, copy_leaves=False)
        return CloneCaller(moduledef, (State._from_sorted(dict(zip(paths, leaves))),), ())

    # -- helpers --------------------------------------------------------------------------
    def sow(self, variable_type: type[Variable[Any]], name: str, value: Any) -> None:
        """Append `value` to the tuple held by the Variable attribute `name`.

        If the attribute is absent it is created as `variable_type((value,))`; the
        usual use is capturing intermediate values with `nnx.Intermediate` (then
        removed with `pop_state(nnx.Intermediate)`).

        Args:
            variable_type: The Variable class of the attribute.
            name: The attribute name.
            value: The value to append.

        Raises:
            ValueError: If the attribute exists but is not a Variable, not exactly of
                type `variable_type`, or does not hold a tuple.

        Example:
            ```python
            model = nnx.Linear(2, 2, ctx=nnx.context(0))
            model.sow(nnx.Intermediate, "seen", jnp.ones(2))
            model.sow(nnx.Intermediate, "seen", jnp.zeros(2))
            assert len(model.seen) == 2
            assert set(model.pop_state(nnx.Intermediate)) == {("seen",)}
            ```
        """
        d = vars_of(self)
        if name not in d:
            setattr(self, name, variable_type((value,)))
            return
        current: object = d[name]
        if not is_variable(current):
            raise ValueError(
                f"{type(self).__name__}.sow: expected {name!r} to be a Variable, got "
                f"{type(current).__name__}"
            )
        if type(current) is not variable_type:
            raise ValueError(
                f"{type(self).__name__}.sow: expected {name!r} to be of type "
                f"{variable_type.__name__!r}, got {type(current).__name__!r}"
            )
        held: Any = current._value
        if not is_tuple(held):
            raise ValueError(
                f"{type(self).__name__}.sow: expected {name!r} to be a tuple, got "
                f"{type(held).__name__}"
            )
        setattr(self, name, (*held, value))

    def for_each(self, module_type: type[ModuleT], fn: Callable[[ModuleT], None]) -> None:
        """Call `fn(m)` on every module `m` of the graph that is a `module_type`.

        The walk is that of `modules()`: depth first, this module included, each
        module once.

        Args:
            module_type: The class to select (subclasses included).
            fn: Called with each selected module; its result is ignored.

        Example:
            ```python
            model = nnx.Sequence([nnx.Linear(2, 2, ctx=nnx.context(i)) for i in range(3)])
            found: list[nnx.Linear] = []
            model.for_each(nnx.Linear, found.append)
            assert len(found) == 3
            ```
        """
        for _, module in self.modules():
            if isinstance(module, module_type):
                fn(module)

    def modules(self) -> Iterator[tuple[Path, Module]]:
        """Every module of the graph with its path, depth first.

        This module comes first, with the path `()`; a shared submodule is yielded
        once, under the first path it is reached by.

        Returns:
            An iterator of `(path, module)` pairs.

        Example:
            ```python
            linear = nnx.Linear(2, 2, ctx=nnx.context(0))
            model = nnx.Sequence([linear, linear])  # shared
            assert [path for path, _ in model.modules()] == [(), (0,)]
            ```
        """
        seen: set[int] = set()

        def visit(module: Module, prefix: Path) -> Iterator[tuple[Path, Module]]:
            seen.add(id(module))
            yield prefix, module
            for key, _, value in module_items(module):
                if kind_of(value) == MODULE and id(value) not in seen:
                    yield from visit(value, (*prefix, key))

        return visit(self, ())

    # -- internals ----------------------------------------------------------------------
    def _nnx_write_variable(self, name: str, variable: Node[Any], value: Any) -> None:
        """`variable.value = value` on a Variable this module owns (the Variable's
        setter calls this)."""
        write_variable(self, name, variable, value)

    def __getstate__(self) -> dict[str, Any]:
        return dict(vars_of(self))

    def __setstate__(self, state: dict[str, Any]) -> None:
        d = vars_of(self)
        for name, value in state.items():
            d[name] = owned_copy(value, self) if is_node_box(value) else value

    def __treescope_repr__(self, path: str | None, subtree_renderer: Any) -> Any:
        """treescope's rich repr: attributes with Variables boxed (kind visible);
        `nnx.Sequence` items by position, `nnx.Dict` items by key."""
        attributes = dict(vars_of(self))
        if type(self)._nnx_int_keys:
            items = {int(k): v for k, v in attributes.items() if k.isdigit()}
            return render_mapping(self, dict(sorted(items.items())), path, subtree_renderer)
        if isinstance(self, Mapping):  # nnx.Dict
            return render_mapping(self, attributes, path, subtree_renderer)
        return render_constructor(self, attributes, path, subtree_renderer)

    def __repr__(self) -> str:
        active: set[int] | None = getattr(_repr_state, "active", None)
        top = active is None
        if active is None:
            active = set[int]()
            _repr_state.active = active
        try:
            if id(self) in active:
                return f"{type(self).__name__}(...)"
            active.add(id(self))
            lines: list[str] = []
            for key, _, value in module_items(self):
                if isinstance(value, Container):
                    text = repr(value)  # pyright: ignore[reportUnknownArgumentType]
                else:
                    text = repr_value(value)
                lines.append(f"{key}={indent(text)}")
            if not lines:
                return f"{type(self).__name__}()"
            return f"{type(self).__name__}(\n  " + ",\n  ".join(lines) + "\n)"
        finally:
            if top:
                del _repr_state.active

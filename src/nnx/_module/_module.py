"""The Module class: a plain, mutable Python object whose attribute reads unbox
Variables and whose assignments go through `_writes.set_attribute`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, overload

from typing_extensions import Self, TypeVar

from .._compat import current_trace
from .._filters import Filter, Path, check_filters
from .._module_object import ModuleObject, init_internals, vars_of
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

    Attributes that hold Variables (`nnx.Param`, ...), arrays or other nodes are the
    module's state; attributes that hold Modules are submodules (shared references and
    cycles are fine); anything else is static. Reading an attribute that holds a
    Variable gives its value; assigning a raw value to it updates the value and keeps
    the Variable's kind and metadata.
    """

    __slots__ = ()  # the private slots are ModuleObject's (_module_object.py)

    _nnx_int_keys: bool = False  # Sequence: digit attribute names are int path keys

    if not TYPE_CHECKING:
        __orig_class__ = _NoOrigClass()

        def __new__(cls, /, *args, **kwargs):
            module = object.__new__(cls)
            init_internals(module, current_trace())
            return module

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
    @overload
    def partition(self) -> tuple[State[Any], ModuleDef[Self]]: ...
    @overload
    def partition(self, first: type[V1], /) -> tuple[State[V1], ModuleDef[Self]]: ...
    @overload
    def partition(self, first: Filter, /) -> tuple[State[Any], ModuleDef[Self]]: ...
    @overload
    def partition(
        self, first: type[V1], second: type[V2], /
    ) -> tuple[tuple[State[V1], State[V2]], ModuleDef[Self]]: ...
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
        self, first: Filter, second: Filter, third: Filter, /, *filters: Filter
    ) -> tuple[tuple[State[Any], ...], ModuleDef[Self]]: ...
    def partition(self, *filters: Filter) -> tuple[Any, ModuleDef[Self]]:
        """Split into `(states, moduledef)` (an `nnx.Pure`, a tuple with `.merge()`).

        No filter: one State with every entry. One filter: one State, which must hold
        every entry. Several: a tuple of States, each entry going to the first filter
        that matches it, every entry matched (`...` last catches the rest).
        """
        moduledef, paths, leaves = flatten_graph(self)
        if not filters:
            return Pure(State._from_sorted(dict(zip(paths, leaves))), moduledef)
        states = split_pairs(zip(paths, leaves), check_filters(filters), exhaustive=True)
        return Pure(states[0] if len(states) == 1 else states, moduledef)

    def get_state(self) -> State[Any]:
        """Every state entry, as one State."""
        _, paths, leaves = flatten_graph(self)
        return State._from_sorted(dict(zip(paths, leaves)))

    def get_module_def(self) -> ModuleDef[Self]:
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
        """The entries matching each filter (entries matching none are left out)."""
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
        """Remove the entries matching the filters and return them as State(s)."""
        if not filters:
            raise ValueError(
                "pop_state expects at least one filter, e.g. pop_state(nnx.Intermediate)"
            )
        return pop_state_entries(self, check_filters(filters))

    def update_state(
        self, updates: State[Any] | tuple[State[Any], ...] | Pure[Any, Any] | Module
    ) -> None:
        """Write state entries back into this module graph, in place.

        `updates` is a State, a tuple of States, a `Pure`, or a Module of the same
        type. Existing Variables get new values (their kind must match); new entries
        become new attributes. Every path is checked before anything changes.
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
        """A deep copy of the module graph (sharing and cycles kept)."""
        moduledef, paths, leaves = flatten_graph(self, copy_leaves=False)
        return unflatten(moduledef, dict(zip(paths, leaves)))  # type: ignore[no-any-return]

    @property
    def apply(self) -> CloneCaller[Self, Self]:
        """`module.apply.method(*args)`: call on a copy; returns `(out, copy)`, the copy
        holding the updated state, and leaves this module untouched (as NNX 0.0.8).
        Attribute and item access chain: `module.apply.blocks[0].linear(x)`."""
        moduledef, paths, leaves = flatten_graph(self, copy_leaves=False)
        return CloneCaller(moduledef, (State._from_sorted(dict(zip(paths, leaves))),), ())

    # -- helpers --------------------------------------------------------------------------
    def sow(self, variable_type: type[Variable[Any]], name: str, value: Any) -> None:
        """Append `value` to the tuple held by Variable `name` (created if absent)."""
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
        """Call `fn(m)` on every module `m` of the graph (each once) that is a
        `module_type`, depth first."""
        for _, module in self.modules():
            if isinstance(module, module_type):
                fn(module)

    def modules(self) -> Iterator[tuple[Path, Module]]:
        """`(path, module)` for every module of the graph, each once, depth first."""
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
            d[name] = owned_copy(value, self, name) if is_node_box(value) else value

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

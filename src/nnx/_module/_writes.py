"""Changing a module: checked attribute assignment, `pop_state`, `update_state` and the
write-back of a transform's result (`apply_graph_update`), plus the guards against
state hidden in static attributes and tracers leaking through them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from typing_extensions import TypeIs, TypeVar

from .._compat import Tracer
from .._filters import Path, Predicate
from .._jaxtyping_internals import Bindings
from .._module_object import ModuleObject, bump, check_trace, forget_dims, vars_of
from .._nodes import ARRAY, BOXED_NODE, MODULE, MUTABLE_STATIC, STATIC, kind_of
from .._shape_checks import AttrSpec, check_assignment, class_specs, commit, shape_checks_enabled
from .._state import State
from .._variables import Container, Node, Static, is_container, is_node_box
from ._graph import layout_of, module_items
from ._moduledef import (
    MISSING,
    MSG_NOT_STATE,
    ModuleDef,
    attr_name,
    combine_states,
    freeze_static,
    is_dict,
    is_sequence,
    is_set,
    owned_copy,
)

if TYPE_CHECKING:
    from ._module import Module

A = TypeVar("A")

MSG_KIND_MISMATCH: Final = (
    "Cannot assign a {new} to {owner}.{name}, which holds a {old}: a Variable keeps "
    "its kind. Assign the raw value to update it (`{owner_var}.{name} = x`), or "
    "`del {owner_var}.{name}` first to change its kind."
)
MSG_MODULE_INTO_CONTAINER: Final = (
    "Cannot assign a Module ({new}) to {owner}.{name}, which holds a {old}. "
    "`del {owner_var}.{name}` first if you mean to replace it with a submodule."
)
MSG_STATIC_CONTAINER: Final = (
    "{owner}.{name}: a {kind} holding {what} would be a static attribute, so that "
    "state would be silently left out of partition() and every transform. Use "
    "nnx.Sequence([...]) or nnx.Dict({{...}}) for submodules, or wrap arrays in "
    "nnx.Node(...) / a Variable."
)


_CONTAINERS: Final = (dict, list, tuple, set, frozenset)


def _find_state_in_static(value: Any) -> str | None:
    """What state a list/tuple/dict/set holds, at any depth, if any (it would be lost)."""
    if not isinstance(value, _CONTAINERS):
        return None  # the common case (an int, a str, a function): nothing to walk
    stack: list[Any] = [value]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:  # shared or cyclic containers: look once
            continue
        seen.add(id(current))
        items: Iterable[object]
        if is_dict(current):
            items = current.values()
        elif is_sequence(current) or is_set(current):
            items = current
        else:
            continue
        for item in items:
            kind = kind_of(item)
            if kind == MODULE:
                return f"a {type(item).__name__} Module"
            if kind in (BOXED_NODE, ARRAY):
                return f"a {type(item).__name__}"
            stack.append(item)
    return None


MSG_TRACED_STATIC: Final = (
    "{transform}: {where} is a static attribute (not state) and now holds a traced "
    "value ({found}), set inside the transform. Static attributes are not returned "
    "by transforms, so the tracer would leak onto the module and fail later, far from "
    "here. Keep traced values in state: an array attribute or a Variable "
    "(e.g. `self.scale = nnx.Variable(x)`), or return them from the function."
)
_MAX_STATIC_OBJECTS: Final = 10_000


def _find_tracer(value: Any) -> str | None:
    """A tracer held by a static value (in containers, dataclasses, SimpleNamespaces,
    functools.partials, ...), described; None if there is none."""
    stack: list[Any] = [value]
    seen: set[int] = set()
    while stack and len(seen) < _MAX_STATIC_OBJECTS:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if _is_tracer(current):
            return repr(current)
        if _is_partial(current):
            stack.extend((*current.args, *current.keywords.values()))
        elif isinstance(current, (str, bytes, int, float, complex, type, ModuleObject)) or callable(
            current
        ):
            continue
        elif is_dict(current):
            stack.extend(current.values())
        elif is_sequence(current) or is_set(current):
            stack.extend(current)
        else:
            attrs: Any = getattr(current, "__dict__", None)
            if is_dict(attrs):
                stack.extend(attrs.values())
    return None


def _is_module(x: object) -> TypeIs[Module]:
    """A Module (ModuleObject has no other subclass; it is checked instead of Module,
    which this file cannot import at run time)."""
    return isinstance(x, ModuleObject)


def _is_tracer(x: object) -> bool:
    return isinstance(x, Tracer)


def _is_partial(x: object) -> TypeIs[functools.partial[Any]]:
    return isinstance(x, functools.partial)


def refuse_traced_statics(root: Module, transform: str) -> None:
    """Raise if a static attribute of the graph under `root` holds a tracer. Called
    inside a transform's traced function (at trace time only)."""
    for path, module in root.modules():
        for name, value in layout_of(module).statics:
            found = _find_tracer(value)
            if found is not None:
                where = type(root).__name__ + "".join(f".{k}" for k in (*path, name))
                raise TypeError(
                    MSG_TRACED_STATIC.format(transform=transform, where=where, found=found)
                )


WritePlan: TypeAlias = "tuple[Container[Any] | None, Any, bool]"
"""A checked write, ready to apply: `(box, payload, structural)`. When `box` is not
None, `payload` becomes its value in place; otherwise `payload` is the object to store
under the attribute. `structural` says whether the module's structure changes (a new
or replaced object rather than a new value), which renews its version."""


def plan_write(module: Module, name: str, value: Any, d: dict[str, Any]) -> WritePlan:
    """Check `module.<name> = value` (the kind of Variable it replaces, state hidden in
    a static value) without changing anything, and plan it. Shape checks come after
    this, on the planned write: kind before shape everywhere."""
    box: object = d.get(name, MISSING)
    value_kind = kind_of(value)
    if is_container(box):
        if value_kind == MODULE:
            raise TypeError(
                MSG_MODULE_INTO_CONTAINER.format(
                    new=type(value).__name__,
                    owner=type(module).__name__,
                    owner_var="module",
                    name=name,
                    old=box.describe(),
                )
            )
        if is_container(value):
            new_box = value
            if type(new_box) is not type(box):
                raise ValueError(
                    MSG_KIND_MISMATCH.format(
                        new=new_box.describe(),
                        old=box.describe(),
                        owner=type(module).__name__,
                        owner_var="module",
                        name=name,
                    )
                )
            if isinstance(box, Static):
                return None, new_box, True
            if new_box._metadata == box._metadata:
                return box, new_box._value, False
            assert is_node_box(new_box)
            return None, owned_copy(new_box, module), True
        if isinstance(box, Static):
            return None, box.replace(value=value), True
        return box, value, False
    if is_node_box(value):
        return None, owned_copy(value, module), True
    if value_kind in (STATIC, MUTABLE_STATIC):
        what = _find_state_in_static(value)
        if what is not None:
            raise TypeError(
                MSG_STATIC_CONTAINER.format(
                    owner=type(module).__name__, name=name, kind=type(value).__name__, what=what
                )
            )
    structural = not (value_kind == ARRAY and box is not MISSING and kind_of(box) == ARRAY)
    return None, value, structural


class _ClassInfo:
    """What `__setattr__` needs to know about a Module class, computed once."""

    __slots__ = ("descriptors", "field_containers")

    def __init__(self, cls: type[Module]) -> None:
        self.descriptors = frozenset(
            name
            for klass in cls.__mro__
            for name, attr in vars(klass).items()
            if hasattr(attr.__class__, "__set__") and not name.startswith("_nnx")
        )
        found: dict[str, Callable[[Any], Any]] | None = getattr(cls, "_nnx_field_containers", None)
        self.field_containers = found or {}


_class_infos: dict[type[Any], _ClassInfo] = {}


def shape_check(
    module: Module, name: str, value: Any, old: Any
) -> tuple[AttrSpec | None, Bindings | None]:
    """Check `module.<name> = value` against its annotation, if it has one and checks
    are on: `(spec, bindings to commit after the write)`; raises ShapeCheckError."""
    if not shape_checks_enabled():
        forget_dims(module)  # unchecked values: rebuild the bindings when checks resume
        return None, None
    spec = class_specs(type(module)).get(name)
    if spec is None:
        return None, None
    return spec, check_assignment(module, spec, value, old)


def _wrap_field(module: Module, name: str, wrap: Callable[[Any], Any], value: Any) -> Any:
    """The value of an `nnx.dataclass` field declared with `param_field()`,
    `var_field(kind)`, `node_field()` or `static_field()`, in its container; a value
    that already is a container must be of that kind."""
    try:
        return wrap(value)
    except ValueError as e:
        raise ValueError(f"{type(module).__name__}.{name} (a dataclass field): {e}") from None


def set_attribute(module: Module, name: str, value: Any) -> None:
    """`module.<name> = value`: trace check, plan (kind), shape check, apply."""
    check_trace(module, name)
    cls = type(module)
    info = _class_infos.get(cls)
    if info is None:
        info = _class_infos[cls] = _ClassInfo(cls)
    if name in info.descriptors:
        object.__setattr__(module, name, value)  # a property or other data descriptor
        bump(module)
        return
    wrap = info.field_containers.get(name)
    if wrap is not None:
        value = _wrap_field(module, name, wrap, value)
    d = vars_of(module)
    plan = plan_write(module, name, value, d)
    spec, own = shape_check(module, name, value, d.get(name))  # (inlined _checked_apply)
    apply_write(module, name, plan)
    if spec is not None:
        commit(module, name, own)


def write_variable(module: Module, name: str, variable: Node[Any], value: Any) -> None:
    """`variable.value = value` on a Variable that `module.<name>` holds: the same
    checks as `module.<name> = value`. A box the module no longer holds is free-standing
    and only takes the value."""
    if vars_of(module).get(name) is not variable:
        variable._value = value
        return
    check_trace(module, name)
    _checked_apply(module, name, value, (variable, value, False), variable)


def _checked_apply(module: Module, name: str, value: Any, plan: WritePlan, old: Any) -> None:
    """Shape-check a planned write against the attribute's annotation, apply it, and
    commit the dimensions it bound."""
    spec, own = shape_check(module, name, value, old)
    apply_write(module, name, plan)
    if spec is not None:
        commit(module, name, own)


def apply_write(module: Module, name: str, plan: WritePlan) -> None:
    """Carry out a planned write (every check passed): the value into the Variable it
    lives in, or the new object into the module; a structural change renews the
    module's version (the caches key on it). Every write of an attribute ends here."""
    box, payload, structural = plan
    if box is not None:
        box._value = payload
    else:
        vars_of(module)[name] = payload
    if structural:
        bump(module)


def delete_attribute(module: Module, name: str) -> None:
    """`del module.<name>`: an attribute, or a data descriptor's deleter."""
    check_trace(module, name)
    if name in vars_of(module):
        apply_deletion(module, name)
    else:  # a data descriptor's deleter, or AttributeError
        object.__delattr__(module, name)
        bump(module)


def apply_deletion(module: Module, name: str) -> None:
    """Remove attribute `name` (checked beforehand): a removed Variable is owned by
    no module any more; the version is renewed and the dimension bindings rebuilt.
    Every removal of an attribute ends here."""
    value = vars_of(module).pop(name)
    if isinstance(value, Node):
        value._owner = None
    bump(module)
    forget_dims(module)


def pop_state_entries(
    root: Module, predicates: tuple[Predicate, ...]
) -> State[Any] | tuple[State[Any], ...]:
    found: list[tuple[Module, str, Path, Any]] = []
    buckets: list[dict[Path, Any]] = [{} for _ in predicates]
    indexed = tuple(enumerate(predicates))
    seen: set[int] = set()

    def visit(module: Module, prefix: Path) -> None:
        seen.add(id(module))  # before recursing: cycles terminate
        for key, name, value in module_items(module):
            kind = kind_of(value)
            if kind == MODULE:
                if id(value) not in seen:
                    visit(value, (*prefix, key))
            elif kind in (ARRAY, BOXED_NODE):
                path = (*prefix, key)
                for i, predicate in indexed:
                    if predicate(path, value):
                        found.append((module, name, path, value))
                        buckets[i][path] = value
                        break

    visit(root, ())
    for module, name, _, _ in found:
        check_trace(module, name)
    for module, name, _, _ in found:
        apply_deletion(module, name)
    states = tuple(State._from_sorted(b) for b in buckets)
    return states[0] if len(states) == 1 else states


def update_state_entries(root: Module, mapping: dict[Path, Any]) -> None:
    resolved: dict[Path, Module] = {(): root}
    plans: list[tuple[Module, str, WritePlan]] = []
    for path, value in mapping.items():
        if not path:
            raise ValueError("update_state: empty path () in the updates")
        prefix = path[:-1]
        module = resolved.get(prefix)
        if module is None:
            module = root
            for depth, key in enumerate(prefix):
                child = vars_of(module).get(attr_name(key), MISSING)
                if not _is_module(child):
                    where = type(root).__name__ + "".join(f".{k}" for k in prefix[:depth])
                    raise ValueError(
                        f"update_state: path {path} leads nowhere: {key!r} is "
                        f"{'missing from' if child is MISSING else 'not a submodule of'} "
                        f"{where} ({type(module).__name__}). Updates can add state entries "
                        "to existing modules, not new submodules."
                    )
                module = child
            resolved[prefix] = module
        name = attr_name(path[-1])
        d = vars_of(module)
        current = d.get(name, MISSING)
        if _is_module(current):
            raise ValueError(
                f"update_state: {path} is a submodule ({type(current).__name__}) of "
                f"{type(module).__name__}; a state entry cannot replace it."
            )
        if kind_of(value) not in (ARRAY, BOXED_NODE):
            raise TypeError(
                MSG_NOT_STATE.format(who="update_state", path=path, type=type(value).__name__)
            )
        check_trace(module, name)
        try:
            plan = plan_write(module, name, value, d)
        except (TypeError, ValueError) as e:
            raise type(e)(f"update_state at path {path}: {e}") from None
        plans.append((module, name, plan))
    for module, name, plan in plans:
        apply_write(module, name, plan)
        forget_dims(module)  # written unchecked: rebind on the next checked write


def _shape_mismatch(old: ModuleDef[Any], new: ModuleDef[Any], where: str) -> str | None:
    """Where the submodule structure of `new` differs from `old`, if anywhere."""
    if old.type is not new.type:
        return f"{where} changed type from {old.type.__name__} to {new.type.__name__}"
    old_subs, new_subs = dict(old.submodules), dict(new.submodules)
    if old_subs.keys() != new_subs.keys():
        added = sorted(map(str, new_subs.keys() - old_subs.keys()))
        removed = sorted(map(str, old_subs.keys() - new_subs.keys()))
        return f"{where}: submodules added {added}, removed {removed}"
    for key, old_sub in old_subs.items():
        new_sub = new_subs[key]
        if isinstance(old_sub, int) or isinstance(new_sub, int):
            old_ref = old_sub if isinstance(old_sub, int) else old_sub.index
            new_ref = new_sub if isinstance(new_sub, int) else new_sub.index
            if isinstance(old_sub, int) != isinstance(new_sub, int) or old_ref != new_ref:
                return f"{where}.{key}: the sharing of submodules changed"
            continue
        found = _shape_mismatch(old_sub, new_sub, f"{where}.{key}")
        if found is not None:
            return found
    return None


MSG_NEW_SUBMODULES: Final = (
    "Cannot write the transform's changes back: {problem}. Create submodules outside "
    "the transform (e.g. in __init__), not inside it."
)


def refuse_new_submodules(old: ModuleDef[Any], new: ModuleDef[Any], where: str) -> None:
    """Raise ValueError if `new` adds, removes or re-shares submodules of `old`: a
    transform's write-back cannot create or drop modules."""
    problem = _shape_mismatch(old, new, where)
    if problem is not None:
        raise ValueError(MSG_NEW_SUBMODULES.format(problem=problem))


def apply_graph_update(
    root: Module, new_moduledef: ModuleDef[Any], states: tuple[State[Any], ...]
) -> None:
    """Write a transform's result back into `root`: the States' values and, if the
    structure changed inside (attributes added, removed or made static), that too.

    New or removed *submodules* cannot be written back: that raises ValueError
    before anything changes.
    """
    old_moduledef = root.get_module_def()
    mapping = combine_states(states)
    if old_moduledef == new_moduledef:
        update_state_entries(root, mapping)
        return
    refuse_new_submodules(old_moduledef, new_moduledef, type(root).__name__)
    modules = {index: module for index, (_, module) in enumerate(root.modules())}
    stack: list[ModuleDef[Any]] = [new_moduledef]
    edits: list[tuple[Module, dict[str, Any], list[str]]] = []
    while stack:
        md = stack.pop()
        module = modules[md.index]
        d = vars_of(module)
        new_statics = dict(md.static_fields)
        keep = {attr_name(k) for k in md.keys}
        removed = [
            name
            for name, value in d.items()
            if name not in keep and name not in new_statics and kind_of(value) != MODULE
        ]
        changed = {
            name: value
            for name, value in new_statics.items()
            if name not in d or d[name] is not value
        }
        if changed or removed:
            check_trace(module, next(iter(changed), removed[0] if removed else ""))
            edits.append((module, changed, removed))
        stack.extend(s for _, s in md.submodules if isinstance(s, ModuleDef))
    for module, changed, removed in edits:
        for name in removed:
            apply_deletion(module, name)
        for name, value in changed.items():
            apply_write(module, name, (None, freeze_static(value), True))
    update_state_entries(root, mapping)

"""Shape-checked calls: a Module method whose parameters or return carry a jaxtyping
array type checks them when it is called, against the dimensions the instance's
annotated attributes bind (DECISIONS.md, "Shape-checked calls").

`wrap_checked_methods(cls)` runs once per Module subclass, at class creation. It wraps
only the methods defined on that class whose annotations hold an array type (or, when
they cannot be resolved yet, look like one); every other method is left alone, so it
costs nothing. The annotations are resolved on a method's first call and the check
plan (which positional slot or keyword holds which annotated argument) is kept.

A call seeds jaxtyping's memo with the instance's bindings (`_shape_checks._memo`),
checks each annotated argument in order and then the return value, so names that no
attribute binds (`n`, `*batch`) are bound by the call, consistently across it.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import typing
from collections.abc import Callable
from typing import Any, Final, cast

import jax

from ._errors import ShapeCheckError
from ._jaxtyping_internals import Bindings, annotation_text, check_array, is_array_annotation
from ._module_object import ModuleObject
from ._shape_checks import bound_text, describe_value, instance_bindings, shape_checks_enabled

__all__ = ["check_axis_size", "wrap_checked_methods"]

# A string annotation that names a jaxtyping dtype: `Float[Array, "n din"]`, ...
_LOOKS_LIKE_ARRAY: Final = re.compile(
    r"\b(Float|Int|Integer|UInt|Bool|Num|Real|Inexact|Complex|Shaped|Key|"
    r"Float\d+|Int\d+|UInt\d+|BFloat16|Complex\d+)\["
)
_RETURN: Final = "return"


class _Plan:
    """Which arguments of one method are checked: `(name, position, annotation)` (the
    position counts `self`; -1 for keyword-only), and the return's annotation."""

    __slots__ = ("args", "ret")

    def __init__(self, args: tuple[tuple[str, int, type[Any]], ...], ret: type[Any] | None) -> None:
        self.args = args
        self.ret = ret


def _resolve(fn: Callable[..., Any]) -> tuple[dict[str, Any], list[str]]:
    """`(hints, unresolved)`: the annotations of `fn` evaluated in its module, each on
    its own, so that one name that cannot be resolved (a local class, a forward
    reference) leaves the others usable; `unresolved` holds the strings that failed."""
    raw: dict[str, Any] = getattr(fn, "__annotations__", None) or {}
    module = sys.modules.get(getattr(fn, "__module__", ""), None)
    namespace = dict(vars(module)) if module is not None else {}
    hints: dict[str, Any] = {}
    unresolved: list[str] = []
    for name, annotation in raw.items():
        if not isinstance(annotation, str):
            hints[name] = annotation
            continue
        try:
            hints[name] = eval(annotation, namespace)
        except Exception:
            unresolved.append(annotation)
    return hints, unresolved


def _array_of(hint: Any) -> type[Any] | None:
    """The array annotation in `hint`: itself, or the one of `X | None` (a None value is
    then not checked)."""
    if is_array_annotation(hint):
        return cast("type[Any]", hint)
    options = [a for a in typing.get_args(hint) if a is not type(None)]
    if (
        len(options) == 1
        and type(None) in typing.get_args(hint)
        and is_array_annotation(options[0])
    ):
        return cast("type[Any]", options[0])
    return None


def _plan(fn: Callable[..., Any]) -> _Plan:
    hints, _ = _resolve(fn)  # an annotation that still cannot be resolved is not checked
    args: list[tuple[str, int, type[Any]]] = []
    for position, param in enumerate(inspect.signature(fn).parameters.values()):
        hint = _array_of(hints.get(param.name))
        if hint is None:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue  # *args / **kwargs: not checked
        keyword_only = param.kind is param.KEYWORD_ONLY
        args.append((param.name, -1 if keyword_only else position, hint))
    return _Plan(tuple(args), _array_of(hints.get(_RETURN)))


def _wants_checks(fn: Callable[..., Any]) -> bool:
    """Whether `fn`'s annotations hold a jaxtyping array type: resolved where possible,
    judged by their text where not (a forward reference may resolve at the first call)."""
    hints, unresolved = _resolve(fn)
    if any(_array_of(h) is not None for h in hints.values()):
        return True
    return any(_LOOKS_LIKE_ARRAY.search(text) for text in unresolved)


def wrap_checked_methods(cls: type[ModuleObject]) -> None:
    """Wrap the methods `cls` itself defines whose annotations hold an array type."""
    for name, attr in list(vars(cls).items()):
        if name == "__init__" or (name.startswith("__") and name != "__call__"):
            continue
        if not inspect.isfunction(attr) or getattr(attr, "_nnx_call_checked", False):
            continue
        if _wants_checks(attr):
            setattr(cls, name, _checked(attr))


_SEEN_LIMIT: Final = 256  # distinct (instance dims, argument shapes) kept per method


def _checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    plan: _Plan | None = None
    qualname = fn.__name__
    # Checks that passed, by (instance bindings, argument shapes and dtypes): the
    # bindings they left, and the return shapes that passed after them. A repeated
    # call of the same shapes then costs a dict lookup, not jaxtyping's checks.
    seen: dict[Any, tuple[Bindings, dict[str, str]]] = {}
    seen_returns: set[Any] = set()

    @functools.wraps(fn)
    def checked(self: ModuleObject, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        nonlocal plan
        if not shape_checks_enabled():
            return fn(self, *args, **kwargs)
        if plan is None:
            plan = _plan(fn)
        bindings, owners = instance_bindings(self)
        given = _given(plan, args, kwargs)
        key = _key(bindings, given)
        known = seen.get(key) if key is not None else None
        if known is None:
            where = f"{type(self).__name__}.{qualname}"
            for name, annotation, value in given:
                bindings = _check(where, f"argument {name}", annotation, value, bindings, owners)
                for dim in _new_names(bindings, owners):
                    owners[dim] = f"argument {name}"
            if key is not None:
                if len(seen) >= _SEEN_LIMIT:
                    seen.clear()
                    seen_returns.clear()
                seen[key] = (bindings, owners)
        else:
            bindings, owners = known
        out = fn(self, *args, **kwargs)
        if plan.ret is not None:
            out_key = (key, _shape_key(out)) if key is not None else None
            if out_key is None or out_key not in seen_returns:
                where = f"{type(self).__name__}.{qualname}"
                _check(where, "return", plan.ret, out, bindings, owners)
                if out_key is not None and out_key[1] is not None:
                    seen_returns.add(out_key)
        return out

    setattr(checked, "_nnx_call_checked", True)  # noqa: B010 - a marker on a function
    return checked


def _given(
    plan: _Plan, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[tuple[str, type[Any], Any]]:
    """The annotated arguments of this call: `(name, annotation, value)`."""
    given: list[tuple[str, type[Any], Any]] = []
    for name, position, annotation in plan.args:
        if 0 < position <= len(args):
            value = args[position - 1]
        elif name in kwargs:
            value = kwargs[name]
        else:
            continue  # left to its default
        if value is not None:  # None: an optional array not given
            given.append((name, annotation, value))
    return given


def _shape_key(value: Any) -> Any:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None or dtype is None:
        return None
    return (shape, dtype, type(value) is jax.ShapeDtypeStruct)


def _key(bindings: Bindings, given: list[tuple[str, type[Any], Any]]) -> Any:
    """What a call's argument checks depend on, or None if an argument has no shape."""
    keys: list[Any] = []
    for _, _, value in given:
        k = _shape_key(value)
        if k is None:
            return None
        keys.append(k)
    single, variadic = bindings
    key = (tuple(single.items()), tuple(variadic.items()), tuple(keys))
    try:
        hash(key)
    except TypeError:  # an unhashable binding: check without the memo
        return None
    return key


def _new_names(bindings: Bindings, owners: dict[str, str]) -> list[str]:
    return [dim for dim in (*bindings[0], *bindings[1]) if dim not in owners]


def _check(
    where: str,
    what: str,
    annotation: type[Any],
    value: Any,
    bindings: Bindings,
    owners: dict[str, str],
) -> Bindings:
    __tracebackhide__ = True
    reason, after = check_array(annotation, value, bindings)
    if not reason:
        return after
    message = (
        f"{where}: {what}: expected {annotation_text(annotation)}, got "
        f"{describe_value(value)}\n  reason: {reason}"
    )
    bound = bound_text(annotation, bindings, owners)
    if bound:
        message += "\n  " + bound
    raise ShapeCheckError(message)


def check_axis_size(
    module: ModuleObject, method: str, argument: str, value: Any, axis: int, dim: str
) -> None:
    """A call check for a layer whose feature axis is an option (BatchNorm's `axis`):
    `value.shape[axis]` must be the module's `dim` attribute. Raises ShapeCheckError in
    the format of annotated calls; nothing when shape checks are off."""
    __tracebackhide__ = True
    if not shape_checks_enabled():
        return
    size = getattr(module, dim)
    shape: tuple[int, ...] | None = getattr(value, "shape", None)
    if shape is not None and -len(shape) <= axis < len(shape) and shape[axis] == size:
        return
    raise ShapeCheckError(
        f"{type(module).__name__}.{method}: argument {argument}: expected {dim}={size} at "
        f"axis {axis}, got {describe_value(value)}\n  {dim}={size} (bound by .{dim})"
    )

"""Run-time checks of Module attributes against their class-level annotations.

    class Linear(nnx.Module):
        kernel: nnx.Param[Float[Array, "din dout"]]
        bias: nnx.Param[Float[Array, " dout"]]

On every assignment of an annotated attribute (in `__init__`, later, by `+=`, by a
write to an owned Variable's `.value`), the value is checked: the Variable kind,
then dtype, rank, fixed sizes and named dimensions (jaxtyping), which must agree
across all attributes of one module instance; other hints (`int`, `str`, a Module
type) are checked with beartype. A failed check raises `nnx.ShapeCheckError` and
leaves the old value in place.

Rules:

- Hints are resolved on the first checked assignment and cached per class.
- Tracers are checked when traced (no cost per jitted call); under `jax.vmap` a
  value has its per-example shape; a `jax.ShapeDtypeStruct` is accepted when its
  dtype and shape fit.
- `merge` and `update_state` do not check: they restore state that was checked
  when it was assigned, and lifted transforms legitimately give it other layouts
  (layers stacked along a leading axis by `nnx.Scan` or `jax.vmap`). After them,
  the dimension bindings are rebuilt from the current values on the next checked
  assignment, skipping values that do not fit their annotation (such as stacked
  ones), so they bind nothing.
- The value of a Variable whose annotation is not a jaxtyping array (e.g. a
  `Count(nnx.Variable[int])` counter) is not checked, only its kind: under `jax.jit`
  it is a tracer.
- `with nnx.shape_checks(False):` or `NNX_SHAPE_CHECKS=0` turns checking off.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import sys
import types
import typing
import warnings
from collections.abc import Generator, Hashable
from typing import Any, Final, Union

import jax
from beartype import BeartypeConf
from beartype.door import is_bearable
from typing_extensions import TypeIs

from ._errors import ShapeCheckError
from ._jaxtyping_internals import (
    Bindings,
    annotation_text,
    any_array_version,
    check_array,
    is_array_annotation,
    named_dims,
)
from ._module_object import ModuleObject, dims_slot, vars_of
from ._repr import dtype_shape
from ._variables import Container, is_container

__all__ = ["AttrSpec", "class_specs", "shape_checks", "shape_checks_enabled"]


def _env_default() -> bool:
    value = os.environ.get("NNX_SHAPE_CHECKS", "1").strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"NNX_SHAPE_CHECKS must be 0 or 1 (or true/false), got {value!r}")


_DEFAULT_ENABLED: Final = _env_default()
_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "nnx_shape_checks", default=_DEFAULT_ENABLED
)


def shape_checks_enabled() -> bool:
    """Whether run-time shape checks are on here (see `shape_checks`)."""
    return _enabled.get()


@contextlib.contextmanager
def shape_checks(enabled: bool = True) -> Generator[None, None, None]:
    """Turn run-time shape checks on or off inside a `with` block.

    A Module attribute annotated with a jaxtyping type (bare, or inside a Variable
    type: `w: nnx.Param[Float[Array, "din dout"]]`) is checked whenever it is
    assigned: in `__init__`, later, by `+=`, by a write to the owned Variable's
    `.value`. The Variable kind is checked first, then dtype, rank, fixed sizes and
    named dimensions, which must agree across all attributes of one instance; an
    `int` attribute binds the dimension of its name, and other hints (`int`, `str`,
    a Module type) are checked with beartype. A failure raises `nnx.ShapeCheckError`
    and changes nothing. (Method calls are not checked.)

    Under `jax.jit` a check runs once, at trace time; under `jax.vmap` values have
    their per-example shapes; a `jax.ShapeDtypeStruct` is accepted when it fits.
    `merge` and `update_state` do not check (stacked layers from `nnx.Scan` or
    `jax.vmap` have other layouts). Checks are on by default; the environment
    variable `NNX_SHAPE_CHECKS=0` turns them off for the process, and off they cost
    nothing measurable. The setting is a context variable: it applies to the current
    thread (or asyncio task) and is restored when the block ends.

    Args:
        enabled: True to check inside the block, False not to. Default True.

    Example:
        ```python
        from jaxtyping import Array, Float

        class Affine(nnx.Module):
            w: nnx.Param[Float[Array, "din dout"]]
            b: nnx.Param[Float[Array, " dout"]]

            def __init__(self, din: int, dout: int) -> None:
                self.w = nnx.Param(jnp.zeros((din, dout)))
                self.b = nnx.Param(jnp.zeros((dout,)))

        m = Affine(4, 3)
        try:
            m.b = jnp.zeros((5,))  # dout is 3
        except nnx.ShapeCheckError as e:
            assert "Affine.b" in str(e)
        with nnx.shape_checks(False):
            m.b = jnp.zeros((5,))  # not checked
        assert m.b.shape == (5,)
        ```
    """
    token = _enabled.set(enabled)
    try:
        yield
    finally:
        _enabled.reset(token)


@dataclasses.dataclass(frozen=True)
class AttrSpec:
    """What the annotation of one attribute asks for (internal; see `class_specs`)."""

    name: str
    kind: type[Container[Any]] | None  # a Variable/Node class, or None for a bare value
    optional: bool
    array: type[Any] | None  # a jaxtyping array type
    hint: Any  # another hint, checked with beartype (None: nothing to check)
    text: str  # the annotation, for messages
    binds_dim: bool = False  # an `int` attribute binds the dimension of its name
    dims: frozenset[str] = frozenset()  # the dimension names `array` binds
    # Array checks that passed: (payload class, shape, dtype, the bindings of the other
    # attributes) -> the bindings this value makes. A check is a function of these.
    passed: dict[Hashable, Bindings | None] = dataclasses.field(
        default_factory=dict[Hashable, "Bindings | None"], compare=False, repr=False
    )


_NONE_TYPES: Final = (type(None), None)


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a not in _NONE_TYPES]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) == 1:
            return args[0], optional
        return Union[tuple(args)], optional  # noqa: UP007 - a runtime construction
    return hint, False


def _hint_text(hint: Any) -> str:
    if is_array_annotation(hint):
        return annotation_text(hint)
    name = getattr(hint, "__name__", None)
    if isinstance(name, str) and typing.get_origin(hint) is None:
        return name
    return repr(hint).replace("typing.", "")


def _is_container_class(x: object) -> TypeIs[type[Container[Any]]]:
    return isinstance(x, type) and issubclass(x, Container)


def _spec_for(name: str, hint: Any) -> AttrSpec | None:
    if (
        hint is Any
        or isinstance(hint, typing.TypeVar)
        or typing.get_origin(hint) is typing.ClassVar
    ):
        return None
    outer, optional = _strip_optional(hint)
    kind: type[Container[Any]] | None = None
    inner: Any = outer
    origin = typing.get_origin(outer)
    cls = origin if isinstance(origin, type) else outer
    if _is_container_class(cls):
        kind = cls
        args = typing.get_args(outer)
        inner = args[0] if args else Any
        inner, inner_optional = _strip_optional(inner)
        optional = optional or inner_optional
    array = inner if is_array_annotation(inner) else None
    other: Any = None
    if array is None and kind is None and inner is not Any:
        other = inner
    if kind is None and array is None and other is None:
        return None
    text = _hint_text(inner)
    if kind is not None:
        text = f"{kind.__name__}[{text}]" if inner is not Any else kind.__name__
    if optional:
        text += " | None"
    return AttrSpec(
        name,
        kind,
        optional,
        array,
        other,
        text,
        binds_dim=other is int or other == tuple[int, ...],
        dims=named_dims(array) if array is not None else frozenset(),
    )


_specs: dict[type[Any], dict[str, AttrSpec]] = {}


_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel() -> int:
    """The `stacklevel` that points a warning at the first frame outside nnx."""
    frame = sys._getframe(1)
    level = 1
    while (
        frame is not None
        and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _PACKAGE_DIR
    ):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _resolve_hints(cls: type[Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # fall back to one annotation at a time below
        pass
    hints: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        module = sys.modules.get(base.__module__)
        namespace: dict[str, Any] = dict(vars(module)) if module is not None else {}
        namespace.update(vars(base))
        own: dict[str, Any] = base.__dict__.get("__annotations__", {})  # noqa: RUF063
        for name, annotation in own.items():
            try:
                hints[name] = (
                    eval(annotation, namespace) if isinstance(annotation, str) else annotation
                )
            except Exception as e:
                warnings.warn(
                    f"nnx: cannot resolve the annotation {annotation!r} of "
                    f"{cls.__name__}.{name} ({type(e).__name__}: {e}); assignments to it "
                    "are not shape-checked. Define the names it uses at module level.",
                    stacklevel=_user_stacklevel(),
                )
    return hints


def class_specs(cls: type[Any]) -> dict[str, AttrSpec]:
    """The checkable annotations of a Module class (resolved once, then cached)."""
    specs = _specs.get(cls)
    if specs is None:
        specs = {}
        for name, hint in _resolve_hints(cls).items():
            if name.startswith("_nnx"):
                continue
            spec = _spec_for(name, hint)
            if spec is not None:
                specs[name] = spec
        _specs[cls] = specs
    return specs


# ------------------------------------------------------------------------------------
# Checking


def _describe(value: Any) -> str:
    if is_container(value):
        return f"{type(value).__name__}[{_describe(value._value)}]"
    if value is None:
        return "None"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return dtype_shape(value)
    text = repr(value)
    return f"{type(value).__name__} {text}" if len(text) <= 40 else type(value).__name__


def _bound_value(size: Any) -> str:
    # a variadic binding is (broadcastable, shape); a single one an int
    if isinstance(size, tuple):
        pair: tuple[Any, ...] = size  # pyright: ignore[reportUnknownVariableType]
        return str(pair[1])
    return str(size)


def _fail(
    module: ModuleObject, spec: AttrSpec, value: Any, reason: str, extra: str = ""
) -> ShapeCheckError:
    message = (
        f"{type(module).__name__}.{spec.name}: expected {spec.text}, got {_describe(value)}\n"
        f"  reason: {reason}"
    )
    if extra:
        message += "\n" + extra
    return ShapeCheckError(message)


def _seed(memo: dict[str, Bindings], exclude: str) -> tuple[Bindings, dict[str, str]]:
    single: dict[str, int] = {}
    variadic: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for attr, (own_single, own_variadic) in memo.items():
        if attr == exclude:
            continue
        single.update(own_single)
        variadic.update(own_variadic)
        for dim in (*own_single, *own_variadic):
            owners.setdefault(dim, attr)
    return (single, variadic), owners


def _check_payload(spec: AttrSpec, payload: Any, seed: Bindings) -> tuple[str, Bindings | None]:
    """`(reason, own bindings)`; reason "" when the payload fits."""
    if payload is None and spec.optional:
        return "", None
    if spec.array is not None:
        annotation = spec.array
        if isinstance(payload, jax.ShapeDtypeStruct):
            annotation = any_array_version(annotation)
        reason, (single, variadic) = check_array(annotation, payload, seed)
        if reason:
            return reason, None
        # every dimension this value has, bound first here or elsewhere: another
        # attribute that binds it keeps binding it when this one is reassigned
        names = spec.dims
        own = (
            {k: v for k, v in single.items() if k in names},
            {k: v for k, v in variadic.items() if k in names},
        )
        return "", own
    hint = spec.hint
    if hint is not None and spec.kind is None and not _fits(payload, hint):
        return f"not an instance of {_hint_text(spec.hint)}", None
    if spec.binds_dim and _is_int_tuple(payload):
        # a tuple[int, ...] attribute binds the variadic dimension of its name (*name)
        bound_shape = seed[1].get(spec.name)
        if bound_shape is not None and tuple(bound_shape[1]) != payload:
            return (
                f"{spec.name}={payload}, but dimensions *{spec.name} are {tuple(bound_shape[1])}",
                None,
            )
        no_single: dict[str, int] = {}
        shape: dict[str, Any] = {spec.name: (False, payload)}
        return "", (no_single, shape)
    if spec.binds_dim and isinstance(payload, int) and not isinstance(payload, bool):
        bound = seed[0].get(spec.name)
        if bound is not None and bound != payload:
            return (
                f"{spec.name}={payload}, but the size of dimension {spec.name} is {bound}",
                None,
            )
        dims: dict[str, int] = {spec.name: payload}
        no_variadic: dict[str, Any] = {}
        return "", (dims, no_variadic)
    return "", None


_TOWER: Final[dict[type[Any], tuple[type[Any], ...]]] = {
    float: (float, int),
    complex: (complex, float, int),
}
_BEARTYPE_CONF: Final = BeartypeConf(is_pep484_tower=True)


def _fits(value: Any, hint: Any) -> bool:
    if type(hint) is type:  # a plain class: isinstance is what beartype would do
        # with PEP 484's numeric tower, as type checkers do: an int is a float
        return isinstance(value, _TOWER.get(hint, hint))
    return is_bearable(value, hint, conf=_BEARTYPE_CONF)


def _is_int_tuple(x: object) -> TypeIs[tuple[int, ...]]:
    return isinstance(x, tuple) and all(
        isinstance(v, int) and not isinstance(v, bool)
        for v in x  # pyright: ignore[reportUnknownVariableType]
    )


_PASSED_LIMIT: Final = 256  # per attribute spec; the cache starts over when full


class _Dims:
    """What a module's annotated attributes bind (its `_nnx_dims` slot): `memo` per
    attribute, and per attribute name the seed of the others (with the attribute that
    bound each name and a hashable key of it), computed once per change of `memo`."""

    __slots__ = ("memo", "seeds")

    def __init__(self, memo: dict[str, Bindings]) -> None:
        self.memo = memo
        self.seeds: dict[str, tuple[Bindings, dict[str, str], Hashable]] = {}

    def seed(self, exclude: str) -> tuple[Bindings, dict[str, str], Hashable]:
        """`(bindings, owners, key)` of every attribute but `exclude`; `key` is None if
        a binding is not hashable."""
        found = self.seeds.get(exclude)
        if found is None:
            seed, owners = _seed(self.memo, exclude)
            key: Hashable
            try:
                key = (frozenset(seed[0].items()), frozenset(seed[1].items()))
                hash(key)
            except TypeError:
                key = None
            found = self.seeds[exclude] = (seed, owners, key)
        return found

    def commit(self, name: str, own: Bindings | None) -> None:
        if own is None or not (own[0] or own[1]):
            if name in self.memo:
                del self.memo[name]
                self.seeds.clear()
        elif self.memo.get(name) != own:
            self.memo[name] = own
            self.seeds.clear()


def _dims(module: ModuleObject) -> _Dims:
    dims: _Dims | None = dims_slot.__get__(module)
    if dims is None:
        memo: dict[str, Bindings] = {}
        d = vars_of(module)
        for name, spec in class_specs(type(module)).items():
            if (spec.array is None and not spec.binds_dim) or name not in d:
                continue
            current = d[name]
            payload = current._value if is_container(current) else current
            seed, _ = _seed(memo, name)
            reason, own = _check_payload(spec, payload, seed)
            if not reason and own is not None:
                memo[name] = own  # values that do not fit (e.g. stacked) bind nothing
        dims = _Dims(memo)
        dims_slot.__set__(module, dims)
    return dims


def check_assignment(module: ModuleObject, spec: AttrSpec, value: Any, old: Any) -> Bindings | None:
    """Check `module.<spec.name> = value` (`old`: what the attribute holds now).

    Returns the dimension bindings the new value makes; raises ShapeCheckError.
    """
    __tracebackhide__ = True
    if value is None and spec.optional:
        return None
    if is_container(value):
        if spec.kind is not None and not isinstance(value, spec.kind):
            raise _fail(module, spec, value, f"not a {spec.kind.__name__}")
        payload = value._value
    else:
        if spec.kind is not None and not isinstance(old, spec.kind):
            raise _fail(
                module,
                spec,
                value,
                f"a raw value where a {spec.kind.__name__} is declared: assign "
                f"{spec.kind.__name__}(value)",
            )
        payload = value
    seed, owners, seed_key = _dims(module).seed(spec.name)
    key: Hashable = None
    if spec.array is not None and seed_key is not None:
        key = (payload.__class__, getattr(payload, "shape", None), _dtype(payload), seed_key)
        try:
            return spec.passed[key]
        except KeyError:
            pass  # first time: check below
    reason, own = _check_payload(spec, payload, seed)
    if not reason and key is not None:
        if len(spec.passed) >= _PASSED_LIMIT:
            spec.passed.clear()
        spec.passed[key] = own
    if reason:
        if _keeps_unchecked_layout(spec, old, payload, seed):
            return None
        extra = ""
        if "dimension" in reason:
            names = named_dims(spec.array) if spec.array is not None else {spec.name}
            bound = [
                f"{'*' if dim in seed[1] else ''}{dim}={_bound_value(size)} (from .{owners[dim]})"
                for dim, size in (*seed[0].items(), *seed[1].items())
                if dim in names
            ]
            if bound:
                extra = "  bound by other attributes: " + ", ".join(bound)
        raise _fail(module, spec, value, reason, extra)
    return own


def _keeps_unchecked_layout(spec: AttrSpec, old: Any, payload: Any, seed: Bindings) -> bool:
    """Whether `payload` only keeps the layout of an old value that `merge` or
    `update_state` installed unchecked and that does not fit the annotation either
    (layers stacked by `nnx.Scan`, `nnx.scan` on `__init__` or `jax.vmap`): the same
    shape and dtype is a legitimate write and binds nothing."""
    old_payload = old._value if is_container(old) else old
    shape, dtype = getattr(old_payload, "shape", None), getattr(old_payload, "dtype", None)
    if shape is None or dtype is None:
        return False
    if getattr(payload, "shape", None) != shape or getattr(payload, "dtype", None) != dtype:
        return False
    return bool(_check_payload(spec, old_payload, seed)[0])


def instance_bindings(module: ModuleObject) -> tuple[Bindings, dict[str, str]]:
    """What the instance's annotated attributes bind, as a fresh seed for a call check:
    `((single, variadic), owners)`, owners naming the attribute that bound each name."""
    seed, owners, _ = _dims(module).seed("")
    return seed, dict(owners)


def describe_value(value: Any) -> str:
    """`float32[2,5]` for an array, the type (and short repr) for anything else."""
    return _describe(value)


def bound_text(annotation: type[Any], bindings: Bindings, owners: dict[str, str]) -> str:
    """`din=3 (bound by .w), n=2 (bound by argument x)` for the names of `annotation`
    that were bound before the failing check ("" if none)."""
    names = named_dims(annotation)
    parts: list[str] = []
    for dim, size in (*bindings[0].items(), *bindings[1].items()):
        if dim in names and dim in owners:
            owner = owners[dim]
            by = owner if owner.startswith("argument ") else f".{owner}"
            star = "*" if dim in bindings[1] else ""
            parts.append(f"{star}{dim}={_bound_value(size)} (bound by {by})")
    return ", ".join(parts)


def commit(module: ModuleObject, name: str, own: Bindings | None) -> None:
    """Record the bindings `name`'s new value makes (after the write)."""
    _dims(module).commit(name, own)


def _dtype(payload: Any) -> Any:
    try:
        return payload.dtype
    except AttributeError:
        return None

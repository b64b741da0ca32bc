"""The one place nnx touches jaxtyping's private API.

jaxtyping binds named dimensions ("din", "dout") in a thread-local memo that its
`@jaxtyped` decorator pushes per function call. nnx binds dimensions per *Module
instance* instead: to check one attribute it pushes a memo seeded with what the
module's other attributes bound, runs jaxtyping's own check, and reads back the
bindings. That needs `jaxtyping._storage` (push/get/pop of the memo), a private
module. pyproject.toml pins the releases this was tested with (0.3.0 to 0.3.11; 0.2.x
names dtypes differently in its annotations), and tests/test_shape_checks.py covers
the behaviour on every JAX of the nox matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from jaxtyping import AbstractArray

try:
    from jaxtyping import _storage
except ImportError as e:  # pragma: no cover - guarded by the version pin
    raise ImportError(
        "nnx's shape checks need jaxtyping's _storage module (jaxtyping >=0.3,<0.4)"
    ) from e

_Memo = tuple[dict[str, int], dict[str, Any], dict[str, Any], dict[str, Any]]
_push_shape_memo: Callable[[dict[str, Any]], _Memo] = getattr(_storage, "push_shape_memo")  # noqa: B009
_get_shape_memo: Callable[[], _Memo] = getattr(_storage, "get_shape_memo")  # noqa: B009
_pop_shape_memo: Callable[[], None] = getattr(_storage, "pop_shape_memo")  # noqa: B009

__all__ = [
    "Bindings",
    "annotation_text",
    "any_array_version",
    "check_array",
    "dim_names",
    "is_array_annotation",
    "named_dims",
]

Bindings = tuple[dict[str, int], dict[str, Any]]
"""`(single, variadic)`: sizes bound to named dimensions (`din` → 3) and to variadic
ones (`*batch` → (broadcastable, shape))."""


def is_array_annotation(hint: object) -> bool:
    """Whether `hint` is a jaxtyping array type such as `Float[Array, "din dout"]`."""
    return isinstance(hint, type) and issubclass(hint, AbstractArray)


_any_versions: dict[type[Any], type[Any]] = {}


def any_array_version(annotation: type[Any]) -> type[Any]:
    """The same dtype and dimensions over `Any` array type, which also accepts a
    `jax.ShapeDtypeStruct` (what `jax.eval_shape` produces)."""
    found = _any_versions.get(annotation)
    if found is None:
        ann = cast(Any, annotation)
        found = _any_versions[annotation] = cast("type[Any]", ann.dtype[Any, ann.dim_str])
    return found


def dim_names(annotation: type[Any]) -> str:
    return cast(str, cast(Any, annotation).dim_str)


def named_dims(annotation: type[Any]) -> frozenset[str]:
    """The dimension names an annotation binds: `"*batch din dout"` → batch, din, dout."""
    names: set[str] = set()
    for token in dim_names(annotation).split():
        name = token.lstrip("*#_").split("=")[-1]
        if name and name != "..." and name.isidentifier():
            names.add(name)
    return frozenset(names)


def check_array(annotation: type[Any], value: Any, seed: Bindings) -> tuple[str, Bindings]:
    """`(reason, bindings)`: jaxtyping's reason for rejecting `value` ("" if it fits)
    and the dimension bindings after the check, starting from `seed`."""
    single, variadic, _, _ = _push_shape_memo({})
    try:
        single.update(seed[0])
        variadic.update(seed[1])
        reason = cast(str, cast(Any, annotation).__instancecheck_str__(value))
        # on failure jaxtyping restores a backup by *replacing* the memo dicts
        single, variadic, _, _ = _get_shape_memo()
        return reason, (dict(single), dict(variadic))
    finally:
        _pop_shape_memo()


def annotation_text(annotation: type[Any]) -> str:
    """`Float[Array, 'din dout']` (jaxtyping's own name spells out the array's module)."""
    ann = cast(Any, annotation)
    dtype = getattr(ann.dtype, "__name__", "Shaped")
    array = str(getattr(ann.array_type, "__name__", "Any")).rsplit(".", 1)[-1]
    return f"{dtype}[{array}, {ann.dim_str!r}]"

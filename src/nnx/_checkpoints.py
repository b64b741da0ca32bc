"""Checkpoints: save a State (or a Module's state) with orbax, restore it exactly.

A checkpoint is an orbax composite checkpoint with two items:

- ``state``: the arrays, as a nested dict keyed by the State's paths (``{"linear":
  {"kernel": ...}}``), written by orbax's standard handler (so other orbax tools can
  read it);
- ``nnx``: JSON that records, per path, the Variable kind, its metadata and, per leaf,
  its type, dtype and shape (Python scalars are stored here by value).

`restore` first compares that record with the target (a Module, possibly abstract
from `nnx.eval_shape`, or a State) and raises one ValueError listing every
difference, so a wrong-structure restore never reaches orbax (whose older releases
would silently pad or truncate a mismatched array). orbax-checkpoint is optional:
``pip install "nnx[checkpoint]"``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from types import ModuleType
from typing import Any, Final, TypeVar, overload

import jax
import jax.numpy as jnp
import numpy as np
from typing_extensions import TypeIs

from ._compat import (
    Tracer,
    default_sharding,
    is_prng_key_dtype,
    jax_eval_shape,
    keystr,
    shape_dtype_struct,
    tree_flatten,
    tree_flatten_with_path,
    tree_unflatten,
    wrap_key_data,
)
from ._filters import Path
from ._module import Module
from ._state import State
from ._variables import Node, is_node_box, variable_type

__all__ = ["load", "restore", "save"]

M = TypeVar("M", bound=Module)

FORMAT: Final = "nnx-checkpoint"
FORMAT_VERSION: Final = 1
_STATE_ITEM: Final = "state"
_META_ITEM: Final = "nnx"

MSG_NO_ORBAX: Final = (
    "nnx checkpoints need orbax-checkpoint, which is not installed.\n"
    'Fix: pip install "nnx[checkpoint]"  (or: pip install orbax-checkpoint)'
)
MSG_EXISTS: Final = (
    "Checkpoint directory {path} already exists.\n"
    "Fix: save to a new directory, or pass overwrite=True to replace it."
)
MSG_MISSING: Final = "No checkpoint at {path} (the directory does not exist)."
MSG_NOT_NNX: Final = (
    "{path} is not an nnx checkpoint (its 'nnx' item is missing or has another format).\n"
    "Checkpoints written by nnx.checkpoints.save have it; read other orbax checkpoints "
    "with orbax directly."
)
MSG_VERSION: Final = (
    "The checkpoint at {path} has nnx checkpoint format version {version}; this nnx reads "
    f"version {FORMAT_VERSION}. Fix: read it with the nnx release that wrote it."
)
MSG_MISMATCH: Final = (
    "Cannot restore the checkpoint at {path} into {target}: the structure differs.\n"
    "{problems}\n"
    "Fix: restore into a model built with the same configuration as the saved one, or "
    "read the checkpoint without a target with nnx.checkpoints.load(path) and adapt it."
)
MSG_TRACED: Final = (
    "Cannot save {where}: it holds a traced value ({value}). Save outside jax.jit / "
    "nnx.jit and other transforms, where the state is concrete."
)
MSG_UNSUPPORTED_LEAF: Final = (
    "Cannot save {where}: leaf of type {type} is not supported. Checkpoints hold arrays "
    "(jax or numpy, including typed PRNG keys) and Python bool/int/float scalars."
)
MSG_METADATA: Final = (
    "Cannot save the metadata {key}={value!r} of {where}: checkpoint metadata must be "
    "None, bool, int, float, str, or tuples/lists/dicts (str keys) of those."
)
MSG_KEY: Final = (
    "Cannot save {where}: the path key {key!r} {reason}. orbax names arrays by joining "
    "path keys with '.', so such keys would collide."
)
MSG_NEEDS_TARGET: Final = (
    "Cannot load {where} without a target: its value is a {type} pytree, whose structure "
    "the checkpoint does not record. Use nnx.checkpoints.restore(path, target) with a "
    "model or State of the same structure."
)
MSG_TARGET_TYPE: Final = "restore() expects a Module or a State as target, got {type}."
MSG_SAVE_TYPE: Final = (
    "save() expects a Module or a State, got {type}. To save several States (e.g. the "
    "result of partition(...)), save each, or combine them with nnx.State.merge(*states)."
)

_MAX_PROBLEMS: Final = 20


def _orbax() -> ModuleType:
    try:
        return importlib.import_module("orbax.checkpoint")
    except ImportError as e:  # pragma: no cover - exercised only without orbax
        raise ImportError(MSG_NO_ORBAX) from e


# ------------------------------------------------------------------------------------
# The JSON record of one State entry and its leaves.


@dataclass(frozen=True)
class _Leaf:
    """What a checkpoint records of one leaf of an entry's value."""

    key: str  # jax.tree_util.keystr within the entry's value ("" for the value itself)
    type: str  # "jax" | "numpy" | "numpy_scalar" | "prng_key" | "bool" | "int" | "float"
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    impl: str | None = None  # typed PRNG keys: the key implementation's name
    value: bool | int | float | None = None  # Python scalars are stored by value

    @property
    def is_array(self) -> bool:
        return self.type not in _SCALARS

    def describe(self) -> str:
        if not self.is_array:
            return self.type
        assert self.shape is not None
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "type": self.type}
        if self.is_array:
            out["dtype"] = self.dtype
            out["shape"] = list(self.shape or ())
            if self.impl is not None:
                out["impl"] = self.impl
        else:
            out["value"] = self.value
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _Leaf:
        shape = raw.get("shape")
        return cls(
            key=raw["key"],
            type=raw["type"],
            dtype=raw.get("dtype"),
            shape=None if shape is None else tuple(int(d) for d in shape),
            impl=raw.get("impl"),
            value=raw.get("value"),
        )


_SCALARS: Final[dict[str, type[bool] | type[int] | type[float]]] = {
    "bool": bool,
    "int": int,
    "float": float,
}


@dataclass(frozen=True)
class _Entry:
    """What a checkpoint records of one State entry."""

    path: Path
    kind: str | None  # "module:qualname" of the Node class; None for a raw value
    collection: str | None
    metadata: dict[str, Any]
    leaves: tuple[_Leaf, ...]
    structure: Any  # a JSON encoding of the value's pytree structure, or None if opaque

    def describe_kind(self) -> str:
        if self.kind is None:
            return "a raw value"
        name = self.kind.rpartition(":")[2]
        if not self.metadata:
            return name
        meta = ", ".join(f"{k}={v!r}" for k, v in sorted(self.metadata.items()))
        return f"{name}({meta})"

    def describe_leaves(self) -> str:
        if len(self.leaves) == 1 and self.leaves[0].key == "":
            return self.leaves[0].describe()
        inner = ", ".join(f"{leaf.key or '.'}: {leaf.describe()}" for leaf in self.leaves)
        return "{" + inner + "}"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": list(self.path),
            "kind": self.kind,
            "collection": self.collection,
            "metadata": _encode_meta(self.metadata, self.path, ""),
            "leaves": [leaf.to_json() for leaf in self.leaves],
            "structure": self.structure,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _Entry:
        metadata = _decode_meta(raw["metadata"])
        assert isinstance(metadata, dict)
        return cls(
            path=tuple(raw["path"]),
            kind=raw["kind"],
            collection=raw["collection"],
            metadata=metadata,  # pyright: ignore[reportUnknownArgumentType]
            leaves=tuple(_Leaf.from_json(leaf) for leaf in raw["leaves"]),
            structure=raw["structure"],
        )


def _where(path: Path) -> str:
    return f"state entry {path!r}"


def _class_name(cls: type[Any]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _describe_leaf(x: Any, key: str, path: Path) -> _Leaf:
    """The record of one leaf: arrays (concrete or abstract) by dtype and shape."""
    leaf_type = _type_of(x)
    if issubclass(leaf_type, Tracer):
        raise ValueError(MSG_TRACED.format(where=_where(path), value=leaf_type.__name__))
    if leaf_type in _SCALARS.values():
        return _Leaf(key, leaf_type.__name__, value=x)
    if issubclass(leaf_type, _ARRAY_TYPES):
        dtype: Any = x.dtype
        shape = tuple(int(d) for d in x.shape)
        if is_prng_key_dtype(dtype):
            return _Leaf(key, "prng_key", str(dtype), shape, impl=_key_impl_name(x))
        kind = "jax"
        if issubclass(leaf_type, jax.ShapeDtypeStruct):
            kind = "abstract"  # a target leaf from nnx.eval_shape: matches loosely
        elif issubclass(leaf_type, np.ndarray):
            kind = "numpy"
        elif issubclass(leaf_type, np.generic):
            kind = "numpy_scalar"
        return _Leaf(key, kind, _dtype_name(dtype), shape)
    raise TypeError(MSG_UNSUPPORTED_LEAF.format(where=_where(path), type=type(x).__name__))


_ARRAY_TYPES: Final = (jax.Array, jax.ShapeDtypeStruct, np.ndarray, np.generic)


def _type_of(x: object) -> type[object]:
    return type(x)


def _dtype_name(dtype: Any) -> str:
    return str(np.dtype(dtype))


def _key_impl_name(x: Any) -> str | None:
    if isinstance(x, jax.Array):
        return str(jax.random.key_impl(x))
    return None  # an abstract key: compared by dtype only


def _split_entry(entry: Any) -> tuple[type[Node[Any]] | None, dict[str, Any], Any]:
    if is_node_box(entry):
        return type(entry), entry.metadata, entry.value
    return None, {}, entry


def _describe_entry(path: Path, entry: Any) -> tuple[_Entry, list[Any], Any]:
    """The record of an entry, its leaves and its value's treedef."""
    cls, metadata, value = _split_entry(entry)
    keyed, treedef = tree_flatten_with_path(value)
    leaves = tuple(_describe_leaf(x, keystr(kp), path) for kp, x in keyed)
    record = _Entry(
        path=path,
        kind=None if cls is None else _class_name(cls),
        collection=None if cls is None else cls.collection,
        metadata=metadata,
        leaves=leaves,
        structure=_encode_structure(value, iter(range(len(leaves)))),
    )
    return record, [x for _, x in keyed], treedef


# ------------------------------------------------------------------------------------
# JSON encodings of metadata and of simple pytree structures.


def _encode_meta(value: Any, path: Path, key: str) -> Any:
    shown: object = value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple):
        items: tuple[Any, ...] = value  # pyright: ignore[reportUnknownVariableType]
        return {"tuple": [_encode_meta(v, path, key) for v in items]}
    if isinstance(value, list):
        elems: list[Any] = value  # pyright: ignore[reportUnknownVariableType]
        return {"list": [_encode_meta(v, path, key) for v in elems]}
    if isinstance(value, dict):
        mapping: dict[Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
        if all(isinstance(k, str) for k in mapping):
            return {"dict": {k: _encode_meta(v, path, key) for k, v in mapping.items()}}
    raise TypeError(MSG_METADATA.format(key=key or "metadata", value=shown, where=_where(path)))


def _decode_meta(value: Any) -> Any:
    if isinstance(value, dict):
        tagged: dict[str, Any] = value  # pyright: ignore[reportUnknownVariableType]
        ((tag, inner),) = tagged.items()
        if tag == "tuple":
            return tuple(_decode_meta(v) for v in inner)
        if tag == "list":
            return [_decode_meta(v) for v in inner]
        return {k: _decode_meta(v) for k, v in inner.items()}
    return value


def _encode_meta_checked(metadata: dict[str, Any], path: Path) -> None:
    for key, value in metadata.items():
        _encode_meta(value, path, key)


def _encode_structure(value: Any, counter: Any) -> Any:
    """None/tuple/list/dict nests of leaves as JSON (leaves become their index), in
    jax's flattening order; None for any other pytree node type (restore needs a target).
    """
    if value is None:
        return {"none": True}
    if type(value) in (tuple, list):
        seq: Sequence[Any] = value
        items = [_encode_structure(v, counter) for v in seq]
        return None if any(i is None for i in items) else {type(value).__name__: items}
    if type(value) is dict:
        mapping: dict[Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
        if not all(isinstance(k, str) for k in mapping):
            return None
        encoded = {k: _encode_structure(mapping[k], counter) for k in sorted(mapping)}
        return None if any(v is None for v in encoded.values()) else {"dict": encoded}
    leaves, _ = tree_flatten(value)
    if len(leaves) == 1 and leaves[0] is value:
        return {"leaf": next(counter)}
    return None  # another pytree node type


def _decode_structure(encoded: Any, leaves: list[Any]) -> Any:
    ((tag, inner),) = encoded.items()
    if tag == "leaf":
        return leaves[inner]
    if tag == "none":
        return None
    if tag == "tuple":
        return tuple(_decode_structure(v, leaves) for v in inner)
    if tag == "list":
        return [_decode_structure(v, leaves) for v in inner]
    return {k: _decode_structure(v, leaves) for k, v in inner.items()}


# ------------------------------------------------------------------------------------
# The orbax item: a nested dict of the array leaves, keyed by path.


def _orbax_key(component: str | int, path: Path) -> str:
    if isinstance(component, int):
        return str(component)
    reason = None
    if not component:
        reason = "is empty"
    elif "." in component or "/" in component:
        reason = "contains '.' or '/'"
    elif component.isdigit():
        reason = "is a digit string (it would collide with a Sequence position)"
    if reason is not None:
        raise ValueError(MSG_KEY.format(where=_where(path), key=component, reason=reason))
    return component


def _nest(tree: dict[str, Any], path: Path, value: Any) -> None:
    node = tree
    for component in path[:-1]:
        node = node.setdefault(_orbax_key(component, path), {})
    node[_orbax_key(path[-1], path)] = value


def _lookup(tree: dict[str, Any], path: Path) -> Any:
    node: Any = tree
    for component in path:
        node = node[str(component)]
    return node


def _array_item(record: _Entry, leaves: list[Any], convert: Callable[[_Leaf, Any], Any]) -> Any:
    """The value stored in the orbax tree for one entry, or None if it has no arrays."""
    arrays = {str(i): convert(d, x) for i, (d, x) in enumerate(zip(record.leaves, leaves))}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    if not arrays:
        return None
    if len(record.leaves) == 1 and record.leaves[0].key == "":
        return arrays["0"]
    return arrays


def _to_saved(leaf: _Leaf, x: Any) -> Any:
    if not leaf.is_array:
        return None
    if leaf.type == "prng_key":
        return jax.random.key_data(x)
    if leaf.type == "numpy_scalar":
        return np.asarray(x)
    return x


# ------------------------------------------------------------------------------------
# Public API.


def _as_dir(directory: str | os.PathLike[str]) -> FsPath:
    # orbax wants absolute paths.
    return FsPath(directory).expanduser().absolute()


def save(
    directory: str | os.PathLike[str],
    state: State[Any] | Module,
    /,
    *,
    overwrite: bool = False,
) -> None:
    """Write `state` (a State, or a Module's whole state) to a new checkpoint directory.

    Records each entry's Variable kind and metadata, and each leaf's dtype and shape,
    next to the arrays, so that `restore` can check the target and `load` can rebuild
    the State without one. Raises FileExistsError if `directory` exists (unless
    `overwrite=True`).
    """
    ocp = _orbax()
    path = _as_dir(directory)
    if path.exists() and not overwrite:
        raise FileExistsError(MSG_EXISTS.format(path=path))
    if isinstance(state, Module):
        state = state.get_state()
    elif not _is_state(state):
        raise TypeError(MSG_SAVE_TYPE.format(type=type(state).__name__))
    records: list[dict[str, Any]] = []
    arrays: dict[str, Any] = {}
    for entry_path, entry in state.items():
        record, leaves, _ = _describe_entry(entry_path, entry)
        _encode_meta_checked(record.metadata, entry_path)
        records.append(record.to_json())
        item = _array_item(record, leaves, _to_saved)
        if item is not None:
            _nest(arrays, entry_path, item)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "entries": records}
    items: dict[str, Any] = {_META_ITEM: ocp.args.JsonSave(meta)}
    if arrays:
        items[_STATE_ITEM] = ocp.args.StandardSave(arrays)
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        checkpointer.save(path, ocp.args.Composite(**items), force=overwrite)


def _is_json_object(x: object) -> TypeIs[dict[str, Any]]:
    return type(x) is dict


def _read_records(ocp: ModuleType, path: FsPath) -> list[_Entry]:
    if not path.exists():
        raise FileNotFoundError(MSG_MISSING.format(path=path))
    try:
        with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
            restored = checkpointer.restore(path, ocp.args.Composite(nnx=ocp.args.JsonRestore()))
        meta: Any = restored[_META_ITEM]
    except (KeyError, ValueError, FileNotFoundError) as e:
        raise ValueError(MSG_NOT_NNX.format(path=path)) from e
    if not _is_json_object(meta) or meta.get("format") != FORMAT:
        raise ValueError(MSG_NOT_NNX.format(path=path))
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(MSG_VERSION.format(path=path, version=meta.get("version")))
    entries: list[dict[str, Any]] = meta["entries"]
    return [_Entry.from_json(e) for e in entries]


def _restore_arrays(
    ocp: ModuleType,
    path: FsPath,
    plan: list[tuple[_Entry, list[Any]]],
) -> dict[str, Any]:
    """Restore the orbax item; `plan` gives each entry's record and target leaves
    (for shardings; None where the target has none)."""

    def abstract(leaf: _Leaf, target: Any) -> Any:
        if not leaf.is_array:
            return None
        assert leaf.shape is not None and leaf.dtype is not None
        sharding = getattr(target, "sharding", None) or default_sharding()
        if leaf.type == "prng_key":
            impl = leaf.impl or _key_impl_name(target) or "threefry2x32"
            data = jax_eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl)))
            shape, dtype = (*leaf.shape, *data.shape), data.dtype
            return shape_dtype_struct(shape, dtype, sharding=sharding)
        if leaf.type in ("numpy", "numpy_scalar"):
            # A numpy target restores as numpy, keeping 64-bit dtypes that jax would
            # narrow without jax_enable_x64.
            return np.zeros(leaf.shape, np.dtype(jnp.dtype(leaf.dtype)))
        return shape_dtype_struct(leaf.shape, jnp.dtype(leaf.dtype), sharding=sharding)

    tree: dict[str, Any] = {}
    for record, targets in plan:
        item = _array_item(record, targets, abstract)
        if item is not None:
            _nest(tree, record.path, item)
    if not tree:
        return {}
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        restored = checkpointer.restore(
            path, ocp.args.Composite(state=ocp.args.StandardRestore(tree))
        )
    out: dict[str, Any] = restored[_STATE_ITEM]
    return out


def _leaf_values(record: _Entry, arrays: dict[str, Any]) -> list[Any]:
    """The restored leaves of one entry, in flattening order, with their saved types."""
    stored: Any = None
    if any(leaf.is_array for leaf in record.leaves):
        stored = _lookup(arrays, record.path)
    single = len(record.leaves) == 1 and record.leaves[0].key == ""
    values: list[Any] = []
    for i, leaf in enumerate(record.leaves):
        if not leaf.is_array:
            values.append(_scalar(leaf))
            continue
        x: Any = stored if single else stored[str(i)]
        if leaf.type == "prng_key":
            x = wrap_key_data(x, impl=leaf.impl or "threefry2x32")
        elif leaf.type == "numpy":
            x = np.asarray(x)
        elif leaf.type == "numpy_scalar":
            x = np.asarray(x)[()]
        values.append(x)
    return values


def _scalar(leaf: _Leaf) -> bool | int | float:
    assert leaf.value is not None
    return _SCALARS[leaf.type](leaf.value)


def _compare(saved: _Entry, target: _Entry) -> str | None:
    """Why `saved` cannot be restored into `target` (None if it can)."""
    if saved.kind != target.kind:
        return f"checkpoint has {saved.describe_kind()}, target has {target.describe_kind()}"
    if saved.metadata != target.metadata:
        return (
            f"metadata differs: checkpoint has {saved.describe_kind()}, "
            f"target has {target.describe_kind()}"
        )
    if [leaf.key for leaf in saved.leaves] != [leaf.key for leaf in target.leaves]:
        return (
            f"value structure differs: checkpoint has {saved.describe_leaves()}, "
            f"target has {target.describe_leaves()}"
        )
    for s, t in zip(saved.leaves, target.leaves):
        if not _leaf_fits(s, t):
            return (
                f"checkpoint has {saved.describe_leaves()}, target has {target.describe_leaves()}"
            )
    return None


def _leaf_fits(saved: _Leaf, target: _Leaf) -> bool:
    """Whether a saved leaf can be restored where the target has its leaf.

    The restored leaf keeps its saved type (jax, numpy, Python scalar). An abstract
    target leaf (from `nnx.eval_shape`, which turns numpy arrays and Python scalars
    into jax shapes) accepts any saved leaf that jax would give that shape and dtype.
    """
    if target.type == "abstract":
        if saved.type == "prng_key":
            return False
        dtype = np.dtype(_SCALARS[saved.type]) if not saved.is_array else jnp.dtype(saved.dtype)
        shape = () if not saved.is_array else saved.shape
        return (
            shape == target.shape
            and _dtype_name(jax.dtypes.canonicalize_dtype(dtype)) == target.dtype
        )
    if not saved.is_array or not target.is_array:
        return saved.type == target.type
    if (saved.type == "prng_key") != (target.type == "prng_key"):
        return False
    return saved.dtype == target.dtype and saved.shape == target.shape


def _format_problems(problems: list[str]) -> str:
    shown = problems[:_MAX_PROBLEMS]
    lines = [f"  - {p}" for p in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    return "\n".join(lines)


def _is_state(x: object) -> TypeIs[State[Any]]:
    return isinstance(x, State)


@overload
def restore(directory: str | os.PathLike[str], target: M, /) -> M: ...
@overload
def restore(directory: str | os.PathLike[str], target: State[Any], /) -> State[Any]: ...
def restore(directory: str | os.PathLike[str], target: Module | State[Any], /) -> Any:
    """Restore a checkpoint into `target`, exactly: values, dtypes, kinds, metadata.

    `target` is a Module (concrete, or abstract from `nnx.eval_shape`): its state is
    replaced in place and the Module is returned. Or a State (e.g. the abstract State
    of `nnx.eval_shape(...).partition()`): a new State is returned. Arrays are placed
    with the target's shardings (an abstract leaf's `ShapeDtypeStruct.sharding`, a
    concrete leaf's `.sharding`), else on the default device.

    Raises ValueError, listing every path that differs, if the checkpoint's structure
    (paths, kinds, metadata, dtypes, shapes) is not the target's.
    """
    if isinstance(target, Module):
        target_state = target.get_state()
        label = f"a {type(target).__name__}"
    elif _is_state(target):
        target_state = target
        label = "the given State"
    else:
        raise TypeError(MSG_TARGET_TYPE.format(type=type(target).__name__))
    ocp = _orbax()
    path = _as_dir(directory)
    saved = {record.path: record for record in _read_records(ocp, path)}

    problems: list[str] = []
    plan: list[tuple[_Entry, list[Any]]] = []
    rebuild: list[tuple[Path, Any, Any]] = []
    for entry_path, entry in target_state.items():
        target_record, target_leaves, treedef = _describe_entry(entry_path, entry)
        record = saved.get(entry_path)
        if record is None:
            problems.append(f"{entry_path!r}: in the target, not in the checkpoint")
            continue
        reason = _compare(record, target_record)
        if reason is not None:
            problems.append(f"{entry_path!r}: {reason}")
            continue
        plan.append((record, target_leaves))
        rebuild.append((entry_path, entry, treedef))
    problems += [
        f"{p!r}: in the checkpoint ({saved[p].describe_kind()}), not in the target"
        for p in saved
        if p not in target_state
    ]
    if problems:
        raise ValueError(
            MSG_MISMATCH.format(path=path, target=label, problems=_format_problems(problems))
        )

    arrays = _restore_arrays(ocp, path, plan)
    restored: dict[Path, Any] = {}
    for (entry_path, entry, treedef), (record, _) in zip(rebuild, plan):
        value = tree_unflatten(treedef, _leaf_values(record, arrays))
        restored[entry_path] = entry.replace(value=value) if is_node_box(entry) else value
    state = State(restored)
    if isinstance(target, Module):
        target.update_state(state)
        return target
    return state


def _is_node_class(x: object) -> TypeIs[type[Node[Any]]]:
    return isinstance(x, type) and issubclass(x, Node)


def _resolve_kind(record: _Entry) -> type[Node[Any]]:
    assert record.kind is not None
    module_name, _, qualname = record.kind.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        obj = None
    if _is_node_class(obj):
        return obj
    # A class made on the fly (nnx.variable_type("name")) is found by its collection.
    return variable_type(record.collection or "variable")


def load(directory: str | os.PathLike[str], /) -> State[Any]:
    """Read a checkpoint without a target: a State with the saved kinds, metadata,
    dtypes and shapes, its arrays on the default device.

    Variable kinds are found by import (`module:qualname` as saved). Entries whose
    value is a pytree other than nested None/tuple/list/dict need `restore(path,
    target)`.
    """
    ocp = _orbax()
    path = _as_dir(directory)
    records = _read_records(ocp, path)
    for record in records:
        if record.structure is None:
            raise ValueError(MSG_NEEDS_TARGET.format(where=_where(record.path), type="custom"))
    arrays = _restore_arrays(ocp, path, [(r, [None] * len(r.leaves)) for r in records])
    entries: dict[Path, Any] = {}
    for record in records:
        value = _decode_structure(record.structure, _leaf_values(record, arrays))
        if record.kind is None:
            entries[record.path] = value
        else:
            cls = _resolve_kind(record)
            entries[record.path] = cls._unflatten(_metadata_tuple(record.metadata), (value,))
    return State(entries)


def _metadata_tuple(metadata: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(metadata.items()))

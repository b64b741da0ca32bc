"""Checkpoints: save a State (or a Module's state) with orbax, restore it exactly.

A checkpoint is an orbax composite checkpoint with two items:

- ``state``: the arrays, as a nested dict keyed by the State's paths (``{"linear":
  {"kernel": ...}}``), written by orbax's standard handler (so other orbax tools can
  read it);
- ``nnx``: JSON that records, per path, the entry's pytree structure (Variable kinds
  and metadata included) and, per leaf, its type, dtype and shape. Python scalars
  and zero-size arrays are stored there by value.

`restore` first compares that record with the target (a Module, possibly abstract
from `nnx.eval_shape`, or a State) and raises one ValueError naming the differing
paths, so a wrong-structure restore never reaches orbax (whose older releases would
silently pad or truncate a mismatched array). How the directory is laid out,
locked and replaced so that a save never loses the checkpoint it replaces is in
`_checkpoint_dir.py`. orbax-checkpoint is optional:
``pip install "nnx[checkpoint]"``.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path as FsPath
from types import ModuleType
from typing import Any, Final, TypeVar, overload

import jax
import jax.numpy as jnp
import numpy as np
from typing_extensions import TypeIs

from ._checkpoint_dir import read_dir, write_items
from ._compat import (
    Tracer,
    default_sharding,
    device_put,
    is_prng_key_dtype,
    jax_eval_shape,
    shape_dtype_struct,
    tree_flatten,
    tree_unflatten,
    wrap_key_data,
)
from ._filters import Path
from ._module import Module
from ._state import State
from ._variables import Node, defined_node_class, is_node_box, variable_type

__all__ = ["load", "restore", "save"]

M = TypeVar("M", bound=Module)

FORMAT: Final = "nnx-checkpoint"
FORMAT_VERSION: Final = 1
_STATE_ITEM: Final = "state"
_META_ITEM: Final = "nnx"
_MAX_PROBLEMS: Final = 50

MSG_NO_ORBAX: Final = (
    "nnx checkpoints need orbax-checkpoint, which is not installed.\n"
    'Fix: pip install "nnx[checkpoint]"  (or: pip install orbax-checkpoint)'
)
MSG_CORRUPT: Final = (
    "The checkpoint at {path} is damaged or was edited by hand: {what}. Restore it from "
    "a copy, or save it again."
)
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
    "{where} holds a traced value ({value}): checkpoints are written and read outside "
    "jax.jit / nnx.jit and other transforms, where state is concrete. Call "
    "nnx.checkpoints.save/restore outside the transformed function."
)
MSG_UNSUPPORTED_LEAF: Final = (
    "Cannot save {where}: {what} is not supported. Checkpoints hold arrays of numbers "
    "or booleans (jax or numpy, typed PRNG keys included) and Python bool/int/float "
    "scalars."
)
MSG_ABSTRACT: Final = (
    "Cannot save {where}: it is abstract (a jax.ShapeDtypeStruct, e.g. from "
    "nnx.eval_shape) and has no values. Restore a checkpoint into it instead."
)
MSG_METADATA: Final = (
    "Cannot save the metadata {key}={value!r} of {where}: checkpoint metadata must be "
    "None, bool, int, float, str, or tuples/lists/dicts (str keys) of those (exact "
    "types, not subclasses such as named tuples or enums)."
)
MSG_KEY: Final = (
    "Cannot save {where}: the path key {key!r} {reason}. orbax names arrays by joining "
    "path keys with '.', so such keys would collide."
)
MSG_COLLIDE: Final = (
    "Cannot save {where}: its path collides with the path {other} of another entry; "
    "paths of one State must not be prefixes of each other."
)
MSG_NEEDS_TARGET: Final = (
    "Cannot load {where} without a target: its value holds a {type}, which the "
    "checkpoint records only by name. Use nnx.checkpoints.restore(path, target) with "
    "a model or State of the same structure."
)
MSG_KIND_NOT_FOUND: Final = (
    "Cannot load {where} without a target: its kind {kind} is not defined in this "
    "process. nnx never imports a module a checkpoint names (that could run code from an "
    "untrusted file); import or define the class first, or use "
    "nnx.checkpoints.restore(path, target) with a model that has it."
)
MSG_X64: Final = (
    "{where} was saved with a {dtype} jax array (under jax_enable_x64); here jax would "
    "narrow it. Fix: jax.config.update('jax_enable_x64', True) before restoring."
)
MSG_TARGET_TYPE: Final = "restore() expects a Module or a State as target, got {type}."
MSG_SAVE_TYPE: Final = (
    "save() expects a Module or a State, got {type}. To save several States (e.g. the "
    "result of partition(...)), save each, or combine them with nnx.State.merge(*states)."
)


def _orbax() -> ModuleType:
    try:
        return importlib.import_module("orbax.checkpoint")
    except ImportError as e:  # pragma: no cover - exercised only without orbax
        raise ImportError(MSG_NO_ORBAX) from e


def _where(path: Path) -> str:
    return f"state entry {path!r}"


def _type_of(x: object) -> type[object]:
    return type(x)


def _is_state(x: object) -> TypeIs[State[Any]]:
    return isinstance(x, State)


def _is_json_object(x: object) -> TypeIs[dict[str, Any]]:
    return type(x) is dict


def _is_json_list(x: object) -> TypeIs[list[Any]]:
    return type(x) is list


def _class_name(cls: type[Any]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _dtype_name(dtype: Any) -> str:
    return str(np.dtype(dtype))


def _jax_keeps(dtype_name: str) -> bool:
    """Whether a jax array of this dtype exists in this process (no x64 narrowing)."""
    dtype = jnp.dtype(dtype_name)
    return _dtype_name(jax.dtypes.canonicalize_dtype(dtype)) == _dtype_name(dtype)


# ------------------------------------------------------------------------------------
# What a checkpoint records of a leaf.

_SCALARS: Final[dict[str, type[bool] | type[int] | type[float]]] = {
    "bool": bool,
    "int": int,
    "float": float,
}
_ARRAY_TYPES: Final = (jax.Array, jax.ShapeDtypeStruct, np.ndarray, np.generic)


@dataclass(frozen=True)
class _Leaf:
    """One leaf: its type ("jax", "numpy", "numpy_scalar", "prng_key", "abstract" (a
    target only), or a Python scalar type name), dtype and shape, or scalar value."""

    type: str
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    impl: str | None = None  # typed PRNG keys: the key implementation's name
    value: bool | int | float | None = None

    @property
    def is_array(self) -> bool:
        return self.type not in _SCALARS

    @property
    def in_orbax(self) -> bool:
        """Stored by orbax (arrays with elements); the rest lives in the JSON."""
        return self.is_array and self.shape is not None and 0 not in self.shape

    def describe(self) -> str:
        if not self.is_array:
            return self.type
        assert self.shape is not None
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"

    def to_json(self) -> dict[str, Any]:
        if not self.is_array:
            return {"type": self.type, "value": self.value}
        out: dict[str, Any] = {"type": self.type, "dtype": self.dtype, "shape": self.shape}
        if self.impl is not None:
            out["impl"] = self.impl
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _Leaf:
        shape = raw.get("shape")
        return cls(
            type=raw["type"],
            dtype=raw.get("dtype"),
            shape=None if shape is None else tuple(int(d) for d in shape),
            impl=raw.get("impl"),
            value=raw.get("value"),
        )


def _describe_leaf(x: Any, where: str) -> _Leaf:
    leaf_type = _type_of(x)
    if issubclass(leaf_type, Tracer):
        raise ValueError(MSG_TRACED.format(where=where, value=leaf_type.__name__))
    if leaf_type in _SCALARS.values():
        return _Leaf(leaf_type.__name__, value=x)
    if not issubclass(leaf_type, _ARRAY_TYPES):
        what = f"a leaf of type {leaf_type.__name__}"
        raise TypeError(MSG_UNSUPPORTED_LEAF.format(where=where, what=what))
    dtype: Any = x.dtype
    shape = tuple(int(d) for d in x.shape)
    if is_prng_key_dtype(dtype):
        impl = str(jax.random.key_impl(x)) if isinstance(x, jax.Array) else None
        return _Leaf("prng_key", str(dtype), shape, impl=impl)
    if not (jnp.issubdtype(dtype, np.number) or jnp.issubdtype(dtype, np.bool_)):
        what = f"an array of dtype {dtype}"
        raise TypeError(MSG_UNSUPPORTED_LEAF.format(where=where, what=what))
    if issubclass(leaf_type, jax.ShapeDtypeStruct):
        kind = "abstract"
    elif issubclass(leaf_type, np.ndarray):
        kind = "numpy"
    elif issubclass(leaf_type, np.generic):
        kind = "numpy_scalar"
    else:
        kind = "jax"
    return _Leaf(kind, _dtype_name(dtype), shape)


def _leaf_fits(saved: _Leaf, target: _Leaf) -> bool:
    """Whether a saved leaf can be restored where the target has its leaf.

    An abstract target leaf (from `nnx.eval_shape`, which turns numpy arrays and
    Python scalars into jax shapes, narrowing 64-bit dtypes) accepts a saved numpy
    array or scalar that jax would give that shape and dtype; any other leaf must
    match exactly.
    """
    if saved.type == "prng_key" or target.type == "prng_key":
        same_kind = saved.type == target.type
        return same_kind and saved.dtype == target.dtype and saved.shape == target.shape
    if target.type == "abstract" and saved.type != "jax":
        if saved.is_array:
            dtype, shape = jnp.dtype(saved.dtype), saved.shape
        else:
            dtype, shape = np.dtype(_SCALARS[saved.type]), ()
        canonical = _dtype_name(jax.dtypes.canonicalize_dtype(dtype))
        return shape == target.shape and canonical == target.dtype
    if not saved.is_array or not target.is_array:
        return saved.type == target.type
    return saved.dtype == target.dtype and saved.shape == target.shape


# ------------------------------------------------------------------------------------
# What a checkpoint records of an entry: its pytree structure as JSON, leaves by index.


def _encode_meta(value: Any, where: str, key: str) -> Any:
    shown: object = value
    kind = _type_of(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind in (tuple, list):
        items: list[Any] = list(value)
        return {kind.__name__: [_encode_meta(v, where, key) for v in items]}
    if kind is dict:
        mapping: dict[Any, Any] = value
        if all(type(k) is str for k in mapping):
            return {"dict": {k: _encode_meta(v, where, key) for k, v in mapping.items()}}
    raise TypeError(MSG_METADATA.format(key=key, value=shown, where=where))


def _decode_meta(value: Any) -> Any:
    if not _is_json_object(value):
        return value
    ((tag, inner),) = value.items()
    if tag == "tuple":
        return tuple(_decode_meta(v) for v in inner)
    if tag == "list":
        return [_decode_meta(v) for v in inner]
    return {k: _decode_meta(v) for k, v in inner.items()}


def _children(value: Any) -> list[Any]:
    """The immediate pytree children of `value`, in jax's flattening order."""

    def is_leaf(x: object) -> bool:
        return x is not value

    return tree_flatten(value, is_leaf)[0]


class _Encoder:
    """Encodes entry values as JSON structure, collecting their leaves in jax order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.leaves: list[Any] = []
        self.records: list[_Leaf] = []

    def encode(self, value: Any, where: str) -> Any:
        if value is None:
            return {"none": True}
        kind = _type_of(value)
        if kind in (tuple, list):
            items: list[Any] = list(value)
            return {kind.__name__: [self.encode(v, f"{where}[{i}]") for i, v in enumerate(items)]}
        if kind is dict and all(type(k) is str for k in value):
            mapping: dict[str, Any] = value
            return {
                "dict": {k: self.encode(mapping[k], f"{where}[{k!r}]") for k in sorted(mapping)}
            }
        if is_node_box(value):
            cls = type(value)
            meta = {k: _encode_meta(v, self._where(where), k) for k, v in value.metadata.items()}
            return {
                "node": _class_name(cls),
                "collection": cls.collection,
                "made_for_collection": bool(getattr(cls, "_nnx_made_for_collection", False)),
                "metadata": meta,
                "value": self.encode(value.value, where),
            }
        if _is_state(value):
            state = value
            return {
                "state": [[list(p), self.encode(v, f"{where}[{p!r}]")] for p, v in state.items()]
            }
        leaves, _ = tree_flatten(value)
        if len(leaves) == 1 and leaves[0] is value:
            self.records.append(_describe_leaf(value, self._where(where)))
            self.leaves.append(value)
            return {"leaf": len(self.leaves) - 1}
        return {
            "other": _class_name(kind),
            "children": [self.encode(c, f"{where}.<{i}>") for i, c in enumerate(_children(value))],
        }

    def _where(self, inner: str) -> str:
        return _where(self.path) + (f" (at {inner})" if inner else "")


@dataclass(frozen=True)
class _Entry:
    """What a checkpoint records of one State entry."""

    path: Path
    tree: Any  # the JSON structure (see _Encoder.encode)
    leaves: tuple[_Leaf, ...]

    def describe_kind(self) -> str:
        if "node" not in self.tree:
            return "a raw value"
        name: str = self.tree["node"].rpartition(":")[2]
        meta = {k: _decode_meta(v) for k, v in self.tree["metadata"].items()}
        if not meta:
            return name
        return f"{name}({', '.join(f'{k}={v!r}' for k, v in sorted(meta.items()))})"

    def describe_leaves(self) -> str:
        if len(self.leaves) == 1:
            return self.leaves[0].describe()
        return "(" + ", ".join(leaf.describe() for leaf in self.leaves) + ")"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": list(self.path),
            "tree": self.tree,
            "leaves": [leaf.to_json() for leaf in self.leaves],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _Entry:
        path: Any = raw["path"]
        if not _is_json_list(path) or not all(type(k) in (str, int) for k in path):
            raise ValueError(f"its path {path!r} is not a list of names and positions")
        tree: Any = raw["tree"]
        if not _is_json_object(tree):
            raise ValueError(f"its tree {tree!r} is not an object")
        leaves = tuple(_Leaf.from_json(leaf) for leaf in raw["leaves"])
        n_leaves = _count_leaves(tree)
        if n_leaves != len(leaves):
            raise ValueError(f"its tree has {n_leaves} leaves but {len(leaves)} are described")
        return cls(path=tuple(path), tree=tree, leaves=leaves)


def _count_leaves(tree: Any) -> int:
    """How many leaves a recorded tree (what `_Encoder.encode` wrote) holds; raises
    KeyError/ValueError for what the encoder cannot have written."""
    if not _is_json_object(tree):
        raise ValueError(f"{tree!r} is not a recorded subtree")
    if "node" in tree:
        return _count_leaves(tree["value"])
    if "other" in tree:
        return sum(_count_leaves(c) for c in tree["children"])
    ((tag, inner),) = tree.items()
    if tag == "leaf":
        return 1
    if tag == "none":
        return 0
    if tag in ("tuple", "list"):
        return sum(_count_leaves(v) for v in inner)
    if tag == "dict":
        return sum(_count_leaves(v) for v in inner.values())
    if tag == "state":
        return sum(_count_leaves(v) for _, v in inner)
    raise ValueError(f"unknown tag {tag!r}")


def _describe_entry(path: Path, entry: Any) -> tuple[_Entry, list[Any]]:
    encoder = _Encoder(path)
    tree = encoder.encode(entry, "")
    return _Entry(path, tree, tuple(encoder.records)), encoder.leaves


def _same_json(a: Any, b: Any) -> bool:
    # As JSON text: NaN equals NaN, and tuples equal lists, as they are on disk.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _compare(saved: _Entry, target: _Entry) -> str | None:
    """Why `saved` cannot be restored into `target` (None if it can)."""
    s_node, t_node = saved.tree.get("node"), target.tree.get("node")
    if s_node != t_node:
        return f"checkpoint has {saved.describe_kind()}, target has {target.describe_kind()}"
    if s_node is not None and not _same_json(saved.tree["metadata"], target.tree["metadata"]):
        return (
            f"metadata differs: checkpoint has {saved.describe_kind()}, "
            f"target has {target.describe_kind()}"
        )
    if not _same_json(saved.tree, target.tree):
        return (
            f"value structure differs (containers, kinds or metadata inside the value): "
            f"checkpoint has {_short_json(saved.tree)}, target has {_short_json(target.tree)}"
        )
    for s, t in zip(saved.leaves, target.leaves):
        if not _leaf_fits(s, t):
            return (
                f"checkpoint has {saved.describe_leaves()}, target has {target.describe_leaves()}"
            )
    narrowed = _narrowed_dtype(saved)
    return None if narrowed is None else MSG_X64.format(where="it", dtype=narrowed)


def _narrowed_dtype(record: _Entry) -> str | None:
    """The dtype of a saved jax leaf that jax would narrow here (64-bit without
    jax_enable_x64), if the entry has one."""
    for leaf in record.leaves:
        if leaf.type == "jax" and not _jax_keeps(leaf.dtype or ""):
            return leaf.dtype
    return None


def _short_json(tree: Any, limit: int = 160) -> str:
    text = json.dumps(tree, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------
# The orbax item: a nested dict of the stored array leaves, keyed by path.


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


def _nest(
    tree: dict[str, Any], path: Path, value: Any, owners: dict[tuple[str, ...], Path]
) -> None:
    """Put `value` at `path` in the nested dict; paths that are prefixes of one
    another (possible in a hand-built State) are refused."""
    if not path:
        raise ValueError(MSG_KEY.format(where=_where(path), key="()", reason="is empty"))
    keys = tuple(_orbax_key(c, path) for c in path)
    for i in range(1, len(keys) + 1):
        other = owners.get(keys[:i])
        if other is not None:
            raise ValueError(MSG_COLLIDE.format(where=_where(path), other=other))
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if keys[-1] in node:
        other_path = next(p for k, p in owners.items() if k[: len(keys)] == keys)
        raise ValueError(MSG_COLLIDE.format(where=_where(path), other=other_path))
    node[keys[-1]] = value
    owners[keys] = path


def _lookup(tree: dict[str, Any], path: Path) -> Any:
    node: Any = tree
    for component in path:
        node = node[str(component)]
    return node


def _orbax_value(record: _Entry, values: list[Any]) -> Any:
    """What the orbax tree holds for one entry: its stored leaves by index (the
    array itself when the entry is one array), or None if it stores none."""
    stored = {str(i): v for i, (leaf, v) in enumerate(zip(record.leaves, values)) if leaf.in_orbax}
    if not stored:
        return None
    if len(record.leaves) == 1:
        return stored["0"]
    return stored


def _native_byte_order(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if x.dtype.isnative:
        return x
    native: Any = x.dtype.newbyteorder("=")
    return x.astype(native)


def _to_saved(leaf: _Leaf, x: Any) -> Any:
    if leaf.type == "prng_key":
        return jax.random.key_data(x)
    if leaf.type in ("numpy", "numpy_scalar"):
        return _native_byte_order(np.asarray(x))
    return x


# ------------------------------------------------------------------------------------
# Directories: local paths are made absolute (orbax wants that); "scheme://" paths
# (gs://, s3://, ...) go to orbax's own path type.


def _as_dir(directory: str | os.PathLike[str]) -> Any:
    text = os.fspath(directory)
    if "://" in text:
        epath: Any = importlib.import_module("etils.epath")
        return epath.Path(text)
    return FsPath(text).expanduser().absolute()


# ------------------------------------------------------------------------------------
# Public API.


def save(
    directory: str | os.PathLike[str],
    state: State[Any] | Module,
    /,
    *,
    overwrite: bool = False,
) -> None:
    """Write `state` (a State, or a Module's whole state) as a checkpoint directory.

    Records each entry's structure (Variable kinds and metadata included) and each
    leaf's type, dtype and shape next to the arrays, so that `restore` can check a
    target and `load` can rebuild the State without one. Everything is checked before
    anything is written; the directory appears only when complete.

    Raises FileExistsError if `directory` exists, unless `overwrite=True`, which
    replaces an earlier nnx checkpoint (or an empty directory), never anything else.
    """
    ocp = _orbax()
    path = _as_dir(directory)
    if isinstance(state, Module):
        state = state.get_state()
    elif not _is_state(state):
        raise TypeError(MSG_SAVE_TYPE.format(type=type(state).__name__))
    records: list[dict[str, Any]] = []
    arrays: dict[str, Any] = {}
    owners: dict[tuple[str, ...], Path] = {}
    for entry_path, entry in state.items():
        record, leaves = _describe_entry(entry_path, entry)
        for leaf in record.leaves:
            if leaf.type == "abstract":
                raise TypeError(MSG_ABSTRACT.format(where=_where(entry_path)))
        records.append(record.to_json())
        stored = [_to_saved(leaf, x) for leaf, x in zip(record.leaves, leaves)]
        item = _orbax_value(record, stored)
        if item is not None:
            _nest(arrays, entry_path, item, owners)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "entries": records}
    items: dict[str, Any] = {_META_ITEM: ocp.args.JsonSave(meta)}
    if arrays:
        items[_STATE_ITEM] = ocp.args.StandardSave(arrays)
    write_items(ocp, path, items, overwrite)


def _read_records(ocp: ModuleType, path: Any, items_dir: Any) -> list[_Entry]:
    """The entry records of the checkpoint whose items are in `items_dir`."""
    try:
        with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
            restored = checkpointer.restore(
                items_dir, ocp.args.Composite(nnx=ocp.args.JsonRestore())
            )
        meta: Any = restored[_META_ITEM]
    except (KeyError, ValueError, FileNotFoundError) as e:
        raise ValueError(MSG_NOT_NNX.format(path=path)) from e
    if not _is_json_object(meta) or meta.get("format") != FORMAT:
        raise ValueError(MSG_NOT_NNX.format(path=path))
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(MSG_VERSION.format(path=path, version=meta.get("version")))
    entries: Any = meta.get("entries")
    if not _is_json_list(entries):
        raise ValueError(MSG_CORRUPT.format(path=path, what="its entry list is missing"))
    records: list[_Entry] = []
    for i, raw in enumerate(entries):
        try:
            records.append(_Entry.from_json(raw))
        except (KeyError, TypeError, ValueError, IndexError, AssertionError, AttributeError) as e:
            what = f"entry {i} of its record is malformed ({type(e).__name__}: {e})"
            raise ValueError(MSG_CORRUPT.format(path=path, what=what)) from None
    paths = [r.path for r in records]
    if len(set(paths)) != len(paths):
        what = "its record lists one path twice"
        raise ValueError(MSG_CORRUPT.format(path=path, what=what))
    return records


@dataclass(frozen=True)
class _Placement:
    """How one saved leaf comes back: as jax (with a sharding) or as numpy."""

    as_jax: bool
    sharding: Any = None


def _placement(saved: _Leaf, target: _Leaf | None, target_value: Any) -> _Placement:
    """The restored leaf takes the target's array type and sharding; without a target
    (or where jax would narrow a numpy-saved 64-bit dtype), the saved type."""
    if not saved.is_array:
        return _Placement(False)  # a Python scalar stays one
    if saved.type == "prng_key":
        return _Placement(True, getattr(target_value, "sharding", None))
    if target is not None and target.type in ("jax", "abstract"):
        if saved.type == "jax" or _jax_keeps(saved.dtype or ""):
            return _Placement(True, getattr(target_value, "sharding", None))
        return _Placement(False)
    if target is not None and target.type in ("numpy", "numpy_scalar"):
        return _Placement(False)
    return _Placement(saved.type == "jax")


def _key_data_shape(leaf: _Leaf) -> tuple[tuple[int, ...], Any]:
    impl = leaf.impl or "threefry2x32"
    data = jax_eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl)))
    assert leaf.shape is not None
    return (*leaf.shape, *data.shape), data.dtype


def _template(leaf: _Leaf, placement: _Placement) -> Any:
    """The abstract value orbax restores one stored leaf into."""
    assert leaf.shape is not None and leaf.dtype is not None
    sharding = placement.sharding or default_sharding()
    if leaf.type == "prng_key":
        shape, dtype = _key_data_shape(leaf)
        return shape_dtype_struct(shape, dtype, sharding=sharding)
    if placement.as_jax:
        return shape_dtype_struct(leaf.shape, jnp.dtype(leaf.dtype), sharding=sharding)
    return np.zeros(leaf.shape, np.dtype(jnp.dtype(leaf.dtype)))


def _restore_arrays(
    ocp: ModuleType, path: Any, items_dir: Any, plan: list[tuple[_Entry, list[_Placement]]]
) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    owners: dict[tuple[str, ...], Path] = {}
    for record, placements in plan:
        templates = [
            _template(leaf, p) if leaf.in_orbax else None
            for leaf, p in zip(record.leaves, placements)
        ]
        item = _orbax_value(record, templates)
        if item is not None:
            _nest(tree, record.path, item, owners)
    if not tree:
        return {}
    try:
        with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
            restored = checkpointer.restore(
                items_dir, ocp.args.Composite(state=ocp.args.StandardRestore(tree))
            )
        out: Any = restored[_STATE_ITEM]
    except (KeyError, ValueError, FileNotFoundError) as e:
        what = f"its arrays (the '{_STATE_ITEM}' item) cannot be read ({type(e).__name__}: {e})"
        raise ValueError(MSG_CORRUPT.format(path=path, what=what)) from None
    if not _is_json_object(out):
        raise ValueError(MSG_CORRUPT.format(path=path, what="its arrays are not a tree of dicts"))
    return out


def _leaf_values(record: _Entry, placements: list[_Placement], arrays: dict[str, Any]) -> list[Any]:
    """The restored leaves of one entry, in flattening order."""
    stored: Any = None
    if any(leaf.in_orbax for leaf in record.leaves):
        stored = _lookup(arrays, record.path)
    values: list[Any] = []
    for i, (leaf, placement) in enumerate(zip(record.leaves, placements)):
        if not leaf.is_array:
            assert leaf.value is not None
            values.append(_SCALARS[leaf.type](leaf.value))
            continue
        assert leaf.shape is not None and leaf.dtype is not None
        if leaf.in_orbax:
            x: Any = stored if len(record.leaves) == 1 else stored[str(i)]
        elif leaf.type == "prng_key":
            shape, dtype = _key_data_shape(leaf)
            x = jnp.zeros(shape, dtype)
        elif placement.as_jax:
            x = jnp.zeros(leaf.shape, jnp.dtype(leaf.dtype))
        else:
            x = np.zeros(leaf.shape, np.dtype(jnp.dtype(leaf.dtype)))
        if leaf.type == "prng_key":
            x = wrap_key_data(x, impl=leaf.impl or "threefry2x32")
        elif not placement.as_jax:
            x = np.asarray(x)
            if leaf.type == "numpy_scalar":
                x = x[()]
        elif not leaf.in_orbax and placement.sharding is not None:
            x = device_put(x, placement.sharding)
        values.append(x)
    return values


def _format_problems(problems: list[str]) -> str:
    shown = problems[:_MAX_PROBLEMS]
    lines = [f"  - {p}" for p in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    return "\n".join(lines)


@overload
def restore(directory: str | os.PathLike[str], target: M, /) -> M: ...
@overload
def restore(directory: str | os.PathLike[str], target: State[Any], /) -> State[Any]: ...
def restore(directory: str | os.PathLike[str], target: Module | State[Any], /) -> Any:
    """Restore a checkpoint into `target`, exactly: values, dtypes, kinds, metadata.

    `target` is a Module (concrete, or abstract from `nnx.eval_shape`): its state is
    replaced in place and the Module is returned. Or a State (e.g. the abstract State
    of `nnx.eval_shape(...).partition()`): a new State is returned. Arrays come back
    as the target's leaves are (jax or numpy), placed with the target's shardings (an
    abstract leaf's `ShapeDtypeStruct.sharding`, a concrete leaf's `.sharding`), else
    on the default device.

    Raises ValueError naming the differing paths (the first 50, then a count) if the
    checkpoint's structure (paths, kinds, metadata, containers, dtypes, shapes) is not
    the target's; then nothing is changed.
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
    with read_dir(ocp, path) as items_dir:
        return _restore_into(ocp, path, items_dir, target, target_state, label)


def _restore_into(
    ocp: ModuleType,
    path: Any,
    items_dir: Any,
    target: Module | State[Any],
    target_state: State[Any],
    label: str,
) -> Any:
    saved = {record.path: record for record in _read_records(ocp, path, items_dir)}

    problems: list[str] = []
    plan: list[tuple[_Entry, list[_Placement]]] = []
    rebuild: list[tuple[Path, Any]] = []
    for entry_path, entry in target_state.items():
        target_record, target_leaves = _describe_entry(entry_path, entry)
        record = saved.get(entry_path)
        if record is None:
            problems.append(f"{entry_path!r}: in the target, not in the checkpoint")
            continue
        reason = _compare(record, target_record)
        if reason is not None:
            problems.append(f"{entry_path!r}: {reason}")
            continue
        placements = [
            _placement(s, t, v)
            for s, t, v in zip(record.leaves, target_record.leaves, target_leaves)
        ]
        plan.append((record, placements))
        _, treedef = tree_flatten(entry)
        rebuild.append((entry_path, treedef))
    problems += [
        f"{p!r}: in the checkpoint ({saved[p].describe_kind()}), not in the target"
        for p in saved
        if p not in target_state
    ]
    if problems:
        raise ValueError(
            MSG_MISMATCH.format(path=path, target=label, problems=_format_problems(problems))
        )

    arrays = _restore_arrays(ocp, path, items_dir, plan)
    restored: dict[Path, Any] = {}
    for (entry_path, treedef), (record, placements) in zip(rebuild, plan):
        restored[entry_path] = tree_unflatten(treedef, _leaf_values(record, placements, arrays))
    state = State(restored)
    if isinstance(target, Module):
        target.update_state(state)
        return target
    return state


def _resolve_kind(tree: dict[str, Any], where: str) -> type[Node[Any]]:
    # only a class already defined in this process: a checkpoint never makes nnx
    # import a module it names (an untrusted file must not run code)
    found = defined_node_class(tree["node"])
    if found is not None and found.collection == tree["collection"]:
        return found
    if tree.get("made_for_collection"):
        # made on the fly by nnx.variable_type(name): made again the same way
        return variable_type(tree["collection"])
    raise ValueError(MSG_KIND_NOT_FOUND.format(where=where, kind=tree["node"]))


def _decode(tree: dict[str, Any], leaves: list[Any], where: str) -> Any:
    if "node" in tree:
        cls = _resolve_kind(tree, where)
        meta = tuple(sorted((k, _decode_meta(v)) for k, v in tree["metadata"].items()))
        return cls._unflatten(meta, (_decode(tree["value"], leaves, where),))
    if "other" in tree:
        raise ValueError(MSG_NEEDS_TARGET.format(where=where, type=tree["other"]))
    ((tag, inner),) = tree.items()
    if tag == "leaf":
        return leaves[inner]
    if tag == "none":
        return None
    if tag == "tuple":
        return tuple(_decode(v, leaves, where) for v in inner)
    if tag == "list":
        return [_decode(v, leaves, where) for v in inner]
    if tag == "dict":
        return {k: _decode(v, leaves, where) for k, v in inner.items()}
    assert tag == "state", tag
    return State({tuple(p): _decode(v, leaves, where) for p, v in inner})


def load(directory: str | os.PathLike[str], /) -> State[Any]:
    """Read a checkpoint without a target: a State with the saved kinds, metadata,
    types, dtypes and shapes; jax arrays on the default device.

    Variable classes are looked up (as `module:qualname`) among the classes defined
    in this process, never imported: import or define them first. Classes made by
    `nnx.variable_type(name)` are made again. Values holding pytree nodes other
    than tuples, lists, dicts, States and Variables need `restore(path, target)`.
    """
    ocp = _orbax()
    path = _as_dir(directory)
    with read_dir(ocp, path) as items_dir:
        return _load_from(ocp, path, items_dir)


def _load_from(ocp: ModuleType, path: Any, items_dir: Any) -> State[Any]:
    records = _read_records(ocp, path, items_dir)
    plan: list[tuple[_Entry, list[_Placement]]] = []
    for record in records:
        narrowed = _narrowed_dtype(record)
        if narrowed is not None:
            raise ValueError(MSG_X64.format(where=_where(record.path), dtype=narrowed))
        plan.append((record, [_placement(leaf, None, None) for leaf in record.leaves]))
    arrays = _restore_arrays(ocp, path, items_dir, plan)
    entries: dict[Path, Any] = {}
    for record, placements in plan:
        leaves = _leaf_values(record, placements, arrays)
        entries[record.path] = _decode(record.tree, leaves, _where(record.path))
    return State(entries)

"""The record an nnx checkpoint keeps beside its arrays: per State entry, its pytree
structure (containers, Variable kinds and metadata) and per leaf its type, dtype and
shape, as JSON. `_Encoder` writes it, `Entry.from_json` reads it back (validating
what a hand edit could break), `compare_records` checks it against a restore target, and
`decode` rebuilds an entry without one (resolving Variable classes only among those
defined in the process: a checkpoint never makes nnx import anything).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import jax
import jax.numpy as jnp
import numpy as np
from typing_extensions import TypeIs

from ._compat import Tracer, is_prng_key_dtype, tree_flatten
from ._filters import Path
from ._state import State
from ._var import variable_type
from ._variables import Node, defined_node_class, is_node_box

MSG_X64: Final = (
    "{where} was saved with a {dtype} jax array (under jax_enable_x64); here jax would "
    "narrow it. Fix: jax.config.update('jax_enable_x64', True) before restoring."
)
MSG_KIND_NOT_FOUND: Final = (
    "Cannot load {where} without a target: its kind {kind} is not defined in this "
    "process. nnx never imports a module a checkpoint names (that could run code from an "
    "untrusted file); import or define the class first, or use "
    "nnx.checkpoints.restore(path, target) with a model that has it."
)
MSG_METADATA: Final = (
    "Cannot save the metadata {key}={value!r} of {where}: checkpoint metadata must be "
    "None, bool, int, float, str, or tuples/lists/dicts (str keys) of those (exact "
    "types, not subclasses such as named tuples or enums)."
)
MSG_NEEDS_TARGET: Final = (
    "Cannot load {where} without a target: its value holds a {type}, which the "
    "checkpoint records only by name. Use nnx.checkpoints.restore(path, target) with "
    "a model or State of the same structure."
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


def describe_path(path: Path) -> str:
    return f"state entry {path!r}"


def _type_of(x: object) -> type[object]:
    return type(x)


def is_state(x: object) -> TypeIs[State[Any]]:
    return isinstance(x, State)


def is_json_object(x: object) -> TypeIs[dict[str, Any]]:
    return type(x) is dict


def is_json_list(x: object) -> TypeIs[list[Any]]:
    return type(x) is list


def _class_name(cls: type[Any]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _dtype_name(dtype: Any) -> str:
    return str(np.dtype(dtype))


def jax_keeps(dtype_name: str) -> bool:
    """Whether a jax array of this dtype exists in this process (no x64 narrowing)."""
    dtype = jnp.dtype(dtype_name)
    return _dtype_name(jax.dtypes.canonicalize_dtype(dtype)) == _dtype_name(dtype)


# ------------------------------------------------------------------------------------
# What a checkpoint records of a leaf.

SCALARS: Final[dict[str, type[bool] | type[int] | type[float]]] = {
    "bool": bool,
    "int": int,
    "float": float,
}
_ARRAY_TYPES: Final = (jax.Array, jax.ShapeDtypeStruct, np.ndarray, np.generic)


@dataclass(frozen=True)
class Leaf:
    """One leaf: its type ("jax", "numpy", "numpy_scalar", "prng_key", "abstract" (a
    target only), or a Python scalar type name), dtype and shape, or scalar value."""

    type: str
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    impl: str | None = None  # typed PRNG keys: the key implementation's name
    value: bool | int | float | None = None

    @property
    def is_array(self) -> bool:
        return self.type not in SCALARS

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
    def from_json(cls, raw: dict[str, Any]) -> Leaf:
        shape = raw.get("shape")
        return cls(
            type=raw["type"],
            dtype=raw.get("dtype"),
            shape=None if shape is None else tuple(int(d) for d in shape),
            impl=raw.get("impl"),
            value=raw.get("value"),
        )


def _describe_leaf(x: Any, where: str) -> Leaf:
    leaf_type = _type_of(x)
    if issubclass(leaf_type, Tracer):
        raise ValueError(MSG_TRACED.format(where=where, value=leaf_type.__name__))
    if leaf_type in SCALARS.values():
        return Leaf(leaf_type.__name__, value=x)
    if not issubclass(leaf_type, _ARRAY_TYPES):
        what = f"a leaf of type {leaf_type.__name__}"
        raise TypeError(MSG_UNSUPPORTED_LEAF.format(where=where, what=what))
    dtype: Any = x.dtype
    shape = tuple(int(d) for d in x.shape)
    if is_prng_key_dtype(dtype):
        impl = str(jax.random.key_impl(x)) if isinstance(x, jax.Array) else None
        return Leaf("prng_key", str(dtype), shape, impl=impl)
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
    return Leaf(kind, _dtype_name(dtype), shape)


def _leaf_fits(saved: Leaf, target: Leaf) -> bool:
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
            dtype, shape = np.dtype(SCALARS[saved.type]), ()
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
    if not is_json_object(value):
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
        self.records: list[Leaf] = []

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
        if is_state(value):
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
        return describe_path(self.path) + (f" (at {inner})" if inner else "")


@dataclass(frozen=True)
class Entry:
    """What a checkpoint records of one State entry."""

    path: Path
    tree: Any  # the JSON structure (see _Encoder.encode)
    leaves: tuple[Leaf, ...]

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
    def from_json(cls, raw: dict[str, Any]) -> Entry:
        path: Any = raw["path"]
        if not is_json_list(path) or not all(type(k) in (str, int) for k in path):
            raise ValueError(f"its path {path!r} is not a list of names and positions")
        tree: Any = raw["tree"]
        if not is_json_object(tree):
            raise ValueError(f"its tree {tree!r} is not an object")
        leaves = tuple(Leaf.from_json(leaf) for leaf in raw["leaves"])
        n_leaves = _count_leaves(tree)
        if n_leaves != len(leaves):
            raise ValueError(f"its tree has {n_leaves} leaves but {len(leaves)} are described")
        return cls(path=tuple(path), tree=tree, leaves=leaves)


def _count_leaves(tree: Any) -> int:
    """How many leaves a recorded tree (what `_Encoder.encode` wrote) holds; raises
    KeyError/ValueError for what the encoder cannot have written."""
    if not is_json_object(tree):
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


def describe_entry(path: Path, entry: Any) -> tuple[Entry, list[Any]]:
    encoder = _Encoder(path)
    tree = encoder.encode(entry, "")
    return Entry(path, tree, tuple(encoder.records)), encoder.leaves


def _same_json(a: Any, b: Any) -> bool:
    # As JSON text: NaN equals NaN, and tuples equal lists, as they are on disk.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def compare_records(saved: Entry, target: Entry) -> str | None:
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
    narrowed = narrowed_dtype(saved)
    return None if narrowed is None else MSG_X64.format(where="it", dtype=narrowed)


def narrowed_dtype(record: Entry) -> str | None:
    """The dtype of a saved jax leaf that jax would narrow here (64-bit without
    jax_enable_x64), if the entry has one."""
    for leaf in record.leaves:
        if leaf.type == "jax" and not jax_keeps(leaf.dtype or ""):
            return leaf.dtype
    return None


def _short_json(tree: Any, limit: int = 160) -> str:
    text = json.dumps(tree, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def decode(tree: dict[str, Any], leaves: list[Any], where: str) -> Any:
    if "node" in tree:
        cls = _resolve_kind(tree, where)
        meta = tuple(sorted((k, _decode_meta(v)) for k, v in tree["metadata"].items()))
        return cls._unflatten(meta, (decode(tree["value"], leaves, where),))
    if "other" in tree:
        raise ValueError(MSG_NEEDS_TARGET.format(where=where, type=tree["other"]))
    ((tag, inner),) = tree.items()
    if tag == "leaf":
        return leaves[inner]
    if tag == "none":
        return None
    if tag == "tuple":
        return tuple(decode(v, leaves, where) for v in inner)
    if tag == "list":
        return [decode(v, leaves, where) for v in inner]
    if tag == "dict":
        return {k: decode(v, leaves, where) for k, v in inner.items()}
    assert tag == "state", tag
    return State({tuple(p): decode(v, leaves, where) for p, v in inner})

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
silently pad or truncate a mismatched array). The record itself (encoding,
validation, comparison, decoding) is `_checkpoint_record.py`; how the directory is
laid out, locked and replaced so that a save never loses the checkpoint it replaces
is `_checkpoint_dir.py`; this file is the orbax I/O and the public API.
orbax-checkpoint is optional: ``pip install "nnx[checkpoint]"``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path as FsPath
from types import ModuleType
from typing import Any, Final, TypeVar, overload

import jax
import jax.numpy as jnp
import numpy as np

from ._checkpoint_dir import read_dir, write_items
from ._checkpoint_record import (
    MSG_X64,
    SCALARS,
    Entry,
    Leaf,
    compare_records,
    decode,
    describe_entry,
    describe_path,
    is_json_list,
    is_json_object,
    is_state,
    jax_keeps,
    narrowed_dtype,
)
from ._compat import (
    default_sharding,
    device_put,
    jax_eval_shape,
    shape_dtype_struct,
    tree_flatten,
    tree_unflatten,
    wrap_key_data,
)
from ._filters import Path
from ._module import Module
from ._state import State

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
MSG_ABSTRACT: Final = (
    "Cannot save {where}: it is abstract (a jax.ShapeDtypeStruct, e.g. from "
    "nnx.eval_shape) and has no values. Restore a checkpoint into it instead."
)
MSG_KEY: Final = (
    "Cannot save {where}: the path key {key!r} {reason}. orbax names arrays by joining "
    "path keys with '.', so such keys would collide."
)
MSG_COLLIDE: Final = (
    "Cannot save {where}: its path collides with the path {other} of another entry; "
    "paths of one State must not be prefixes of each other."
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
        raise ValueError(MSG_KEY.format(where=describe_path(path), key=component, reason=reason))
    return component


def _nest(
    tree: dict[str, Any], path: Path, value: Any, owners: dict[tuple[str, ...], Path]
) -> None:
    """Put `value` at `path` in the nested dict; paths that are prefixes of one
    another (possible in a hand-built State) are refused."""
    if not path:
        raise ValueError(MSG_KEY.format(where=describe_path(path), key="()", reason="is empty"))
    keys = tuple(_orbax_key(c, path) for c in path)
    for i in range(1, len(keys) + 1):
        other = owners.get(keys[:i])
        if other is not None:
            raise ValueError(MSG_COLLIDE.format(where=describe_path(path), other=other))
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if keys[-1] in node:
        other_path = next(p for k, p in owners.items() if k[: len(keys)] == keys)
        raise ValueError(MSG_COLLIDE.format(where=describe_path(path), other=other_path))
    node[keys[-1]] = value
    owners[keys] = path


def _lookup(tree: dict[str, Any], path: Path) -> Any:
    node: Any = tree
    for component in path:
        node = node[str(component)]
    return node


def _orbax_value(record: Entry, values: list[Any]) -> Any:
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


def _to_saved(leaf: Leaf, x: Any) -> Any:
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
    anything is written; the checkpoint appears only when complete, and until then
    `directory` keeps the one it replaces. A second save to the same directory waits
    for a running one (a file lock), then behaves as below.

    Leaves may be jax or numpy arrays of numeric or bool dtypes (typed PRNG keys
    included) or Python scalars; metadata must be JSON-like. Entries may be any
    pytree of those (tuples, lists, dicts, States, Variables, ...).

    In a multi-process job (`jax.distributed`), every process calls `save` with the
    same path and its view of the (possibly sharded) state: process 0 prepares and
    commits the directory, every process writes its shards, and the processes agree
    after each phase, so an error on any process is raised on all of them.

    Args:
        directory: A local path (made absolute; `~` expanded) or a `scheme://` path
            (e.g. `gs://...`) handled by orbax. It must not exist, be empty, or hold
            an nnx checkpoint (with `overwrite=True`).
        state: A State, or a Module (its `get_state()`).
        overwrite: Whether to replace an existing nnx checkpoint. Default False.

    Raises:
        FileExistsError: If `directory` holds a checkpoint and `overwrite` is False,
            or holds anything nnx did not write (it is a file, a directory of other
            files, or a checkpoint with files added inside); nothing is written then.
        PermissionError: If `directory` (or an old checkpoint to remove) is not
            writable.
        TypeError: If `state` is not a Module or a State, or holds abstract values
            (`jax.ShapeDtypeStruct`), leaves that cannot be stored or metadata that
            is not JSON-like.
        ValueError: If `state` holds traced values (a save inside `jax.jit`), a path
            key cannot name an orbax item (empty, containing `.` or `/`, a digit
            string) or one path is a prefix of another.
        ImportError: If orbax-checkpoint is not installed.
        NotImplementedError: In a multi-process job with jax < 0.8, which orbax
            cannot write sharded arrays with.

    Example:
        ```python
        import tempfile
        from pathlib import Path

        model = nnx.BatchNorm(3, ctx=nnx.context(0))
        path = Path(tempfile.mkdtemp()) / "ckpt"
        nnx.checkpoints.save(path, model)
        try:
            nnx.checkpoints.save(path, model)
        except FileExistsError:
            pass
        nnx.checkpoints.save(path, model.filter(nnx.Param), overwrite=True)
        assert set(nnx.checkpoints.load(path)) == {("bias",), ("scale",)}
        ```
    """
    ocp = _orbax()
    path = _as_dir(directory)
    if isinstance(state, Module):
        state = state.get_state()
    elif not is_state(state):
        raise TypeError(MSG_SAVE_TYPE.format(type=type(state).__name__))
    records: list[dict[str, Any]] = []
    arrays: dict[str, Any] = {}
    owners: dict[tuple[str, ...], Path] = {}
    for entry_path, entry in state.items():
        record, leaves = describe_entry(entry_path, entry)
        for leaf in record.leaves:
            if leaf.type == "abstract":
                raise TypeError(MSG_ABSTRACT.format(where=describe_path(entry_path)))
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


def _read_records(ocp: ModuleType, path: Any, items_dir: Any) -> list[Entry]:
    """The entry records of the checkpoint whose items are in `items_dir`."""
    try:
        with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
            restored = checkpointer.restore(
                items_dir, ocp.args.Composite(nnx=ocp.args.JsonRestore())
            )
        meta: Any = restored[_META_ITEM]
    except (KeyError, ValueError, FileNotFoundError) as e:
        raise ValueError(MSG_NOT_NNX.format(path=path)) from e
    if not is_json_object(meta) or meta.get("format") != FORMAT:
        raise ValueError(MSG_NOT_NNX.format(path=path))
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(MSG_VERSION.format(path=path, version=meta.get("version")))
    entries: Any = meta.get("entries")
    if not is_json_list(entries):
        raise ValueError(MSG_CORRUPT.format(path=path, what="its entry list is missing"))
    records: list[Entry] = []
    for i, raw in enumerate(entries):
        try:
            records.append(Entry.from_json(raw))
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


def _placement(saved: Leaf, target: Leaf | None, target_value: Any) -> _Placement:
    """The restored leaf takes the target's array type and sharding; without a target
    (or where jax would narrow a numpy-saved 64-bit dtype), the saved type."""
    if not saved.is_array:
        return _Placement(False)  # a Python scalar stays one
    if saved.type == "prng_key":
        return _Placement(True, getattr(target_value, "sharding", None))
    if target is not None and target.type in ("jax", "abstract"):
        if saved.type == "jax" or jax_keeps(saved.dtype or ""):
            return _Placement(True, getattr(target_value, "sharding", None))
        return _Placement(False)
    if target is not None and target.type in ("numpy", "numpy_scalar"):
        return _Placement(False)
    return _Placement(saved.type == "jax")


def _key_data_shape(leaf: Leaf) -> tuple[tuple[int, ...], Any]:
    impl = leaf.impl or "threefry2x32"
    data = jax_eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl)))
    assert leaf.shape is not None
    return (*leaf.shape, *data.shape), data.dtype


def _template(leaf: Leaf, placement: _Placement) -> Any:
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
    ocp: ModuleType, path: Any, items_dir: Any, plan: list[tuple[Entry, list[_Placement]]]
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
    if not is_json_object(out):
        raise ValueError(MSG_CORRUPT.format(path=path, what="its arrays are not a tree of dicts"))
    return out


def _leaf_values(record: Entry, placements: list[_Placement], arrays: dict[str, Any]) -> list[Any]:
    """The restored leaves of one entry, in flattening order."""
    stored: Any = None
    if any(leaf.in_orbax for leaf in record.leaves):
        stored = _lookup(arrays, record.path)
    values: list[Any] = []
    for i, (leaf, placement) in enumerate(zip(record.leaves, placements)):
        if not leaf.is_array:
            assert leaf.value is not None
            values.append(SCALARS[leaf.type](leaf.value))
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
    on the default device. In a multi-process job every process calls it with the
    same path and a target placed on the global mesh; each reads the checkpoint
    step process 0 found, and an error on any process is raised on all. A
    checkpoint written by several processes restores in one, and vice versa.

    Args:
        directory: The checkpoint directory `save` wrote.
        target: A Module or a State with the saved structure.

    Returns:
        `target` itself for a Module; a new State for a State.

    Raises:
        ValueError: Naming the differing paths (the first 50, then a count) if the
            checkpoint's structure (paths, kinds, metadata, containers, dtypes,
            shapes) is not the target's, then nothing is changed; also if the
            directory is not an nnx checkpoint or is damaged, or holds 64-bit arrays
            and `jax_enable_x64` is off.
        TypeError: If `target` is not a Module or a State.
        FileNotFoundError: If there is no checkpoint at `directory`.
        ImportError: If orbax-checkpoint is not installed.

    Example:
        ```python
        import tempfile
        from pathlib import Path

        model = nnx.Linear(2, 3, ctx=nnx.context(0))
        path = Path(tempfile.mkdtemp()) / "ckpt"
        nnx.checkpoints.save(path, model)

        fresh = nnx.Linear(2, 3, ctx=nnx.context(1))
        assert nnx.checkpoints.restore(path, fresh) is fresh
        assert jnp.allclose(fresh.kernel, model.kernel)
        try:
            nnx.checkpoints.restore(path, nnx.Linear(2, 4, ctx=nnx.context(0)))
        except ValueError as e:
            assert "('kernel',): checkpoint has float32[2,3], target has float32[2,4]" in str(e)
        ```
    """
    if isinstance(target, Module):
        target_state = target.get_state()
        label = f"a {type(target).__name__}"
    elif is_state(target):
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
    plan: list[tuple[Entry, list[_Placement]]] = []
    rebuild: list[tuple[Path, Any]] = []
    for entry_path, entry in target_state.items():
        target_record, target_leaves = describe_entry(entry_path, entry)
        record = saved.get(entry_path)
        if record is None:
            problems.append(f"{entry_path!r}: in the target, not in the checkpoint")
            continue
        reason = compare_records(record, target_record)
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


def load(directory: str | os.PathLike[str], /) -> State[Any]:
    """Read a checkpoint without a target: a State with the saved kinds, metadata,
    types, dtypes and shapes; jax arrays on the default device.

    Variable classes are looked up (as `module:qualname`) among the classes defined
    in this process, never imported: import or define them first. Classes made by
    `nnx.variable_type(name)` are made again. Values holding pytree nodes other
    than tuples, lists, dicts, States and Variables need `restore(path, target)`.

    Args:
        directory: The checkpoint directory `save` wrote.

    Returns:
        The saved State.

    Raises:
        ValueError: If the directory is not an nnx checkpoint, is damaged, names a
            Variable class not defined in this process, or holds 64-bit arrays and
            `jax_enable_x64` is off.
        FileNotFoundError: If there is no checkpoint at `directory`.
        ImportError: If orbax-checkpoint is not installed.

    Example:
        ```python
        import tempfile
        from pathlib import Path

        state = nnx.State({("w",): nnx.Param(jnp.ones(2), sharding=("embed",))})
        path = Path(tempfile.mkdtemp()) / "ckpt"
        nnx.checkpoints.save(path, state)
        loaded = nnx.checkpoints.load(path)
        assert loaded == state and loaded[("w",)].sharding == ("embed",)
        ```
    """
    ocp = _orbax()
    path = _as_dir(directory)
    with read_dir(ocp, path) as items_dir:
        return _load_from(ocp, path, items_dir)


def _load_from(ocp: ModuleType, path: Any, items_dir: Any) -> State[Any]:
    records = _read_records(ocp, path, items_dir)
    plan: list[tuple[Entry, list[_Placement]]] = []
    for record in records:
        narrowed = narrowed_dtype(record)
        if narrowed is not None:
            raise ValueError(MSG_X64.format(where=describe_path(record.path), dtype=narrowed))
        plan.append((record, [_placement(leaf, None, None) for leaf in record.leaves]))
    arrays = _restore_arrays(ocp, path, items_dir, plan)
    entries: dict[Path, Any] = {}
    for record, placements in plan:
        leaves = _leaf_values(record, placements, arrays)
        entries[record.path] = decode(record.tree, leaves, describe_path(record.path))
    return State(entries)

"""Sharding helpers: logical axis names on Variables, mapped to a device mesh.

kernel_init = nnx.with_logical_partitioning(nnx.initializers.lecun_normal(), ("embed", "mlp"))
layer = nnx.Linear(64, 256, kernel_init=kernel_init, ctx=ctx)  # kernel.sharding == ("embed", "mlp")
specs = nnx.get_partition_spec(state)                # PartitionSpec("embed", "mlp"), ...
mesh_specs = nnx.logical_to_mesh(specs, rules)       # PartitionSpec("data", "model"), ...
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any, Final, TypeVar

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._variables import ContainerMetadata, Node, is_node_box, is_variable, with_metadata

__all__ = [
    "PARTITION_NAME",
    "LogicalRules",
    "get_partition_spec",
    "logical_axis_rules",
    "logical_to_mesh",
    "with_logical_constraint",
    "with_logical_partitioning",
]

PARTITION_NAME: Final = "partition_name"
"""Metadata key naming the axis `nnx.Scan` adds to stacked Variables."""

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]
"""`((logical name, mesh axis or axes or None), ...)`, in priority order."""

T = TypeVar("T")
_tree_map: Callable[..., Any] = getattr(jax.tree_util, "tree_map")  # noqa: B009
_constrain: Callable[..., Any] = getattr(jax.lax, "with_sharding_constraint")  # noqa: B009


class _Rules(threading.local):
    rules: LogicalRules | None = None


_current = _Rules()


@contextlib.contextmanager
def logical_axis_rules(rules: LogicalRules) -> Generator[None, None, None]:
    """Use `rules` as the default logical → mesh axis rules inside the block."""
    previous = _current.rules
    _current.rules = tuple(rules)
    try:
        yield
    finally:
        _current.rules = previous


def _is_spec(x: object) -> bool:
    return isinstance(x, PartitionSpec)


_spec: Callable[..., PartitionSpec] = PartitionSpec  # typed: jax's constructor is untyped


def _is_spec_leaf(x: object) -> bool:
    return isinstance(x, (Node, PartitionSpec))


def _is_array(x: object) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def get_partition_spec(tree: T) -> T:
    """The same tree with each array replaced by its `PartitionSpec`: a Variable with
    `sharding` names gives `PartitionSpec(*sharding)`, other arrays `PartitionSpec()`,
    anything else None; other boxes (a TrainState's `params`, `opt_state`, `step`)
    keep their box around the specs of their contents. The result is a valid prefix
    of the tree, e.g. for `in_shardings`."""

    def spec(x: Any) -> Any:
        value: Any = x
        if is_variable(x):
            names = x.sharding
            if names:
                return _spec(*names)
            value = x._value
        elif is_node_box(x):
            # a box such as TrainState's TreeNode fields (params, opt_state, step): the
            # same box around the specs of what it holds, so that a Pytree still sees
            # a child there (a bare PartitionSpec would become a static field)
            return x.replace(value=get_partition_spec(x._value))
        if _is_array(value):
            return _spec()
        return None

    result: T = _tree_map(spec, tree, is_leaf=_is_spec_leaf)
    return result


def _mesh_axes(names: Sequence[Any], rules: LogicalRules) -> PartitionSpec:
    used: set[str] = set()
    out: list[str | tuple[str, ...] | None] = []
    seen: set[str] = set()
    for name in names:
        if name is None:
            out.append(None)
            continue
        if isinstance(name, tuple):
            raise TypeError(f"logical_to_mesh: expected logical axis names, got {name!r}")
        if name in seen:
            raise ValueError(f"logical_to_mesh: duplicate logical axis name {name!r} in {names}")
        seen.add(name)
        choice: str | tuple[str, ...] | None = None
        for logical, mesh_axis in rules:
            if logical != name or mesh_axis is None:
                continue
            axes = (mesh_axis,) if isinstance(mesh_axis, str) else mesh_axis
            if not used.intersection(axes):
                choice = mesh_axis
                used.update(axes)
                break
        out.append(choice)
    return _spec(*out)


def logical_to_mesh(tree: T, rules: LogicalRules | None = None) -> T:
    """Map each `PartitionSpec` of logical names to mesh axes through `rules` (or the
    active `logical_axis_rules`): the first rule for a name whose mesh axis is still
    free in that spec wins; names without one are unsharded (None)."""
    rules = _current.rules if rules is None else rules
    if rules is None:
        raise ValueError("logical_to_mesh: no rules; pass rules= or use nnx.logical_axis_rules")
    active: LogicalRules = rules

    def convert(x: Any) -> Any:
        if isinstance(x, PartitionSpec):
            return _mesh_axes(tuple(x), active)
        return x

    result: T = _tree_map(convert, tree, is_leaf=_is_spec)
    return result


def with_logical_constraint(
    x: T,
    spec: PartitionSpec | Sequence[str | None] | None,
    rules: LogicalRules | None = None,
    mesh: Mesh | None = None,
) -> T:
    """`jax.lax.with_sharding_constraint(x, logical spec mapped to mesh)` when there are
    rules (given or active) and a `mesh`; otherwise `x` unchanged."""
    rules = _current.rules if rules is None else rules
    if spec is None or rules is None or mesh is None:
        return x
    logical = spec if isinstance(spec, PartitionSpec) else _spec(*spec)
    constrained: T = _constrain(x, NamedSharding(mesh, _mesh_axes(tuple(logical), rules)))
    return constrained


def with_logical_partitioning(
    initializer: Callable[..., T], sharding: Sequence[str | None], **metadata: Any
) -> Callable[..., ContainerMetadata[T]]:
    """Wrap an initializer so the Variable it initializes carries `sharding` (logical
    axis names, one per array axis)."""
    return with_metadata(initializer, sharding=tuple(sharding), **metadata)

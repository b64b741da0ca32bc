"""Sharding helpers: logical axis names on Variables, mapped to a device mesh.

init = nnx.with_logical_partitioning(nnx.initializers.lecun_normal(), ("embed", "mlp"))
layer = nnx.Linear(64, 256, kernel_init=init, ctx=ctx)  # sharding ("embed", "mlp")
specs = nnx.get_partition_spec(state)           # PartitionSpec("embed", "mlp"), ...
mesh_specs = nnx.logical_to_mesh(specs, rules)  # PartitionSpec("data", "model"), ...
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any, Final, TypeVar

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._metadata import ContainerMetadata, with_metadata
from ._variables import Node, is_node_box, is_variable

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
"""Metadata key naming the axis `nnx.Scan` adds to stacked Variables.

Pass `metadata_params={nnx.PARTITION_NAME: "layers"}` to `nnx.Scan`/`nnx.scan` (or
`nnx.vmap`) to insert the logical name `"layers"` into the `sharding` of each stacked
Variable, at the stacked axis.

Example:
    ```python
    assert nnx.PARTITION_NAME == "partition_name"
    ```
"""

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]
"""`((logical name, mesh axis or axes or None), ...)`, in priority order.

E.g. `(("batch", "data"), ("embed", None), ("mlp", "model"))`: `"batch"` axes are
sharded over the mesh axis `"data"`, `"embed"` axes are not sharded.
"""

T = TypeVar("T")
_tree_map: Callable[..., Any] = getattr(jax.tree_util, "tree_map")  # noqa: B009
_constrain: Callable[..., Any] = getattr(jax.lax, "with_sharding_constraint")  # noqa: B009


class _Rules(threading.local):
    rules: LogicalRules | None = None


_current = _Rules()


@contextlib.contextmanager
def logical_axis_rules(rules: LogicalRules) -> Generator[None, None, None]:
    """Use `rules` as the default logical → mesh axis rules inside the block.

    `logical_to_mesh` and `with_logical_constraint` use them when not given `rules=`.
    The rules are per thread; the previous ones are restored when the block ends.

    Args:
        rules: `((logical name, mesh axis or axes or None), ...)`, in priority order.

    Example:
        ```python
        from jax.sharding import PartitionSpec

        with nnx.logical_axis_rules((("embed", "data"), ("mlp", "model"))):
            spec = nnx.logical_to_mesh(PartitionSpec("embed", "mlp", None))
        assert spec == PartitionSpec("data", "model", None)
        ```
    """
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
    """The same tree with each array replaced by its `PartitionSpec`.

    A Variable with `sharding` names gives `PartitionSpec(*sharding)`, other arrays
    (raw or boxed) `PartitionSpec()`, anything else None; other boxes (a TrainState's
    `params`, `opt_state`, `step`) keep their box around the specs of their contents.
    The result is a valid prefix of the tree, e.g. for `in_shardings` (after
    `logical_to_mesh` and wrapping in `NamedSharding`s).

    Args:
        tree: Any pytree: a State, a TrainState, a dict, ...

    Returns:
        The tree of logical `PartitionSpec`s (and None).

    Example:
        ```python
        from jax.sharding import PartitionSpec

        init = nnx.with_logical_partitioning(nnx.initializers.lecun_normal(), ("embed", "mlp"))
        layer = nnx.Linear(4, 8, kernel_init=init, ctx=nnx.context(0))
        specs = nnx.get_partition_spec(layer.get_state())
        assert specs[("kernel",)] == PartitionSpec("embed", "mlp")
        assert specs[("bias",)] == PartitionSpec()
        ```
    """

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
    """Map each `PartitionSpec` of logical names to mesh axes through `rules`.

    For each logical name of a spec, the first rule for it whose mesh axis (or axes)
    is still unused in that spec wins; names without one, and None, are unsharded
    (None). Leaves that are not `PartitionSpec`s are kept.

    Args:
        tree: A pytree of logical `PartitionSpec`s, e.g. from `get_partition_spec`.
        rules: `((logical name, mesh axis or axes or None), ...)`, in priority order.
            Default: the rules of the enclosing `nnx.logical_axis_rules` block.

    Returns:
        The tree with mesh-axis `PartitionSpec`s.

    Raises:
        ValueError: If there are no rules, or a spec repeats a logical name.
        TypeError: If a spec entry is a tuple (already mesh axes).

    Example:
        ```python
        from jax.sharding import PartitionSpec

        rules = (("embed", "data"), ("mlp", "model"), ("heads", "model"))
        specs = {"w": PartitionSpec("embed", "mlp"), "h": PartitionSpec("heads", "mlp")}
        mesh_specs = nnx.logical_to_mesh(specs, rules)
        assert mesh_specs["w"] == PartitionSpec("data", "model")
        assert mesh_specs["h"] == PartitionSpec("model", None)  # "model" already used
        ```
    """
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
    """`jax.lax.with_sharding_constraint(x, logical spec mapped to mesh)`, if it can.

    With a `spec`, rules (given or active) and a `mesh`, constrains `x` to
    `NamedSharding(mesh, logical_to_mesh(spec))`; otherwise returns `x` unchanged.

    Args:
        x: An array (or pytree of arrays, constrained alike).
        spec: Logical axis names, as a `PartitionSpec` or a sequence, or None.
        rules: The logical → mesh rules. Default: those of the enclosing
            `nnx.logical_axis_rules` block.
        mesh: The device mesh. Default None: no constraint.

    Returns:
        `x`, constrained when possible.

    Raises:
        ValueError: If `spec` repeats a logical name, or maps to an axis `mesh` lacks.

    Example:
        ```python
        from jax.sharding import Mesh

        mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
        rules = (("batch", "data"), ("embed", "model"))

        @jax.jit
        def f(x: jax.Array) -> jax.Array:
            return nnx.with_logical_constraint(2 * x, ("batch", "embed"), rules, mesh)

        assert jnp.allclose(f(jnp.ones((4, 8))), 2.0)
        x = jnp.ones(3)
        assert nnx.with_logical_constraint(x, ("batch",)) is x  # no rules, no mesh
        ```
    """
    rules = _current.rules if rules is None else rules
    if spec is None or rules is None or mesh is None:
        return x
    logical = spec if isinstance(spec, PartitionSpec) else _spec(*spec)
    constrained: T = _constrain(x, NamedSharding(mesh, _mesh_axes(tuple(logical), rules)))
    return constrained


def with_logical_partitioning(
    initializer: Callable[..., T], sharding: Sequence[str | None], **metadata: Any
) -> Callable[..., ContainerMetadata[T]]:
    """Wrap an initializer so the Variable it initializes carries `sharding`.

    `with_metadata(initializer, sharding=tuple(sharding), **metadata)`: a layer's
    Param made from it gets the logical axis names, which `get_partition_spec` reads.

    Args:
        initializer: An initializer, `init(key, shape, dtype)`.
        sharding: Logical axis names, one per array axis (None for an unsharded
            axis).
        **metadata: More metadata fields for the Variable.

    Returns:
        The wrapped initializer, returning `ContainerMetadata`.

    Example:
        ```python
        init = nnx.with_logical_partitioning(nnx.initializers.zeros(), (None, "mlp"))
        layer = nnx.Linear(2, 3, kernel_init=init, ctx=nnx.context(0))
        assert layer.get_state()[("kernel",)].sharding == (None, "mlp")
        ```
    """
    return with_metadata(initializer, sharding=tuple(sharding), **metadata)

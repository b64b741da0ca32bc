"""Sharded training: data and model parallelism over a mesh of 8 (simulated) devices.

    python examples/sharded_training.py

Eight CPU devices are simulated (`--xla_force_host_platform_device_count=8`, set
before jax is imported) and arranged in a 2 x 4 mesh with the axes ("data", "model").
The model names the axes of its parameters logically, where they are made
(`nnx.with_logical_partitioning(init, ("embed", "mlp"))`), and one table of rules maps
those names to mesh axes:

    ("batch", "data")   each batch is split in 2 over "data" (data parallelism)
    ("embed", None)     the feature axis is not split
    ("mlp", "model")    the hidden layer is split in 4 over "model" (model parallelism)

`nnx.get_partition_spec` reads the names off the model's state, `nnx.logical_to_mesh`
maps them through the rules, and `jax.device_put` places the state on the mesh; each
batch is placed by its own logical axes, ("batch", "embed"). The training step is the
ordinary `nnx.jit` + `nnx.value_and_grad` SGD step of a single device: jax compiles
it for the shardings of its inputs (the all-reduces over "data" and "model" included)
and the parameters stay where they were put.

After training, `nnx.checkpoints.save` writes the sharded model, and
`nnx.checkpoints.restore` reads it into an abstract model (`nnx.eval_shape`: no
memory, no initializer run) whose leaves carry the mesh shardings: the arrays come
back with the saved values, already split over the mesh. Training resumes from the
restored model and matches, bit for bit, training on without stopping.

The same code runs as a multi-host job (one process per host): see docs/scaling.md.
"""

from __future__ import annotations

import os

# Before jax is imported: the CPU backend then exposes 8 devices instead of 1.
_DEVICES_FLAG = "--xla_force_host_platform_device_count"
if _DEVICES_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_DEVICES_FLAG}=8".strip()

import shutil  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

import nnx  # noqa: E402

EMBED, HIDDEN = 16, 256  # the hidden layer is split 4 ways over "model"
BATCH = 256  # the global batch, split 2 ways over "data"
STEPS, RESUMED_STEPS = 150, 50
LEARNING_RATE = 0.3
RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),
    ("embed", None),
    ("mlp", "model"),
)

# jax leaves these constructors unannotated; typed here once for mypy --strict.
P: Callable[..., PartitionSpec] = PartitionSpec
shape_dtype_struct: Callable[..., jax.ShapeDtypeStruct] = jax.ShapeDtypeStruct


class MLP(nnx.Module):
    """A residual MLP block, `x + down(gelu(up(x)))`. `up` (embed, mlp) is split by
    columns and `down` (mlp, embed) by rows (Megatron style): each device computes
    its slice of the hidden layer, and one all-reduce over "model" sums the outputs."""

    def __init__(self, *, ctx: nnx.Context) -> None:
        init, zeros = nnx.initializers.lecun_normal(), nnx.initializers.zeros()
        self.up = nnx.Linear(
            EMBED,
            HIDDEN,
            kernel_init=nnx.with_logical_partitioning(init, ("embed", "mlp")),
            bias_init=nnx.with_logical_partitioning(zeros, ("mlp",)),
            ctx=ctx,
        )
        self.down = nnx.Linear(
            HIDDEN,
            EMBED,
            kernel_init=nnx.with_logical_partitioning(init, ("mlp", "embed")),
            bias_init=nnx.with_logical_partitioning(zeros, ("embed",)),
            ctx=ctx,
        )

    def __call__(self, x: jax.Array, *, mesh: Mesh | None = None) -> jax.Array:
        h = nnx.gelu(self.up(x))
        # A hint for the compiler (a no-op without a mesh): keep h split (batch, mlp).
        h = nnx.with_logical_constraint(h, ("batch", "mlp"), RULES, mesh)
        return x + self.down(h)


def shardings_of(state: nnx.State[Any], mesh: Mesh) -> nnx.State[Any]:
    """Each entry's NamedSharding: its Variable's logical axis names mapped to mesh
    axes by RULES (an entry without names is replicated on every device)."""
    logical = nnx.get_partition_spec(state)  # up.kernel: PartitionSpec("embed", "mlp")
    on_mesh = nnx.logical_to_mesh(logical, RULES)  # up.kernel: PartitionSpec(None, "model")

    def named(spec: PartitionSpec) -> NamedSharding:
        return NamedSharding(mesh, spec)

    def is_spec(x: object) -> bool:
        return isinstance(x, PartitionSpec)

    shardings: nnx.State[Any] = jax.tree.map(named, on_mesh, is_leaf=is_spec)
    return shardings


def place(model: MLP, mesh: Mesh) -> MLP:
    """Move every array of `model` onto the mesh, split as its logical axes say."""
    state = model.get_state()
    model.update_state(jax.device_put(state, shardings_of(state, mesh)))
    return model


def abstract_on_mesh(mesh: Mesh) -> MLP:
    """An MLP without values, whose leaves have the shapes, dtypes and shardings of a
    placed one: a target to restore a checkpoint into, sharded."""
    abstract = nnx.eval_shape(lambda: MLP(ctx=nnx.context(0)))
    state = abstract.get_state()

    def with_sharding(sharding: NamedSharding, variable: Any) -> Any:
        def leaf(x: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
            return shape_dtype_struct(x.shape, x.dtype, sharding=sharding)

        return jax.tree.map(leaf, variable)

    abstract.update_state(jax.tree.map(with_sharding, shardings_of(state, mesh), state))
    return abstract


def make_data(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """A regression task: y = x + tanh(x a) b, for a fixed random a and b."""
    kx, ka, kb = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n, EMBED))
    a = jax.random.normal(ka, (EMBED, 32)) / np.sqrt(EMBED)
    b = jax.random.normal(kb, (32, EMBED)) / np.sqrt(32)
    return x, x + jnp.tanh(x @ a) @ b


def on_mesh(x: jax.Array, y: jax.Array, mesh: Mesh) -> tuple[jax.Array, jax.Array]:
    """A batch placed on the mesh by its logical axes: rows split over "data"."""
    spec = nnx.logical_to_mesh(P("batch", "embed"), RULES)  # PartitionSpec("data", None)
    sharding = NamedSharding(mesh, spec)
    return jax.device_put(x, sharding), jax.device_put(y, sharding)


def loss_fn(model: MLP, x: jax.Array, y: jax.Array, mesh: Mesh | None = None) -> jax.Array:
    return jnp.mean((model(x, mesh=mesh) - y) ** 2)


def sgd(param: jax.Array, grad: jax.Array) -> jax.Array:
    return param - LEARNING_RATE * grad


def make_train_step(mesh: Mesh) -> Callable[[MLP, jax.Array, jax.Array], jax.Array]:
    @nnx.jit
    def train_step(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y, mesh)
        model.update_state(jax.tree.map(sgd, model.filter(nnx.Param), grads))
        return loss

    return train_step


def train(model: MLP, data: tuple[jax.Array, jax.Array], mesh: Mesh, steps: range) -> None:
    train_step = make_train_step(mesh)
    x, y = data
    for step in steps:
        i = (step * BATCH) % len(x)
        loss = train_step(model, *on_mesh(x[i : i + BATCH], y[i : i + BATCH], mesh))
        if (step + 1) % 25 == 0:
            print(f"  step {step + 1:3d}: loss {float(loss):.4f}")


def describe(name: str, variable: Any) -> str:
    """Where a Variable's array lives: its logical axes, mesh axes, shard shape."""
    value: jax.Array = variable.value
    sharding = value.sharding
    assert isinstance(sharding, NamedSharding)
    shard = sharding.shard_shape(value.shape)
    return (
        f"{name} {value.shape}: logical {variable.sharding} -> {sharding.spec}, "
        f"a {shard} shard on each of {sharding.num_devices} devices"
    )


def main() -> None:
    devices: NDArray[Any] = np.array(jax.devices())
    assert devices.size >= 8, f"needs 8 devices; XLA_FLAGS={os.environ['XLA_FLAGS']!r}"
    mesh = Mesh(devices[:8].reshape(2, 4), ("data", "model"))
    print(f"mesh {dict(mesh.shape)} over {mesh.size} {jax.default_backend()} devices")
    x, y = make_data(jax.random.key(0), 4096 + 512)
    data, test = (x[:4096], y[:4096]), on_mesh(x[4096:], y[4096:], mesh)
    evaluate = nnx.jit(loss_fn)

    model = place(MLP(ctx=nnx.context(0)), mesh)
    state = model.get_state()
    print(describe("up.kernel  ", state[("up", "kernel")]))
    print(describe("down.kernel", state[("down", "kernel")]))
    print(describe("down.bias  ", state[("down", "bias")]))
    initial = float(evaluate(model, *test))
    print(f"training {STEPS} steps (test loss {initial:.4f})")
    train(model, data, mesh, range(STEPS))
    kernel_sharding = model.up.kernel.sharding
    assert isinstance(kernel_sharding, NamedSharding)
    assert kernel_sharding.spec == P(None, "model"), "the parameters stay where they were"

    workdir = Path(tempfile.mkdtemp(prefix="nnx-sharded-"))
    nnx.checkpoints.save(workdir / "ckpt", model)
    restored = nnx.checkpoints.restore(workdir / "ckpt", abstract_on_mesh(mesh))
    restored_state = restored.get_state()
    for path, variable in model.get_state().items():
        back: jax.Array = restored_state[path].value
        # equivalent, not equal: jit may write PartitionSpec("model", None) as ("model",)
        assert back.sharding.is_equivalent_to(variable.value.sharding, back.ndim), path
        np.testing.assert_array_equal(back, variable.value)
    print("restored into an abstract model on the mesh: same values, same shardings")
    print(describe("up.kernel  ", restored_state[("up", "kernel")]))

    print(f"resuming from the checkpoint for {RESUMED_STEPS} steps")
    train(restored, data, mesh, range(STEPS, STEPS + RESUMED_STEPS))
    print("training on without stopping, to compare")
    train(model, data, mesh, range(STEPS, STEPS + RESUMED_STEPS))
    assert restored.get_state() == model.get_state(), "resuming must equal training on"
    final = float(evaluate(restored, *test))
    print(f"resumed == uninterrupted, bit for bit; test loss {initial:.4f} -> {final:.4f}")
    assert final < initial / 5
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()

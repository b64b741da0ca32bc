"""One process of the multi-process tests (`tests/test_multiprocess.py`), also run
alone as the single-process reference.

    python tests/_multiprocess_worker.py TASK NUM_PROCESSES PROCESS_ID PORT DIR

Each process has 2 CPU devices; all processes together form a 2 x 2 ("data",
"model") mesh (one process alone makes the whole mesh of its 4 devices). The worker
prints one JSON line, "RESULT {...}", with what it saw. Tasks:

- `train`: train a small MLP with `nnx.jit`, kernels sharded on "model" through
  `nnx.get_partition_spec` + `nnx.logical_to_mesh`, the batch on "data"; report the
  losses; then save a checkpoint into DIR/ckpt (every process, the same path) and
  restore it into a fresh abstract model placed on the mesh; report the restored
  values' checksums and shardings;
- `restore`: restore DIR/ckpt into a fresh model on this job's mesh and report the
  same (a single process reading what two processes wrote);
- `refused`: a save on a jax release too old for multi-process checkpoints;
- `fail` (after `train`, in the same DIR): a save that fails on the primary process
  only (the checkpoint exists) and one that fails on process 1 only (simulated
  read-only view): each must fail on every process; then an overwrite succeeds.
"""

from __future__ import annotations

import json
import os
import sys

TASK, NUM, PID, PORT, DIR = (
    sys.argv[1],
    int(sys.argv[2]),
    int(sys.argv[3]),
    sys.argv[4],
    sys.argv[5],
)
DEVICES_PER_PROCESS = 2 if NUM > 1 else 4
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}"

import jax  # noqa: E402

if NUM > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{PORT}", num_processes=NUM, process_id=PID
    )

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import nnx  # noqa: E402
from nnx import checkpoints  # noqa: E402

RULES = (("batch", "data"), ("embed", None), ("mlp", "model"))


class MLP(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        init = nnx.initializers.lecun_normal()
        self.up = nnx.Linear(
            8, 16, kernel_init=nnx.with_logical_partitioning(init, ("embed", "mlp")), ctx=ctx
        )
        self.down = nnx.Linear(
            16, 1, kernel_init=nnx.with_logical_partitioning(init, ("mlp", "embed")), ctx=ctx
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down(nnx.relu(self.up(x)))


def mesh() -> Mesh:
    return Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))


def place(model: MLP, m: Mesh) -> MLP:
    """Put every Variable of `model` on the mesh, as its logical names say."""
    state, moduledef = model.partition()
    specs = nnx.logical_to_mesh(nnx.get_partition_spec(state), RULES)
    shardings = jax.tree.map(
        lambda spec: NamedSharding(m, spec), specs, is_leaf=lambda x: isinstance(x, P)
    )

    def put(value: object, sharding: NamedSharding) -> object:
        if isinstance(value, jax.ShapeDtypeStruct):  # an abstract model: where to restore
            return jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding)
        return jax.device_put(value, sharding)

    def place_entry(sharding: NamedSharding, entry: object) -> object:
        return jax.tree.map(lambda value: put(value, sharding), entry)

    return moduledef.merge(jax.tree.map(place_entry, shardings, state))


def batch(m: Mesh, step: int) -> tuple[jax.Array, jax.Array]:
    """The global batch of `step`, sharded on "data"; each process supplies its rows."""
    rng = np.random.default_rng(step)
    x = rng.normal(size=(16, 8)).astype(np.float32)
    y = (x.sum(axis=1, keepdims=True) > 0).astype(np.float32)
    sharding = NamedSharding(m, P("data"))
    return (
        jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx]),
        jax.make_array_from_callback(y.shape, sharding, lambda idx: y[idx]),
    )


@nnx.jit
def train_step(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
    def loss_fn(model: MLP) -> jax.Array:
        return jnp.mean((model(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    params = model.filter(nnx.Param)
    model.update_state(jax.tree.map(lambda p, g: p - 0.1 * g, params, grads))
    return loss


def summary(model: MLP) -> dict[str, object]:
    """Every Variable's global value (gathered from all processes), dtype and mesh
    spec (trailing unsharded axes dropped, so P('model') and P('model', None) agree)."""
    from jax.experimental import multihost_utils

    out: dict[str, object] = {}
    for path, v in model.get_state().items():
        value = v.value
        gathered = multihost_utils.process_allgather(value, tiled=True) if NUM > 1 else value
        spec = list(getattr(value.sharding, "spec", ()))
        while spec and spec[-1] is None:
            spec.pop()
        out["/".join(map(str, path))] = {
            "value": np.asarray(gathered).tolist(),
            "dtype": str(value.dtype),
            "spec": spec,
        }
    return out


def intended(m: Mesh) -> dict[str, object]:
    """The mesh specs the logical names give (what a restore into a placed model keeps)."""
    return {k: v["spec"] for k, v in summary(place(MLP(ctx=nnx.context(2)), m)).items()}


def restored(m: Mesh) -> MLP:
    target = place(nnx.eval_shape(lambda: MLP(ctx=nnx.context(1))), m)
    return checkpoints.restore(os.path.join(DIR, "ckpt"), target)


def main() -> None:
    m = mesh()
    result: dict[str, object] = {"process": jax.process_index(), "devices": jax.device_count()}
    if TASK == "train":
        model = place(MLP(ctx=nnx.context(0)), m)
        result["losses"] = [float(train_step(model, *batch(m, step))) for step in range(5)]
        result["trained"] = summary(model)
        checkpoints.save(os.path.join(DIR, "ckpt"), model)
        result["restored"] = summary(restored(m))
        result["intended"] = intended(m)
    elif TASK == "restore":
        result["restored"] = summary(restored(m))
        result["intended"] = intended(m)
    elif TASK == "fail":
        model = place(MLP(ctx=nnx.context(0)), m)
        errors: list[str] = []
        # the primary finds the checkpoint already there (overwrite=False)
        try:
            checkpoints.save(os.path.join(DIR, "ckpt"), model)
        except Exception as e:  # reported to the test
            errors.append(f"{type(e).__name__}: {e}")
        # process 1 alone cannot write (as if its host saw the path read-only)
        from nnx import _checkpoint_dir

        check = _checkpoint_dir._check_writable
        if jax.process_index() == 1:

            def refuse(path: object) -> BaseException:
                return PermissionError(f"simulated: {path} is read-only on this host")

            _checkpoint_dir._check_writable = refuse  # type: ignore[assignment]
        try:
            checkpoints.save(os.path.join(DIR, "other"), model)
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
        _checkpoint_dir._check_writable = check
        # and afterwards the job still works together
        checkpoints.save(os.path.join(DIR, "ckpt"), model, overwrite=True)
        result["errors"] = errors
        result["saved"] = summary(model)
        result["restored"] = summary(restored(m))
    elif TASK == "refused":  # a jax release orbax cannot do multi-process saves with
        model = place(MLP(ctx=nnx.context(0)), m)
        try:
            checkpoints.save(os.path.join(DIR, "ckpt"), model)
        except NotImplementedError as e:
            result["errors"] = [f"{type(e).__name__}: {e}"]
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""nnx.checkpoints: exact orbax round trips, restores into fresh, abstract and sharded
targets, and clear errors for checkpoints that do not fit."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import nnx


class Count(nnx.Variable):
    """A user-defined kind, found again by import when loading without a target."""


class Block(nnx.Module):
    def __init__(self, din: int, dout: int, *, ctx: nnx.Context, param_dtype=jnp.float32):
        self.linear = nnx.Linear(din, dout, param_dtype=param_dtype, ctx=ctx)
        self.bn = nnx.BatchNorm(dout, ctx=ctx)
        self.count = Count(jnp.array(0, jnp.int32))

    def __call__(self, x):
        self.count += 1
        return nnx.relu(self.bn(self.linear(x), use_running_average=False))


class Model(nnx.Module):
    def __init__(self, dim: int = 4, *, ctx: nnx.Context, param_dtype=jnp.float32):
        self.blocks = nnx.Sequence([Block(3, dim, ctx=ctx, param_dtype=param_dtype)])
        self.head = nnx.Linear(dim, 2, ctx=ctx)
        self.embedding = nnx.Param(
            jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3),
            sharding=("vocab", None),
            note={"source": ["init", (1, 2.5)], "frozen": False},
        )
        self.table = np.arange(3, dtype=np.int64)  # numpy state stays numpy
        self.config = nnx.Node({"steps": 3, "lr": 0.5, "on": True, "key": jax.random.key(7)})

    def __call__(self, x):
        return self.head(self.blocks(x))


def _trained(seed: int = 0) -> Model:
    model = Model(ctx=nnx.context(seed))
    model(jnp.ones((5, 3)))  # BatchNorm statistics and the counter move away from init
    return model


def _assert_states_identical(a: nnx.State, b: nnx.State) -> None:
    assert list(a) == list(b)
    for path in a:
        x, y = a[path], b[path]
        assert type(x) is type(y), path
        if isinstance(x, nnx.Node):
            assert repr(x.metadata) == repr(y.metadata), path  # repr: NaN equals NaN
            x, y = x.value, y.value
        xs, xdef = jax.tree_util.tree_flatten(x)
        ys, ydef = jax.tree_util.tree_flatten(y)
        assert xdef == ydef, path
        for u, v in zip(xs, ys):
            assert type(u) is type(v) or (isinstance(u, jax.Array) and isinstance(v, jax.Array))
            if isinstance(u, jax.Array) and jnp.issubdtype(u.dtype, jax.dtypes.prng_key):
                assert u.dtype == v.dtype
                u, v = jax.random.key_data(u), jax.random.key_data(v)
            assert np.asarray(u).dtype == np.asarray(v).dtype, path
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_round_trip_into_a_fresh_model_is_exact(tmp_path):
    model = _trained(0)
    nnx.checkpoints.save(tmp_path / "ckpt", model)

    fresh = Model(ctx=nnx.context(1))
    assert not np.array_equal(fresh.head.kernel, model.head.kernel)
    restored = nnx.checkpoints.restore(tmp_path / "ckpt", fresh)

    assert restored is fresh  # restored in place
    _assert_states_identical(fresh.get_state(), model.get_state())
    assert fresh.embedding.dtype == jnp.bfloat16
    assert type(fresh.table) is np.ndarray and fresh.table.dtype == np.int64
    assert fresh.config["steps"] == 3 and type(fresh.config["lr"]) is float
    assert vars(fresh)["embedding"].sharding == ("vocab", None)
    assert int(fresh.blocks[0].count) == 1
    x = jnp.linspace(-1, 1, 15).reshape(5, 3)
    model.blocks[0].bn.use_running_average = fresh.blocks[0].bn.use_running_average = True
    np.testing.assert_array_equal(fresh(x), model(x))


def test_restore_into_an_abstract_model_from_eval_shape(tmp_path):
    model = _trained(0)
    nnx.checkpoints.save(tmp_path / "ckpt", model)

    abstract = nnx.eval_shape(lambda: Model(ctx=nnx.context(0)))
    assert isinstance(abstract.head.kernel, jax.ShapeDtypeStruct)
    restored = nnx.checkpoints.restore(tmp_path / "ckpt", abstract)

    assert restored is abstract
    _assert_states_identical(abstract.get_state(), model.get_state())
    # values eval_shape turned into jax shapes come back with their saved types
    assert type(abstract.table) is np.ndarray and abstract.table.dtype == np.int64
    assert type(abstract.config["steps"]) is int
    assert abstract(jnp.ones((2, 3))).shape == (2, 2)


def test_restore_into_an_abstract_state_then_merge(tmp_path):
    model = _trained(0)
    (params, rest), _ = model.partition(nnx.Param, ...)
    nnx.checkpoints.save(tmp_path / "params", params)

    abstract = nnx.eval_shape(lambda: Model(ctx=nnx.context(3)))
    (abstract_params, _), moduledef = abstract.partition(nnx.Param, ...)
    restored = nnx.checkpoints.restore(tmp_path / "params", abstract_params)
    assert isinstance(restored, nnx.State)
    _assert_states_identical(restored, params)
    merged = moduledef.merge(restored, rest)
    _assert_states_identical(merged.get_state(), model.get_state())


def test_load_without_a_target_rebuilds_kinds_and_metadata(tmp_path):
    model = _trained(0)
    made = nnx.variable_type("made_on_the_fly")
    model.extra = made(jnp.ones(2), sharding=("a",))
    nnx.checkpoints.save(tmp_path / "ckpt", model)

    state = nnx.checkpoints.load(tmp_path / "ckpt")
    _assert_states_identical(state, model.get_state())
    assert type(state[("blocks", 0, "count")]) is Count
    assert type(state[("extra",)]) is made
    assert state[("embedding",)].note == {"source": ["init", (1, 2.5)], "frozen": False}
    # and the loaded State restores a model through the ordinary API
    fresh = Model(ctx=nnx.context(5))
    fresh.extra = made(jnp.zeros(2), sharding=("a",))
    fresh.update_state(state)
    _assert_states_identical(fresh.get_state(), model.get_state())


def test_a_checkpoint_of_a_model_without_arrays(tmp_path):
    state = nnx.State({("n",): nnx.Node([1, 2.0, None, {"b": False}])})
    nnx.checkpoints.save(tmp_path / "ckpt", state)
    _assert_states_identical(nnx.checkpoints.load(tmp_path / "ckpt"), state)
    _assert_states_identical(nnx.checkpoints.restore(tmp_path / "ckpt", state), state)


def _problem_lines(message: str) -> set[str]:
    return {line[4:] for line in message.splitlines() if line.startswith("  - ")}


@pytest.mark.parametrize(
    ("make_target", "expected"),
    [
        (
            lambda: Model(8, ctx=nnx.context(0)),
            {
                f"{path}: checkpoint has {saved}, target has {target}"
                for path, saved, target in [
                    ("('blocks', 0, 'bn', 'bias')", "float32[4]", "float32[8]"),
                    ("('blocks', 0, 'bn', 'mean')", "float32[4]", "float32[8]"),
                    ("('blocks', 0, 'bn', 'scale')", "float32[4]", "float32[8]"),
                    ("('blocks', 0, 'bn', 'var')", "float32[4]", "float32[8]"),
                    ("('blocks', 0, 'linear', 'bias')", "float32[4]", "float32[8]"),
                    ("('blocks', 0, 'linear', 'kernel')", "float32[3,4]", "float32[3,8]"),
                    ("('head', 'kernel')", "float32[4,2]", "float32[8,2]"),
                ]
            },
        ),
        (
            lambda: Model(ctx=nnx.context(0), param_dtype=jnp.bfloat16),
            {
                "('blocks', 0, 'linear', 'bias'): checkpoint has float32[4], "
                "target has bfloat16[4]",
                "('blocks', 0, 'linear', 'kernel'): checkpoint has float32[3,4], "
                "target has bfloat16[3,4]",
            },
        ),
    ],
)
def test_restoring_into_another_structure_lists_every_difference(tmp_path, make_target, expected):
    nnx.checkpoints.save(tmp_path / "ckpt", _trained(0))
    target = make_target()
    before = target.get_state()
    with pytest.raises(ValueError, match="the structure differs") as info:
        nnx.checkpoints.restore(tmp_path / "ckpt", target)
    message = str(info.value)
    assert "into a Model" in message and "nnx.checkpoints.load" in message
    assert _problem_lines(message) == expected
    _assert_states_identical(target.get_state(), before)  # nothing was changed


def test_kind_metadata_and_path_mismatches_are_named(tmp_path):
    nnx.checkpoints.save(tmp_path / "ckpt", _trained(0))
    target = Model(ctx=nnx.context(0))
    vars(target.head)["bias"] = nnx.BatchStat(jnp.zeros(2))  # another kind
    target.embedding = nnx.Param(jnp.zeros((2, 3), jnp.bfloat16), sharding=("vocab", "x"))
    del target.table
    target.new = nnx.Param(jnp.ones(1))
    with pytest.raises(ValueError) as info:
        nnx.checkpoints.restore(tmp_path / "ckpt", target)
    assert _problem_lines(str(info.value)) == {
        "('head', 'bias'): checkpoint has Param, target has BatchStat",
        "('embedding',): metadata differs: checkpoint has Param(note={'source': ['init', "
        "(1, 2.5)], 'frozen': False}, sharding=('vocab', None)), target has "
        "Param(sharding=('vocab', 'x'))",
        "('new',): in the target, not in the checkpoint",
        "('table',): in the checkpoint (a raw value), not in the target",
    }


def test_restore_places_arrays_with_the_targets_shardings(tmp_path):
    assert len(jax.devices()) >= 8, "tests run with 8 simulated CPU devices (XLA_FLAGS)"
    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
    model = Model(8, ctx=nnx.context(0))
    params = model.filter(nnx.Param)
    nnx.checkpoints.save(tmp_path / "ckpt", params)

    def shard(x):  # rows over "data", columns over "model", where they divide
        if x.ndim != 2:
            return NamedSharding(mesh, P())
        rows = "data" if x.shape[0] % 2 == 0 else None
        return NamedSharding(mesh, P(rows, "model" if x.shape[1] % 4 == 0 else None))

    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shard(x)),
        nnx.eval_shape(lambda: Model(8, ctx=nnx.context(1))).filter(nnx.Param),
    )
    restored = nnx.checkpoints.restore(tmp_path / "ckpt", abstract)
    head = restored[("head", "kernel")].value  # (8, 2)
    assert head.sharding == NamedSharding(mesh, P("data", None))
    kernel = restored[("blocks", 0, "linear", "kernel")].value  # (3, 8)
    assert kernel.sharding == NamedSharding(mesh, P(None, "model"))
    assert {s.data.shape for s in kernel.addressable_shards} == {(3, 2)}
    np.testing.assert_array_equal(head, params[("head", "kernel")].value)
    np.testing.assert_array_equal(kernel, params[("blocks", 0, "linear", "kernel")].value)

    # saved from host memory (numpy), restored into concrete sharded arrays: the
    # target's array type and shardings win, the values are the saved ones
    nnx.checkpoints.save(tmp_path / "host", jax.device_get(params))
    concrete = jax.tree.map(
        lambda x: jax.device_put(jnp.zeros(x.shape, x.dtype), x.sharding), abstract
    )
    from_host = nnx.checkpoints.restore(tmp_path / "host", concrete)
    kernel = from_host[("blocks", 0, "linear", "kernel")].value
    assert isinstance(kernel, jax.Array)
    assert kernel.sharding == NamedSharding(mesh, P(None, "model"))
    np.testing.assert_array_equal(kernel, params[("blocks", 0, "linear", "kernel")].value)
    assert restored[("head", "bias")].value.sharding == NamedSharding(mesh, P())


def test_existing_directories_are_not_overwritten_by_default(tmp_path):
    path = tmp_path / "ckpt"
    nnx.checkpoints.save(path, nnx.State({("a",): nnx.Param(jnp.zeros(2))}))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        nnx.checkpoints.save(path, nnx.State({("a",): nnx.Param(jnp.ones(2))}))
    nnx.checkpoints.save(path, nnx.State({("a",): nnx.Param(jnp.ones(2))}), overwrite=True)
    np.testing.assert_array_equal(nnx.checkpoints.load(path)[("a",)].value, jnp.ones(2))


def test_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        nnx.checkpoints.load(tmp_path / "nothing")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "plain", {"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="is not an nnx checkpoint"):
        nnx.checkpoints.load(tmp_path / "plain")
    with pytest.raises(TypeError, match="expects a Module or a State"):
        nnx.checkpoints.restore(tmp_path / "plain", {"w": jnp.ones(2)})  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"save\(\) expects a Module or a State, got Pure"):
        nnx.checkpoints.save(tmp_path / "new", Model(ctx=nnx.context(0)).partition(nnx.Param, ...))


def test_what_cannot_be_saved_is_refused_before_writing(tmp_path):
    path = tmp_path / "ckpt"
    with pytest.raises(TypeError, match=r"state entry \('n',\) \(at \[1\]\): a leaf of type str"):
        nnx.checkpoints.save(path, nnx.State({("n",): nnx.Node([1, "text"])}))
    with pytest.raises(TypeError, match="an array of dtype <U3 is not supported"):
        nnx.checkpoints.save(path, nnx.State({("s",): np.array(["abc"])}))
    with pytest.raises(TypeError, match="it is abstract"):
        nnx.checkpoints.save(path, nnx.eval_shape(lambda: nnx.Linear(2, 3, ctx=nnx.context(0))))
    with pytest.raises(TypeError, match="metadata spec=Spec"):
        nnx.checkpoints.save(path, nnx.State({("w",): nnx.Param(jnp.ones(1), spec=Spec(1, 2))}))
    with pytest.raises(ValueError, match=r"collides with the path \('a',\) of another entry"):
        nnx.checkpoints.save(
            path, nnx.State({("a",): nnx.Param(jnp.ones(1)), ("a", "b"): nnx.Param(jnp.ones(1))})
        )
    with pytest.raises(TypeError, match="metadata hook=<built-in function print> of state entry"):
        nnx.checkpoints.save(path, nnx.State({("w",): nnx.Param(jnp.ones(1), hook=print)}))
    with pytest.raises(ValueError, match=r"path key 'a\.b' contains"):
        nnx.checkpoints.save(path, nnx.State({("a.b",): nnx.Param(jnp.ones(1))}))

    @jax.jit
    def save_traced(x):
        nnx.checkpoints.save(path, nnx.State({("w",): nnx.Param(x)}))
        return x

    with pytest.raises(ValueError, match="holds a traced value"):
        save_traced(jnp.ones(2))
    assert list(tmp_path.iterdir()) == []  # nothing was written, not even a temporary


class Spec(NamedTuple):
    a: int
    b: int


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    nnx.checkpoints.save(path, nnx.State({("a",): nnx.Param(jnp.zeros(2))}))

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ocp.args, "StandardSave", broken_save)
    with pytest.raises(OSError, match="disk full"):
        nnx.checkpoints.save(path, nnx.State({("a",): nnx.Param(jnp.ones(2))}), overwrite=True)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporaries left
    np.testing.assert_array_equal(nnx.checkpoints.load(path)[("a",)].value, jnp.zeros(2))


def test_overwrite_replaces_only_checkpoints_and_empty_directories(tmp_path):
    state = nnx.State({("a",): nnx.Param(jnp.ones(2))})
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="Not saving into .* it is a directory holding"):
        nnx.checkpoints.save(precious, state, overwrite=True)
    assert (precious / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="it is a file"):
        nnx.checkpoints.save(tmp_path / "file", state, overwrite=True)
    (tmp_path / "empty").mkdir()
    nnx.checkpoints.save(tmp_path / "empty", state, overwrite=True)
    _assert_states_identical(nnx.checkpoints.load(tmp_path / "empty"), state)


def test_zero_size_nested_and_empty_states_round_trip(tmp_path):
    state = nnx.State(
        {
            ("cache",): nnx.Cache(jnp.zeros((0, 3), jnp.bfloat16)),
            ("buffer",): np.zeros((2, 0), np.int16),
            ("opt",): nnx.TreeNode(
                {"mu": nnx.Param(jnp.ones(2), sharding=("x",)), "count": (3, None, [True])}
            ),
            ("nan",): nnx.Param(jnp.ones(1), scale=float("nan")),
        }
    )
    nnx.checkpoints.save(tmp_path / "ckpt", state)
    loaded = nnx.checkpoints.load(tmp_path / "ckpt")
    _assert_states_identical(loaded, state)
    assert type(loaded[("opt",)].value["mu"]) is nnx.Param
    assert loaded[("opt",)].value["mu"].sharding == ("x",)
    _assert_states_identical(nnx.checkpoints.restore(tmp_path / "ckpt", state), state)

    nnx.checkpoints.save(tmp_path / "empty", nnx.State({}))
    assert nnx.checkpoints.load(tmp_path / "empty") == nnx.State({})


def test_kinds_and_containers_inside_a_value_are_checked(tmp_path):
    saved = nnx.State({("opt",): nnx.TreeNode({"mu": nnx.Param(jnp.ones(2)), "t": (1, 2)})})
    nnx.checkpoints.save(tmp_path / "ckpt", saved)
    other_kind = nnx.State(
        {("opt",): nnx.TreeNode({"mu": nnx.BatchStat(jnp.ones(2)), "t": (1, 2)})}
    )
    list_not_tuple = nnx.State(
        {("opt",): nnx.TreeNode({"mu": nnx.Param(jnp.ones(2)), "t": [1, 2]})}
    )
    for target in (other_kind, list_not_tuple):
        with pytest.raises(ValueError, match=r"\('opt',\): value structure differs"):
            nnx.checkpoints.restore(tmp_path / "ckpt", target)


def test_optimizer_state_restores_into_a_target_and_needs_one(tmp_path):
    optax = pytest.importorskip("optax")
    params = nnx.State({("w",): nnx.Param(jnp.arange(3.0))})
    tx = optax.adam(1e-3)
    opt_state = tx.update(params, tx.init(params), params)[1]
    nnx.checkpoints.save(tmp_path / "opt", nnx.State({("adam",): nnx.TreeNode(opt_state)}))
    target = nnx.State({("adam",): nnx.TreeNode(tx.init(params))})
    restored = nnx.checkpoints.restore(tmp_path / "opt", target)[("adam",)].value
    assert jax.tree.structure(restored) == jax.tree.structure(opt_state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(opt_state)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="records only by name"):
        nnx.checkpoints.load(tmp_path / "opt")


def test_64_bit_jax_arrays_are_never_narrowed(tmp_path):
    jax.config.update("jax_enable_x64", True)
    try:
        big = jnp.array([2**40], jnp.int64)
        nnx.checkpoints.save(tmp_path / "ckpt", nnx.State({("n",): nnx.Param(big)}))
        assert nnx.checkpoints.load(tmp_path / "ckpt")[("n",)].value.dtype == jnp.int64
    finally:
        jax.config.update("jax_enable_x64", False)
    with pytest.raises(ValueError, match="saved with a int64 jax array"):
        nnx.checkpoints.load(tmp_path / "ckpt")
    abstract = nnx.State({("n",): nnx.Param(jax.ShapeDtypeStruct((1,), jnp.int32))})
    with pytest.raises(ValueError, match="checkpoint has int64\\[1\\], target has int32\\[1\\]"):
        nnx.checkpoints.restore(tmp_path / "ckpt", abstract)


def test_restore_into_a_traced_target_is_refused(tmp_path):
    nnx.checkpoints.save(tmp_path / "ckpt", nnx.State({("w",): nnx.Param(jnp.ones(2))}))

    @jax.jit
    def restore_traced(x):
        return nnx.checkpoints.restore(tmp_path / "ckpt", nnx.State({("w",): nnx.Param(x)}))

    with pytest.raises(ValueError, match="holds a traced value"):
        restore_traced(jnp.zeros(2))

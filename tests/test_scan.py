"""`nnx.scan` and `nnx.Scan`: stacked layers built by `Scan(Block, ...)` or `scan` on
`__init__`, split RNG streams, the `.call` accessor, metadata_params, write-back
(reference-semantics §9).
"""

from __future__ import annotations

import copy
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx
from _transform_models import StackBlock, by_hand


def _stack(n: int = 4, **options: object) -> nnx.Scan[StackBlock]:
    return nnx.Scan(
        StackBlock, variable_axes={nnx.Param: 0, nnx.BatchStat: 0}, length=n, **options
    )(  # type: ignore[arg-type]
        3, ctx=nnx.context(0)
    )


def test_scan_is_a_module_class_and_returns_a_constructor():
    assert issubclass(nnx.Scan, nnx.Module)
    assert nnx.ScanModule is nnx.Scan
    make = nnx.Scan(StackBlock, variable_axes={nnx.Param: 0}, split_rngs="params", length=4)
    assert callable(make) and not isinstance(make, nnx.Module)
    m = make(3, ctx=nnx.context(0))
    assert isinstance(m, nnx.Scan) and isinstance(m, nnx.Module)
    assert isinstance(m.scan_module, StackBlock)
    assert m.module_constructor is StackBlock
    assert m.scan_module.linear.kernel.shape == (4, 3, 3)
    assert m.scan_module.linear.bias.shape == (4, 3)


def test_scan_options_are_keywords():
    with pytest.raises(TypeError, match="keywords"):
        nnx.Scan(StackBlock, {nnx.Param: 0})  # type: ignore[call-arg, misc]
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['lenght'\]"):
        nnx.Scan(StackBlock, lenght=3)  # type: ignore[call-arg]


@pytest.mark.parametrize("split_rngs", ["params", ("params",), ["params"], ...])
def test_split_rngs_gives_each_layer_its_own_parameters(split_rngs: object):
    m = _stack(split_rngs=split_rngs)
    kernels = np.asarray(m.scan_module.linear.kernel)
    assert not np.allclose(kernels[0], kernels[1])
    assert not np.allclose(kernels[1], kernels[3])


def test_without_split_rngs_every_layer_starts_equal():
    m = _stack()
    kernels = np.asarray(m.scan_module.linear.kernel)
    np.testing.assert_array_equal(kernels[0], kernels[3])


def test_split_rngs_that_splits_nothing_is_an_error():
    with pytest.raises(ValueError, match=r"\['dropout'\], which the Context does not have"):
        _stack(split_rngs="dropout")
    with pytest.raises(ValueError, match=r"did you mean 'params' for 'param'\?"):
        _stack(split_rngs=["param", "dropout"])


def test_split_rngs_may_name_streams_for_other_calls():
    # 0.0.8's pattern: one set of options for __init__ (a "params" Context) and the
    # call (a "dropout" Context); the absent names are ignored
    m = _stack(split_rngs=("params", "dropout"))
    kernels = np.asarray(m.scan_module.linear.kernel)
    assert not np.allclose(kernels[0], kernels[1])


def test_calling_a_scan_runs_every_layer_and_writes_state_back():
    m = _stack(split_rngs="params")
    x = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
    y, ys = m(x, None)
    assert ys is None
    lin = m.scan_module.linear
    np.testing.assert_allclose(y, by_hand(lin.kernel, lin.bias, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m.scan_module.calls, jnp.ones((4,)))
    y2, _ = m.call(x, None)  # .call is the same transform
    np.testing.assert_allclose(y2, y, rtol=1e-6)
    np.testing.assert_array_equal(m.scan_module.calls, jnp.full((4,), 2.0))


def test_call_accessor_scans_another_method():
    m = _stack(split_rngs="params")
    x = jnp.ones((2, 3))
    y, sums = m.call.doubled(x, None)
    lin = m.scan_module.linear
    expected = x
    expected_sums = []
    for k, b in zip(lin.kernel, lin.bias):
        expected = 2.0 * (expected @ k + b)
        expected_sums.append(jnp.sum(expected))
    np.testing.assert_allclose(y, expected, rtol=1e-5)
    np.testing.assert_allclose(sums, jnp.stack(expected_sums), rtol=1e-5)


def test_scan_partitions_merges_and_jits_like_any_module():
    m = _stack(split_rngs=["params"])  # a list is kept as a (hashable) tuple
    state, moduledef = m.partition()
    hash(moduledef)
    assert ("scan_module", "linear", "kernel") in state
    clone = moduledef.merge(state)
    assert isinstance(clone, nnx.Scan)
    x = jnp.ones((2, 3))

    @nnx.jit
    def forward(model: nnx.Scan[StackBlock], x: jax.Array) -> jax.Array:
        return model(x, None)[0]

    np.testing.assert_allclose(forward(m, x), clone(x, None)[0], rtol=1e-6)
    np.testing.assert_array_equal(m.scan_module.calls, jnp.ones((4,)))


def test_scan_modules_copy_and_pickle():
    m = _stack(split_rngs="params")
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert type(other) is nnx.Scan
        np.testing.assert_array_equal(other.scan_module.linear.kernel, m.scan_module.linear.kernel)


def test_grad_through_a_scan_module():
    m = _stack(split_rngs="params")
    x = jnp.ones((2, 3))

    def loss(model: nnx.Scan[StackBlock]) -> jax.Array:
        return jnp.sum(model(x, None)[0])

    grads = nnx.grad(loss)(m)
    kernel_grad = grads[("scan_module", "linear", "kernel")].value
    lin = m.scan_module.linear
    expected = jax.grad(lambda k: jnp.sum(by_hand(k, lin.bias, x)))(lin.kernel)
    np.testing.assert_allclose(kernel_grad, expected, rtol=1e-5, atol=1e-6)


class Sharded(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        init = nnx.with_logical_partitioning(nnx.initializers.lecun_normal(), ("in", "out"))
        self.linear = nnx.Linear(3, 3, kernel_init=init, ctx=ctx)

    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
        return self.linear(x), None


@pytest.mark.parametrize(
    ("axis", "expected"), [(0, ("layers", "in", "out")), (1, ("in", "layers", "out"))]
)
def test_metadata_params_name_the_stacked_axis(axis: int, expected: tuple[str, ...]):
    m = nnx.Scan(
        Sharded,
        variable_axes={nnx.Param: axis},
        split_rngs="params",
        length=4,
        metadata_params={nnx.PARTITION_NAME: "layers"},
    )(ctx=nnx.context(0))
    kernel = vars(m.scan_module.linear)["kernel"]
    assert kernel.sharding == expected
    assert kernel.value.shape[axis] == 4
    spec = nnx.get_partition_spec(m.get_state())
    assert spec[("scan_module", "linear", "kernel")] == jax.sharding.PartitionSpec(*expected)
    y, _ = m(jnp.ones((2, 3)), None)
    assert y.shape == (2, 3)
    assert vars(m.scan_module.linear)["kernel"].sharding == expected  # restored after


def test_metadata_params_inside_the_body_drop_the_axis():
    seen: list[object] = []

    class Probe(nnx.Module):
        def __init__(self, *, ctx: nnx.Context) -> None:
            init = nnx.with_logical_partitioning(nnx.initializers.lecun_normal(), ("in", "out"))
            self.linear = nnx.Linear(3, 3, kernel_init=init, ctx=ctx)

        def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
            seen.append(vars(self.linear)["kernel"].sharding)
            return self.linear(x), None

    m = nnx.Scan(
        Probe,
        variable_axes={nnx.Param: 0},
        split_rngs="params",
        length=2,
        metadata_params={nnx.PARTITION_NAME: "layers"},
    )(ctx=nnx.context(0))
    m(jnp.ones((1, 3)), None)
    assert seen == [("in", "out")]
    assert vars(m.scan_module.linear)["kernel"].sharding == ("layers", "in", "out")


OPTIONS = dict(variable_axes={nnx.Param: 0}, split_rngs="params", length=3)


class ScannedBlock(nnx.Module):
    @nnx.scan(**OPTIONS)  # type: ignore[call-overload]
    def __init__(self, dim: int, *, ctx: nnx.Context) -> None:
        self.linear = nnx.Linear(dim, dim, ctx=ctx)

    @nnx.scan(**OPTIONS)  # type: ignore[call-overload]
    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
        return jnp.tanh(self.linear(x)), None


def test_scan_on_init_builds_the_stacked_layers_on_self():
    ctx = nnx.context(0)
    m = ScannedBlock(3, ctx=ctx)
    assert type(m) is ScannedBlock
    assert m.linear.kernel.shape == (3, 3, 3)
    kernels = np.asarray(m.linear.kernel)
    assert not np.allclose(kernels[0], kernels[1])
    x = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
    y, _ = m(x, None)
    np.testing.assert_allclose(y, by_hand(m.linear.kernel, m.linear.bias, x), rtol=1e-5, atol=1e-6)
    m.linear.bias = jnp.ones((3, 3))  # the stacked layout is kept: no false error
    np.testing.assert_array_equal(m.linear.bias, jnp.ones((3, 3)))
    with pytest.raises(nnx.ShapeCheckError, match=r"Linear\.bias: "):
        m.linear.bias = jnp.ones((4, 3))  # another layout is still checked


def test_scan_on_init_is_deterministic_per_seed():
    a = ScannedBlock(3, ctx=nnx.context(0))
    b = ScannedBlock(3, ctx=nnx.context(0))
    np.testing.assert_array_equal(a.linear.kernel, b.linear.kernel)


def test_is_init_builds_from_another_method_name():
    class Built(nnx.Module):
        @nnx.scan(is_init=True, **OPTIONS)  # type: ignore[call-overload]
        def setup(self, *, ctx: nnx.Context) -> None:
            self.w = nnx.Param(jax.random.normal(ctx.make_rng("params"), (2,)))

    m = Built.__new__(Built)
    m.setup(ctx=nnx.context(0))
    assert m.w.shape == (3, 2)


class _ModeBlock(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.lin = nnx.Linear(2, 2, ctx=ctx)
        self.mode = "train"

    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
        self.mode = "eval"
        return self.lin(x), None


def test_scan_writes_back_static_attribute_changes():
    # regression: scan wrote back only the stacked and carried state; a static
    # attribute set in the body was dropped
    m = nnx.Scan(_ModeBlock, variable_axes={nnx.Param: 0}, split_rngs="params", length=3)(
        ctx=nnx.context(0)
    )
    y, _ = m.call(jnp.ones((1, 2)), None)
    assert y.shape == (1, 2)
    assert m.scan_module.mode == "eval"


class _CountingBlock(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.lin = nnx.Linear(2, 2, ctx=ctx)
        self.seen = nnx.BatchStat(jnp.zeros(()))

    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
        self.seen += 1
        return self.lin(x), None


def test_scan_refuses_changes_to_broadcast_state():
    # regression: a change to variable_broadcast state inside the body was dropped
    m = nnx.Scan(
        _CountingBlock,
        variable_axes={nnx.Param: 0},
        variable_broadcast=nnx.BatchStat,
        split_rngs="params",
        length=3,
    )(ctx=nnx.context(0))
    with pytest.raises(
        ValueError, match=r"nnx.scan: the function changed \[\('seen',\)\].*variable_carry"
    ):
        m.call(jnp.ones((1, 2)), None)
    # carried, the same state counts every step
    m = nnx.Scan(
        _CountingBlock,
        variable_axes={nnx.Param: 0},
        variable_carry=nnx.BatchStat,
        split_rngs="params",
        length=3,
    )(ctx=nnx.context(0))
    m.call(jnp.ones((1, 2)), None)
    assert float(m.scan_module.seen) == 3.0


class _GrowingBlock(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.lin = nnx.Linear(2, 2, ctx=ctx)

    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
        self.extra = nnx.Linear(2, 2, ctx=nnx.context(1))
        return self.lin(x), None


def test_scan_refuses_submodules_created_in_the_body_with_a_clear_error():
    # regression: this surfaced as JAX's "carry input and carry output must have the
    # same pytree structure"
    m = nnx.Scan(_GrowingBlock, variable_axes={nnx.Param: 0}, split_rngs="params", length=2)(
        ctx=nnx.context(0)
    )
    with pytest.raises(
        ValueError, match=r"submodules added \['extra'\].*Create submodules outside"
    ):
        m.call(jnp.ones((1, 2)), None)

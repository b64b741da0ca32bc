"""Every snippet of the original NNX README (../shared/spec/nnx-readme.md: Getting
Started, Modules, Functional API, Partitioning State, Filters, Capturing Intermediate
Values, Case Studies / Shared State, Training with Lifted Transforms, Manual Lifting)
as a test, with the errata of reference-semantics §14 fixed and DECISIONS.md applied
(tuple paths, string collection filters, `nnx.var`). Our own README.md is run by
test_readme.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

# ----------------------------------------------------------------------------------
# Getting Started


class Count(nnx.Variable):
    pass


class Linear(nnx.Module):
    def __init__(self, din: int, dout: int, *, ctx: nnx.Context):
        key = ctx.make_rng("params")
        self.w = nnx.Param(jax.random.uniform(key, (din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.count = Count(0)  # track the number of calls

    def __call__(self, x):
        self.count += 1
        return x @ self.w + self.b


def _getting_started():
    model = Linear(din=12, dout=2, ctx=nnx.context(0))
    x = jnp.ones((8, 12))
    y = model(x)
    return model, x, y


def test_getting_started():
    model, x, y = _getting_started()
    assert model.count == 1

    # the parameters come from ctx.make_rng("params") with seed 0
    key = nnx.context(0).make_rng("params")
    np.testing.assert_array_equal(model.w, jax.random.uniform(key, (12, 2)))
    np.testing.assert_array_equal(model.b, jnp.zeros((2,)))
    assert y.shape == (8, 2)
    np.testing.assert_allclose(y, x @ model.w + model.b)

    # reads unbox, `self.count += 1` keeps the Count kind
    assert isinstance(model.w, jax.Array)
    assert type(vars(model)["count"]) is Count
    assert type(vars(model)["w"]) is nnx.Param
    assert Count.collection == "count"

    model(x)
    assert model.count == 2


def test_getting_started_training_with_the_functional_api():
    model, x, _ = _getting_started()
    y = jnp.full((8, 2), 0.5)
    w0 = model.w
    b0 = model.b

    (params, counts), moduledef = model.partition(nnx.Param, Count)
    assert set(params) == {("b",), ("w",)}
    assert set(counts) == {("count",)}

    traces = []

    @jax.jit
    def train_step(params, counts, x, y):
        traces.append(None)

        def loss_fn(params):
            y_pred, (updates, _) = moduledef.apply(params, counts)(x)
            loss = jax.numpy.mean((y_pred - y) ** 2)
            return loss, updates.filter(Count)

        # compute gradient
        grads, counts = jax.grad(loss_fn, has_aux=True)(params)
        # SGD update
        params = jax.tree.map(lambda w, g: w - 0.1 * g, params, grads)

        return params, counts

    # execute the training step
    params, counts = train_step(params, counts, x, y)
    model = moduledef.merge(params, counts)
    assert model.count == 2
    assert type(vars(model)["count"]) is Count

    # the update is plain SGD on the mean squared error
    def reference_loss(w, b):
        return jnp.mean((x @ w + b - y) ** 2)

    gw, gb = jax.grad(reference_loss, argnums=(0, 1))(w0, b0)
    np.testing.assert_allclose(model.w, w0 - 0.1 * gw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.b, b0 - 0.1 * gb, rtol=1e-5, atol=1e-6)
    assert reference_loss(model.w, model.b) < reference_loss(w0, b0)

    # a second step reuses the compiled function and keeps counting
    params, counts = train_step(params, counts, x, y)
    assert len(traces) == 1
    assert moduledef.merge(params, counts).count == 3


# ----------------------------------------------------------------------------------
# Modules


class Foo(nnx.Module):
    def __init__(self, ctx: nnx.Context):
        # node attributes
        self.variable = nnx.Param(jnp.array(1))
        self.np_buffer = np.array(2)
        self.jax_buffer = jnp.array(3)
        self.node = nnx.Node([4, 5])
        self.submodule = nnx.Linear(2, 4, ctx=ctx)
        # static attributes
        self.int = 1
        self.float = 2.0
        self.str = "hello"
        self.list = [1, 2, 3]

    # for the Functional API snippets, which call the model and `some_method`
    def __call__(self, x):
        return self.submodule(x) + self.variable

    def some_method(self, x):
        self.variable += 1
        return self.submodule(x) * self.jax_buffer


def _foo():
    # erratum §14.1: Foo only takes `ctx`
    return Foo(ctx=nnx.context(0))


def test_modules_foo():
    model = _foo()
    # reads of node attributes
    assert model.variable == 1
    assert type(vars(model)["variable"]) is nnx.Param
    assert isinstance(model.np_buffer, np.ndarray)
    assert model.np_buffer == 2
    assert isinstance(model.jax_buffer, jax.Array)
    assert model.jax_buffer == 3
    assert model.node == [4, 5]
    assert type(vars(model)["node"]) is nnx.Node
    assert isinstance(model.submodule, nnx.Linear)
    # static attributes
    assert model.int == 1
    assert model.float == 2.0
    assert model.str == "hello"
    assert model.list == [1, 2, 3]


def test_modules_foo_wrong_signature_is_an_error():
    # the README as written passes din/dout, which Foo does not take
    with pytest.raises(TypeError):
        Foo(din=12, dout=2, ctx=nnx.context(0))  # type: ignore[call-arg]


def test_modules_static_attributes_are_in_the_moduledef():
    model = _foo()
    state, moduledef = model.partition()
    statics = dict(moduledef.static_fields)
    assert statics["int"] == 1
    assert statics["float"] == 2.0
    assert statics["str"] == "hello"
    assert statics["list"] == [1, 2, 3]
    for name in ("int", "float", "str", "list"):
        assert all(name not in path for path in state)
    # a list static attribute does not break hashing (erratum §14.8)
    assert hash(moduledef) == hash(_foo().get_module_def())


# ----------------------------------------------------------------------------------
# Functional API


def test_functional_api_partition():
    model = _foo()
    state, moduledef = model.partition()
    assert isinstance(state, nnx.State)
    assert isinstance(moduledef, nnx.ModuleDef)
    assert list(state) == [
        ("jax_buffer",),
        ("node",),
        ("np_buffer",),
        ("submodule", "bias"),
        ("submodule", "kernel"),
        ("variable",),
    ]
    assert state[("jax_buffer",)] == 3
    assert state[("np_buffer",)] == 2
    assert state[("node",)] == nnx.Node([4, 5])
    assert state[("variable",)] == nnx.Param(jnp.array(1))
    assert type(state[("submodule", "kernel")]) is nnx.Param
    assert state[("submodule", "kernel")].value.shape == (2, 4)
    assert state[("submodule", "bias")].value.shape == (4,)

    text = repr(state)
    assert text.startswith("State({")
    assert text.endswith("})")
    for fragment in (
        "('jax_buffer',): Array(3)",
        "('node',): Node(value=[4, 5])",
        "('np_buffer',): array(2)",
        "('submodule', 'bias'): Param(",
        "('submodule', 'kernel'): Param(",
        "('variable',): Param(value=Array(1))",
    ):
        assert fragment in text
    # entries are printed in sorted order
    assert text.index("jax_buffer") < text.index("np_buffer") < text.index("variable")


def test_functional_api_state_and_moduledef_are_pytrees():
    state, moduledef = _foo().partition()
    assert jax.tree_util.tree_leaves(moduledef) == []
    # kernel, bias, the two ints of the Node, both buffers and the variable
    assert len(jax.tree_util.tree_leaves(state)) == 7
    leaves = jax.tree.map(lambda x: x + 1, state)
    assert isinstance(leaves, nnx.State)
    assert leaves[("node",)] == nnx.Node([5, 6])
    assert leaves[("np_buffer",)] == 3


def test_functional_api_merge_inside_jit():
    state, moduledef = _foo().partition()

    @jax.jit
    def roundtrip(state, moduledef):
        model = moduledef.merge(state)
        return model.partition()

    state2, moduledef2 = roundtrip(state, moduledef)
    assert moduledef2 == moduledef
    assert list(state2) == list(state)


def test_functional_api_merge():
    model = _foo()
    state, moduledef = model.partition()
    model2 = moduledef.merge(state)
    assert type(model2) is Foo
    assert model2 is not model
    assert model2.submodule is not model.submodule
    np.testing.assert_array_equal(model2.submodule.kernel, model.submodule.kernel)
    assert model2.variable == 1
    assert model2.node == [4, 5]
    assert model2.list == [1, 2, 3]
    assert model2.str == "hello"
    assert type(vars(model2)["variable"]) is nnx.Param


def test_functional_api_apply():
    model = _foo()
    state, moduledef = model.partition()
    x = jnp.ones((3, 2))
    kernel = model.submodule.kernel
    bias = model.submodule.bias

    # run __call__
    y, (state, moduledef) = moduledef.apply(state)(x)
    np.testing.assert_allclose(y, x @ kernel + bias + 1, rtol=1e-6)
    assert isinstance(state, nnx.State)
    assert isinstance(moduledef, nnx.ModuleDef)

    # run some_method: it increments `variable`, visible in the returned state
    y, (state, moduledef) = moduledef.apply(state).some_method(x)
    np.testing.assert_allclose(y, (x @ kernel + bias) * 3, rtol=1e-6)
    assert state[("variable",)].value == 2
    y, (state, moduledef) = moduledef.apply(state).some_method(x)
    assert state[("variable",)].value == 3

    # run submodule: the output is the submodule's, the state the whole model's
    y, (state, moduledef) = moduledef.apply(state).submodule(x)
    np.testing.assert_allclose(y, x @ kernel + bias, rtol=1e-6)
    assert moduledef.type is Foo
    assert ("submodule", "kernel") in state
    assert state[("variable",)].value == 3

    # the original module was not touched
    assert model.variable == 1


def test_functional_api_apply_nested_access():
    class Block(nnx.Module):
        def __init__(self, ctx):
            self.linear = nnx.Linear(2, 2, ctx=ctx)

    class Net(nnx.Module):
        def __init__(self, ctx):
            self.blocks = nnx.Sequence([Block(ctx), Block(ctx)])

    net = Net(nnx.context(0))
    state, moduledef = net.partition()
    x = jnp.ones((1, 2))
    y, (state2, moduledef2) = moduledef.apply(state).blocks[1].linear(x)
    np.testing.assert_allclose(y, net.blocks[1].linear(x))
    assert moduledef2 == moduledef
    assert state2 == state


# ----------------------------------------------------------------------------------
# Partitioning State


class Mixed(nnx.Module):
    def __init__(self, *, ctx: nnx.Context):
        self.linear = nnx.Linear(3, 3, ctx=ctx)
        self.bn = nnx.BatchNorm(3, ctx=ctx)
        self.buffer = jnp.arange(3.0)

    def __call__(self, x):
        return self.bn(self.linear(x) + self.buffer, use_running_average=False)


def test_partitioning_state():
    model = Mixed(ctx=nnx.context(0))
    all_paths = {
        ("bn", "bias"),
        ("bn", "mean"),
        ("bn", "scale"),
        ("bn", "var"),
        ("buffer",),
        ("linear", "bias"),
        ("linear", "kernel"),
    }

    # partition the module into the state with all the nodes and the moduledef
    state, moduledef = model.partition()
    assert set(state) == all_paths

    # verify that the state contains only params, else raise an error
    with pytest.raises(ValueError, match="Non-exhaustive"):
        model.partition(nnx.Param)
    params, moduledef_p = model.linear.partition(nnx.Param)
    assert set(params) == {("bias",), ("kernel",)}

    # split the state into params and batch_stats, verify no nodes are left
    with pytest.raises(ValueError, match="Non-exhaustive"):
        model.partition(nnx.Param, nnx.BatchStat)
    (params, batch_stats), _ = model.bn.partition(nnx.Param, nnx.BatchStat)
    assert set(params) == {("bias",), ("scale",)}
    assert set(batch_stats) == {("mean",), ("var",)}

    # if there are any nodes left, use the `...` filter to capture them
    (params, batch_stats, rest), moduledef = model.partition(nnx.Param, nnx.BatchStat, ...)
    assert set(params) == {
        ("bn", "bias"),
        ("bn", "scale"),
        ("linear", "bias"),
        ("linear", "kernel"),
    }
    assert set(batch_stats) == {("bn", "mean"), ("bn", "var")}
    assert set(rest) == {("buffer",)}
    assert all(type(v) is nnx.Param for v in params.values())
    assert all(type(v) is nnx.BatchStat for v in batch_stats.values())

    # using `...` as the only filter is equivalent to not passing any filters
    # (erratum §14.3: the README's `=` is pseudo-code for "same result")
    state_e, moduledef_e = model.partition(...)
    assert state_e == state
    assert moduledef_e == moduledef
    assert list(state_e) == list(state)


def test_partitioning_state_merge_and_apply():
    model = Mixed(ctx=nnx.context(0))
    (params, batch_stats, rest), moduledef = model.partition(nnx.Param, nnx.BatchStat, ...)

    model2 = moduledef.merge(params, batch_stats, rest)
    np.testing.assert_array_equal(model2.linear.kernel, model.linear.kernel)
    np.testing.assert_array_equal(model2.bn.mean, model.bn.mean)
    np.testing.assert_array_equal(model2.buffer, model.buffer)

    x = jnp.arange(6.0).reshape(2, 3)
    y, (state, moduledef) = moduledef.apply(params, batch_stats, rest)(x)
    assert y.shape == (2, 3)
    # apply returns a single state; the BatchNorm statistics moved
    assert isinstance(state, nnx.State)
    assert set(state) == set(params) | set(batch_stats) | set(rest)
    assert not np.array_equal(state[("bn", "mean")].value, batch_stats[("bn", "mean")].value)

    # re-partition with State's own partition method
    params2, batch_stats2, rest2 = state.partition(nnx.Param, nnx.BatchStat, ...)
    assert set(params2) == set(params)
    assert set(batch_stats2) == set(batch_stats)
    assert set(rest2) == set(rest)

    # State.filter does not raise for unmatched nodes
    only_params = state.filter(nnx.Param)
    assert set(only_params) == set(params)
    params3, batch_stats3 = state.filter(nnx.Param, nnx.BatchStat)
    assert set(params3) == set(params)
    assert set(batch_stats3) == set(batch_stats)
    with pytest.raises(ValueError, match="Non-exhaustive"):
        state.partition(nnx.Param, nnx.BatchStat)


def test_partitioning_state_predicate_receives_tuple_paths():
    model = Mixed(ctx=nnx.context(0))
    seen = []

    def in_linear(path, value):
        seen.append(path)
        return path[0] == "linear"

    linear_state, rest = model.filter(in_linear, ...)
    assert set(linear_state) == {("linear", "bias"), ("linear", "kernel")}
    assert ("buffer",) in rest
    assert seen
    assert all(isinstance(p, tuple) for p in seen)
    assert all(isinstance(k, str) for p in seen for k in p)


# ----------------------------------------------------------------------------------
# Filters


def test_filters_not_and_buffers():
    module = Mixed(ctx=nnx.context(0))
    rest = module.filter(nnx.Not(nnx.Param))
    buffers = module.filter(nnx.buffers)
    assert set(rest) == {("bn", "mean"), ("bn", "var"), ("buffer",)}
    assert set(buffers) == {("buffer",)}
    np.testing.assert_array_equal(buffers[("buffer",)], jnp.arange(3.0))


# ----------------------------------------------------------------------------------
# Capturing Intermediate Values


class CapturingLinear(nnx.Module):
    def __init__(self, din: int, dout: int, *, ctx: nnx.Context):
        key = ctx.make_rng("params")
        self.w = nnx.Param(jax.random.uniform(key, (din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))

    def __call__(self, x):
        y = x @ self.w + self.b
        self.y = nnx.Intermediate(y)
        return y


class VarLinear(CapturingLinear):
    """The variant the README recommends: `nnx.var` with a collection name."""

    def __call__(self, x):
        y = x @ self.w + self.b
        self.y = nnx.var("intermediates", y)
        return y


@pytest.mark.parametrize("cls", [CapturingLinear, VarLinear])
def test_capturing_intermediates_pop_state(cls):
    model = cls(12, 2, ctx=nnx.context(0))
    assert "y" not in vars(model)

    y = model(jnp.ones((8, 12)))
    assert type(vars(model)["y"]) is nnx.Intermediate
    intermediates = model.pop_state(nnx.Intermediate)

    assert list(intermediates) == [("y",)]
    assert type(intermediates[("y",)]) is nnx.Intermediate
    np.testing.assert_array_equal(intermediates[("y",)].value, y)
    # pop_state removed the attribute
    assert "y" not in vars(model)
    assert set(model.get_state()) == {("b",), ("w",)}

    text = repr(intermediates)
    assert text.startswith("State({")
    assert "('y',): Intermediate(" in text
    assert "float32[8,2]" in text


@pytest.mark.parametrize("cls", [CapturingLinear, VarLinear])
def test_capturing_intermediates_functional(cls):
    model = cls(12, 2, ctx=nnx.context(0))
    state, moduledef = model.partition()
    y, (state, moduledef) = moduledef.apply(state)(jnp.ones((8, 12)))
    # "pop" the intermediates from the state
    intermediates, state = state.partition("intermediates", ...)
    assert list(intermediates) == [("y",)]
    np.testing.assert_array_equal(intermediates[("y",)].value, y)
    assert set(state) == {("b",), ("w",)}

    # State.filter retrieves them without removing them
    _, (state, _) = moduledef.apply(state | intermediates)(jnp.ones((8, 12)))
    assert set(state.filter("intermediates")) == {("y",)}
    assert ("y",) in state


# ----------------------------------------------------------------------------------
# Case Studies: Shared State


class Block(nnx.Module):
    def __init__(self, linear: nnx.Linear, *, ctx: nnx.Context):
        self.linear = linear
        self.bn = nnx.BatchNorm(2, ctx=ctx)

    def __call__(self, x, *, ctx: nnx.Context):
        x = self.linear(x)
        x = self.bn(x, ctx=ctx)
        x = nnx.relu(x)
        return x


class Model(nnx.Module):
    def __init__(self, *, ctx: nnx.Context):
        shared = nnx.Linear(2, 2, ctx=ctx)
        self.block1 = Block(shared, ctx=ctx)
        self.block2 = Block(shared, ctx=ctx)

    def __call__(self, x, *, ctx: nnx.Context):
        x = self.block1(x, ctx=ctx)
        x = self.block2(x, ctx=ctx)
        return x


def loss_fn(model: Model, x: jax.Array, y: jax.Array):
    ctx = nnx.context(flags=dict(use_running_average=True))
    y_pred = model(x, ctx=ctx)
    return jnp.mean((y - y_pred) ** 2)


def test_shared_state_structure():
    model = Model(ctx=nnx.context(0))
    assert model.block1.linear is model.block2.linear
    assert model.block1.bn is not model.block2.bn

    state, moduledef = model.partition()
    # the shared Linear appears once, under its first path
    assert set(state) == {
        ("block1", "bn", "bias"),
        ("block1", "bn", "mean"),
        ("block1", "bn", "scale"),
        ("block1", "bn", "var"),
        ("block1", "linear", "bias"),
        ("block1", "linear", "kernel"),
        ("block2", "bn", "bias"),
        ("block2", "bn", "mean"),
        ("block2", "bn", "scale"),
        ("block2", "bn", "var"),
    }

    model2 = moduledef.merge(state)
    assert model2.block1.linear is model2.block2.linear
    assert model2.block1.bn is not model2.block2.bn


def test_shared_state_loss_and_eval_mode():
    model = Model(ctx=nnx.context(0))
    x = jnp.arange(8.0).reshape(4, 2) / 8
    y = jnp.ones((4, 2))
    mean_before = model.block1.bn.mean
    loss = loss_fn(model, x, y)
    assert loss.shape == ()
    assert jnp.isfinite(loss)
    # use_running_average=True: the running statistics did not move
    np.testing.assert_array_equal(model.block1.bn.mean, mean_before)

    # same computation by hand: eval BatchNorm with fresh stats is x / sqrt(1 + eps)
    lin = model.block1.linear
    h = nnx.relu((x @ lin.kernel + lin.bias) / jnp.sqrt(1 + 1e-5))
    h = nnx.relu((h @ lin.kernel + lin.bias) / jnp.sqrt(1 + 1e-5))
    np.testing.assert_allclose(loss, jnp.mean((y - h) ** 2), rtol=1e-5)


def test_shared_state_training_mode_updates_both_batchnorms():
    model = Model(ctx=nnx.context(0))
    x = jnp.arange(8.0).reshape(4, 2) / 8
    model(x, ctx=nnx.context(flags=dict(use_running_average=False)))
    assert not np.array_equal(model.block1.bn.mean, jnp.zeros(2))
    assert not np.array_equal(model.block2.bn.mean, jnp.zeros(2))


def test_shared_state_stays_in_sync_during_gradient_updates():
    model = Model(ctx=nnx.context(0))
    x = jnp.arange(8.0).reshape(4, 2) / 8
    y = jnp.ones((4, 2))
    (params, rest), moduledef = model.partition(nnx.Param, ...)
    # the shared kernel is a single parameter
    assert ("block1", "linear", "kernel") in params
    assert ("block2", "linear", "kernel") not in params

    @jax.jit
    def train_step(params, rest):
        def loss(params):
            return loss_fn(moduledef.merge(params, rest), x, y)

        grads = jax.grad(loss)(params)
        return jax.tree.map(lambda w, g: w - 0.1 * g, params, grads), grads

    new_params, grads = train_step(params, rest)
    assert set(grads) == set(params)
    assert np.any(grads[("block1", "linear", "kernel")].value != 0)

    expected_kernel = (
        params[("block1", "linear", "kernel")].value
        - 0.1 * grads[("block1", "linear", "kernel")].value
    )
    merged = moduledef.merge(new_params, rest)
    assert merged.block1.linear is merged.block2.linear
    np.testing.assert_allclose(merged.block2.linear.kernel, expected_kernel, rtol=1e-6)

    # update_state on the original graph keeps the sharing, too
    shared = model.block1.linear
    loss_before = loss_fn(model, x, y)
    model.update_state(new_params)
    assert model.block1.linear is shared
    assert model.block2.linear is shared
    np.testing.assert_allclose(model.block2.linear.kernel, expected_kernel, rtol=1e-6)
    assert loss_fn(model, x, y) < loss_before


# ----------------------------------------------------------------------------------
# Training with Lifted Transforms


def _allclose(a, b):
    return np.allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_readme_training_with_lifted_transforms():
    model = Linear(din=12, dout=2, ctx=nnx.context(0))
    x = jnp.ones((8, 12))
    model(x)
    assert model.count == 1
    y = jnp.full((8, 2), 0.5)
    w0, b0 = model.w, model.b

    @nnx.jit
    def train_step(model, x, y):
        def loss_fn(model):
            y_pred = model(x)
            return jax.numpy.mean((y_pred - y) ** 2)

        # compute gradient
        grads: nnx.State = nnx.grad(loss_fn, wrt=nnx.Param)(model)
        # SGD update
        model.update_state(jax.tree.map(lambda w, g: w - 0.1 * g, model.filter(nnx.Param), grads))

    # execute the training step
    assert train_step(model, x, y) is None
    assert model.count == 2
    assert type(vars(model)["count"]) is Count
    assert type(vars(model)["w"]) is nnx.Param

    def reference_loss(w, b):
        return jnp.mean((x @ w + b - y) ** 2)

    gw, gb = jax.grad(reference_loss, argnums=(0, 1))(w0, b0)
    _allclose(model.w, w0 - 0.1 * gw)
    _allclose(model.b, b0 - 0.1 * gb)
    assert reference_loss(model.w, model.b) < reference_loss(w0, b0)

    train_step(model, x, y)
    assert model.count == 3


# ----------------------------------------------------------------------------------
# Manual Lifting (ScanMLP)


class ScanBlock(nnx.Module):
    def __init__(self, dim: int, *, ctx: nnx.Context):
        self.linear = nnx.Linear(dim, dim, ctx=ctx)
        self.dropout = nnx.Dropout(0.5)

    def __call__(self, x: jax.Array, *, train: bool, ctx: nnx.Context) -> jax.Array:
        x = self.linear(x)
        x = self.dropout(x, deterministic=not train, ctx=ctx)
        x = jax.nn.gelu(x)
        return x


class ScanMLP(nnx.Module):
    def __init__(self, dim: int, *, n_layers: int, ctx: nnx.Context):
        params_key = jax.random.split(ctx.make_rng("params"), n_layers)
        self.n_layers = n_layers
        self.layers = jax.vmap(lambda key: ScanBlock(dim, ctx=nnx.context(params=key)).partition())(
            params_key
        ).merge()

    def __call__(self, x: jax.Array, *, train: bool, ctx: nnx.Context) -> jax.Array:
        dropout_key = jax.random.split(ctx.make_rng("dropout"), self.n_layers)
        params, moduledef = self.layers.partition(nnx.Param)

        def scan_fn(x, inputs):  # erratum §14.2
            params, dropout_key = inputs
            module = moduledef.merge(params)
            x = module(x, train=train, ctx=nnx.context(dropout=dropout_key))
            return x, module.filter(nnx.Param)

        x, params = jax.lax.scan(scan_fn, x, (params, dropout_key))
        self.layers.update_state(params)
        return x


def test_readme_manual_lifting_scan_mlp():
    model = ScanMLP(10, n_layers=5, ctx=nnx.context(0))
    assert model.n_layers == 5
    assert isinstance(model.layers, ScanBlock)
    params = model.layers.filter(nnx.Param)
    assert set(params) == {("linear", "bias"), ("linear", "kernel")}
    assert model.layers.linear.kernel.shape == (5, 10, 10)
    assert model.layers.linear.bias.shape == (5, 10)
    # each layer got its own key
    kernels = np.asarray(model.layers.linear.kernel)
    assert not np.array_equal(kernels[0], kernels[1])
    before = jax.tree.map(np.asarray, params)

    x = jnp.ones((3, 10))
    y = model(x, train=True, ctx=nnx.context(dropout=1))
    assert y.shape == (3, 10)
    assert jnp.all(jnp.isfinite(y))

    # update_state with the scanned-out params kept the values (and the stacking)
    after = model.layers.filter(nnx.Param)
    assert set(after) == set(before)
    for path in before:
        np.testing.assert_array_equal(after[path].value, before[path].value)
    assert model.layers.linear.kernel.shape == (5, 10, 10)

    # eval mode: the layers applied one after the other, by hand
    y_eval = model(x, train=False, ctx=nnx.context(dropout=1))
    h = x
    for i in range(5):
        h = jax.nn.gelu(h @ kernels[i] + np.asarray(model.layers.linear.bias)[i])
    _allclose(y_eval, h)
    # train=True used the dropout keys
    assert not np.allclose(y, y_eval)

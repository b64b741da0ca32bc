"""Lifted transforms: `nnx.jit`, `nnx.grad`, `nnx.value_and_grad`, `nnx.remat`.

They split the Modules among their arguments into pytrees, run the JAX transform on
a function that rebuilds them, and write every change made inside back into the
caller's Modules in place (sharing and cycles kept). Also the README snippets that
use them ("Training with Lifted Transforms", "Manual Lifting" / ScanMLP, with the
errata of reference-semantics §14 fixed).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

# ----------------------------------------------------------------------------------
# Helpers


class Count(nnx.Variable):
    pass


class Linear(nnx.Module):
    """The README's Getting Started Linear."""

    def __init__(self, din: int, dout: int, *, ctx: nnx.Context):
        key = ctx.make_rng("params")
        self.w = nnx.Param(jax.random.uniform(key, (din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.count = Count(0)  # track the number of calls

    def __call__(self, x):
        self.count += 1
        return x @ self.w + self.b


class Counter(nnx.Module):
    def __init__(self):
        self.count = Count(jnp.array(0))

    def __call__(self, x):
        self.count += 1
        return x


class Holder(nnx.Module):
    """A module whose attributes are set by the test."""

    def __init__(self, **attrs):
        for name, value in attrs.items():
            setattr(self, name, value)


def _linear(din=3, dout=2, seed=0):
    return nnx.Linear(din, dout, ctx=nnx.context(seed))


def _mse(pred, y):
    return jnp.mean((pred - y) ** 2)


def _allclose(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------
# README: Training with Lifted Transforms


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
# README: Manual Lifting (ScanMLP)


class Block(nnx.Module):
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
        self.layers = jax.vmap(lambda key: Block(dim, ctx=nnx.context(params=key)).partition())(
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
    assert isinstance(model.layers, Block)
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


# ----------------------------------------------------------------------------------
# nnx.jit: write-back


def test_jit_writes_variable_updates_back_in_place():
    model = Linear(3, 2, ctx=nnx.context(0))
    w0 = model.w
    x = jnp.ones((4, 3))

    @nnx.jit
    def step(model, x):
        model.w = model.w * 2
        return model(x)

    out = step(model, x)
    _allclose(out, x @ (2 * w0) + model.b)
    _allclose(model.w, 2 * w0)
    assert model.count == 1
    assert type(vars(model)["w"]) is nnx.Param
    assert type(vars(model)["count"]) is Count
    step(model, x)
    _allclose(model.w, 4 * w0)
    assert model.count == 2


def test_jit_call_counter_counts_every_call():
    counter = Counter()
    f = nnx.jit(lambda m, x: m(x))
    for _ in range(5):
        f(counter, 1.0)
    assert counter.count == 5


def test_jit_new_variable_created_inside_is_written_back():
    model = Holder(w=nnx.Param(jnp.ones(3)))

    @nnx.jit
    def f(m):
        m.extra = nnx.Param(m.w * 3)
        m.stat = nnx.BatchStat(jnp.zeros(()))

    f(model)
    _allclose(model.extra, 3 * jnp.ones(3))
    assert type(vars(model)["extra"]) is nnx.Param
    assert type(vars(model)["stat"]) is nnx.BatchStat
    assert set(model.filter(nnx.Param)) == {("extra",), ("w",)}
    assert set(model.filter(nnx.BatchStat)) == {("stat",)}


def test_jit_static_attribute_changes_are_written_back():
    model = Holder(w=nnx.Param(jnp.ones(2)), mode="train", n=1)

    @nnx.jit
    def f(m):
        m.mode = "eval"
        m.n = m.n + 1
        m.new_static = (1, 2)

    f(model)
    assert model.mode == "eval"
    assert model.n == 2
    assert model.new_static == (1, 2)
    _allclose(model.w, jnp.ones(2))
    f(model)
    assert model.n == 3


def test_jit_batchnorm_running_statistics_are_written_back():
    bn = nnx.BatchNorm(2, ctx=nnx.context(0))
    eager = nnx.BatchNorm(2, ctx=nnx.context(0))
    x = jnp.arange(8.0).reshape(4, 2)

    f = nnx.jit(lambda bn, x: bn(x, use_running_average=False))
    out = f(bn, x)
    expected = eager(x, use_running_average=False)
    _allclose(out, expected)
    assert not np.array_equal(bn.mean, jnp.zeros(2))
    _allclose(bn.mean, eager.mean)
    _allclose(bn.var, eager.var)
    f(bn, x)
    eager(x, use_running_average=False)
    _allclose(bn.mean, eager.mean)
    _allclose(bn.var, eager.var)


def test_jit_keeps_module_identity():
    inner = _linear()
    model = Holder(inner=inner, c=Counter())
    counter = model.c
    seen = []

    @nnx.jit
    def f(m):
        seen.append(m)
        m.inner.kernel = m.inner.kernel + 1
        m.c(0)

    k0 = inner.kernel
    f(model)
    assert model.inner is inner
    assert model.c is counter
    _allclose(inner.kernel, k0 + 1)
    assert counter.count == 1
    # inside, the function saw a rebuilt module, not the caller's
    assert seen[0] is not model


def test_jit_two_module_arguments_sharing_a_submodule():
    shared = Counter()
    a = Holder(sub=shared)
    b = Holder(sub=shared)
    inside = []

    @nnx.jit
    def f(a, b):
        inside.append(a.sub is b.sub)
        a.sub(0)
        b.sub(0)

    f(a, b)
    assert inside == [True]
    assert a.sub is shared
    assert b.sub is shared
    assert shared.count == 2


def test_jit_the_same_module_twice_as_argument():
    counter = Counter()
    inside = []

    @nnx.jit
    def f(a, b):
        inside.append(a is b)
        a(0)
        b(0)

    f(counter, counter)
    assert inside == [True]
    assert counter.count == 2


def test_jit_shared_linear_under_two_attributes():
    lin = _linear()
    model = Holder(a=lin, b=lin)
    inside = []
    k0 = lin.kernel

    @nnx.jit
    def f(m):
        inside.append(m.a is m.b)
        m.a.kernel = m.a.kernel + 1.0
        return m.b.kernel

    out = f(model)
    assert inside == [True]
    _allclose(out, k0 + 1)
    assert model.a is lin
    assert model.b is lin
    _allclose(lin.kernel, k0 + 1)


def test_jit_cycles_survive():
    parent = Holder(w=nnx.Param(jnp.zeros(())))
    child = Holder(v=nnx.Param(jnp.zeros(())))
    parent.child = child
    child.parent = parent
    inside = []

    @nnx.jit
    def f(m):
        inside.append(m.child.parent is m)
        m.child.parent.w = m.w + 1
        m.child.v = m.child.v + 2

    f(parent)
    assert inside == [True]
    assert parent.child is child
    assert child.parent is parent
    assert parent.w == 1
    assert child.v == 2


def test_jit_module_argument_that_is_a_submodule_of_another():
    sub = Counter()
    model = Holder(sub=sub)
    inside = []

    @nnx.jit
    def f(m, s):
        inside.append(m.sub is s)
        s(0)
        m.sub(0)

    f(model, sub)
    # also as a keyword argument
    nnx.jit(lambda m, *, s: s(0))(model, s=sub)
    assert inside == [True]
    assert model.sub is sub
    assert sub.count == 3


def test_jit_variable_deleted_inside_is_deleted():
    model = Holder(w=nnx.Param(jnp.ones(2)), v=nnx.BatchStat(jnp.ones(2)))

    @nnx.jit
    def f(m):
        del m.v

    f(model)
    assert not hasattr(model, "v")
    assert set(model.get_state()) == {("w",)}


def test_jit_variable_metadata_survives():
    model = Holder(w=nnx.Param(jnp.ones(2), sharding=("data",)))
    inside = []

    @nnx.jit
    def f(m):
        inside.append(vars(m)["w"].sharding)
        m.w = m.w + 1

    f(model)
    assert inside == [("data",)]
    assert type(vars(model)["w"]) is nnx.Param
    assert vars(model)["w"].sharding == ("data",)
    _allclose(model.w, 2 * jnp.ones(2))


def test_jit_nested_in_jit_and_in_grad():
    model = Holder(w=nnx.Param(jnp.array(3.0)), count=Count(jnp.array(0)))

    @nnx.jit
    def inner(m):
        m.count += 1
        return m.w**2

    @nnx.jit
    def outer(m):
        inner(m)
        inner(m)
        return nnx.grad(inner)(m)

    grads = outer(model)
    _allclose(grads[("w",)].value, 6.0)
    assert model.count == 3


def test_jit_exception_inside_leaves_the_module_unchanged():
    model = Holder(w=nnx.Param(jnp.array(3.0)), mode="a")

    @nnx.jit
    def f(m):
        m.w = m.w + 1
        m.mode = "b"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        f(model)
    assert model.w == 3.0
    assert model.mode == "a"
    assert nnx.jit(lambda m: m.w * 2)(model) == 6.0


def test_jit_stateful_false_discards_updates():
    model = Holder(w=nnx.Param(jnp.ones(2)), count=Count(jnp.array(0)), mode="a")

    @nnx.jit(stateful=False)
    def f(m, x):
        m.w = m.w + x
        m.count += 1
        m.mode = "b"
        m.extra = nnx.Param(jnp.zeros(()))
        return m.w

    out = f(model, 1.0)
    _allclose(out, 2 * jnp.ones(2))
    _allclose(model.w, jnp.ones(2))
    assert model.count == 0
    assert model.mode == "a"
    assert not hasattr(model, "extra")


# ----------------------------------------------------------------------------------
# nnx.jit: Contexts


def test_jit_ctx_keyword_draws_keys_inside():
    @nnx.jit
    def f(x, *, ctx):
        return x + jax.random.uniform(ctx.make_rng("dropout"), (3,))

    x = jnp.zeros(3)
    a = f(x, ctx=nnx.context(dropout=0))
    b = f(x, ctx=nnx.context(dropout=1))
    a2 = f(x, ctx=nnx.context(dropout=0))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, a2)


def test_jit_ctx_keyword_with_a_module_and_dropout():
    model = Holder(drop=nnx.Dropout(0.5), count=Count(jnp.array(0)))

    @nnx.jit
    def f(m, x, *, ctx):
        m.count += 1
        return m.drop(x, deterministic=False, ctx=ctx)

    x = jnp.ones((16,))
    a = f(model, x, ctx=nnx.context(dropout=0))
    b = f(model, x, ctx=nnx.context(dropout=1))
    a2 = f(model, x, ctx=nnx.context(dropout=0))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, a2)
    assert set(np.unique(np.asarray(a)).tolist()) <= {0.0, 2.0}
    assert model.count == 3


def test_jit_ctx_flags_are_visible_inside():
    bn = nnx.BatchNorm(2, ctx=nnx.context(0))
    x = jnp.arange(8.0).reshape(4, 2)
    f = nnx.jit(lambda bn, x, ctx: bn(x, ctx=ctx))
    f(bn, x, ctx=nnx.context(flags=dict(use_running_average=True)))
    np.testing.assert_array_equal(bn.mean, jnp.zeros(2))
    f(bn, x, ctx=nnx.context(flags=dict(use_running_average=False)))
    assert not np.array_equal(bn.mean, jnp.zeros(2))


# ----------------------------------------------------------------------------------
# nnx.jit: trace safety


def test_jit_cannot_mutate_a_module_not_passed_in():
    outer = Counter()
    model = Counter()

    @nnx.jit
    def f(m):
        m(0)
        outer(0)

    with pytest.raises(nnx.TraceContextError, match=r"Cannot mutate Counter\.count"):
        f(model)
    assert outer.count == 0


def test_jit_module_leaked_through_a_side_channel_cannot_be_mutated_outside():
    leaked = []

    @nnx.jit
    def f(x):
        c = Counter()
        c(0)
        leaked.append(c)
        return x

    f(1.0)
    (c,) = leaked
    with pytest.raises(nnx.TraceContextError, match=r"Cannot mutate Counter\.count"):
        c.count = 5
    with pytest.raises(nnx.TraceContextError):
        c.update_state(c.get_state())


def test_jit_creating_a_submodule_inside_raises():
    model = Holder(w=nnx.Param(jnp.ones(2)))

    @nnx.jit
    def f(m):
        m.sub = Counter()

    with pytest.raises(ValueError, match="submodules"):
        f(model)
    # nothing was written
    assert not hasattr(model, "sub")
    _allclose(model.w, jnp.ones(2))


def test_jit_submodule_structure_changes_inside_raise():
    inner = Holder(w=nnx.Param(jnp.ones(())))
    other = Holder(w=nnx.Param(jnp.zeros(())))

    def make():
        return Holder(a=inner, b=other, w=nnx.Param(jnp.ones(())))

    def nested_new(m):
        m.w = m.w + 1
        m.a.new = Counter()

    def removed(m):
        del m.b

    def relinked(m):
        del m.b
        m.b = m.a

    for fn in (nested_new, removed, relinked):
        model = make()
        with pytest.raises(ValueError, match="submodules"):
            nnx.jit(fn)(model)
        assert model.a is inner
        assert model.b is other
        assert not hasattr(inner, "new")
        assert model.w == 1.0


# ----------------------------------------------------------------------------------
# nnx.jit: caching and retracing


def _traced_step():
    traces = []

    @nnx.jit
    def step(m, x):
        traces.append(None)
        m.w = m.w + x
        return m.w.sum()

    return step, traces


def test_jit_same_structure_never_retraces():
    step, traces = _traced_step()
    model = Holder(w=nnx.Param(jnp.zeros(3)), count=Count(jnp.array(0)))
    for _ in range(20):
        step(model, 1.0)
    assert len(traces) == 1
    _allclose(model.w, jnp.full(3, 20.0))
    # another instance with the same structure reuses the trace, too
    other = Holder(w=nnx.Param(jnp.ones(3)), count=Count(jnp.array(0)))
    out = step(other, 1.0)
    assert len(traces) == 1
    _allclose(out, 6.0)


def test_jit_reusing_one_context_draws_new_keys_without_retracing():
    traces = []

    @nnx.jit
    def noisy(m, x, *, ctx):
        traces.append(None)
        return m(x, deterministic=False, ctx=ctx)

    dropout, ctx = nnx.Dropout(0.5), nnx.context(dropout=0)
    masks = [np.asarray(noisy(dropout, jnp.ones(16), ctx=ctx)) for _ in range(5)]
    assert len(traces) == 1
    assert len({m.tobytes() for m in masks}) == 5  # every call drew a fresh key
    # and a Context that starts from the same seed replays the same keys
    replay = nnx.context(dropout=0)
    np.testing.assert_array_equal(noisy(dropout, jnp.ones(16), ctx=replay), masks[0])
    assert len(traces) == 1


def test_jit_retraces_once_when_a_variable_shape_changes():
    step, traces = _traced_step()
    model = Holder(w=nnx.Param(jnp.zeros(3)))
    step(model, 1.0)
    model.w = jnp.zeros(5)
    out = step(model, 1.0)
    assert len(traces) == 2
    _allclose(out, 5.0)
    assert model.w.shape == (5,)
    for _ in range(3):
        step(model, 1.0)
    assert len(traces) == 2
    _allclose(model.w, jnp.full(5, 4.0))


def test_jit_retraces_once_when_a_variable_dtype_changes():
    step, traces = _traced_step()
    model = Holder(w=nnx.Param(jnp.zeros(3, jnp.float32)))
    step(model, 1)
    model.w = jnp.zeros(3, jnp.int32)
    step(model, 1)
    assert len(traces) == 2
    assert model.w.dtype == jnp.int32
    for _ in range(3):
        step(model, 1)
    assert len(traces) == 2
    np.testing.assert_array_equal(model.w, np.full(3, 4, np.int32))


def test_jit_retraces_once_when_a_static_attribute_changes():
    traces = []

    @nnx.jit
    def step(m, x):
        traces.append(None)
        return x * m.scale

    model = Holder(w=nnx.Param(jnp.zeros(3)), scale=2)
    assert step(model, 1.0) == 2.0
    assert step(model, 1.0) == 2.0
    assert len(traces) == 1
    model.scale = 3
    # not stale: the new static value is used
    assert step(model, 1.0) == 3.0
    assert step(model, 1.0) == 3.0
    assert len(traces) == 2


def test_jit_retraces_once_when_an_attribute_is_added_outside():
    traces = []

    @nnx.jit
    def step(m, x):
        traces.append(None)
        return sum(v.value.sum() for v in m.filter(nnx.Param).values()) + x

    model = Holder(w=nnx.Param(jnp.ones(3)))
    assert step(model, 0.0) == 3.0
    model.extra = nnx.Param(jnp.ones(2))
    assert step(model, 0.0) == 5.0
    assert step(model, 0.0) == 5.0
    assert len(traces) == 2


def test_jit_retraces_on_changes_made_to_a_submodule_outside():
    traces = []

    @nnx.jit
    def f(m, x):
        traces.append(None)
        return x * m.sub.scale + m.sub.w

    sub = Holder(w=nnx.Param(jnp.zeros((), jnp.float32)), scale=2)
    model = Holder(sub=sub)
    other_root = Holder(sub=sub)
    assert f(model, 1.0) == 2.0
    sub.scale = 3  # static attribute of a submodule
    assert f(model, 1.0) == 3.0
    assert len(traces) == 2
    other_root.sub.w = jnp.ones((), jnp.float32)  # a value, through another root
    assert f(model, 1.0) == 4.0
    assert len(traces) == 2
    nnx.jit(lambda m: setattr(m.sub, "w", m.sub.w + 10))(other_root)
    assert f(model, 1.0) == 14.0
    assert len(traces) == 2
    sub.extra = nnx.BatchStat(jnp.zeros(()))  # structure of a submodule
    assert f(model, 1.0) == 14.0
    assert len(traces) == 3
    sub.w = jnp.ones((2,), jnp.float32)  # shape of a submodule's Variable
    np.testing.assert_array_equal(f(model, 1.0), [4.0, 4.0])
    assert len(traces) == 4
    model.sub = Holder(w=nnx.Param(jnp.full((2,), 7.0, jnp.float32)), scale=3)
    np.testing.assert_array_equal(f(model, 1.0), [10.0, 10.0])


def test_jit_structure_changed_inside_retraces_once_more():
    traces = []

    @nnx.jit
    def f(m):
        traces.append(None)
        if not hasattr(m, "steps"):
            m.steps = Count(jnp.array(0))
        m.steps += 1

    model = Holder(w=nnx.Param(jnp.ones(2)))
    for _ in range(4):
        f(model)
    assert model.steps == 4
    assert len(traces) == 2


def test_jit_static_attribute_changing_type_but_equal_retraces():
    # 1 == 1.0 == True, but jax.jit keys static values on their type too
    traces = []

    @nnx.jit
    def f(m):
        traces.append(None)
        return jnp.asarray(m.s)

    model = Holder(s=1)
    assert f(model).dtype == jnp.int32
    model.s = 1.0
    assert f(model).dtype == jnp.float32
    model.s = True
    assert f(model).dtype == jnp.bool_
    assert len(traces) == 3


def test_jit_static_argument_changing_type_but_equal_retraces():
    # as jax.jit does: 1, 1.0 and True are different static arguments
    f = nnx.jit(lambda m, s: jnp.asarray(s), static_argnums=1)
    model = Holder(w=nnx.Param(jnp.ones(())))
    assert f(model, 1).dtype == jnp.int32
    assert f(model, 1.0).dtype == jnp.float32
    assert f(model, True).dtype == jnp.bool_


def test_jit_new_values_of_the_same_shape_do_not_retrace_and_are_not_stale():
    traces = []

    @nnx.jit
    def f(m):
        traces.append(None)
        return m.w * 2

    model = Holder(w=nnx.Param(jnp.ones(2)))
    _allclose(f(model), 2 * jnp.ones(2))
    model.w = jnp.full(2, 5.0, jnp.float32)
    _allclose(f(model), jnp.full(2, 10.0))
    model.update_state(jax.tree.map(lambda w: w + 2, model.filter(nnx.Param)))
    _allclose(f(model), jnp.full(2, 14.0))
    assert len(traces) == 1


# ----------------------------------------------------------------------------------
# nnx.jit: static arguments, decorators, plain functions


def test_jit_static_argnums():
    traces = []

    def f(m, x, n):
        traces.append(n)
        for _ in range(n):  # needs a concrete int
            x = x * m.w
        m.count += 1
        return x

    g = nnx.jit(f, static_argnums=2)
    model = Holder(w=nnx.Param(jnp.array(2.0)), count=Count(jnp.array(0)))
    assert g(model, 1.0, 3) == 8.0
    assert g(model, 1.0, 3) == 8.0
    assert g(model, 1.0, 2) == 4.0
    assert traces == [3, 2]
    assert model.count == 3


def test_jit_static_argnums_as_decorator_factory():
    traces = []

    @nnx.jit(static_argnums=1)
    def f(m, n):
        traces.append(n)
        m.count += n
        return jnp.ones(n)

    model = Counter()
    assert f(model, 3).shape == (3,)
    assert f(model, 3).shape == (3,)
    assert f(model, 4).shape == (4,)
    assert traces == [3, 4]
    assert model.count == 10


def test_jit_static_argnames():
    traces = []

    @nnx.jit(static_argnames="mode")
    def f(m, x, *, mode):
        traces.append(mode)
        if mode == "double":  # needs a concrete str
            return x * 2 * m.w
        return x * m.w

    model = Holder(w=nnx.Param(jnp.array(3.0)))
    assert f(model, 1.0, mode="double") == 6.0
    assert f(model, 1.0, mode="single") == 3.0
    assert f(model, 1.0, mode="double") == 6.0
    assert traces == ["double", "single"]


class JitMethod(nnx.Module):
    def __init__(self, *, ctx: nnx.Context):
        self.linear = nnx.Linear(3, 2, ctx=ctx)
        self.count = Count(jnp.array(0))

    @nnx.jit
    def __call__(self, x):
        self.count += 1
        return self.linear(x)


def test_jit_decorates_a_module_method():
    model = JitMethod(ctx=nnx.context(0))
    x = jnp.ones((4, 3))
    y = model(x)
    _allclose(y, x @ model.linear.kernel + model.linear.bias)
    model(x)
    assert model.count == 2
    assert isinstance(model.linear, nnx.Linear)


def test_jit_function_without_module_arguments():
    traces = []

    @nnx.jit
    def f(x, y):
        traces.append(None)
        return {"sum": x + y, "prod": x * y}

    out = f(jnp.array(2.0), 3.0)
    assert out["sum"] == 5.0
    assert out["prod"] == 6.0
    f(jnp.array(4.0), 3.0)
    assert len(traces) == 1


def test_jit_keeps_the_function_name():
    def my_step(m):
        return m.w

    assert nnx.jit(my_step).__name__ == "my_step"


def test_jit_returns_module_values_as_arrays():
    model = Holder(w=nnx.Param(jnp.arange(3.0)))
    out = nnx.jit(lambda m: m.filter(nnx.Param))(model)
    assert isinstance(out, nnx.State)
    _allclose(out[("w",)].value, jnp.arange(3.0))


# ----------------------------------------------------------------------------------
# nnx.grad


class MLP(nnx.Module):
    def __init__(self, *, ctx: nnx.Context):
        self.l1 = nnx.Linear(3, 4, ctx=ctx)
        self.bn = nnx.BatchNorm(4, ctx=ctx)
        self.l2 = nnx.Linear(4, 1, ctx=ctx)
        self.calls = Count(jnp.array(0))

    def __call__(self, x):
        self.calls += 1
        h = nnx.relu(self.bn(self.l1(x), use_running_average=True))
        return self.l2(h)


def _mlp_data():
    x = jnp.arange(15.0).reshape(5, 3) / 10
    y = jnp.linspace(-1, 1, 5).reshape(5, 1)
    return x, y


def _mlp_loss(m, x, y):
    return _mse(m(x), y)


MLP_PARAM_PATHS = {
    ("bn", "bias"),
    ("bn", "scale"),
    ("l1", "bias"),
    ("l1", "kernel"),
    ("l2", "bias"),
    ("l2", "kernel"),
}


def test_grad_default_wrt_is_param():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()
    grads = nnx.grad(_mlp_loss)(model, x, y)
    assert isinstance(grads, nnx.State)
    assert set(grads) == MLP_PARAM_PATHS
    for g in grads.values():
        assert type(g) is nnx.Param
    assert grads[("l1", "kernel")].value.shape == (3, 4)


def test_grad_values_match_jax_grad_of_the_functional_computation():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()
    grads = nnx.grad(_mlp_loss)(model, x, y)

    (params, rest), moduledef = model.partition(nnx.Param, ...)

    def functional(params):
        return _mlp_loss(moduledef.merge(params, rest), x, y)

    expected = jax.grad(functional)(params)
    assert set(expected) == set(grads)
    for path in grads:
        _allclose(grads[path].value, expected[path].value)

    # and by hand, for the last layer
    l1, bn, l2 = model.l1, model.bn, model.l2
    h = nnx.relu((x @ l1.kernel + l1.bias) / jnp.sqrt(bn.var + 1e-5) * bn.scale + bn.bias)

    def by_hand(k, b):
        return _mse(h @ k + b, y)

    gk, gb = jax.grad(by_hand, argnums=(0, 1))(l2.kernel, l2.bias)
    _allclose(grads[("l2", "kernel")].value, gk)
    _allclose(grads[("l2", "bias")].value, gb)


def test_grad_wrt_batchstat():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()
    grads = nnx.grad(_mlp_loss, wrt=nnx.BatchStat)(model, x, y)
    assert set(grads) == {("bn", "mean"), ("bn", "var")}
    assert all(type(g) is nnx.BatchStat for g in grads.values())
    assert np.any(np.asarray(grads[("bn", "mean")].value) != 0)


def test_grad_wrt_a_collection_name():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()
    grads = nnx.grad(_mlp_loss, wrt="params")(model, x, y)
    default = nnx.grad(_mlp_loss)(model, x, y)
    assert set(grads) == MLP_PARAM_PATHS
    for path in grads:
        _allclose(grads[path].value, default[path].value)


def test_grad_wrt_a_predicate():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()
    seen = []

    def kernels(path, value):
        seen.append(path)
        return path[-1] == "kernel"

    grads = nnx.grad(_mlp_loss, wrt=kernels)(model, x, y)
    assert set(grads) == {("l1", "kernel"), ("l2", "kernel")}
    assert all(isinstance(p, tuple) for p in seen)
    default = nnx.grad(_mlp_loss)(model, x, y)
    _allclose(grads[("l1", "kernel")].value, default[("l1", "kernel")].value)


def test_grad_shared_parameters_appear_once_with_the_summed_gradient():
    lin = nnx.Linear(2, 2, ctx=nnx.context(0))
    model = Holder(a=lin, b=lin)
    x = jnp.array([[1.0, 2.0], [3.0, -1.0]])

    def loss(m):
        return jnp.sum(m.a(x) ** 2) + jnp.sum(jnp.sin(m.b(x)))

    grads = nnx.grad(loss)(model)
    assert set(grads) == {("a", "bias"), ("a", "kernel")}

    def functional(k, b):
        return jnp.sum((x @ k + b) ** 2) + jnp.sum(jnp.sin(x @ k + b))

    gk, gb = jax.grad(functional, argnums=(0, 1))(lin.kernel, lin.bias)
    _allclose(grads[("a", "kernel")].value, gk)
    _allclose(grads[("a", "bias")].value, gb)
    # the sum of both uses, not either one alone
    gk_a = jax.grad(lambda k: jnp.sum((x @ k + lin.bias) ** 2))(lin.kernel)
    assert not np.allclose(grads[("a", "kernel")].value, gk_a)


def test_grad_filters_sequences_and_metadata():
    model = Holder(
        layers=nnx.Sequence([nnx.Linear(2, 2, ctx=nnx.context(i)) for i in range(2)]),
        bn=nnx.BatchNorm(2, ctx=nnx.context(0)),
        w=nnx.Param(jnp.ones(2), sharding=("model",)),
    )
    x = jnp.ones((3, 2))

    def loss(m):
        h = m.bn(m.layers[1](m.layers[0](x)), use_running_average=True)
        return jnp.sum(h * m.w)

    grads = nnx.grad(loss)(model)
    assert set(grads) == {
        ("bn", "bias"),
        ("bn", "scale"),
        ("layers", 0, "bias"),
        ("layers", 0, "kernel"),
        ("layers", 1, "bias"),
        ("layers", 1, "kernel"),
        ("w",),
    }
    assert grads[("w",)].sharding == ("model",)
    both = nnx.grad(loss, wrt=(nnx.Param, nnx.BatchStat))(model)
    assert set(both) == set(grads) | {("bn", "mean"), ("bn", "var")}
    not_bn = nnx.grad(loss, wrt=nnx.Not(nnx.PathContains("bn")))(model)
    assert set(not_bn) == set(grads) - {("bn", "bias"), ("bn", "scale")}
    assert set(nnx.grad(loss, wrt=nnx.Nothing)(model)) == set()


def test_grad_creating_a_submodule_inside_raises():
    model = Holder(w=nnx.Param(jnp.array(1.0)))

    def loss(m):
        m.sub = Counter()
        return m.w

    with pytest.raises(ValueError, match="submodules"):
        nnx.grad(loss)(model)
    assert not hasattr(model, "sub")


def test_grad_only_the_first_argument_may_be_a_module():
    model = Holder(w=nnx.Param(jnp.array(1.0)))
    with pytest.raises(TypeError, match="first argument"):
        nnx.grad(lambda a, b: a.w * b.w)(model, model)


def test_grad_has_aux():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()

    def loss(m, x, y):
        pred = m(x)
        return _mse(pred, y), {"pred": pred}

    grads, aux = nnx.grad(loss, has_aux=True)(model, x, y)
    assert set(grads) == MLP_PARAM_PATHS
    assert aux["pred"].shape == (5, 1)
    _allclose(aux["pred"], model(x))
    expected = nnx.grad(_mlp_loss)(model, x, y)
    for path in grads:
        _allclose(grads[path].value, expected[path].value)


def test_grad_writes_stateful_updates_back():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()
    params_before = jax.tree.map(np.asarray, model.filter(nnx.Param))

    def loss(m, x, y):
        out = m.bn(m.l1(x), use_running_average=False)
        m.calls += 1
        return jnp.mean(out**2)

    nnx.grad(loss)(model, x, y)
    assert model.calls == 1
    assert not np.array_equal(model.bn.mean, jnp.zeros(4))
    nnx.grad(loss)(model, x, y)
    assert model.calls == 2
    # the gradient is returned, not applied
    params_after = model.filter(nnx.Param)
    for path in params_before:
        np.testing.assert_array_equal(params_after[path].value, params_before[path].value)


def test_grad_new_variable_and_static_changes_are_written_back():
    model = Holder(w=nnx.Param(jnp.array(2.0)), mode="a")

    def loss(m):
        m.mode = "b"
        m.seen = nnx.BatchStat(m.w * 10)
        return m.w**2

    grads = nnx.grad(loss)(model)
    _allclose(grads[("w",)].value, 4.0)
    assert model.mode == "b"
    _allclose(model.seen, 20.0)
    assert type(vars(model)["seen"]) is nnx.BatchStat


def test_grad_stateful_false_discards_updates():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()

    def loss(m, x, y):
        out = m.bn(m.l1(x), use_running_average=False)
        m.calls += 1
        return jnp.mean(out**2)

    grads = nnx.grad(loss, stateful=False)(model, x, y)
    assert set(grads) == MLP_PARAM_PATHS
    assert model.calls == 0
    np.testing.assert_array_equal(model.bn.mean, jnp.zeros(4))


def test_grad_integer_variables_need_allow_int():
    model = Holder(w=nnx.Param(jnp.array(2.0)), steps=nnx.Param(jnp.array(3)))

    def loss(m):
        return m.w * m.steps

    with pytest.raises(TypeError):
        nnx.grad(loss)(model)

    grads = nnx.grad(loss, allow_int=True)(model)
    assert set(grads) == {("steps",), ("w",)}
    _allclose(grads[("w",)].value, 3.0)
    assert grads[("steps",)].value.dtype == jax.dtypes.float0


def test_grad_first_argument_must_be_a_module():
    with pytest.raises(TypeError, match="expects a Module"):
        nnx.grad(lambda x: x**2)(1.0)
    with pytest.raises(TypeError, match="expects a Module"):
        nnx.grad(lambda: 1.0)()
    with pytest.raises(TypeError, match="expects a Module"):
        nnx.value_and_grad(lambda x: x**2)(jnp.ones(()))


def test_grad_inside_jit_readme_pattern_with_a_shared_layer():
    lin = nnx.Linear(2, 2, ctx=nnx.context(0))
    model = Holder(a=lin, b=lin, count=Count(jnp.array(0)))
    x = jnp.array([[1.0, 2.0], [3.0, -1.0]])
    k0 = lin.kernel

    def loss(m):
        m.count += 1
        return jnp.sum(m.b(m.a(x)) ** 2)

    @nnx.jit
    def step(m):
        grads = nnx.grad(loss)(m)
        m.update_state(jax.tree.map(lambda w, g: w - 0.01 * g, m.filter(nnx.Param), grads))
        return grads

    grads = step(model)
    assert model.count == 1
    assert model.a is lin
    assert model.b is lin
    _allclose(lin.kernel, k0 - 0.01 * grads[("a", "kernel")].value)


def test_grad_cannot_mutate_an_outer_module():
    outer = Counter()
    model = Holder(w=nnx.Param(jnp.array(1.0)))

    def loss(m):
        outer(0)
        return m.w**2

    with pytest.raises(nnx.TraceContextError, match=r"Cannot mutate Counter\.count"):
        nnx.grad(loss)(model)
    assert outer.count == 0


def test_grad_cannot_mutate_a_jit_argument_not_passed_to_grad():
    # `other` is valid inside nnx.jit, but not inside the nested nnx.grad trace
    @nnx.jit
    def step(m, other):
        def loss(m):
            other(0)
            return m.w**2

        return nnx.grad(loss)(m)

    other = Counter()
    with pytest.raises(nnx.TraceContextError, match=r"Cannot mutate Counter\.count"):
        step(Holder(w=nnx.Param(jnp.array(1.0))), other)
    assert other.count == 0


def test_grad_module_leaked_out_of_the_loss_cannot_be_mutated():
    leaked = []

    def loss(m):
        leaked.append(m)
        return m.w**2

    model = Holder(w=nnx.Param(jnp.array(1.0)))
    nnx.grad(loss)(model)
    with pytest.raises(nnx.TraceContextError):
        leaked[0].w = 3.0
    # the caller's module is untouched and still mutable
    model.w = 2.0
    assert model.w == 2.0


def test_grad_with_ctx_keyword():
    model = Holder(drop=nnx.Dropout(0.5), w=nnx.Param(jnp.ones(8)))

    def loss(m, *, ctx):
        return jnp.sum(m.drop(m.w, deterministic=False, ctx=ctx))

    g1 = nnx.grad(loss)(model, ctx=nnx.context(dropout=0))
    g2 = nnx.grad(loss)(model, ctx=nnx.context(dropout=0))
    g3 = nnx.grad(loss)(model, ctx=nnx.context(dropout=1))
    np.testing.assert_array_equal(g1[("w",)].value, g2[("w",)].value)
    assert not np.array_equal(g1[("w",)].value, g3[("w",)].value)
    assert set(np.unique(np.asarray(g1[("w",)].value)).tolist()) <= {0.0, 2.0}


# ----------------------------------------------------------------------------------
# nnx.value_and_grad


def test_value_and_grad():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()
    value, grads = nnx.value_and_grad(_mlp_loss)(model, x, y)
    _allclose(value, _mlp_loss(model, x, y))
    expected = nnx.grad(_mlp_loss)(model, x, y)
    assert set(grads) == set(expected) == MLP_PARAM_PATHS
    for path in grads:
        _allclose(grads[path].value, expected[path].value)


def test_value_and_grad_has_aux():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()

    def loss(m, x, y):
        pred = m(x)
        return _mse(pred, y), pred

    (value, aux), grads = nnx.value_and_grad(loss, has_aux=True)(model, x, y)
    _allclose(value, _mlp_loss(model, x, y))
    _allclose(aux, model(x))
    assert set(grads) == MLP_PARAM_PATHS


def test_value_and_grad_wrt_and_stateful():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()
    value, grads = nnx.value_and_grad(_mlp_loss, wrt=nnx.BatchStat)(model, x, y)
    assert set(grads) == {("bn", "mean"), ("bn", "var")}
    assert model.calls == 1
    nnx.value_and_grad(_mlp_loss, stateful=False)(model, x, y)
    assert model.calls == 1


# ----------------------------------------------------------------------------------
# nnx.remat


def test_remat_same_result_and_gradients():
    model = MLP(ctx=nnx.context(0))
    x, y = _mlp_data()
    remat_loss = nnx.remat(_mlp_loss)
    _allclose(remat_loss(model, x, y), _mlp_loss(model, x, y))

    g_plain = nnx.grad(_mlp_loss)(model, x, y)
    g_remat = nnx.grad(remat_loss)(model, x, y)
    assert set(g_remat) == set(g_plain)
    for path in g_plain:
        _allclose(g_remat[path].value, g_plain[path].value)

    # under jit, too
    g_jit = nnx.jit(lambda m: nnx.grad(remat_loss)(m, x, y))(model)
    for path in g_plain:
        _allclose(g_jit[path].value, g_plain[path].value)


def test_remat_writes_module_updates_back():
    model = MLP(ctx=nnx.context(0))
    x, _ = _mlp_data()

    @nnx.remat
    def f(m, x):
        m.calls += 1
        m.mode = "seen"
        return m.bn(m.l1(x), use_running_average=False)

    f(model, x)
    assert model.calls == 1
    assert model.mode == "seen"
    assert not np.array_equal(model.bn.mean, jnp.zeros(4))
    f(model, x)
    assert model.calls == 2


def test_remat_as_decorator_factory_and_without_modules():
    @nnx.remat(prevent_cse=False)
    def f(x):
        return jnp.sin(x) * 2

    _allclose(f(1.0), 2 * jnp.sin(1.0))
    _allclose(jax.grad(f)(1.0), 2 * jnp.cos(1.0))


def test_remat_keeps_sharing_and_is_trace_safe():
    lin = nnx.Linear(2, 2, ctx=nnx.context(0))
    model = Holder(a=lin, b=lin)
    inside = []

    @nnx.remat
    def f(m):
        inside.append(m.a is m.b)
        m.a.kernel = m.a.kernel * 0
        return m.b.kernel.sum()

    assert f(model) == 0.0
    assert inside == [True]
    assert model.a is lin
    assert model.b is lin
    np.testing.assert_array_equal(lin.kernel, jnp.zeros((2, 2)))

    outer = Counter()

    @nnx.remat
    def g(m):
        outer(0)
        return m.a.kernel

    with pytest.raises(nnx.TraceContextError):
        g(model)
    assert outer.count == 0


def test_grad_options_are_checked_by_name():
    # grad's keyword options are a TypedDict (**options); a misspelt one is still a
    # TypeError, as for a function that spells its keywords out
    with pytest.raises(TypeError, match=r"nnx.grad\(\) got unexpected keyword.*'statefull'"):
        nnx.grad(lambda m: 0.0, statefull=False)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"nnx.value_and_grad\(\) got unexpected"):
        nnx.value_and_grad(lambda m: 0.0, allow_ints=True)  # type: ignore[call-overload]

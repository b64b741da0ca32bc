"""`nnx.jit`: write-back of every change made inside (values, new Variables, static
attributes, deletions) into the caller's Modules in place, sharing and cycles kept;
Contexts; trace safety; caching and retracing; static arguments and decorators.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx
from _transform_models import Count, Counter, Holder, Linear, allclose


def linear(din=3, dout=2, seed=0):
    return nnx.Linear(din, dout, ctx=nnx.context(seed))


def test_jit_writes_variable_updates_back_in_place():
    model = Linear(3, 2, ctx=nnx.context(0))
    w0 = model.w
    x = jnp.ones((4, 3))

    @nnx.jit
    def step(model, x):
        model.w = model.w * 2
        return model(x)

    out = step(model, x)
    allclose(out, x @ (2 * w0) + model.b)
    allclose(model.w, 2 * w0)
    assert model.count == 1
    assert type(vars(model)["w"]) is nnx.Param
    assert type(vars(model)["count"]) is Count
    step(model, x)
    allclose(model.w, 4 * w0)
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
    allclose(model.extra, 3 * jnp.ones(3))
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
    allclose(model.w, jnp.ones(2))
    f(model)
    assert model.n == 3


def test_jit_batchnorm_running_statistics_are_written_back():
    bn = nnx.BatchNorm(2, ctx=nnx.context(0))
    eager = nnx.BatchNorm(2, ctx=nnx.context(0))
    x = jnp.arange(8.0).reshape(4, 2)

    f = nnx.jit(lambda bn, x: bn(x, use_running_average=False))
    out = f(bn, x)
    expected = eager(x, use_running_average=False)
    allclose(out, expected)
    assert not np.array_equal(bn.mean, jnp.zeros(2))
    allclose(bn.mean, eager.mean)
    allclose(bn.var, eager.var)
    f(bn, x)
    eager(x, use_running_average=False)
    allclose(bn.mean, eager.mean)
    allclose(bn.var, eager.var)


def test_jit_keeps_module_identity():
    inner = linear()
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
    allclose(inner.kernel, k0 + 1)
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
    lin = linear()
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
    allclose(out, k0 + 1)
    assert model.a is lin
    assert model.b is lin
    allclose(lin.kernel, k0 + 1)


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
    allclose(model.w, 2 * jnp.ones(2))


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
    allclose(grads[("w",)].value, 6.0)
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
    allclose(out, 2 * jnp.ones(2))
    allclose(model.w, jnp.ones(2))
    assert model.count == 0
    assert model.mode == "a"
    assert not hasattr(model, "extra")


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
    allclose(model.w, jnp.ones(2))


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
    allclose(model.w, jnp.full(3, 20.0))
    # another instance with the same structure reuses the trace, too
    other = Holder(w=nnx.Param(jnp.ones(3)), count=Count(jnp.array(0)))
    out = step(other, 1.0)
    assert len(traces) == 1
    allclose(out, 6.0)


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
    allclose(out, 5.0)
    assert model.w.shape == (5,)
    for _ in range(3):
        step(model, 1.0)
    assert len(traces) == 2
    allclose(model.w, jnp.full(5, 4.0))


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
    allclose(f(model), 2 * jnp.ones(2))
    model.w = jnp.full(2, 5.0, jnp.float32)
    allclose(f(model), jnp.full(2, 10.0))
    model.update_state(jax.tree.map(lambda w: w + 2, model.filter(nnx.Param)))
    allclose(f(model), jnp.full(2, 14.0))
    assert len(traces) == 1


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
    allclose(y, x @ model.linear.kernel + model.linear.bias)
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
    allclose(out[("w",)].value, jnp.arange(3.0))

"""Trace safety: Modules and Contexts refuse mutation / RNG use under a JAX trace
they were not created in (`nnx.TraceContextError`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Counter(nnx.Module):
    def __init__(self):
        self.count = nnx.BatchStat(jnp.zeros(()))

    def __call__(self, x):
        self.count += 1
        return x


MODULE_MSG = r"Cannot mutate Counter\.count"
CONTEXT_MSG = "Cannot use this Context"


def _under(transform, fn):
    """Run `fn(x)` under one of jit / vmap / grad / scan."""
    if transform == "jit":
        return jax.jit(fn)(jnp.ones(()))
    if transform == "vmap":
        return jax.vmap(fn)(jnp.ones(3))
    if transform == "grad":
        return jax.grad(lambda x: jnp.sum(fn(x)))(jnp.ones(()))
    if transform == "scan":

        def body(carry, x):
            return carry, fn(x)

        return jax.lax.scan(body, 0.0, jnp.ones(3))
    if transform == "eval_shape":
        return jax.eval_shape(fn, jnp.ones(()))
    if transform == "cond":
        return jax.lax.cond(True, fn, lambda x: x, jnp.ones(()))
    if transform == "while_loop":
        return jax.lax.while_loop(lambda x: x < 0, fn, jnp.ones(()))
    if transform == "checkpoint":
        return jax.checkpoint(fn)(jnp.ones(()))
    if transform == "jvp":
        return jax.jvp(fn, (jnp.ones(()),), (jnp.ones(()),))
    if transform == "pmap":
        return jax.pmap(fn)(jnp.ones(jax.local_device_count()))
    raise AssertionError(transform)


TRANSFORMS = [
    "jit",
    "vmap",
    "grad",
    "scan",
    "eval_shape",
    "cond",
    "while_loop",
    "checkpoint",
    "jvp",
    "pmap",
]


def test_error_is_an_exception_type():
    assert issubclass(nnx.TraceContextError, Exception)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_mutating_an_outer_module_raises(transform):
    m = Counter()

    def fn(x):
        m.count = x
        return x

    with pytest.raises(nnx.TraceContextError, match=MODULE_MSG):
        _under(transform, fn)
    assert m.count == 0.0
    assert type(vars(m)["count"]) is nnx.BatchStat


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_calling_a_stateful_outer_module_raises(transform):
    m = Counter()
    with pytest.raises(nnx.TraceContextError, match=MODULE_MSG):
        _under(transform, m)
    assert m.count == 0.0


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_other_mutations_of_an_outer_module_raise(transform):
    for mutate in (
        lambda m, x: m.update_state(nnx.State({("count",): nnx.BatchStat(x)})),
        lambda m, x: m.sow(nnx.Intermediate, "y", x),
        lambda m, x: setattr(m, "new", x),
        lambda m, x: setattr(vars(m)["count"], "value", x),
    ):
        m = Counter()

        def fn(x, m=m, mutate=mutate):
            mutate(m, x)
            return x

        with pytest.raises(nnx.TraceContextError):
            _under(transform, fn)
        assert m.count == 0.0
        assert "y" not in vars(m)
        assert "new" not in vars(m)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_reading_an_outer_module_is_fine(transform):
    m = Counter()
    m.count = 2.0
    out = _under(transform, lambda x: x * m.count)
    if transform == "jit":
        assert out == 2.0


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_drawing_rng_from_an_outer_context_raises(transform):
    ctx = nnx.context(0)

    def fn(x):
        return x + jax.random.uniform(ctx.make_rng("params"), ())

    with pytest.raises(nnx.TraceContextError, match=CONTEXT_MSG):
        _under(transform, fn)

    def partition(x):
        ctx.partition()
        return x

    with pytest.raises(nnx.TraceContextError, match=CONTEXT_MSG):
        _under(transform, partition)


def test_outer_context_flags_are_readable_under_jit():
    ctx = nnx.context(flags={"scale": 3.0})
    assert jax.jit(lambda x: x * ctx.get_flag("scale"))(jnp.ones(())) == 3.0


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_a_module_created_inside_a_trace_is_mutable_there(transform):
    def fn(x):
        m = Counter()
        m.count = m.count + x
        m(x)
        m.sow(nnx.Intermediate, "y", x)
        return m.count

    out = _under(transform, fn)
    if transform == "jit":
        assert out == 2.0


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_a_module_merged_inside_a_trace_is_mutable_there(transform):
    state, moduledef = Counter().partition()

    def fn(x):
        m = moduledef.merge(state)
        m(x)
        m.count += x
        return m.count

    out = _under(transform, fn)
    if transform == "jit":
        assert out == 2.0


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_a_context_created_inside_a_trace_works_there(transform):
    def fn(x):
        ctx = nnx.context(0)
        return x + jax.random.uniform(ctx.make_rng("params"), ())

    _under(transform, fn)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_raw_array_attributes_holding_tracers_are_state(transform):
    class Buffers(nnx.Module):
        def __init__(self):
            self.buf = jnp.zeros(())
            self.static = 1

    state, moduledef = Buffers().partition()
    seen = []

    def fn(x):
        m = moduledef.merge(state)
        m.buf = m.buf + x
        m.extra = x * 2
        new_state, new_moduledef = m.partition()
        seen.append((list(new_state), dict(new_moduledef.static_fields)))
        return new_state[("buf",)] + new_state[("extra",)]

    _under(transform, fn)
    assert seen
    for paths, statics in seen:
        assert paths == [("buf",), ("extra",)]
        assert statics == {"static": 1}


def test_module_leaked_out_of_jit_cannot_be_mutated():
    leaked = []

    @jax.jit
    def f(x):
        m = Counter()
        m.count = x
        leaked.append(m)
        return m.count

    assert f(jnp.ones(())) == 1.0
    (m,) = leaked
    with pytest.raises(nnx.TraceContextError, match=MODULE_MSG):
        m.count = 2.0
    with pytest.raises(nnx.TraceContextError, match=MODULE_MSG):
        m.update_state(nnx.State({("count",): nnx.BatchStat(jnp.zeros(()))}))


def test_context_leaked_out_of_jit_cannot_draw():
    leaked = []

    @jax.jit
    def f(x):
        ctx = nnx.context(0)
        leaked.append(ctx)
        return x

    f(jnp.ones(()))
    with pytest.raises(nnx.TraceContextError, match=CONTEXT_MSG):
        leaked[0].make_rng("params")


def test_inner_transform_of_a_module_created_in_an_outer_one():
    def outer(x):
        m = Counter()

        def inner(y):
            m.count = y
            return y

        return jax.vmap(inner)(x)

    with pytest.raises(nnx.TraceContextError, match=MODULE_MSG):
        jax.jit(outer)(jnp.ones(3))


def test_scan_over_a_module_merged_in_the_body():
    m = Counter()
    state, moduledef = m.partition()

    def body(state, x):
        module = moduledef.merge(state)
        module(x)
        return module.get_state(), x

    final, _ = jax.lax.scan(body, state, jnp.ones(4))
    m.update_state(final)
    assert m.count == 4.0


def test_functional_api_round_trip_under_jit():
    m = Counter()
    state, moduledef = m.partition()

    @jax.jit
    def step(state, x):
        y, (state, _) = moduledef.apply(state)(x)
        return y, state

    for _ in range(3):
        _, state = step(state, jnp.ones(()))
    m.update_state(state)
    assert m.count == 3.0


def test_same_module_usable_again_after_a_trace():
    m = Counter()
    with pytest.raises(nnx.TraceContextError):
        jax.jit(m)(jnp.ones(()))
    m(1.0)
    assert m.count == 1.0
    np.testing.assert_array_equal(m.get_state()[("count",)].value, 1.0)

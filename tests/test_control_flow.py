"""Lifted control flow: nnx.cond, nnx.switch, nnx.fori_loop, nnx.while_loop (on the
lifting layer): numerics equal jax.lax's, changes written back, under nnx.jit with one
trace, sharing kept, structural changes refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Counter(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.lin = nnx.Linear(2, 2, ctx=ctx)
        self.calls = nnx.BatchStat(jnp.array(0))


def _count(m: Counter, x: jax.Array) -> jax.Array:
    m.calls = m.calls + 1
    return m.lin(x)


def _skip(m: Counter, x: jax.Array) -> jax.Array:
    return -x


def test_cond_runs_the_taken_branch_and_writes_only_its_changes_back():
    m = Counter(ctx=nnx.context(0))
    x = jnp.ones((1, 2))
    y = nnx.cond(True, _count, _skip, m, x)
    np.testing.assert_allclose(y, x @ m.lin.kernel + m.lin.bias, rtol=1e-6)
    assert int(m.calls) == 1
    np.testing.assert_allclose(nnx.cond(False, _count, _skip, m, x), -x)
    assert int(m.calls) == 1
    assert nnx.cond(jnp.array(True), lambda a, b: a + b, lambda a, b: a - b, 2.0, 1.0) == 3.0


def test_switch_equals_lax_switch_and_writes_back():
    m = Counter(ctx=nnx.context(0))
    x = jnp.ones((1, 2))
    branches = [_skip, _count, lambda m, x: 2 * x]
    for i in range(3):
        y = nnx.switch(i, branches, m, x)
        expected = jax.lax.switch(i, [lambda x: -x, m.lin, lambda x: 2 * x], x)
        np.testing.assert_allclose(y, expected, rtol=1e-6)
    assert int(m.calls) == 1
    nnx.switch(7, branches, m, x)  # clamped, as jax.lax.switch does: the last branch
    assert int(m.calls) == 1


def test_control_flow_under_jit_traces_once_and_writes_back():
    m = Counter(ctx=nnx.context(0))
    traces = []

    @nnx.jit
    def step(m: Counter, flag: jax.Array) -> jax.Array:
        traces.append(1)
        return nnx.cond(flag, _count, _skip, m, jnp.ones((1, 2)))

    for flag in (True, False, True, True):
        step(m, jnp.array(flag))
    assert int(m.calls) == 3 and len(traces) == 1


def test_cond_keeps_sharing_between_operands():
    a = Counter(ctx=nnx.context(0))
    b = Counter(ctx=nnx.context(1))
    b.lin = a.lin  # shared

    def grow(a: Counter, b: Counter) -> jax.Array:
        b.lin.bias = b.lin.bias + 1.0
        return a.lin.bias

    y = nnx.cond(True, grow, lambda a, b: a.lin.bias, a, b)
    np.testing.assert_allclose(y, jnp.ones(2))
    assert a.lin is b.lin
    np.testing.assert_allclose(a.lin.bias, jnp.ones(2))


def test_a_structural_change_in_a_branch_is_refused_and_changes_nothing():
    m = Counter(ctx=nnx.context(0))

    def add(m: Counter, x: jax.Array) -> jax.Array:
        m.extra = nnx.BatchStat(jnp.zeros(()))
        return x

    with pytest.raises(ValueError, match="nnx.cond: the branch changed the structure"):
        nnx.cond(True, add, _skip, m, jnp.ones((1, 2)))
    assert not hasattr(m, "extra") and int(m.calls) == 0


def test_fori_loop_over_a_module_and_a_carry():
    m = Counter(ctx=nnx.context(0))

    def body(i: jax.Array, val: tuple[Counter, jax.Array]) -> tuple[Counter, jax.Array]:
        model, x = val
        model.calls = model.calls + 1
        return model, model.lin(x) + i

    out_m, y = nnx.fori_loop(0, 3, body, (m, jnp.ones((1, 2))))
    assert out_m is m and int(m.calls) == 3
    expected = jnp.ones((1, 2))
    for i in range(3):
        expected = expected @ m.lin.kernel + m.lin.bias + i
    np.testing.assert_allclose(y, expected, rtol=1e-5)
    # a plain pytree loop is jax.lax.fori_loop
    assert int(nnx.fori_loop(0, 5, lambda i, v: v + i, jnp.array(0))) == 10


def test_loops_under_jit_trace_once():
    m = Counter(ctx=nnx.context(0))
    traces = []

    @nnx.jit
    def run(m: Counter, n: jax.Array) -> None:
        traces.append(1)

        def body(model: Counter) -> Counter:
            model.calls = model.calls + 1
            return model

        nnx.while_loop(lambda model: model.calls < n, body, m)

    run(m, jnp.array(4))
    run(m, jnp.array(6))
    assert int(m.calls) == 6 and len(traces) == 1


def test_loop_mistakes_are_clear_errors():
    m = Counter(ctx=nnx.context(0))

    def mutating_cond(model: Counter) -> jax.Array:
        model.calls = model.calls + 1
        return model.calls < 3

    with pytest.raises(ValueError, match="cond_fun changed a Module"):
        nnx.while_loop(mutating_cond, lambda model: model, m)
    other = Counter(ctx=nnx.context(1))
    with pytest.raises(ValueError, match="must return the Modules it was given"):
        nnx.fori_loop(0, 2, lambda i, model: other, m)
    assert int(m.calls) == 0

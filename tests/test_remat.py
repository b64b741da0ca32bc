"""`nnx.remat` (functions of Modules, `static_argnums`) and `nnx.Remat` (a Module whose
calls are rematerialized): same values and gradients as without, changes written back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx
from _transform_models import (
    MLP,
    Counter,
    Holder,
    StackBlock,
    allclose,
    by_hand,
    mlp_data,
    mlp_loss,
)


def test_remat_same_result_and_gradients():
    model = MLP(ctx=nnx.context(0))
    x, y = mlp_data()
    remat_loss = nnx.remat(mlp_loss)
    allclose(remat_loss(model, x, y), mlp_loss(model, x, y))

    g_plain = nnx.grad(mlp_loss)(model, x, y)
    g_remat = nnx.grad(remat_loss)(model, x, y)
    assert set(g_remat) == set(g_plain)
    for path in g_plain:
        allclose(g_remat[path].value, g_plain[path].value)

    # under jit, too
    g_jit = nnx.jit(lambda m: nnx.grad(remat_loss)(m, x, y))(model)
    for path in g_plain:
        allclose(g_jit[path].value, g_plain[path].value)


def test_remat_writes_module_updates_back():
    model = MLP(ctx=nnx.context(0))
    x, _ = mlp_data()

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

    allclose(f(1.0), 2 * jnp.sin(1.0))
    allclose(jax.grad(f)(1.0), 2 * jnp.cos(1.0))


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


def test_remat_leaves_init_unwrapped():
    def __init__(self: nnx.Module) -> None:
        self.x = 1

    assert nnx.remat(__init__) is __init__
    assert nnx.remat(prevent_cse=False)(__init__) is __init__


class Dense(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.linear = nnx.Linear(3, 3, ctx=ctx)
        self.count = nnx.BatchStat(jnp.zeros(()))

    def __call__(self, x: jax.Array, *, square: bool = False) -> jax.Array:
        self.count += 1
        y = jnp.sin(self.linear(x))
        return y * y if square else y

    def twice(self, x: jax.Array, square: bool) -> jax.Array:
        y = 2.0 * self.linear(x)
        return y * y if square else y


def test_remat_is_a_module_class_and_returns_a_constructor():
    assert issubclass(nnx.Remat, nnx.Module)
    assert nnx.RematModule is nnx.Remat
    make = nnx.Remat(Dense, prevent_cse=False)
    m = make(ctx=nnx.context(0))
    assert isinstance(m, nnx.Remat)
    assert isinstance(m.remat_module, Dense)
    assert m.options.prevent_cse is False


def test_remat_calls_match_the_plain_module_values_and_grads():
    m = nnx.Remat(Dense)(ctx=nnx.context(0))
    plain = m.remat_module.clone()
    x = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
    np.testing.assert_allclose(m(x), plain(x), rtol=1e-6)
    assert m.remat_module.count == 1  # state written back

    def loss(model: nnx.Module) -> jax.Array:
        return jnp.sum(model(x))  # type: ignore[operator]

    g_remat = nnx.grad(loss)(m)[("remat_module", "linear", "kernel")].value
    g_plain = nnx.grad(loss)(plain)[("linear", "kernel")].value
    np.testing.assert_allclose(g_remat, g_plain, rtol=1e-6)


def test_remat_call_accessor_and_static_argnums():
    m = nnx.Remat(Dense, static_argnums=(1,))(ctx=nnx.context(0))
    x = jnp.ones((2, 3))
    y = m.call.twice(x, True)  # `square` is a Python bool: static, used in an `if`
    expected = 2.0 * m.remat_module.linear(x)
    np.testing.assert_allclose(y, expected * expected, rtol=1e-6)
    np.testing.assert_allclose(m.call.twice(x, False), expected, rtol=1e-6)


def test_remat_of_scan_composes_through_call_call():
    m = nnx.Remat(
        nnx.Scan(
            StackBlock,
            variable_axes={nnx.Param: 0, nnx.BatchStat: 0},
            split_rngs="params",
            length=4,
        )
    )(3, ctx=nnx.context(0))
    assert isinstance(m.remat_module, nnx.Scan)
    x = jnp.ones((2, 3))
    y, _ = m.call.call(x, None)
    lin = m.remat_module.scan_module.linear
    np.testing.assert_allclose(y, by_hand(lin.kernel, lin.bias, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m.remat_module.scan_module.calls, jnp.ones((4,)))


def test_remat_function_static_argnums():
    calls: list[bool] = []

    @nnx.remat(static_argnums=2)
    def f(model: Dense, x: jax.Array, square: bool) -> jax.Array:
        calls.append(square)
        return model(x, square=square)

    m = Dense(ctx=nnx.context(0))
    x = jnp.ones((2, 3))
    y = f(m, x, True)
    assert calls == [True]  # a Python value inside, not a tracer
    np.testing.assert_allclose(y, jnp.sin(m.linear(x)) ** 2, rtol=1e-6)

"""nnx.Optimizer: optax updates of a model's wrt state, in place, eagerly and in nnx.jit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnx


def _loss(m: nnx.Linear, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((m(x) - y) ** 2)


def test_update_equals_optax_on_the_functional_parameters():
    model = nnx.Linear(3, 2, ctx=nnx.context(0))
    params = {k: v.value for k, v in model.filter(nnx.Param).items()}
    tx = optax.adam(0.1)
    opt = nnx.Optimizer(model, tx)
    assert opt.model is model and int(opt.step) == 0
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
    state = tx.init(params)
    for _ in range(3):
        opt.update(nnx.grad(_loss)(model, x, y))

        def f(p):
            return jnp.mean((x @ p[("kernel",)] + p[("bias",)] - y) ** 2)

        updates, state = tx.update(jax.grad(f)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert int(opt.step) == 3
    np.testing.assert_allclose(model.kernel, params[("kernel",)], rtol=1e-6)
    np.testing.assert_allclose(model.bias, params[("bias",)], rtol=1e-6)


@pytest.mark.parametrize("together", [False, True])
def test_update_inside_jit_alone_or_with_the_model(together):
    model = nnx.Linear(3, 2, ctx=nnx.context(0))
    reference = nnx.Linear(3, 2, ctx=nnx.context(0))
    opt = nnx.Optimizer(model, optax.sgd(0.1))
    ref_opt = nnx.Optimizer(reference, optax.sgd(0.1))
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
    traces = []

    @nnx.jit
    def step(opt: nnx.Optimizer[nnx.Linear], model: nnx.Linear | None) -> None:
        traces.append(1)
        m = opt.model if model is None else model
        opt.update(nnx.grad(_loss)(m, x, y))

    for _ in range(3):
        step(opt, model if together else None)
        ref_opt.update(nnx.grad(_loss)(reference, x, y))
    assert len(traces) == 1 and int(opt.step) == 3 and opt.model is model
    np.testing.assert_allclose(model.kernel, reference.kernel, rtol=1e-6)


def test_wrt_selects_the_updated_state_and_gradients_must_match_it():
    class Net(nnx.Module):
        def __init__(self) -> None:
            self.lin = nnx.Linear(2, 2, ctx=nnx.context(0))
            self.scale = nnx.BatchStat(jnp.ones(2))

    net = Net()
    opt = nnx.Optimizer(net, optax.sgd(1.0), wrt=nnx.BatchStat)
    opt.update(nnx.State({("scale",): nnx.BatchStat(jnp.ones(2))}))
    np.testing.assert_allclose(net.scale, jnp.zeros(2))
    with pytest.raises(ValueError, match=r"do not match the model's .*extra paths"):
        opt.update(nnx.grad(lambda m: jnp.sum(m.lin.kernel))(net))


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="expects a Module"):
        nnx.Optimizer(jnp.ones(2), optax.sgd(0.1))  # type: ignore[arg-type, type-var]
    with pytest.raises(TypeError, match="GradientTransformation"):
        nnx.Optimizer(nnx.Linear(2, 2, ctx=nnx.context(0)), 0.1)  # type: ignore[arg-type]

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nnx


def _setup():
    model = nnx.Linear(3, 2, ctx=nnx.context(0))
    params, moduledef = model.partition(nnx.Param)
    return model, params, moduledef


def test_train_state_is_a_pytree_with_params_opt_state_and_step():
    _, params, moduledef = _setup()
    state = nnx.TrainState(moduledef, params=params, tx=optax.sgd(0.1))
    leaves = jax.tree_util.tree_leaves(state)
    assert len(leaves) == 3  # kernel, bias, step (sgd has an empty opt_state)
    assert int(state.step) == 0
    assert state.params == params


def test_apply_gradients_steps_the_optimizer():
    _, params, moduledef = _setup()
    state = nnx.TrainState(moduledef, params=params, tx=optax.sgd(0.1), note="x")
    x = jnp.ones((4, 3))

    @jax.jit
    def step(state, x):
        def loss(p):
            y, _ = state.apply(p)(x)
            return jnp.mean(y**2)

        return state.apply_gradients(jax.grad(loss)(state.params))

    new = step(state, x)
    grads = jax.grad(lambda p: jnp.mean(moduledef.apply(p)(x)[0] ** 2))(params)
    expected = params[("kernel",)].value - 0.1 * grads[("kernel",)].value
    assert int(new.step) == 1
    np.testing.assert_allclose(new.params[("kernel",)].value, expected, rtol=1e-6)
    assert new.note == "x"
    y, _ = new.apply("params")(x)
    assert y.shape == (4, 2)


def test_train_state_is_immutable():
    _, params, moduledef = _setup()
    state = nnx.TrainState(moduledef, params=params, tx=optax.adam(1e-3))
    try:
        state.step = 3
    except AttributeError as e:
        assert "immutable" in str(e)
    else:
        raise AssertionError("TrainState accepted a field update")

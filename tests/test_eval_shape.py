"""`nnx.eval_shape`: run a function abstractly; a Module result comes back with abstract
state (e.g. to restore a checkpoint into)."""

import jax
import jax.numpy as jnp
import pytest

import nnx


def test_arrays_come_back_as_shape_dtype_structs():
    out = nnx.eval_shape(lambda x: (x @ x.T, x.astype(jnp.int32)), jnp.ones((3, 4)))
    assert out[0] == jax.ShapeDtypeStruct((3, 3), jnp.float32)
    assert out[1] == jax.ShapeDtypeStruct((3, 4), jnp.int32)


def test_a_module_result_has_abstract_state_and_its_structure():
    model = nnx.eval_shape(lambda: nnx.Linear(3, 4, ctx=nnx.context(0)))
    assert isinstance(model, nnx.Linear)
    assert model.kernel == jax.ShapeDtypeStruct((3, 4), jnp.float32)
    assert model.bias == jax.ShapeDtypeStruct((4,), jnp.float32)
    state, _ = model.partition()
    assert set(state) == {("bias",), ("kernel",)}
    assert all(isinstance(v, nnx.Param) for v in state.values())


def test_a_context_argument_is_split_and_rebuilt():
    # regression: the Context reached the function as a PureContext (no make_rng)
    ctx = nnx.context(0)
    model = nnx.eval_shape(lambda ctx: nnx.Linear(2, 5, ctx=ctx), ctx)
    assert model.kernel == jax.ShapeDtypeStruct((2, 5), jnp.float32)
    model = nnx.eval_shape(lambda *, ctx: nnx.Linear(3, 1, ctx=ctx), ctx=ctx)
    assert model.kernel == jax.ShapeDtypeStruct((3, 1), jnp.float32)
    assert ctx.make_rng("params").shape == ()  # the caller's Context stays usable


def test_module_arguments_are_refused():
    model = nnx.Linear(2, 2, ctx=nnx.context(0))
    with pytest.raises(TypeError, match="Module arguments are not supported; build them inside"):
        nnx.eval_shape(lambda m: m(jnp.ones((1, 2))), model)

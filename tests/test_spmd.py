import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import nnx

RULES = (("embed", "data"), ("mlp", "model"), ("batch", "data"))


class MLP(nnx.Module):
    def __init__(self, *, ctx: nnx.Context):
        init = nnx.initializers.lecun_normal()
        self.up = nnx.Linear(
            8,
            16,
            kernel_init=nnx.with_logical_partitioning(init, ("embed", "mlp")),
            bias_init=nnx.with_logical_partitioning(nnx.initializers.zeros(), ("mlp",)),
            ctx=ctx,
        )
        self.down = nnx.Linear(
            16, 8, kernel_init=nnx.with_logical_partitioning(init, ("mlp", "embed")), ctx=ctx
        )

    def __call__(self, x):
        return self.down(nnx.relu(self.up(x)))


def _mesh() -> Mesh:
    assert len(jax.devices()) >= 8, "tests run with 8 simulated CPU devices (XLA_FLAGS)"
    return Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))


def test_variables_carry_logical_names_and_partition_specs():
    model = MLP(ctx=nnx.context(0))
    assert vars(model.up)["kernel"].sharding == ("embed", "mlp")
    specs = nnx.get_partition_spec(model.get_state())
    assert specs[("up", "kernel")] == P("embed", "mlp")
    assert specs[("up", "bias")] == P("mlp")
    assert specs[("down", "bias")] == P()  # no names: replicated


def test_logical_to_mesh_uses_each_mesh_axis_once():
    mapped = nnx.logical_to_mesh(P("embed", "mlp"), RULES)
    assert mapped == P("data", "model")
    # "batch" also wants "data", already taken by "embed" in this spec: unsharded
    assert nnx.logical_to_mesh(P("embed", "batch"), RULES) == P("data", None)
    with nnx.logical_axis_rules(RULES):
        assert nnx.logical_to_mesh(P("mlp")) == P("model")
    with pytest.raises(ValueError, match="duplicate"):
        nnx.logical_to_mesh(P("mlp", "mlp"), RULES)
    with pytest.raises(ValueError, match="no rules"):
        nnx.logical_to_mesh(P("mlp"))


def test_a_sharded_jitted_step_keeps_the_expected_shardings():
    mesh = _mesh()
    model = MLP(ctx=nnx.context(0))
    params, moduledef = model.partition(nnx.Param)
    mesh_specs = nnx.logical_to_mesh(nnx.get_partition_spec(params), RULES)
    shardings = jax.tree.map(
        lambda spec: NamedSharding(mesh, spec), mesh_specs, is_leaf=lambda x: isinstance(x, P)
    )
    params = jax.device_put(params, shardings)
    assert params[("up", "kernel")].value.sharding.spec == P("data", "model")
    x = jax.device_put(jnp.ones((4, 8)), NamedSharding(mesh, P("data")))

    @jax.jit
    def step(params, x):
        def loss(p):
            y, _ = moduledef.apply(p)(x)
            return jnp.mean(y**2)

        grads = jax.grad(loss)(params)
        return jax.tree.map(lambda w, g: w - 0.1 * g, params, grads)

    out = jax.jit(step, out_shardings=shardings)(params, x)
    assert out[("up", "kernel")].value.sharding.spec == P("data", "model")
    assert out[("down", "kernel")].value.sharding.spec == P("model", "data")
    assert out[("up", "kernel")].value.sharding.mesh.shape == {"data": 2, "model": 4}
    model = moduledef.merge(out)
    assert model(jnp.ones((4, 8))).shape == (4, 8)


def test_with_logical_constraint_applies_only_with_rules_and_mesh():
    mesh = _mesh()
    x = jnp.ones((8, 16))
    assert nnx.with_logical_constraint(x, ("embed", "mlp")) is x

    @jax.jit
    def f(x):
        return nnx.with_logical_constraint(x * 2, ("embed", "mlp"), RULES, mesh)

    y = f(x)
    assert y.sharding.spec == P("data", "model")

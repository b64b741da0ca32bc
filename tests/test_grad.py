"""`nnx.grad` and `nnx.value_and_grad`: gradients with respect to the `wrt` state,
changes written back, trace safety, options.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx
from _transform_models import (
    MLP,
    Count,
    Counter,
    Holder,
    allclose,
    mlp_data,
    mlp_loss,
    mse,
)

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
    x, y = mlp_data()
    grads = nnx.grad(mlp_loss)(model, x, y)
    assert isinstance(grads, nnx.State)
    assert set(grads) == MLP_PARAM_PATHS
    for g in grads.values():
        assert type(g) is nnx.Param
    assert grads[("l1", "kernel")].value.shape == (3, 4)


def test_grad_values_match_jax_grad_of_the_functional_computation():
    model = MLP(ctx=nnx.context(0))
    x, y = mlp_data()
    grads = nnx.grad(mlp_loss)(model, x, y)

    (params, rest), moduledef = model.partition(nnx.Param, ...)

    def functional(params):
        return mlp_loss(moduledef.merge(params, rest), x, y)

    expected = jax.grad(functional)(params)
    assert set(expected) == set(grads)
    for path in grads:
        allclose(grads[path].value, expected[path].value)

    # and by hand, for the last layer
    l1, bn, l2 = model.l1, model.bn, model.l2
    h = nnx.relu((x @ l1.kernel + l1.bias) / jnp.sqrt(bn.var + 1e-5) * bn.scale + bn.bias)

    def by_hand(k, b):
        return mse(h @ k + b, y)

    gk, gb = jax.grad(by_hand, argnums=(0, 1))(l2.kernel, l2.bias)
    allclose(grads[("l2", "kernel")].value, gk)
    allclose(grads[("l2", "bias")].value, gb)


def test_grad_wrt_batchstat():
    model = MLP(ctx=nnx.context(0))
    x, y = mlp_data()
    grads = nnx.grad(mlp_loss, wrt=nnx.BatchStat)(model, x, y)
    assert set(grads) == {("bn", "mean"), ("bn", "var")}
    assert all(type(g) is nnx.BatchStat for g in grads.values())
    assert np.any(np.asarray(grads[("bn", "mean")].value) != 0)


def test_grad_wrt_a_collection_name():
    model = MLP(ctx=nnx.context(0))
    x, y = mlp_data()
    grads = nnx.grad(mlp_loss, wrt="params")(model, x, y)
    default = nnx.grad(mlp_loss)(model, x, y)
    assert set(grads) == MLP_PARAM_PATHS
    for path in grads:
        allclose(grads[path].value, default[path].value)


def test_grad_wrt_a_predicate():
    model = MLP(ctx=nnx.context(0))
    x, y = mlp_data()
    seen = []

    def kernels(path, value):
        seen.append(path)
        return path[-1] == "kernel"

    grads = nnx.grad(mlp_loss, wrt=kernels)(model, x, y)
    assert set(grads) == {("l1", "kernel"), ("l2", "kernel")}
    assert all(isinstance(p, tuple) for p in seen)
    default = nnx.grad(mlp_loss)(model, x, y)
    allclose(grads[("l1", "kernel")].value, default[("l1", "kernel")].value)


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
    allclose(grads[("a", "kernel")].value, gk)
    allclose(grads[("a", "bias")].value, gb)
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
    x, y = mlp_data()

    def loss(m, x, y):
        pred = m(x)
        return mse(pred, y), {"pred": pred}

    grads, aux = nnx.grad(loss, has_aux=True)(model, x, y)
    assert set(grads) == MLP_PARAM_PATHS
    assert aux["pred"].shape == (5, 1)
    allclose(aux["pred"], model(x))
    expected = nnx.grad(mlp_loss)(model, x, y)
    for path in grads:
        allclose(grads[path].value, expected[path].value)


def test_grad_writes_stateful_updates_back():
    model = MLP(ctx=nnx.context(0))
    x, y = mlp_data()
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
    allclose(grads[("w",)].value, 4.0)
    assert model.mode == "b"
    allclose(model.seen, 20.0)
    assert type(vars(model)["seen"]) is nnx.BatchStat


def test_grad_stateful_false_discards_updates():
    model = MLP(ctx=nnx.context(0))
    x, y = mlp_data()

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
    allclose(grads[("w",)].value, 3.0)
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
    allclose(lin.kernel, k0 - 0.01 * grads[("a", "kernel")].value)


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


def test_value_and_grad():
    model = MLP(ctx=nnx.context(0))
    x, y = mlp_data()
    value, grads = nnx.value_and_grad(mlp_loss)(model, x, y)
    allclose(value, mlp_loss(model, x, y))
    expected = nnx.grad(mlp_loss)(model, x, y)
    assert set(grads) == set(expected) == MLP_PARAM_PATHS
    for path in grads:
        allclose(grads[path].value, expected[path].value)


def test_value_and_grad_has_aux():
    model = MLP(ctx=nnx.context(0))
    x, y = mlp_data()

    def loss(m, x, y):
        pred = m(x)
        return mse(pred, y), pred

    (value, aux), grads = nnx.value_and_grad(loss, has_aux=True)(model, x, y)
    allclose(value, mlp_loss(model, x, y))
    allclose(aux, model(x))
    assert set(grads) == MLP_PARAM_PATHS


def test_value_and_grad_wrt_and_stateful():
    model = MLP(ctx=nnx.context(0))
    x, y = mlp_data()
    value, grads = nnx.value_and_grad(mlp_loss, wrt=nnx.BatchStat)(model, x, y)
    assert set(grads) == {("bn", "mean"), ("bn", "var")}
    assert model.calls == 1
    nnx.value_and_grad(mlp_loss, stateful=False)(model, x, y)
    assert model.calls == 1


def test_grad_options_are_checked_by_name():
    # grad's keyword options are a TypedDict (**options); a misspelt one is still a
    # TypeError, as for a function that spells its keywords out
    with pytest.raises(TypeError, match=r"nnx.grad\(\) got unexpected keyword.*'statefull'"):
        nnx.grad(lambda m: 0.0, statefull=False)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"nnx.value_and_grad\(\) got unexpected"):
        nnx.value_and_grad(lambda m: 0.0, allow_ints=True)  # type: ignore[call-overload]

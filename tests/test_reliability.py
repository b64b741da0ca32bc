"""No silent wrong answers, and clear errors for bad input (one test per defect
found by adversarial use; each fails without its fix)."""

from __future__ import annotations

import dataclasses
import functools
import gc
import types
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jaxtyping import Array, Float

import nnx


class Model(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.linear = nnx.Linear(2, 2, ctx=ctx)
        self.cfg: object = None


# ----------------------------------------------------------------------------------
# 7. Context.copy() inside jax.jit


def test_a_copy_of_an_outer_context_cannot_draw_inside_jit():
    ctx = nnx.context(0)

    @jax.jit
    def draw() -> jax.Array:
        return ctx.copy().make_rng("params")

    with pytest.raises(nnx.TraceContextError, match="Cannot use Context from a different trace"):
        draw()


def test_a_copy_shares_the_streams_outside_jit():
    ctx = nnx.context(0)
    copy = ctx.copy()
    a = copy.make_rng("params")
    b = ctx.make_rng("params")
    assert not np.array_equal(jax.random.key_data(a), jax.random.key_data(b))


# ----------------------------------------------------------------------------------
# 8. a traced value in a static attribute


@pytest.mark.parametrize(
    "make",
    [
        lambda x: types.SimpleNamespace(scale=x),
        lambda x: functools.partial(jnp.multiply, x),
    ],
)
def test_jit_refuses_a_tracer_in_a_static_attribute(make):
    model = Model(ctx=nnx.context(0))

    @nnx.jit
    def step(model: Model, x: jax.Array) -> jax.Array:
        model.cfg = make(x)
        return x

    with pytest.raises(TypeError, match=r"nnx\.jit: Model\.cfg is a static attribute"):
        step(model, jnp.float32(2.0))
    assert model.cfg is None  # nothing written back


def test_jit_refuses_a_tracer_put_into_a_static_dataclass_in_place():
    @dataclasses.dataclass
    class Config:
        scale: object = 1.0

    model = Model(ctx=nnx.context(0))
    model.cfg = Config()

    @nnx.jit
    def step(model: Model, x: jax.Array) -> jax.Array:
        model.cfg.scale = x  # type: ignore[attr-defined]
        return x

    with pytest.raises(TypeError, match=r"Model\.cfg is a static attribute .* JitTracer|traced"):
        step(model, jnp.float32(2.0))


def test_a_tracer_in_a_list_is_refused_at_assignment():
    model = Model(ctx=nnx.context(0))

    @nnx.jit
    def step(model: Model, x: jax.Array) -> jax.Array:
        model.cfg = (1, [x])  # arrays in a plain container: refused when assigned
        return x

    with pytest.raises(TypeError, match=r"Model\.cfg: a tuple holding .*Tracer"):
        step(model, jnp.float32(2.0))


def test_grad_refuses_tracers_in_static_attributes():
    model = Model(ctx=nnx.context(0))

    def loss(model: Model) -> jax.Array:
        model.cfg = types.SimpleNamespace(total=model.linear.kernel.sum())
        return jnp.sum(model.linear.kernel)

    with pytest.raises(TypeError, match=r"nnx\.grad: Model\.cfg is a static attribute"):
        nnx.grad(loss)(model)
    assert model.cfg is None


def test_vmap_refuses_tracers_in_static_attributes():
    model = Model(ctx=nnx.context(0))

    def f(model: Model, x: jax.Array) -> jax.Array:
        model.cfg = types.SimpleNamespace(x=x)
        return x

    with pytest.raises(TypeError, match=r"nnx\.vmap: Model\.cfg is a static attribute"):
        nnx.vmap(f)(model, jnp.ones(3))
    assert model.cfg is None


# ----------------------------------------------------------------------------------
# 9. merge and update_state reject non-state leaves alike


def test_merge_rejects_leaves_that_are_not_state():
    class Raw(nnx.Module):
        def __init__(self) -> None:
            self.a = jnp.ones(2)

    state, moduledef = Raw().partition()
    floats = jax.tree.map(lambda x: float(x[0]), state)
    with pytest.raises(TypeError, match=r"merge: the value at \('a',\) is a float"):
        moduledef.merge(floats)
    with pytest.raises(TypeError, match=r"update_state: the value at \('a',\) is a float"):
        Raw().update_state(floats)


# ----------------------------------------------------------------------------------
# 10. a typo in a str filter


def test_grad_with_a_misspelt_collection_raises_and_suggests():
    model = nnx.Linear(2, 2, ctx=nnx.context(0))

    def loss(model: nnx.Linear) -> jax.Array:
        return jnp.sum(model(jnp.ones(2)))

    with pytest.raises(ValueError, match=r"\['param'\].*Did you mean 'params'"):
        nnx.grad(loss, wrt="param")(model)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"Did you mean 'params'"):
        nnx.value_and_grad(loss, wrt="parms")(model)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"Did you mean 'batch_stats'"):
        model.partition("batch_stat", ...)
    grads = nnx.grad(loss, wrt="params")(model)  # type: ignore[call-overload]
    assert set(grads) == {("bias",), ("kernel",)}


# ----------------------------------------------------------------------------------
# 11. Dropout rates


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), 2, True])
def test_dropout_refuses_rates_that_are_not_probabilities(rate: object):
    with pytest.raises(ValueError, match=r"Dropout: rate must be a probability in \[0, 1\]"):
        nnx.Dropout(rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", ["0.5", None])
def test_dropout_refuses_rates_that_are_not_numbers(rate: object):
    with pytest.raises(TypeError, match=r"Dropout\.rate: expected float"):
        nnx.Dropout(rate)  # type: ignore[arg-type]


def test_an_int_is_a_float_rate():
    assert nnx.Dropout(0).rate == 0.0
    assert nnx.Dropout(1).rate == 1.0


def test_dropout_rate_one_drops_everything():
    out = nnx.Dropout(1.0)(jnp.ones(3), deterministic=False, ctx=nnx.context(dropout=0))
    np.testing.assert_array_equal(out, jnp.zeros(3))


# ----------------------------------------------------------------------------------
# 12. state nested deep in a static container


def test_the_static_container_guard_looks_at_any_depth():
    nested: object = jnp.ones(2)
    for _ in range(12):
        nested = [nested]
    model = Model(ctx=nnx.context(0))
    with pytest.raises(TypeError, match="Model.cfg"):
        model.cfg = nested


def test_the_static_container_guard_terminates_on_cycles():
    loop: list[object] = [1]
    loop.append(loop)
    model = Model(ctx=nnx.context(0))
    model.cfg = loop  # no state inside: a static attribute
    assert model.cfg is loop


# ----------------------------------------------------------------------------------
# 13. a same-shape write to a stacked parameter


class Block(nnx.Module):
    def __init__(self, *, ctx: nnx.Context) -> None:
        self.linear = nnx.Linear(3, 3, ctx=ctx)

    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:
        return self.linear(x), None


def test_a_same_shape_write_to_a_stacked_parameter_is_no_shape_error():
    model = nnx.Scan(Block, variable_axes={nnx.Param: 0}, split_rngs="params", length=4)(
        ctx=nnx.context(0)
    )
    layer = model.scan_module.linear
    kernel = layer.kernel
    layer.kernel = layer.kernel * 0.5
    np.testing.assert_allclose(layer.kernel, kernel * 0.5)
    with pytest.raises(nnx.ShapeCheckError):
        layer.kernel = jnp.ones((5, 3, 3))


# ----------------------------------------------------------------------------------
# 14. the filter cache keeps no predicate alive


def test_predicates_used_as_filters_are_not_kept_alive():
    model = nnx.Linear(2, 2, ctx=nnx.context(0))
    refs = []
    for _ in range(5):
        payload = np.zeros(10)

        def is_kernel(path: nnx.Path, value: object, payload: np.ndarray = payload) -> bool:
            return path[-1] == "kernel"

        refs.append(weakref.ref(payload))
        model.filter(is_kernel)
        model.partition((is_kernel, nnx.BatchStat), ...)
        del payload, is_kernel
    gc.collect()
    assert all(r() is None for r in refs)


# ----------------------------------------------------------------------------------
# unclear errors made clear


def test_jit_static_arguments_follow_the_signature():
    seen: list[object] = []

    def f(model: nnx.Linear, x: jax.Array, n: int) -> jax.Array:
        seen.append(n)
        return model(x) * n

    model = nnx.Linear(2, 2, ctx=nnx.context(0))
    x = jnp.ones(2)
    for options in ({"static_argnums": 2}, {"static_argnames": "n"}, {"static_argnums": -1}):
        jitted = nnx.jit(f, **options)  # type: ignore[call-overload]
        seen.clear()
        jitted(model, x, 3)
        jitted(model, x, n=3)
        assert seen == [3, 3], options  # a Python int (static) either way


def test_an_unhashable_static_argument_is_named():
    def f(model: nnx.Linear, x: jax.Array, sizes: object) -> jax.Array:
        return model(x)

    jitted = nnx.jit(f, static_argnames="sizes")
    model = nnx.Linear(2, 2, ctx=nnx.context(0))
    with pytest.raises(
        TypeError, match=r"static argument 'sizes' is a list, which is not hashable"
    ):
        jitted(model, jnp.ones(2), sizes=[1, 2])
    with pytest.raises(TypeError, match=r"static argument at position 2 is a dict"):
        nnx.jit(f, static_argnums=2)(model, jnp.ones(2), {})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ctx: nnx.Linear(0, 3, ctx=ctx), "Linear: in_features must be a positive int"),
        (lambda ctx: nnx.Linear(3, -1, ctx=ctx), "Linear: out_features must be a positive int"),
        (lambda ctx: nnx.Embed(-3, 4, ctx=ctx), "Embed: num_embeddings must be a positive int"),
        (lambda ctx: nnx.GroupNorm(4, num_groups=0, ctx=ctx), "GroupNorm: num_groups"),
        (lambda ctx: nnx.Conv(2, 2, (3,), strides=0, ctx=ctx), "Conv: strides must be"),
        (lambda ctx: nnx.Conv(2, 2, (0, 3), ctx=ctx), "Conv: kernel_size must be"),
        (lambda ctx: nnx.Conv(4, 3, (3,), feature_group_count=2, ctx=ctx), "out_features"),
        (lambda ctx: nnx.BatchNorm(0, ctx=ctx), "BatchNorm: num_features"),
        (lambda ctx: nnx.LayerNorm(2.5, ctx=ctx), "LayerNorm: num_features"),
        (lambda ctx: nnx.RMSNorm(-2, ctx=ctx), "RMSNorm: num_features"),
        (lambda ctx: nnx.MultiHeadAttention(0, 8, ctx=ctx), "num_heads must be"),
        (
            lambda ctx: nnx.MultiHeadAttention(2, 8, dropout_rate=2.0, ctx=ctx),
            "dropout_rate must be a probability",
        ),
    ],
)
def test_layers_validate_their_sizes(make, message: str):
    with pytest.raises(ValueError, match=message):
        make(nnx.context(0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"params": jnp.ones(3)}, r"float32\[3\] is not a PRNG key"),
        ({"params": jax.random.split(jax.random.key(0), 2)}, "is not a PRNG key"),
        ({"params": "0"}, "needs an int seed"),
        ({"flags": [("deterministic", True)]}, "takes a mapping of flag names"),
        ({"flags": {1: True}}, "takes a mapping of flag names"),
    ],
)
def test_context_validates_keys_and_flags(kwargs, message: str):
    with pytest.raises(TypeError, match=message):
        nnx.context(**kwargs)


def test_context_accepts_raw_and_typed_keys():
    raw = nnx.context(params=jax.random.PRNGKey(0)).make_rng("params")
    typed = nnx.context(params=jax.random.key(0)).make_rng("params")
    assert raw.shape == (2,) and typed.shape == ()


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        (5, "expects a mapping of paths to values"),
        ([1, 2], "expects a mapping of paths to values"),
        ({"w": 1}, r"Write \('w',\)"),
        ({(): 1}, "non-empty tuples"),
        ({("a", 1.5): 1}, "non-empty tuples of str"),
    ],
)
def test_state_validates_its_input(arg: object, message: str):
    with pytest.raises(TypeError, match=message):
        nnx.State(arg)  # type: ignore[arg-type]


def test_vmap_says_when_broadcast_state_changes():
    class Counter(nnx.Module):
        def __init__(self) -> None:
            self.total = nnx.BatchStat(jnp.zeros(()))

    def add(model: Counter, x: jax.Array) -> jax.Array:
        model.total = model.total + x
        return x

    with pytest.raises(ValueError, match=r"nnx\.vmap: the function changed \[\('total',\)\]"):
        nnx.vmap(add)(Counter(), jnp.ones(3))


def test_scan_says_when_the_body_does_not_return_a_pair():
    model = nnx.Scan(Block, variable_axes={nnx.Param: 0}, split_rngs="params", length=2)(
        ctx=nnx.context(0)
    )

    @nnx.scan(variable_axes={nnx.Param: 0}, in_axes=None, length=2)
    def only_carry(layer: Block, carry: jax.Array, _: None) -> jax.Array:
        return layer.linear(carry)

    with pytest.raises(TypeError, match=r"must return a pair \(carry, y\).*got a \w+"):
        only_carry(model.scan_module, jnp.ones((1, 3)), None)


def test_train_state_validates_its_arguments():
    model = nnx.Linear(2, 2, ctx=nnx.context(0))
    params, moduledef = model.partition(nnx.Param)
    with pytest.raises(TypeError, match="params= must be a State"):
        nnx.TrainState(moduledef, params={"w": 1}, tx=optax.sgd(0.1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tx= must be an optax GradientTransformation"):
        nnx.TrainState(moduledef, params=params, tx="adam")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="the first argument is the model's ModuleDef"):
        nnx.TrainState(model, params=params, tx=optax.sgd(0.1))  # type: ignore[arg-type]


def test_a_one_argument_predicate_is_told_that_filters_take_path_and_value():
    model = nnx.Linear(2, 2, ctx=nnx.context(0))
    with pytest.raises(TypeError, match=r"takes two arguments: the entry's path"):
        model.filter(lambda value: True)  # type: ignore[arg-type, misc]


# ----------------------------------------------------------------------------------
# one mistake, one error type: the kind is checked before the shape


def test_a_variable_of_another_kind_is_the_same_error_with_or_without_annotations():
    class Plain(nnx.Module):
        def __init__(self) -> None:
            self.w = nnx.Param(jnp.ones(3))

    class Annotated(nnx.Module):
        w: nnx.Param[Float[Array, " n"]]

        def __init__(self) -> None:
            self.w = nnx.Param(jnp.ones(3))

    for model in (Plain(), Annotated()):
        with pytest.raises(ValueError, match=r"Param") as info:
            model.w = nnx.BatchStat(jnp.ones(3))
        assert not isinstance(info.value, nnx.ShapeCheckError)
        assert type(vars(model)["w"]) is nnx.Param

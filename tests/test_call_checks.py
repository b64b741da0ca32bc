"""Shape-checked calls (DECISIONS.md "Shape-checked calls"): a Module method annotated
with jaxtyping array types checks its arguments and return against the dimensions the
instance's attributes bind. This module uses `from __future__ import annotations`, so
its annotations are strings, resolved on the first call."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, Int

import nnx


class Proj(nnx.Module):
    w: nnx.Param[Float[Array, "din dout"]]

    def __init__(self, din: int, dout: int) -> None:
        self.w = nnx.Param(jnp.ones((din, dout)))

    def __call__(self, x: Float[Array, "n din"]) -> Float[Array, "n dout"]:
        return x @ self.w

    def pair(self, x: Float[Array, "n din"], y: Float[Array, "n din"]) -> Float[Array, "n dout"]:
        return (x + y) @ self.w

    def plain(self, x: jax.Array) -> jax.Array:
        return x


class Truncating(Proj):
    def __call__(self, x: Float[Array, "n din"]) -> Float[Array, "n dout"]:
        return (x @ self.w)[:, :1]


class Sized(nnx.Module):
    din: int  # an int attribute binds the dimension of its name

    def __init__(self, din: int) -> None:
        self.din = din

    def __call__(self, ids: Int[Array, " din"]) -> Int[Array, " din"]:
        return ids


def test_an_argument_is_checked_against_the_instance_dimensions():
    p = Proj(3, 4)
    assert p(jnp.ones((2, 3))).shape == (2, 4)
    with pytest.raises(nnx.ShapeCheckError) as e:
        p(jnp.ones((2, 5)))
    message = str(e.value)
    assert message.startswith(
        "Proj.__call__: argument x: expected Float[Array, 'n din'], got float32[2,5]"
    )
    assert "din=3 (bound by .w)" in message
    assert isinstance(e.value, TypeError)


def test_the_return_is_checked_and_names_bound_by_the_call_are_shown():
    with pytest.raises(nnx.ShapeCheckError) as e:
        Truncating(3, 4)(jnp.ones((2, 3)))
    message = str(e.value)
    assert message.startswith("Truncating.__call__: return: expected Float[Array, 'n dout']")
    assert "dout=4 (bound by .w)" in message and "n=2 (bound by argument x)" in message


def test_per_call_names_are_bound_afresh_and_agree_within_a_call():
    p = Proj(3, 4)
    assert p(jnp.ones((1, 3))).shape == (1, 4)
    assert p(jnp.ones((7, 3))).shape == (7, 4)  # n is bound again by each call
    assert p.pair(jnp.ones((2, 3)), y=jnp.ones((2, 3))).shape == (2, 4)
    with pytest.raises(
        nnx.ShapeCheckError, match=r"(?s)Proj.pair: argument y: .*n=2 \(bound by argument x\)"
    ):
        p.pair(jnp.ones((2, 3)), jnp.ones((5, 3)))


def test_dtypes_and_int_attributes_are_checked():
    s = Sized(3)
    np.testing.assert_array_equal(s(jnp.arange(3)), jnp.arange(3))
    with pytest.raises(
        nnx.ShapeCheckError, match=r"(?s)Sized.__call__: argument ids: .*dtype float32"
    ):
        s(jnp.ones(3))
    with pytest.raises(nnx.ShapeCheckError, match=r"(?s)din=3 \(bound by .din\)"):
        s(jnp.arange(4))


def test_methods_without_array_annotations_are_not_wrapped():
    assert getattr(Proj.__dict__["plain"], "_nnx_call_checked", False) is False
    assert getattr(Proj.__dict__["__init__"], "_nnx_call_checked", False) is False
    assert getattr(Proj.__dict__["__call__"], "_nnx_call_checked", False) is True
    assert Proj.__call__.__name__ == "__call__" and Proj.__call__.__doc__ is None


def test_under_jit_the_check_runs_at_trace_time_only():
    p = Proj(3, 4)
    traces = []

    @nnx.jit
    def step(m: Proj, x: jax.Array) -> jax.Array:
        traces.append(1)
        return m(x)

    for _ in range(3):
        assert step(p, jnp.ones((2, 3))).shape == (2, 4)
    assert len(traces) == 1
    with pytest.raises(nnx.ShapeCheckError, match="argument x"):
        step(p, jnp.ones((2, 5)))
    with pytest.raises(nnx.ShapeCheckError, match="argument x"):
        jax.jit(lambda x: p(x))(jnp.ones((2, 5)))


def test_under_vmap_the_check_sees_per_example_shapes():
    p = Proj(3, 4)
    y = jax.vmap(lambda x: p(x))(jnp.ones((5, 2, 3)))  # per example: (2, 3)
    assert y.shape == (5, 2, 4)
    with pytest.raises(nnx.ShapeCheckError):
        jax.vmap(lambda x: p(x))(jnp.ones((5, 3)))  # per example: (3,), not (n, din)


class Block(nnx.Module):
    w: nnx.Param[Float[Array, "d d"]]

    def __init__(self, d: int, *, ctx: nnx.Context) -> None:
        self.w = nnx.Param(jax.random.normal(ctx.make_rng("params"), (d, d)))

    def __call__(self, x: Float[Array, "n d"], _: None) -> tuple[jax.Array, None]:
        return jnp.tanh(x @ self.w), None


def test_scan_and_vmap_over_stacked_layers_see_per_layer_shapes():
    stack = nnx.Scan(Block, variable_axes={nnx.Param: 0}, split_rngs="params", length=4)(
        3, ctx=nnx.context(0)
    )
    y, _ = stack.call(jnp.ones((2, 3)), None)
    assert y.shape == (2, 3)
    with pytest.raises(nnx.ShapeCheckError, match=r"(?s)Block.__call__: argument x: .*d=3"):
        stack.call(jnp.ones((2, 5)), None)
    # an ensemble: the stacked layers mapped with nnx.vmap
    ensemble = nnx.vmap(lambda m, x: m(x, None)[0], in_axes=None, variable_axes={nnx.Param: 0})
    assert ensemble(stack.scan_module, jnp.ones((2, 3))).shape == (4, 2, 3)
    # the stacked module itself binds nothing (its values do not fit the annotation),
    # so a manual jax.vmap over its state raises no false error
    state, moduledef = stack.scan_module.partition()
    ys = jax.vmap(lambda s: moduledef.merge(s)(jnp.ones((2, 3)), None)[0])(state)
    assert ys.shape == (4, 2, 3)


def test_the_switch_turns_call_checks_off():
    p = Proj(3, 4)
    with nnx.shape_checks(False):
        with pytest.raises(TypeError) as e:
            p(jnp.ones((2, 5)))
        assert not isinstance(e.value, nnx.ShapeCheckError)  # JAX's own error
    with pytest.raises(nnx.ShapeCheckError):
        p(jnp.ones((2, 5)))


def test_the_environment_variable_turns_call_checks_off():
    code = (
        "import jax.numpy as jnp, nnx\n"
        "lin = nnx.Linear(3, 4, ctx=nnx.context(0))\n"
        "try:\n    lin(jnp.ones((2, 5)))\n"
        "except Exception as e:\n    print(type(e).__name__)\n"
    )
    env = {**os.environ, "NNX_SHAPE_CHECKS": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "TypeError"  # dot_general's, not ShapeCheckError
    env["NNX_SHAPE_CHECKS"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "ShapeCheckError"


# -- the built-in layers -----------------------------------------------------------------


def _ctx() -> nnx.Context:
    return nnx.context(0)


@pytest.mark.parametrize(
    ("make", "bad", "expected"),
    [
        (
            lambda: nnx.Linear(3, 4, ctx=_ctx()),
            lambda m: m(jnp.ones((2, 5))),
            r"(?s)Linear.__call__: argument inputs: .*in_features=3 \(bound by .kernel\)",
        ),
        (
            lambda: nnx.Conv(3, 4, (3, 3), ctx=_ctx()),
            lambda m: m(jnp.ones((1, 8, 8, 2))),
            r"(?s)Conv.__call__: argument inputs: .*in_features=3",
        ),
        (
            lambda: nnx.Embed(10, 4, ctx=_ctx()),
            lambda m: m.attend(jnp.ones((2, 5))),
            r"(?s)Embed.attend: argument query: .*features=4",
        ),
        (
            lambda: nnx.BatchNorm(3, ctx=_ctx()),
            lambda m: m(jnp.ones((2, 5)), use_running_average=True),
            r"BatchNorm.__call__: argument x: expected num_features=3 at axis -1, "
            r"got float32\[2,5\]",
        ),
        (
            lambda: nnx.LayerNorm(3, ctx=_ctx()),
            lambda m: m(jnp.ones((2, 5))),
            r"(?s)LayerNorm.__call__: argument x: expected num_features=3",
        ),
        (
            lambda: nnx.RMSNorm(3, ctx=_ctx()),
            lambda m: m(jnp.ones((2, 5))),
            r"(?s)RMSNorm.__call__: argument x: .*num_features=3",
        ),
        (
            lambda: nnx.GroupNorm(4, num_groups=2, ctx=_ctx()),
            lambda m: m(jnp.ones((2, 6))),
            r"(?s)GroupNorm.__call__: argument x: .*num_features=4",
        ),
        (
            lambda: nnx.MultiHeadAttention(2, 8, ctx=_ctx()),
            lambda m: m(jnp.ones((1, 4, 6))),
            r"(?s)MultiHeadAttention.__call__: argument inputs_q: .*in_features=8",
        ),
        (
            lambda: nnx.MultiHeadAttention(2, 8, ctx=_ctx()),
            lambda m: m(jnp.ones((1, 4, 8)), jnp.ones((1, 4, 6))),
            r"(?s)MultiHeadAttention.__call__: argument inputs_kv: .*in_features=8",
        ),
    ],
)
def test_built_in_layers_validate_their_inputs(make, bad, expected):
    layer = make()
    with pytest.raises(nnx.ShapeCheckError, match=expected):
        bad(layer)


def test_built_in_layers_accept_what_they_always_accepted():
    x = jnp.ones((2, 3))
    assert nnx.Linear(3, 4, ctx=_ctx())(x).shape == (2, 4)
    assert nnx.Linear(3, 4, ctx=_ctx())(jnp.ones((5, 2, 3))).shape == (5, 2, 4)
    assert nnx.Linear(3, 4, ctx=_ctx())(jnp.ones(3)).shape == (4,)  # no batch axis
    assert nnx.Conv(3, 4, (3, 3), ctx=_ctx())(jnp.ones((1, 8, 8, 3))).shape == (1, 8, 8, 4)
    assert nnx.Conv(3, 4, (3,), ctx=_ctx())(jnp.ones((8, 3))).shape == (8, 4)
    emb = nnx.Embed(10, 4, ctx=_ctx())
    assert emb(jnp.array([[1, 2]])).shape == (1, 2, 4)
    assert emb.attend(jnp.ones((2, 4))).shape == (2, 10)
    assert nnx.BatchNorm(3, axis=0, ctx=_ctx())(jnp.ones((3, 2)), True).shape == (3, 2)
    assert nnx.LayerNorm(3, ctx=_ctx())(x).shape == (2, 3)
    assert nnx.RMSNorm(3, ctx=_ctx())(x).shape == (2, 3)
    assert nnx.GroupNorm(4, num_groups=2, ctx=_ctx())(jnp.ones((2, 5, 4))).shape == (2, 5, 4)
    drop = nnx.Dropout(0.5)
    y = drop(jnp.ones((2, 3)), deterministic=False, ctx=nnx.context(dropout=1))
    assert y.shape == (2, 3)
    mha = nnx.MultiHeadAttention(2, 8, ctx=_ctx())
    assert mha(jnp.ones((1, 4, 8))).shape == (1, 4, 8)
    assert mha(jnp.ones((3, 1, 4, 8)), jnp.ones((3, 1, 6, 8))).shape == (3, 1, 4, 8)
    mha.init_cache(batch_size=1, max_length=4)
    assert mha(jnp.ones((1, 1, 8)), decode=True).shape == (1, 1, 8)


def test_a_check_that_passed_is_not_reused_for_other_shapes_or_dimensions():
    p = Proj(3, 4)
    for _ in range(3):  # repeated calls of one shape: the check that passed is reused
        assert p(jnp.ones((2, 3))).shape == (2, 4)
    with pytest.raises(nnx.ShapeCheckError):
        p(jnp.ones((2, 3), jnp.int32))  # another dtype
    p.w = jnp.ones((5, 4))  # the instance now binds din=5
    assert p(jnp.ones((2, 5))).shape == (2, 4)
    with pytest.raises(nnx.ShapeCheckError, match=r"din=5 \(bound by .w\)"):
        p(jnp.ones((2, 3)))
    with pytest.raises(nnx.ShapeCheckError, match="return"):
        Truncating(3, 4)(jnp.ones((2, 3)))
    with pytest.raises(nnx.ShapeCheckError, match="return"):
        Truncating(3, 4)(jnp.ones((2, 3)))  # a failed return is never remembered


def test_an_annotation_that_cannot_be_resolved_leaves_the_others_checked():
    class Local:  # a local class: not resolvable from the module's namespace
        pass

    class Tagged(nnx.Module):
        w: nnx.Param[Float[Array, "din dout"]]

        def __init__(self) -> None:
            self.w = nnx.Param(jnp.ones((3, 4)))

        def __call__(self, x: Float[Array, "n din"], tag: Local) -> Float[Array, "n dout"]:
            return x @ self.w

    m = Tagged()
    assert m(jnp.ones((2, 3)), Local()).shape == (2, 4)
    with pytest.raises(nnx.ShapeCheckError, match="argument x"):
        m(jnp.ones((2, 5)), Local())

"""Run-time shape checks of Module attributes against their class-level annotations.

An attribute annotated with a jaxtyping type (inside a Variable type, bare, or
Optional) is checked on every assignment: in `__init__`, later, by `+=`, by a write
to an owned Variable's `.value`, and on `nnx.dataclass` fields. Other hints (`int`,
`str`, a Module type) are checked with beartype. Dtype, rank, fixed sizes and named
dimensions, which must agree across the attributes of one module instance; `int`
attributes bind the dimension of their name. Failures raise `nnx.ShapeCheckError`
(a TypeError) and leave the old value in place. Switch: `nnx.shape_checks(False)`
and `NNX_SHAPE_CHECKS=0`. Under transforms: checked at trace time, per-example
shapes under vmap, ShapeDtypeStructs, no false errors on stacked (scanned) layers.
"""

import os
import re
import subprocess
import sys
import textwrap
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, Int, Shaped

import nnx
from _future_annotated import FutureLinear, Helper

# ----------------------------------------------------------------------------------
# Helpers


class Affine(nnx.Module):
    w: nnx.Param[Float[Array, "din dout"]]
    b: nnx.Param[Float[Array, " dout"]]
    scale: Float[Array, " din"]
    extra: Optional[Float[Array, " dout"]]  # noqa: UP045 - Optional is what is tested
    label: str

    def __init__(self, din: int = 3, dout: int = 4):
        self.w = nnx.Param(jnp.ones((din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.scale = jnp.ones((din,))
        self.extra = None
        self.label = "affine"


class Pair(nnx.Module):
    """`din` is bound by `w` alone; `dout` by `w` and `b`."""

    w: nnx.Param[Float[Array, "din dout"]]
    b: nnx.Param[Float[Array, " dout"]]

    def __init__(self, w: Any, b: Any):
        self.w = nnx.Param(w)
        self.b = nnx.Param(b)


class Triple(nnx.Module):
    w: nnx.Param[Float[Array, "din dout"]]
    b: nnx.Param[Float[Array, " dout"]]
    s: Float[Array, " din"]

    def __init__(self, din: int = 3, dout: int = 4):
        self.w = nnx.Param(jnp.ones((din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.s = jnp.ones((din,))


class Leaf(nnx.Module):
    pass


class SubLeaf(Leaf):
    pass


class Parent(nnx.Module):
    child: Leaf
    n: int

    def __init__(self):
        self.child = Leaf()
        self.n = 1


class Block(nnx.Module):
    """A layer to stack (scan over layers): Params plus an `int` that binds `d`."""

    w: nnx.Param[Float[Array, "d d"]]
    b: nnx.Param[Float[Array, " d"]]
    d: int

    def __init__(self, d: int = 3, *, ctx: nnx.Context):
        self.w = nnx.Param(jax.random.normal(ctx.make_rng("params"), (d, d)) / d)
        self.b = nnx.Param(jnp.zeros((d,)))
        self.d = d

    def __call__(self, carry: jax.Array, x: Any) -> tuple[jax.Array, jax.Array]:
        y = carry @ self.w + self.b
        self.b += 1.0  # a checked assignment, on one layer's slice
        return y, y.sum()


class Forward(nnx.Module):
    other: "DefinedLater"  # resolved on the first checked assignment, not at class creation
    w: "nnx.Param[Float[Array, ' d']]"

    def __init__(self):
        self.w = nnx.Param(jnp.zeros((3,)))


class DefinedLater(nnx.Module):
    pass


class _CountingMeta(type):
    """Counts the isinstance checks made against classes using it (by beartype)."""

    checks = 0

    def __instancecheck__(cls, obj: object) -> bool:
        _CountingMeta.checks += 1
        return super().__instancecheck__(obj)


class Tag(metaclass=_CountingMeta):
    pass


class SubTag(Tag):
    pass


class Probed(nnx.Module):
    w: nnx.Param[Float[Array, "din dout"]]
    b: nnx.Param[Float[Array, " dout"]]
    tag: Tag

    def __init__(self, w: Any, b: Any):
        self.w = nnx.Param(w)
        self.b = nnx.Param(b)
        self.tag = SubTag()


def _same(a: Any, b: Any) -> None:
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------------
# The error and its message


def test_shape_check_error_is_a_type_error():
    assert issubclass(nnx.ShapeCheckError, TypeError)
    m = Affine()
    with pytest.raises(TypeError):
        m.w = jnp.ones((3, 5))


def test_message_names_class_attribute_annotation_value_reason_and_binder():
    m = Affine(3, 4)
    with pytest.raises(nnx.ShapeCheckError) as info:
        m.w = jnp.ones((3, 5))
    message = str(info.value)
    assert message.startswith("Affine.w: ")
    assert "expected Param[Float[Array, 'din dout']]" in message
    assert "got float32[3,5]" in message
    assert "reason: " in message
    assert "dimension dout" in message
    assert "dout=4 (from .b)" in message


def test_wrong_named_dimension_in_init():
    with pytest.raises(nnx.ShapeCheckError, match=r"Pair\.b: (.|\n)*dout=4 \(from \.w\)"):
        Pair(jnp.ones((3, 4)), jnp.ones((5,)))


def test_wrong_dtype():
    m = Affine()
    with pytest.raises(nnx.ShapeCheckError, match=r"Affine\.w: .*got int32\[3,4\](.|\n)*dtype"):
        m.w = jnp.ones((3, 4), jnp.int32)


def test_wrong_rank():
    m = Affine()
    with pytest.raises(nnx.ShapeCheckError, match=r"got float32\[12\](.|\n)*reason: .*dimensions"):
        m.w = jnp.ones((12,))


def test_fixed_size():
    class Fixed(nnx.Module):
        x: Float[Array, "3 d"]

    m = Fixed()
    m.x = jnp.ones((3, 7))
    with pytest.raises(nnx.ShapeCheckError, match=r"Fixed\.x: expected Float\[Array, '3 d'\]"):
        m.x = jnp.ones((2, 7))
    _same(m.x, jnp.ones((3, 7)))


def test_repeated_dimension_in_one_annotation():
    class Square(nnx.Module):
        x: Float[Array, "d d"]

    m = Square()
    m.x = jnp.ones((3, 3))
    m.x = jnp.ones((5, 5))  # the only binder of d: rebinds it
    with pytest.raises(nnx.ShapeCheckError, match="dimension d"):
        m.x = jnp.ones((3, 4))


def test_variable_kind_is_checked():
    # the kind is checked before the shape: the same ValueError as on a plain class
    m = Affine()
    with pytest.raises(
        ValueError, match=r"Cannot assign a BatchStat to Affine\.w, which holds a Param"
    ):
        m.w = nnx.BatchStat(jnp.ones((3, 4)))
    assert type(vars(m)["w"]) is nnx.Param


def test_raw_value_where_a_variable_is_declared():
    class Raw(nnx.Module):
        w: nnx.Param[Float[Array, " d"]]

        def __init__(self):
            self.w = jnp.zeros((3,))

    with pytest.raises(nnx.ShapeCheckError, match=r"Raw\.w: (.|\n)*a raw value where a Param"):
        Raw()


def test_bare_annotation_is_checked():
    m = Affine(3, 4)
    m.scale = jnp.full((3,), 2.0)
    with pytest.raises(
        nnx.ShapeCheckError,
        match=re.escape("Affine.scale: expected Float[Array, 'din'], got float32[2]")
        + r"(.|\n)*din=3 \(from \.w\)",
    ):
        m.scale = jnp.ones((2,))
    _same(m.scale, jnp.full((3,), 2.0))


def test_optional_attribute_accepts_none_and_checks_arrays():
    m = Affine(3, 4)
    assert m.extra is None
    m.extra = jnp.ones((4,))
    m.extra = None
    assert m.extra is None
    with pytest.raises(
        nnx.ShapeCheckError,
        match=re.escape("Affine.extra: expected Float[Array, 'dout'] | None, got float32[5]"),
    ):
        m.extra = jnp.ones((5,))
    assert m.extra is None


def test_optional_inside_a_variable_type_accepts_none():
    class MaybeBias(nnx.Module):
        w: nnx.Param[Float[Array, "din dout"]]
        bias: nnx.Param[Float[Array, " dout"] | None]

        def __init__(self, use_bias: bool):
            self.w = nnx.Param(jnp.ones((2, 3)))
            self.bias = nnx.Param(jnp.zeros((3,)) if use_bias else None)

    m = MaybeBias(use_bias=False)
    assert m.bias is None
    m.bias = jnp.ones((3,))
    with pytest.raises(nnx.ShapeCheckError, match=r"MaybeBias\.bias: (.|\n)*dout=3 \(from \.w\)"):
        m.bias = jnp.ones((4,))
    m.bias = None
    assert m.bias is None


def test_optional_variable_type_accepts_none():
    class OptionalParam(nnx.Module):
        w: Optional[nnx.Param[Float[Array, " d"]]]  # noqa: UP045 - Optional is what is tested
        v: nnx.Param[Float[Array, " d"]] | None

        def __init__(self):
            self.w = None
            self.v = None

    m = OptionalParam()
    assert m.w is None
    assert m.v is None


def test_other_hints_are_checked_with_beartype():
    m = Affine()
    m.label = "other"
    with pytest.raises(
        nnx.ShapeCheckError,
        match=re.escape("Affine.label: expected str, got int") + r"(.|\n)*not an instance of str",
    ):
        m.label = 3
    assert m.label == "other"

    p = Parent()
    p.child = SubLeaf()
    with pytest.raises(nnx.ShapeCheckError, match=r"Parent\.child: expected Leaf, got Affine"):
        p.child = Affine()
    assert type(p.child) is SubLeaf
    with pytest.raises(nnx.ShapeCheckError, match=r"Parent\.n: expected int, got str"):
        p.n = "one"
    assert p.n == 1


def test_unannotated_any_and_classvar_attributes_are_not_checked():
    class Loose(nnx.Module):
        anything: Any
        counter: ClassVar[int] = 0
        w: Float[Array, " d"]

    m = Loose()
    m.anything = jnp.ones((7, 7))
    m.unannotated = jnp.ones((9,))
    m.w = jnp.ones((3,))
    m.anything = "text"
    m.unannotated = jnp.ones((2, 2))
    assert m.anything == "text"


# ----------------------------------------------------------------------------------
# Named dimensions: per instance, rebinding, failures leave everything in place


def test_dimensions_agree_within_an_instance_not_across_instances():
    small, large = Affine(2, 3), Affine(5, 7)
    small.b = jnp.ones((3,))
    large.b = jnp.ones((7,))
    with pytest.raises(nnx.ShapeCheckError, match=r"dout=3 \(from \.w\)"):
        small.b = jnp.ones((7,))
    with pytest.raises(nnx.ShapeCheckError, match=r"dout=7 \(from \.w\)"):
        large.b = jnp.ones((3,))


def test_reassigning_the_only_binder_rebinds_the_dimension():
    class Rebind(nnx.Module):
        w: nnx.Param[Float[Array, "din dout"]]
        b: nnx.Param[Float[Array, " dout"]]
        s: Float[Array, " din"] | None

        def __init__(self):
            self.w = nnx.Param(jnp.ones((3, 4)))
            self.b = nnx.Param(jnp.zeros((4,)))
            self.s = None

    m = Rebind()
    m.w = jnp.ones((5, 4))  # din is bound by w alone
    assert m.w.shape == (5, 4)
    m.s = jnp.ones((5,))  # din is 5 now
    with pytest.raises(nnx.ShapeCheckError, match=r"Rebind\.s: (.|\n)*din=5 \(from \.w\)"):
        m.s = jnp.ones((3,))
    with pytest.raises(nnx.ShapeCheckError, match=r"dout=4 \(from \.b\)"):
        m.w = jnp.ones((5, 6))  # dout is also bound by b
    assert m.w.shape == (5, 4)
    m.s = None
    m.w = jnp.ones((2, 4))  # the only binder of din again
    m.s = jnp.ones((2,))


def test_failed_assignment_leaves_value_box_and_bindings():
    m = Pair(jnp.ones((3, 4)), jnp.zeros((4,)))
    box = vars(m)["b"]
    with pytest.raises(nnx.ShapeCheckError):
        m.b = jnp.ones((5,))
    assert vars(m)["b"] is box
    _same(m.b, jnp.zeros((4,)))
    # the bindings did not change either: dout is still 4
    with pytest.raises(nnx.ShapeCheckError, match=r"dout=4 \(from \.b\)"):
        m.w = jnp.ones((3, 5))
    m.w = jnp.full((3, 4), 2.0)
    _same(m.w, jnp.full((3, 4), 2.0))


def test_failed_new_variable_assignment_keeps_old_variable():
    m = Affine()
    box = vars(m)["w"]
    with pytest.raises(nnx.ShapeCheckError):
        m.w = nnx.Param(jnp.ones((3, 5)), tag="new")
    assert vars(m)["w"] is box
    _same(m.w, jnp.ones((3, 4)))


def test_augmented_assignment():
    m = Affine()
    box = vars(m)["b"]
    m.b += 1.0
    m.b += jnp.ones((4,))
    _same(m.b, jnp.full((4,), 2.0))
    assert vars(m)["b"] is box
    with pytest.raises(
        nnx.ShapeCheckError, match=re.escape("Affine.b: expected Param[Float[Array, 'dout']]")
    ):
        m.b += jnp.ones((3, 4))  # broadcasts to (3, 4)
    _same(m.b, jnp.full((4,), 2.0))


def test_augmented_assignment_keeps_dtype_check():
    class Counter(nnx.Module):
        count: Int[Array, ""]

        def __init__(self):
            self.count = jnp.array(0)

    m = Counter()
    m.count += 1
    m.count += 1
    assert m.count == 2
    with pytest.raises(nnx.ShapeCheckError, match=r"Counter\.count: .*got float32\[\]"):
        m.count += 0.5
    assert m.count == 2


def test_value_write_on_owned_variable_is_checked():
    m = Affine(3, 4)
    box = vars(m)["w"]
    box.value = jnp.full((3, 4), 3.0)
    _same(m.w, jnp.full((3, 4), 3.0))
    with pytest.raises(
        nnx.ShapeCheckError,
        match=re.escape("Affine.w: expected Param[Float[Array, 'din dout']], got float32[2,4]")
        + r"(.|\n)*din=3 \(from \.scale\)",
    ):
        box.value = jnp.ones((2, 4))
    _same(box.value, jnp.full((3, 4), 3.0))
    with pytest.raises(nnx.ShapeCheckError, match="dtype"):
        vars(m)["b"].value = jnp.zeros((4,), jnp.int32)


def test_value_write_on_free_variable_is_not_checked():
    p = nnx.Param(jnp.ones((3, 4)))
    m = Affine(3, 4)
    m.w = p  # the module holds a copy: p stays free-standing
    p.value = jnp.ones((9,))
    assert m.w.shape == (3, 4)
    old = vars(m)["w"]
    m.w = nnx.Param(jnp.ones((3, 4)), tag="t")  # other metadata: a new box
    assert vars(m)["w"] is not old
    old.value = jnp.ones((7,))  # no longer owned
    assert m.w.shape == (3, 4)


def test_variadic_dimensions_agree():
    class Batched(nnx.Module):
        x: Float[Array, "*batch d"]
        y: Float[Array, "*batch"]

    m = Batched()
    m.x = jnp.ones((2, 5, 4))
    m.y = jnp.ones((2, 5))
    with pytest.raises(nnx.ShapeCheckError, match=r"Batched\.y: (.|\n)*\*batch"):
        m.y = jnp.ones((2, 6))


def test_variadic_conflict_names_the_binding_attribute():
    class BatchedNames(nnx.Module):
        x: Float[Array, "*batch d"]
        y: Float[Array, "*batch"]

    m = BatchedNames()
    m.x = jnp.ones((2, 5, 4))
    with pytest.raises(nnx.ShapeCheckError, match=r"from \.x"):
        m.y = jnp.ones((2, 6))


# ----------------------------------------------------------------------------------
# `int` attributes bind the dimension of their name; layers


def test_int_attribute_binds_its_dimension():
    m = FutureLinear(2, 3)
    with pytest.raises(
        nnx.ShapeCheckError,
        match=re.escape(
            "FutureLinear.w: expected Param[Float[Array, 'din dout']], got float32[4,3]"
        )
        + r"(.|\n)*din=2 \(from \.din\)",
    ):
        m.w = jnp.ones((4, 3))
    with pytest.raises(
        nnx.ShapeCheckError,
        match=r"FutureLinear\.din: expected int(.|\n)*reason: din=4, but the size of dimension "
        r"din is 2",
    ):
        m.din = 4
    assert m.din == 2
    with pytest.raises(nnx.ShapeCheckError, match=r"FutureLinear\.din: expected int, got str"):
        m.din = "2"


def test_linear_kernel_and_in_features():
    lin = nnx.Linear(3, 4, ctx=nnx.context(0))
    kernel = lin.kernel
    with pytest.raises(
        nnx.ShapeCheckError,
        match=re.escape(
            "Linear.kernel: expected Param[Shaped[Array, 'in_features out_features']], "
            "got float32[5,4]"
        )
        + r"(.|\n)*in_features=3 \(from \.in_features\)",
    ):
        lin.kernel = jnp.ones((5, 4))
    with pytest.raises(nnx.ShapeCheckError, match=r"out_features=4"):
        lin.kernel = jnp.ones((3, 5))
    _same(lin.kernel, kernel)
    with pytest.raises(nnx.ShapeCheckError, match=r"Linear\.in_features: (.|\n)*in_features=5"):
        lin.in_features = 5
    assert lin.in_features == 3
    lin.kernel = jnp.zeros((3, 4))
    lin.in_features = 3
    assert lin(jnp.ones((2, 3))).shape == (2, 4)


def test_linear_without_bias():
    lin = nnx.Linear(3, 4, use_bias=False, ctx=nnx.context(0))
    assert lin.bias is None
    with pytest.raises(nnx.ShapeCheckError, match=r"Linear\.bias: (.|\n)*out_features=4"):
        lin.bias = jnp.ones((5,))
    lin.bias = jnp.ones((4,))
    assert lin(jnp.ones((2, 3))).shape == (2, 4)


def test_batchnorm_statistics():
    bn = nnx.BatchNorm(4, ctx=nnx.context(0))
    with pytest.raises(
        nnx.ShapeCheckError,
        match=re.escape("BatchNorm.mean: expected BatchStat[Float[Array, 'num_features']]")
        + r"(.|\n)*num_features=4",
    ):
        bn.mean = jnp.zeros((5,))
    with pytest.raises(ValueError, match=r"Param to BatchNorm\.mean, which holds a BatchStat"):
        bn.mean = nnx.Param(jnp.zeros((4,)))
    with pytest.raises(nnx.ShapeCheckError, match=r"BatchNorm\.var: .*got int32\[4\]"):
        bn.var = jnp.ones((4,), jnp.int32)
    _same(bn.mean, jnp.zeros((4,)))
    # training updates the statistics through checked assignments
    x = jnp.arange(8.0).reshape(2, 4)
    bn(x, use_running_average=False)
    assert bn.mean.shape == (4,)
    assert not np.allclose(np.asarray(bn.mean), 0.0)
    jitted = nnx.jit(lambda bn, x: bn(x, use_running_average=False))
    jitted(bn, x)
    assert bn.mean.shape == (4,)


def test_batchnorm_without_scale_accepts_none():
    bn = nnx.BatchNorm(4, use_scale=False, use_bias=False, ctx=nnx.context(0))
    assert bn.scale is None
    assert bn.bias is None
    with pytest.raises(nnx.ShapeCheckError, match=r"BatchNorm\.scale: "):
        bn.scale = jnp.ones((3,))


# ----------------------------------------------------------------------------------
# nnx.dataclass fields


@nnx.dataclass
class DataAffine(nnx.Module):
    w: nnx.Param[Float[Array, "din dout"]] = nnx.param_field()
    b: nnx.Param[Float[Array, " dout"]] = nnx.param_field()
    din: int = nnx.static_field(default=2)


def test_dataclass_fields_are_checked_in_init():
    m = DataAffine(jnp.ones((2, 3)), jnp.zeros((3,)))
    assert type(vars(m)["w"]) is nnx.Param
    with pytest.raises(
        nnx.ShapeCheckError,
        match=re.escape("DataAffine.b: expected Param[Float[Array, 'dout']], got Param[float32[4]]")
        + r"(.|\n)*dout=3 \(from \.w\)",
    ):
        DataAffine(jnp.ones((2, 3)), jnp.zeros((4,)))
    # the field's kind is checked first (as 0.0.8's containers did): a ValueError
    with pytest.raises(
        ValueError, match=r"DataAffine\.b \(a dataclass field\): (.|\n)*Param from a BatchStat"
    ):
        DataAffine(jnp.ones((2, 3)), nnx.BatchStat(jnp.zeros((3,))))
    with pytest.raises(nnx.ShapeCheckError, match=r"DataAffine\.din: (.|\n)*din=5"):
        DataAffine(jnp.ones((2, 3)), jnp.zeros((3,)), din=5)


def test_dataclass_fields_are_checked_later():
    m = DataAffine(jnp.ones((2, 3)), jnp.zeros((3,)))
    m.b = jnp.ones((3,))
    with pytest.raises(nnx.ShapeCheckError, match=r"DataAffine\.w: (.|\n)*din=2 \(from \.din\)"):
        m.w = jnp.ones((4, 3))
    with pytest.raises(nnx.ShapeCheckError, match=r"DataAffine\.b: "):
        vars(m)["b"].value = jnp.ones((5,))
    _same(m.b, jnp.ones((3,)))


# ----------------------------------------------------------------------------------
# Switching checks off


def test_shape_checks_false_turns_checks_off_in_a_block():
    m = Affine(3, 4)
    with nnx.shape_checks(False):
        m.b = jnp.ones((9,))
        vars(m)["w"].value = jnp.ones((2, 2))
        m.label = 5
    assert m.b.shape == (9,)
    with pytest.raises(nnx.ShapeCheckError):
        m.label = 6


def test_shape_checks_nest_and_reset_on_exception():
    m = Affine(3, 4)
    with nnx.shape_checks(False):
        with nnx.shape_checks(True), pytest.raises(nnx.ShapeCheckError):
            m.b = jnp.ones((9,))
        m.b = jnp.ones((9,))
    with pytest.raises(RuntimeError), nnx.shape_checks(False):
        raise RuntimeError("boom")
    with pytest.raises(nnx.ShapeCheckError):
        m.label = 1


def test_bindings_are_rebuilt_after_checks_resume():
    m = Triple(3, 4)
    with nnx.shape_checks(False):
        m.w = jnp.ones((5, 4))
        m.s = jnp.ones((5,))
    m.s = jnp.full((5,), 2.0)  # din is 5 now, from the current values
    with pytest.raises(nnx.ShapeCheckError, match=r"din=5 \(from \.w\)"):
        m.s = jnp.ones((3,))


_ENV_SCRIPT = textwrap.dedent(
    """
    import jax.numpy as jnp
    from jaxtyping import Array, Float

    import nnx


    class M(nnx.Module):
        w: Float[Array, " d"]
        b: Float[Array, " d"]


    m = M()
    m.w = jnp.zeros((3,))
    try:
        m.b = jnp.zeros((4,))
    except nnx.ShapeCheckError:
        print("checked")
    else:
        print("unchecked")
    with nnx.shape_checks(True):
        try:
            m.b = jnp.zeros((5,))
        except nnx.ShapeCheckError:
            print("checked")
        else:
            print("unchecked")
    """
)


def _run_env(value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _ENV_SCRIPT],
        env={**os.environ, "NNX_SHAPE_CHECKS": value},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("value", ["0", "false"])
def test_env_var_turns_checks_off(value):
    result = _run_env(value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["unchecked", "checked"]


def test_env_var_on():
    result = _run_env("1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["checked", "checked"]


def test_env_var_invalid_value_raises():
    result = _run_env("maybe")
    assert result.returncode != 0
    assert "ValueError" in result.stderr
    assert "NNX_SHAPE_CHECKS must be 0 or 1" in result.stderr
    assert "'maybe'" in result.stderr


# ----------------------------------------------------------------------------------
# Under transforms


def test_jit_wrong_shape_raises_at_trace_time():
    @jax.jit
    def build(w, b):
        return Probed(w, b).w.sum()

    with pytest.raises(nnx.ShapeCheckError, match=r"Probed\.b: (.|\n)*dout=4 \(from \.w\)"):
        build(jnp.ones((3, 4)), jnp.ones((5,)))


def test_jit_checks_once_per_trace_not_per_call():
    traces = []

    @jax.jit
    def build(w, b):
        traces.append(None)
        m = Probed(w, b)
        return m.w.sum() + m.b.sum()

    before = _CountingMeta.checks
    build(jnp.ones((3, 4)), jnp.ones((4,)))
    after_trace = _CountingMeta.checks
    assert after_trace > before  # the checks ran, at trace time
    assert float(build(jnp.ones((3, 4)), jnp.full((4,), 2.0, jnp.float32))) == 20.0
    build(jnp.zeros((3, 4)), jnp.zeros((4,)))
    assert len(traces) == 1
    assert _CountingMeta.checks == after_trace  # later calls did not run them again


def test_nnx_jit_traces_once_and_rejects_wrong_shapes():
    m = Affine(3, 4)
    traces = []

    @nnx.jit
    def step(m, x):
        traces.append(None)
        m.w = m.w + x
        m.b += 1.0

    step(m, jnp.ones((3, 4)))
    step(m, jnp.ones((3, 4)))
    step(m, jnp.ones((3, 4)))
    assert len(traces) == 1
    _same(m.w, jnp.full((3, 4), 4.0))
    _same(m.b, jnp.full((4,), 3.0))

    @nnx.jit
    def bad(m):
        m.b = jnp.zeros((5,))

    with pytest.raises(nnx.ShapeCheckError, match=r"Affine\.b: (.|\n)*dout=4 \(from \.w\)"):
        bad(m)
    _same(m.b, jnp.full((4,), 3.0))

    @nnx.jit
    def bad_value(m):
        vars(m)["w"].value = jnp.zeros((3, 5))

    with pytest.raises(nnx.ShapeCheckError, match=r"Affine\.w: "):
        bad_value(m)
    _same(m.w, jnp.full((3, 4), 4.0))


def test_vmap_sees_per_example_shapes():
    def build(w, b):
        m = Pair(w, b)
        m.w = m.w * 2
        return m.partition()

    state, _ = jax.vmap(build)(jnp.ones((5, 3, 4)), jnp.ones((5, 4)))
    assert state[("w",)].value.shape == (5, 3, 4)
    with pytest.raises(nnx.ShapeCheckError, match=r"Pair\.b: .*got Param\[float32\[6\]\]"):
        jax.vmap(build)(jnp.ones((5, 3, 4)), jnp.ones((5, 6)))


def test_vmap_constructs_modules_with_per_example_shapes():
    keys = jax.random.split(jax.random.key(0), 5)
    stacked = jax.vmap(lambda k: Block(ctx=nnx.context(params=k)).partition())(keys).merge()
    assert stacked.w.shape == (5, 3, 3)
    assert stacked.b.shape == (5, 3)
    assert stacked.d == 3


def test_eval_shape():
    state, _ = jax.eval_shape(lambda: Affine(3, 4).partition())
    assert state[("w",)].value.shape == (3, 4)
    with pytest.raises(nnx.ShapeCheckError, match=r"Pair\.b: "):
        jax.eval_shape(lambda w, b: Pair(w, b).partition(), jnp.ones((3, 4)), jnp.ones((5,)))
    abstract = nnx.eval_shape(lambda: Affine(3, 4))
    assert isinstance(vars(abstract)["w"].value, jax.ShapeDtypeStruct)
    # bindings come from the ShapeDtypeStructs
    with pytest.raises(nnx.ShapeCheckError, match=r"dout=4 \(from \.b\)"):
        abstract.w = jnp.ones((3, 5))
    abstract.w = jnp.ones((3, 4))


def test_shape_dtype_struct_values():
    m = Affine(3, 4)
    m.w = jax.ShapeDtypeStruct((3, 4), jnp.float32)
    m.b = jax.ShapeDtypeStruct((4,), jnp.float32)
    with pytest.raises(nnx.ShapeCheckError, match=r"Affine\.w: .*got float32\[3,5\]"):
        m.w = jax.ShapeDtypeStruct((3, 5), jnp.float32)
    with pytest.raises(nnx.ShapeCheckError, match=r"Affine\.w: (.|\n)*dtype"):
        m.w = jax.ShapeDtypeStruct((3, 4), jnp.int32)
    assert m.w == jax.ShapeDtypeStruct((3, 4), jnp.float32)


def test_scan_module_over_stacked_layers():
    model = nnx.Scan(Block, variable_axes={nnx.Param: 0}, split_rngs="params", length=4)(
        3, ctx=nnx.context(0)
    )
    layers = model.scan_module
    assert layers.w.shape == (4, 3, 3)
    assert layers.b.shape == (4, 3)
    carry, ys = model(jnp.ones((2, 3)), None)
    assert carry.shape == (2, 3)
    assert ys.shape == (4,)
    _same(layers.b, jnp.ones((4, 3)))  # each layer's `self.b += 1.0`, written back
    model(jnp.ones((2, 3)), None)
    _same(layers.b, jnp.full((4, 3), 2.0))
    assert layers.w.shape == (4, 3, 3)
    layers.d = 3  # stacked values bind nothing: no false error


def test_scan_layers_are_still_checked_per_layer():
    model = nnx.Scan(Block, variable_axes={nnx.Param: 0}, split_rngs="params", length=4)(
        3, ctx=nnx.context(0)
    )

    @nnx.scan(variable_axes={nnx.Param: 0}, in_axes=None, length=4)
    def grow(layer, carry, x):
        layer.b = jnp.zeros((layer.d + 1,))
        return carry, None

    with pytest.raises(nnx.ShapeCheckError, match=r"Block\.b: (.|\n)*d=3"):
        grow(model.scan_module, jnp.ones((2, 3)), None)


def test_nnx_scan_over_vmapped_layers():
    keys = jax.random.split(jax.random.key(0), 5)
    stacked = jax.vmap(lambda k: Block(ctx=nnx.context(params=k)).partition())(keys).merge()

    @nnx.scan(variable_axes={nnx.Param: 0}, in_axes=None, length=5)
    def forward(layer, carry, x):
        return layer(carry, x)

    carry, ys = forward(stacked, jnp.ones((2, 3)), None)
    assert carry.shape == (2, 3)
    assert ys.shape == (5,)
    assert stacked.w.shape == (5, 3, 3)
    _same(stacked.b, jnp.ones((5, 3)))
    forward(stacked, jnp.ones((2, 3)), None)
    _same(stacked.b, jnp.full((5, 3), 2.0))
    stacked.d = 3


def test_update_state_with_stacked_values_raises_no_false_error():
    keys = jax.random.split(jax.random.key(0), 5)
    stacked = jax.vmap(lambda k: Block(ctx=nnx.context(params=k)).partition())(keys).merge()
    single = Block(ctx=nnx.context(1))
    single.update_state(stacked.get_state())
    assert single.w.shape == (5, 3, 3)
    single.d = 3
    single.b = jnp.zeros((3,))  # d=3 from .d; the stacked w binds nothing
    with pytest.raises(nnx.ShapeCheckError, match=r"Block\.b: (.|\n)*d=3 \(from \.d\)"):
        single.b = jnp.zeros((4,))


def test_update_state_rebuilds_bindings_from_current_values():
    m = Triple(3, 4)
    m.update_state(Triple(5, 6).get_state())
    assert m.w.shape == (5, 6)
    m.s = jnp.ones((5,))
    m.b = jnp.ones((6,))
    with pytest.raises(nnx.ShapeCheckError, match=r"Triple\.s: (.|\n)*din=5 \(from \.w\)"):
        m.s = jnp.ones((3,))
    with pytest.raises(nnx.ShapeCheckError, match=r"Triple\.b: (.|\n)*dout=6 \(from \.w\)"):
        m.b = jnp.ones((4,))


# ----------------------------------------------------------------------------------
# Resolving the hints


def test_future_annotations_module():
    m = FutureLinear(2, 3)
    with pytest.raises(
        nnx.ShapeCheckError,
        match=re.escape("FutureLinear.b: expected Float[Array, 'dout'] | None, got float32[4]"),
    ):
        m.b = jnp.ones((4,))
    m.b = None
    m.child = Helper()
    m.child = None
    with pytest.raises(
        nnx.ShapeCheckError,
        match=re.escape("FutureLinear.child: expected Helper | None, got int"),
    ):
        m.child = 1


class FutureSub(FutureLinear):
    gain: Float[Array, " din"]

    def __init__(self):
        super().__init__(2, 3)
        self.gain = jnp.ones((2,))


def test_subclass_inherits_annotations():
    m = FutureSub()
    with pytest.raises(nnx.ShapeCheckError, match=r"FutureSub\.gain: (.|\n)*din=2"):
        m.gain = jnp.ones((3,))
    with pytest.raises(nnx.ShapeCheckError, match=r"FutureSub\.w: (.|\n)*din=2"):
        m.w = jnp.ones((4, 3))

    class AffineSub(Affine):
        bias2: nnx.Param[Float[Array, " dout"]]

        def __init__(self):
            super().__init__(3, 4)
            self.bias2 = nnx.Param(jnp.zeros((4,)))

    s = AffineSub()
    with pytest.raises(nnx.ShapeCheckError, match=r"AffineSub\.bias2: (.|\n)*dout=4"):
        s.bias2 = jnp.zeros((5,))
    with pytest.raises(nnx.ShapeCheckError, match=r"AffineSub\.scale: (.|\n)*din=3"):
        s.scale = jnp.zeros((5,))
    with pytest.raises(
        nnx.ShapeCheckError,
        match=re.escape("AffineSub.extra: expected Float[Array, 'dout'] | None"),
    ):
        s.extra = jnp.zeros((5,))
    # the parent class is unaffected by the subclass's annotation
    Affine().bias2 = jnp.zeros((9,))


def test_forward_reference_resolved_lazily():
    m = Forward()
    m.other = DefinedLater()
    with pytest.raises(nnx.ShapeCheckError, match=r"Forward\.other: expected DefinedLater, got"):
        m.other = Leaf()
    with pytest.raises(nnx.ShapeCheckError, match=r"Forward\.w: "):
        m.w = jnp.ones((3, 3))


def test_unresolvable_hint_warns_once_and_is_unchecked():
    class LocalThing(nnx.Module):
        pass

    class Unresolvable(nnx.Module):
        thing: "LocalThing"  # a function-local class: not found when resolving
        w: nnx.Param[Float[Array, " d"]]

        def __init__(self):
            self.w = nnx.Param(jnp.ones((3,)))
            self.thing = LocalThing()

    with pytest.warns(UserWarning, match=r"Unresolvable\.thing") as record:
        first = Unresolvable()
        second = Unresolvable()
        first.thing = 5  # unchecked
        second.thing = "text"
    user_warnings = [w for w in record if issubclass(w.category, UserWarning)]
    assert len(user_warnings) == 1
    message = str(user_warnings[0].message)
    assert "Unresolvable.thing" in message
    assert "LocalThing" in message
    assert first.thing == 5
    # the other attributes are still checked
    with pytest.raises(nnx.ShapeCheckError, match=r"Unresolvable\.w: "):
        first.w = jnp.ones((3, 3))


def test_shaped_annotation_accepts_any_dtype():
    class AnyDtype(nnx.Module):
        x: Shaped[Array, " d"]
        y: Shaped[Array, " d"]

    m = AnyDtype()
    m.x = jnp.ones((3,), jnp.int8)
    m.y = jnp.ones((3,), jnp.bool_)
    with pytest.raises(nnx.ShapeCheckError, match=r"AnyDtype\.y: (.|\n)*d=3 \(from \.x\)"):
        m.y = jnp.ones((4,), jnp.float16)


# -- the cache of passed assignment checks (issue 16) ------------------------------------


class TwoBinders(nnx.Module):
    w: nnx.Param[Float[Array, "din dout"]]
    x: Float[Array, " dout"]

    def __init__(self) -> None:
        self.w = nnx.Param(jnp.ones((2, 3)))
        self.x = jnp.ones((3,))


def test_a_cached_check_still_sees_the_other_attributes_bindings() -> None:
    m = TwoBinders()
    m.w = jnp.zeros((2, 3))  # passes, and is remembered with dout=3 bound by .x
    m.w = jnp.zeros((2, 3))
    del m.x
    m.w = jnp.zeros((2, 4))  # nothing else binds dout now
    m.x = jnp.ones((4,))
    with pytest.raises(nnx.ShapeCheckError, match=r"dout=4 \(from \.x\)"):
        m.w = jnp.zeros((2, 3))  # passed before, under other bindings
    assert m.w.shape == (2, 4)


def test_a_cached_check_still_sees_dtype_and_array_type() -> None:
    m = TwoBinders()
    m.w = jnp.zeros((2, 3))
    with pytest.raises(nnx.ShapeCheckError, match="int32"):
        m.w = jnp.zeros((2, 3), dtype=jnp.int32)
    with pytest.raises(nnx.ShapeCheckError):
        m.w = np.zeros((2, 3), dtype=np.float32)  # not a jax Array
    assert m.w.dtype == jnp.float32 and isinstance(m.w, jax.Array)


def test_a_cached_check_commits_the_new_bindings() -> None:
    m = TwoBinders()
    del m.x
    for _ in range(2):  # the second time from the cache
        m.w = jnp.zeros((2, 5))
    with pytest.raises(nnx.ShapeCheckError, match=r"dout=5 \(from \.w\)"):
        m.x = jnp.ones((3,))


def test_cached_checks_under_jit() -> None:
    m = TwoBinders()

    @nnx.jit
    def step(m: TwoBinders) -> None:
        m.w = m.w * 2  # a tracer: checked at trace time like an array

    step(m)
    step(m)
    assert jnp.array_equal(m.w, jnp.full((2, 3), 4.0))

    @nnx.jit
    def bad(m: TwoBinders) -> None:
        m.w = jnp.zeros((2, 7))

    with pytest.raises(nnx.ShapeCheckError, match=r"TwoBinders\.w"):
        bad(m)

"""How `moduledef.merge` builds modules (`_module/_builders.py`): every shape of
module (leaves between submodules, own slots, many leaves, mutable statics), the
Variables' owners set lazily, and the caches of merged modules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from jaxtyping import Array, Float

import nnx


class Inner(nnx.Module):
    def __init__(self, v: float) -> None:
        self.w = nnx.Param(jnp.full((2,), v))


class Interleaved(nnx.Module):
    """Leaves sort before and after the submodules: its leaves are not consecutive
    in path order."""

    def __init__(self) -> None:
        self.a = nnx.Param(jnp.array(1.0))
        self.b = Inner(2.0)
        self.c = nnx.BatchStat(jnp.array(3.0))
        self.d = Inner(4.0)
        self.e = jnp.array(5.0)  # a raw array leaf


def test_merge_with_leaves_between_submodules() -> None:
    model = Interleaved()
    state, moduledef = model.partition()
    copy = moduledef.merge(state)
    assert float(copy.a) == 1.0 and float(copy.c) == 3.0 and float(copy.e) == 5.0
    assert jnp.array_equal(copy.b.w, jnp.full((2,), 2.0))
    assert jnp.array_equal(copy.d.w, jnp.full((2,), 4.0))
    assert type(vars(copy)["a"]) is nnx.Param and type(vars(copy)["c"]) is nnx.BatchStat
    # the same through a partition by kind
    (params, rest), moduledef = model.partition(nnx.Param, ...)
    again = moduledef.merge(params, rest)
    assert jnp.array_equal(again.d.w, model.d.w) and float(again.c) == 3.0


class Slotted(nnx.Module):
    __slots__ = ("extra",)

    def __init__(self) -> None:
        self.w = nnx.Param(jnp.ones((2,)))


def test_merge_of_a_module_with_slots_of_its_own() -> None:
    state, moduledef = Slotted().partition()
    copy = moduledef.merge(state)
    assert type(copy) is Slotted and jnp.array_equal(copy.w, jnp.ones((2,)))
    copy.w = jnp.zeros((2,))
    assert jnp.array_equal(copy.w, jnp.zeros((2,)))
    assert jnp.array_equal(state[("w",)].value, jnp.ones((2,)))


class Wide(nnx.Module):
    def __init__(self, n: int) -> None:
        for i in range(n):
            setattr(self, f"p{i:02d}", nnx.Param(jnp.array(float(i))))
        self.sizes = [1, 2]  # a mutable static


def test_merge_of_a_module_with_many_leaves_and_a_mutable_static() -> None:
    model = Wide(40)  # over the generated builders' limit
    state, moduledef = model.partition()
    copy = moduledef.merge(state)
    assert [float(getattr(copy, f"p{i:02d}")) for i in range(40)] == [float(i) for i in range(40)]
    assert copy.sizes == [1, 2]
    copy.sizes.append(3)  # the list is the merged module's own
    assert moduledef.merge(state).sizes == [1, 2]


def test_merge_copies_variables_and_leaves_the_state_unchanged() -> None:
    model = Interleaved()
    state, moduledef = model.partition()
    copy = moduledef.merge(state)
    assert vars(copy)["a"] is not state[("a",)]
    copy.a = jnp.array(9.0)
    assert float(state[("a",)].value) == 1.0
    other = moduledef.merge(state)
    assert float(other.a) == 1.0 and other.b is not copy.b


class Checked(nnx.Module):
    w: nnx.Param[Float[Array, " n"]]
    v: nnx.Param[Float[Array, " n"]]

    def __init__(self, n: int) -> None:
        self.w = nnx.Param(jnp.zeros((n,)))
        self.v = nnx.Param(jnp.zeros((n,)))


def test_variables_of_a_merged_module_write_through_it() -> None:
    # merge leaves the owner of its Variables to be set when vars() hands them out
    state, moduledef = Checked(3).partition()
    copy = moduledef.merge(state)
    box = vars(copy)["w"]
    with pytest.raises(nnx.ShapeCheckError, match=r"Checked\.w"):
        box.value = jnp.zeros((4,))
    box.value = jnp.ones((3,))
    assert jnp.array_equal(copy.w, jnp.ones((3,)))
    # the same through module.__dict__, on a submodule of a merged graph
    state, moduledef = nnx.Sequence([Checked(2), Checked(2)]).partition()
    seq = moduledef.merge(state)
    with pytest.raises(nnx.ShapeCheckError, match=r"Checked\.w"):
        seq[1].__dict__["w"].value = jnp.zeros((5,))


def test_a_merged_variable_is_checked_against_the_trace() -> None:
    state, moduledef = Checked(2).partition()
    copy = moduledef.merge(state)
    box = vars(copy)["w"]

    @jax.jit
    def f(x: jax.Array) -> jax.Array:
        box.value = x
        return x

    with pytest.raises(nnx.TraceContextError):
        f(jnp.ones((2,)))


def test_a_removed_variable_no_longer_writes_through_its_module() -> None:
    state, moduledef = Checked(2).partition()
    model = moduledef.merge(state)
    old = vars(model)["w"]
    del model.w
    old.value = jnp.zeros((7,))  # free-standing now: no check, the module is unchanged
    assert "w" not in vars(model) and old.value.shape == (7,)


def test_partition_caches_of_merged_modules_see_structural_changes() -> None:
    state, moduledef = nnx.Sequence([Inner(1.0), Inner(2.0)]).partition()
    seq = moduledef.merge(state)
    assert len(seq.partition()[0]) == 2  # builds and caches the structure
    seq[0].extra = nnx.Param(jnp.zeros(()))  # one submodule changes structure
    state2, moduledef2 = seq.partition()
    assert (0, "extra") in state2 and len(state2) == 3
    assert moduledef2 != moduledef
    seq[1].w = jnp.ones((2,))  # a value write keeps the structure
    assert seq.partition()[1] == moduledef2


def test_merge_rebuilds_sharing_and_cycles() -> None:
    shared = Inner(1.0)
    pair = nnx.Dict(x=shared, y=shared)
    pair.x.back = pair  # a cycle back to the root
    state, moduledef = pair.partition()
    copy = moduledef.merge(state)
    assert copy.x is copy.y and copy.x.back is copy
    assert len(state) == 1

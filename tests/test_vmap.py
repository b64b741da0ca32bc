import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Member(nnx.Module):
    def __init__(self, *, ctx: nnx.Context):
        self.lin = nnx.Linear(3, 2, ctx=ctx)
        self.calls = nnx.BatchStat(jnp.array(0))

    def __call__(self, x, *, ctx=None):
        self.calls += 1
        return nnx.Dropout(0.5)(self.lin(x), deterministic=ctx is None, ctx=ctx)


AXES = {nnx.Param: 0, nnx.BatchStat: 0}


def _ensemble(n=4):
    return nnx.Scan(Member, variable_axes=AXES, split_rngs="params", length=n)(
        ctx=nnx.context(0)
    ).scan_module


def test_vmap_maps_stacked_state_and_writes_updates_back():
    ens = _ensemble()
    x = jnp.ones((5, 3))
    y = nnx.vmap(lambda m, x: m(x), in_axes=None, variable_axes=AXES)(ens, x)
    assert y.shape == (4, 5, 2)
    np.testing.assert_array_equal(ens.calls, [1, 1, 1, 1])
    expected = jnp.einsum("bi,nio->nbo", x, ens.lin.kernel) + ens.lin.bias[:, None, :]
    np.testing.assert_allclose(y, expected, rtol=1e-5)


def test_vmap_broadcasts_a_module_over_mapped_inputs():
    single = Member(ctx=nnx.context(1))
    y = nnx.vmap(lambda m, x: m.lin(x), in_axes=0)(single, jnp.ones((7, 3)))
    assert y.shape == (7, 2)
    np.testing.assert_allclose(y[0], single.lin(jnp.ones(3)), rtol=1e-6)


def test_vmap_splits_named_rng_streams_and_broadcasts_others():
    ens = _ensemble()
    x = jnp.ones((5, 3))

    def call(m, x, ctx):
        return m(x, ctx=ctx)

    split = nnx.vmap(call, in_axes=None, variable_axes=AXES, split_rngs="dropout")
    same = nnx.vmap(call, in_axes=None, variable_axes=AXES)
    a = split(ens, x, ctx=nnx.context(dropout=0))
    b = same(ens, x, ctx=nnx.context(dropout=0))
    # split: each member its own mask; broadcast: one mask for all members
    assert bool((jnp.where(a != 0, 1, 0)[0] != jnp.where(a != 0, 1, 0)[1]).any())
    np.testing.assert_array_equal(jnp.where(b != 0, 1, 0)[0], jnp.where(b != 0, 1, 0)[1])


def test_vmap_rejects_inconsistent_sizes_and_non_modules():
    ens = _ensemble(4)
    with pytest.raises(ValueError, match="different sizes"):
        nnx.vmap(lambda m, x: m(x), variable_axes=AXES)(ens, jnp.ones((3, 3)))
    with pytest.raises(TypeError, match="expects a Module"):
        nnx.vmap(lambda m, x: x)(jnp.ones(3), jnp.ones(3))


def test_vmap_under_jit_traces_once():
    ens = _ensemble()
    traces = []

    @nnx.jit
    def run(ens, x):
        traces.append(1)
        return nnx.vmap(lambda m, x: m(x), in_axes=None, variable_axes=AXES)(ens, x)

    for _ in range(3):
        run(ens, jnp.ones((5, 3)))
    assert len(traces) == 1
    np.testing.assert_array_equal(ens.calls, [3, 3, 3, 3])
    assert jax.tree_util.tree_leaves(ens.lin.kernel)[0].shape == (4, 3, 2)


def test_vmap_writes_back_static_attribute_changes():
    # regression: vmap wrote back only the mapped state; a static attribute set
    # inside the function was dropped
    ens = _ensemble()

    def f(m, x):
        m.mode = "eval"
        return m.lin(x)

    nnx.vmap(f, in_axes=None, variable_axes=AXES)(ens, jnp.ones((5, 3)))
    assert ens.mode == "eval"

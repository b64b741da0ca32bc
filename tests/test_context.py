"""Context: RNG streams, flags, partition into a PureContext."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


def key_data(key):
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key))
    return np.asarray(key)


def keys_equal(a, b):
    return np.array_equal(key_data(a), key_data(b))


def test_unknown_stream():
    ctx = nnx.context(0)
    with pytest.raises(ValueError, match="Unknown Rng Stream: 'dropout'"):
        ctx.make_rng("dropout")


def test_same_seed_same_keys():
    a, b = nnx.context(0), nnx.context(0)
    for _ in range(3):
        assert keys_equal(a.make_rng("params"), b.make_rng("params"))


def test_different_seeds_differ():
    assert not keys_equal(nnx.context(0).make_rng("params"), nnx.context(1).make_rng("params"))


def test_successive_keys_differ():
    ctx = nnx.context(0)
    keys = [key_data(ctx.make_rng("params")) for _ in range(5)]
    assert len({k.tobytes() for k in keys}) == 5


def test_streams_seeded_alike_differ():
    ctx = nnx.context(params=0, dropout=0)
    assert not keys_equal(ctx.make_rng("params"), ctx.make_rng("dropout"))


def test_streams_advance_independently():
    a = nnx.context(params=0, dropout=1)
    b = nnx.context(params=0, dropout=1)
    a.make_rng("dropout")
    a.make_rng("dropout")
    assert keys_equal(a.make_rng("params"), b.make_rng("params"))


def test_seed_forms_are_equivalent():
    k1 = nnx.context(0).make_rng("params")
    k2 = nnx.context(params=0).make_rng("params")
    k3 = nnx.context(jax.random.PRNGKey(0)).make_rng("params")
    k4 = nnx.context(jax.random.key(0)).make_rng("params")
    assert keys_equal(k1, k2)
    assert keys_equal(k1, k3)
    assert keys_equal(k1, k4)


def test_keys_are_usable():
    ctx = nnx.context(0, dropout=1)
    x = jax.random.uniform(ctx.make_rng("params"), (3,))
    mask = jax.random.bernoulli(ctx.make_rng("dropout"), 0.5, (3,))
    assert x.shape == (3,)
    assert mask.dtype == jnp.bool_


def test_invalid_seed():
    with pytest.raises(TypeError, match="'params'"):
        nnx.context("zero")  # type: ignore[arg-type]


def test_flags_are_copied_not_aliased():
    flags = {"use_running_average": True}
    ctx = nnx.context(flags=flags)
    flags["use_running_average"] = False
    flags["other"] = 1
    assert ctx.get_flag("use_running_average") is True
    assert not ctx.has_flag("other")
    assert ctx.get_flag("other") is None
    assert ctx.get_flag("other", 5) == 5
    with pytest.raises(TypeError):
        ctx.flags["x"] = 1  # type: ignore[index]


def test_has_rng_and_names():
    ctx = nnx.context(0, dropout=1)
    assert ctx.has_rng("params")
    assert ctx.has_rng("dropout")
    assert not ctx.has_rng("noise")
    assert ctx.rng_names == ("dropout", "params")


def test_copy_shares_streams_and_copies_flags():
    ctx = nnx.context(0, flags={"a": 1})
    other = nnx.context(0)
    copy = ctx.copy()
    assert keys_equal(ctx.make_rng("params"), other.make_rng("params"))
    # the copy advanced together with ctx
    assert keys_equal(copy.make_rng("params"), other.make_rng("params"))
    assert copy.get_flag("a") == 1


def test_partition_is_a_pytree_and_merges():
    ctx = nnx.context(0, dropout=1, flags={"deterministic": False})
    pure = ctx.partition()
    assert isinstance(pure, nnx.PureContext)
    keys, contextdef = pure
    assert set(keys) == {"params", "dropout"}
    assert isinstance(contextdef, nnx.ContextDef)
    assert len(jax.tree_util.tree_leaves(pure)) == 2

    merged = pure.merge()
    assert isinstance(merged, nnx.Context)
    assert merged.get_flag("deterministic") is False
    # deterministic: merging twice gives the same keys
    assert keys_equal(merged.make_rng("dropout"), pure.merge().make_rng("dropout"))


def test_partition_child_keys_differ_from_parent():
    ctx = nnx.context(0)
    twin = nnx.context(0)
    child = ctx.partition().merge()
    k_child = child.make_rng("params")
    # the parent advanced, and its next key is not the child's
    twin.make_rng("params")
    k_parent = ctx.make_rng("params")
    assert keys_equal(k_parent, twin.make_rng("params"))
    assert not keys_equal(k_child, k_parent)
    # two partitions give different children
    assert not keys_equal(ctx.partition().merge().make_rng("params"), k_child)


def test_pure_context_crosses_jit_whole():
    traces = []

    @jax.jit
    def f(pure, x):
        traces.append(None)
        ctx = pure.merge()
        noise = jax.random.normal(ctx.make_rng("dropout"), x.shape)
        return x + noise, ctx.get_flag("scale")

    pure = nnx.context(0, dropout=1, flags={"scale": 2.0}).partition()
    y1, scale = f(pure, jnp.zeros(3))
    y2, _ = f(pure, jnp.zeros(3))
    assert scale == 2.0
    assert y1.shape == (3,)
    np.testing.assert_array_equal(y1, y2)
    # the same key outside jit gives the same noise
    expected = jax.random.normal(pure.merge().make_rng("dropout"), (3,))
    np.testing.assert_allclose(y1, expected, rtol=1e-6)
    assert len(traces) == 1


def test_pure_context_through_vmap_with_split_keys():
    ctx = nnx.context(0)
    keys, contextdef = ctx.partition()
    split = {name: jax.random.split(key, 4) for name, key in keys.items()}

    def f(keys):
        return jax.random.uniform(contextdef.merge(keys).make_rng("params"), ())

    out = jax.vmap(f)(split)
    assert out.shape == (4,)
    assert len(set(np.asarray(out).tolist())) == 4


def test_contextdef_merge_checks_streams():
    keys, contextdef = nnx.context(0, dropout=1).partition()
    with pytest.raises(ValueError, match="do not match"):
        contextdef.merge({"params": keys["params"]})


def test_context_repr():
    text = repr(nnx.context(0, dropout=1, flags={"a": 1}))
    assert "dropout" in text
    assert "params" in text
    assert "'a': 1" in text

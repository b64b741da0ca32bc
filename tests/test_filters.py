"""Filters: types, `...`, None, collection names, predicates, tuples and the
combinators (Not, All, OfType, PathContains, Everything, Nothing, buffers)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Count(nnx.Variable):
    pass


class Tagged(nnx.Variable):
    collection = "tags"


class FilterCalls(nnx.Variable):  # a collection name no other test module uses
    pass


class Block(nnx.Module):
    def __init__(self):
        self.kernel = nnx.Param(jnp.ones((2, 2)))
        self.mean = nnx.BatchStat(jnp.zeros(2))
        self.cache = nnx.Cache(jnp.zeros(1))
        self.y = nnx.Intermediate(jnp.ones(1))
        self.calls = Count(0)
        self.tag = Tagged(1)
        self.node = nnx.Node([1, 2])
        self.jbuf = jnp.arange(2)
        self.nbuf = np.arange(2)


class Net(nnx.Module):
    def __init__(self):
        self.block = Block()
        self.layers = nnx.Sequence([Block()])
        self.p = nnx.Param(jnp.ones(()))


def _paths(state):
    return set(state)


def test_type_filter_matches_instances():
    block = Block()
    assert _paths(block.filter(nnx.Param)) == {("kernel",)}
    assert _paths(block.filter(nnx.BatchStat)) == {("mean",)}
    assert _paths(block.filter(Count)) == {("calls",)}
    # base classes match their subclasses
    assert _paths(block.filter(nnx.Variable)) == {
        ("kernel",),
        ("mean",),
        ("cache",),
        ("y",),
        ("calls",),
        ("tag",),
    }
    assert _paths(block.filter(nnx.Node)) == _paths(block.filter(nnx.Variable)) | {("node",)}
    # jax.Array matches raw arrays only, not Variables holding arrays
    assert _paths(block.filter(jax.Array)) == {("jbuf",)}
    assert _paths(block.filter(np.ndarray)) == {("nbuf",)}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("params", {("kernel",)}),
        ("batch_stats", {("mean",)}),
        ("cache", {("cache",)}),
        ("intermediates", {("y",)}),
        ("count", {("calls",)}),
        ("tags", {("tag",)}),
    ],
)
def test_string_filters_name_collections(name, expected):
    assert _paths(Block().filter(name)) == expected


def test_a_string_filter_naming_no_collection_is_an_error():
    # a typo would otherwise select nothing, silently (e.g. empty gradients)
    with pytest.raises(ValueError, match=r"\['nope'\], which no Variable class has"):
        Block().filter("nope")
    with pytest.raises(ValueError, match=r"Did you mean 'params' for 'param'\?"):
        Block().partition("param", ...)
    # a known collection that this model does not hold is fine: just empty
    assert _paths(Block().filter("tree_node")) == set()


def test_collection_names():
    assert nnx.Param.collection == "params"
    assert nnx.BatchStat.collection == "batch_stats"
    assert nnx.Cache.collection == "cache"
    assert nnx.Intermediate.collection == "intermediates"
    assert Count.collection == "count"
    assert Tagged.collection == "tags"

    class MyFancyStat(nnx.Variable):
        pass

    assert MyFancyStat.collection == "my_fancy_stat"


def test_var_makes_collection_variables():
    y = nnx.var("intermediates", jnp.ones(2))
    assert type(y) is nnx.Intermediate
    assert type(nnx.var("params", 1)) is nnx.Param
    assert type(nnx.var("batch_stats", 1)) is nnx.BatchStat
    assert type(nnx.var("filter_calls", 1)) is FilterCalls
    assert type(nnx.var("tags", 1)) is Tagged

    adhoc = nnx.var("my_collection", 3, sharding=("a",))
    assert isinstance(adhoc, nnx.Variable)
    assert type(adhoc).collection == "my_collection"
    assert adhoc.value == 3
    assert adhoc.sharding == ("a",)
    # the same collection name gives the same Variable class
    assert type(nnx.var("my_collection", 4)) is type(adhoc)

    block = Block()
    block.adhoc = nnx.var("my_collection", jnp.ones(()))
    assert _paths(block.filter("my_collection")) == {("adhoc",)}
    assert _paths(block.filter(type(adhoc))) == {("adhoc",)}


def test_ellipsis_and_none():
    block = Block()
    assert _paths(block.filter(...)) == _paths(block.get_state())
    assert len(block.filter(None)) == 0
    none, rest = block.filter(None, ...)
    assert len(none) == 0
    assert rest == block.get_state()


def test_everything_and_nothing():
    block = Block()
    assert block.filter(nnx.Everything()) == block.get_state()
    assert len(block.filter(nnx.Nothing())) == 0
    assert nnx.Everything()(("a",), 1)
    assert not nnx.Nothing()(("a",), 1)


def test_predicate_receives_tuple_paths_and_values():
    seen = {}

    def record(path, value):
        seen[path] = value
        return (len(path) > 1 and isinstance(path[1], int)) or path[-1] == "p"

    net = Net()
    state = net.filter(record)
    assert set(state) == {("p",)} | {p for p in net.get_state() if p[0] == "layers"}
    assert ("layers", 0, "kernel") in seen
    assert ("block", "kernel") in seen
    assert all(type(path) is tuple for path in seen)
    assert isinstance(seen[("block", "kernel")], nnx.Param)
    assert isinstance(seen[("block", "jbuf")], jax.Array)


def test_sequence_paths_are_ints():
    net = Net()
    layer_paths = {p for p in net.get_state() if p[0] == "layers"}
    assert layer_paths
    assert all(type(p[1]) is int for p in layer_paths)


def test_tuple_filter_is_any_of():
    block = Block()
    assert _paths(block.filter((nnx.Param, "batch_stats"))) == {("kernel",), ("mean",)}
    assert _paths(block.filter((nnx.Param, (Count, nnx.buffers)))) == {
        ("kernel",),
        ("calls",),
        ("jbuf",),
        ("nbuf",),
    }
    assert len(block.filter(())) == 0


def test_not():
    block = Block()
    rest = block.filter(nnx.Not(nnx.Param))
    assert _paths(rest) == _paths(block.get_state()) - {("kernel",)}
    assert _paths(block.filter(nnx.Not(nnx.Not(nnx.Param)))) == {("kernel",)}
    assert _paths(block.filter(nnx.Not((nnx.Node, nnx.buffers)))) == set()
    assert nnx.Not(nnx.Param) == nnx.Not(nnx.Param)
    assert hash(nnx.Not(nnx.Param)) == hash(nnx.Not(nnx.Param))
    assert repr(nnx.Not(nnx.Param)) == f"Not({nnx.Param!r})"


def test_all():
    net = Net()
    state = net.filter(nnx.All(nnx.Param, nnx.PathContains("layers")))
    assert _paths(state) == {("layers", 0, "kernel")}
    state = net.filter(nnx.All(nnx.Variable, nnx.Not(nnx.Param), lambda p, v: p[0] == "block"))
    assert _paths(state) == {
        ("block", "mean"),
        ("block", "cache"),
        ("block", "y"),
        ("block", "calls"),
        ("block", "tag"),
    }
    assert _paths(net.filter(nnx.All())) == _paths(net.get_state())
    assert nnx.All(nnx.Param, "cache") == nnx.All(nnx.Param, "cache")


def test_of_type_and_path_contains():
    net = Net()
    assert net.filter(nnx.OfType(nnx.Param)) == net.filter(nnx.Param)
    assert _paths(net.filter(nnx.PathContains(0))) == {
        p for p in net.get_state() if p[:2] == ("layers", 0)
    }
    assert _paths(net.filter(nnx.PathContains("kernel"))) == {
        ("block", "kernel"),
        ("layers", 0, "kernel"),
    }
    # "0" (a str) is not the Sequence position 0
    assert len(net.filter(nnx.PathContains("0"))) == 0


def test_buffers():
    block = Block()
    assert _paths(block.filter(nnx.buffers)) == {("jbuf",), ("nbuf",)}


def test_to_predicate():
    assert nnx.to_predicate(nnx.Param)(("a",), nnx.Param(1))
    assert not nnx.to_predicate(nnx.Param)(("a",), nnx.BatchStat(1))
    assert nnx.to_predicate("params")(("a",), nnx.Param(1))
    assert not nnx.to_predicate("params")(("a",), jnp.ones(1))
    assert nnx.to_predicate(...)(("a",), object())
    assert not nnx.to_predicate(None)(("a",), object())


@pytest.mark.parametrize("bad", [3, 2.5, True, object(), b"params"])
def test_invalid_filter_is_a_type_error(bad):
    with pytest.raises(TypeError, match="Invalid filter"):
        nnx.to_predicate(bad)
    with pytest.raises(TypeError, match="Invalid filter"):
        Block().filter(bad)
    with pytest.raises(TypeError, match="Invalid filter"):
        Block().get_state().partition(nnx.Param, bad)
    with pytest.raises(TypeError, match="Invalid filter"):
        nnx.Not(bad)


def test_invalid_filter_inside_tuple():
    with pytest.raises(TypeError, match="Invalid filter"):
        Block().filter((nnx.Param, 3))


def test_ellipsis_must_be_last():
    block = Block()
    with pytest.raises(ValueError, match="Ellipsis `...` can only be used as the last filter"):
        block.partition(nnx.Param, ..., nnx.BatchStat)
    with pytest.raises(ValueError, match="index 0"):
        block.filter(..., nnx.Param)
    with pytest.raises(ValueError, match="Ellipsis"):
        block.pop_state(..., nnx.Param)
    assert len(block.get_state()) == 9


def test_first_matching_filter_wins():
    block = Block()
    (params, variables, rest), _ = block.partition(nnx.Param, nnx.Variable, ...)
    assert _paths(params) == {("kernel",)}
    assert ("kernel",) not in variables
    assert _paths(rest) == {("node",), ("jbuf",), ("nbuf",)}


def test_not_and_all_of_lists_are_hashable_and_equal_to_tuples():
    # regression: a list is a valid filter, but Not([...]) / All([...]) were unhashable
    assert hash(nnx.Not([nnx.Param, "cache"])) == hash(nnx.Not((nnx.Param, "cache")))
    assert nnx.Not([nnx.Param]) == nnx.Not((nnx.Param,))
    assert nnx.All([nnx.Param, "params"]) == nnx.All((nnx.Param, "params"))
    assert len({nnx.All([nnx.Param]), nnx.All((nnx.Param,))}) == 1
    state = nnx.State({("w",): nnx.Param(jnp.ones(2)), ("m",): nnx.BatchStat(jnp.ones(2))})
    assert list(state.filter(nnx.Not([nnx.Param]))) == [("m",)]

"""treescope's rich reprs of Modules, Variables and States (`__treescope_repr__`)."""

import jax.numpy as jnp
import treescope

import nnx


class Model(nnx.Module):
    def __init__(self, *, ctx: nnx.Context):
        self.linear = nnx.Linear(2, 3, ctx=ctx)
        self.bn = nnx.BatchNorm(3, ctx=ctx)
        self.tag = nnx.Param(jnp.ones(2), sharding=("embed",))
        self.rate = 0.5
        self.me = self  # a cycle


def test_module_shows_attributes_with_their_variable_kinds():
    text = treescope.render_to_text(Model(ctx=nnx.context(0)))
    assert text.startswith("Model(")
    assert "linear=Linear(" in text and "bn=BatchNorm(" in text
    assert "kernel=Param(" in text and "mean=BatchStat(" in text
    assert "sharding=('embed',)" in text and "rate=0.5" in text
    assert "cyclic reference to Model" in text


def test_sequence_and_dict_show_their_items():
    ctx = nnx.context(0)
    seq = nnx.Sequence([nnx.Linear(2, 2, ctx=ctx), nnx.Linear(2, 1, ctx=ctx)])
    text = treescope.render_to_text(seq)
    assert text.startswith("Sequence({") and "0: Linear(" in text and "1: Linear(" in text
    text = treescope.render_to_text(nnx.Dict({"a b": nnx.Param(jnp.ones(1))}))
    assert text.startswith("Dict({") and "'a b': Param(" in text


def test_variable_shows_value_and_metadata():
    text = treescope.render_to_text(nnx.Param(jnp.arange(3.0), sharding=("a",)))
    assert text.startswith("Param(")
    assert "value=<jax.Array([0., 1., 2.], dtype=float32)>" in text
    assert "sharding=('a',)" in text


def test_state_shows_paths_and_entries():
    state = Model(ctx=nnx.context(0)).get_state()
    text = treescope.render_to_text(state)
    assert text.startswith("State({")
    assert "('linear', 'kernel'):" in text and "('bn', 'var'):" in text
    assert "BatchStat(value=<jax.Array([1., 1., 1.], dtype=float32)>)" in text
    html = treescope.render_to_html(state)
    assert "treescope-container" in html  # the rich, foldable rendering renders

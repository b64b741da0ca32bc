"""Recurrent cells and nnx.RNN against a plain Python loop over time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

CELLS = [nnx.SimpleCell, nnx.GRUCell, nnx.LSTMCell]


def _loop(cell, x, carry, lengths=None, reverse=False):
    """The reference: one cell call per step, in Python."""
    batch, time, _ = x.shape
    outputs = []
    carries = []
    for b in range(batch):
        c = jax.tree.map(lambda a, b=b: a[b : b + 1], carry)
        n = time if lengths is None else int(lengths[b])
        order = list(range(n))[::-1] if reverse else list(range(n))
        ys = [None] * time
        for t in order:
            c, y = cell(c, x[b : b + 1, t])
            ys[t] = y[0]
        zero = jnp.zeros_like(ys[order[0]])
        outputs.append(jnp.stack([y if y is not None else zero for y in ys]))
        carries.append(c)
    final = jax.tree.map(lambda *a: jnp.concatenate(a), *carries)
    return final, jnp.stack(outputs)


@pytest.mark.parametrize("make", CELLS)
def test_rnn_equals_a_python_loop_of_the_cell(make):
    cell = make(3, 5, ctx=nnx.context(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, 3))
    carry0 = cell.initialize_carry((2, 3))
    expected_carry, expected = _loop(cell, x, carry0)
    carry, ys = nnx.RNN(cell, return_carry=True)(x)
    assert ys.shape == (2, 6, 5)
    np.testing.assert_allclose(ys, expected, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(expected_carry)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reverse", [False, True])
def test_rnn_seq_lengths_and_reverse(reverse):
    cell = nnx.GRUCell(3, 4, ctx=nnx.context(0))
    x = jax.random.normal(jax.random.key(2), (3, 5, 3))
    lengths = jnp.array([5, 2, 4])
    expected_carry, expected = _loop(cell, x, cell.initialize_carry((3, 3)), lengths, reverse)
    carry, ys = nnx.RNN(cell)(x, seq_lengths=lengths, reverse=reverse, return_carry=True)
    np.testing.assert_allclose(ys, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry, expected_carry, rtol=1e-5, atol=1e-6)


def test_rnn_under_jit_and_grad_and_a_shape_check():
    rnn = nnx.RNN(nnx.LSTMCell(3, 4, ctx=nnx.context(0)))
    x = jnp.ones((2, 7, 3))

    @nnx.jit
    def loss(m: nnx.RNN) -> jax.Array:
        return jnp.mean(m(x) ** 2)

    grads = nnx.grad(loss)(rnn)
    assert ("cell", "hidden", "kernel") in grads
    with pytest.raises(nnx.ShapeCheckError, match="Linear.__call__: argument inputs"):
        rnn(jnp.ones((2, 7, 5)))
    with pytest.raises(ValueError, match="hidden_features must be a positive int"):
        nnx.LSTMCell(3, 0, ctx=nnx.context(0))

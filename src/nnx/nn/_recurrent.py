"""Recurrent layers: `nnx.SimpleCell`, `nnx.GRUCell`, `nnx.LSTMCell` (one step,
`cell(carry, x) -> (carry, y)`) and `nnx.RNN`, which runs a cell over the time axis
with one compiled step (`jax.lax.scan`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
from jaxtyping import Array, Shaped

from .._context import Context
from .._module import Module
from ._common import positive
from ._linear import Linear

__all__ = ["GRUCell", "LSTMCell", "RNN", "SimpleCell"]

_lax_scan: Callable[..., Any] = getattr(jax.lax, "scan")  # noqa: B009


class _Cell(Module):
    """What the cells share: `in_features`, `hidden_features` and the zero carry."""

    in_features: int
    hidden_features: int

    def _sizes(self, name: str, in_features: int, hidden_features: int) -> None:
        self.in_features = positive(name, "in_features", in_features)
        self.hidden_features = positive(name, "hidden_features", hidden_features)

    def initialize_carry(self, input_shape: tuple[int, ...]) -> Any:
        """A zero carry for inputs of `input_shape` (`(batch..., in_features)`)."""
        return jnp.zeros((*input_shape[:-1], self.hidden_features))


class SimpleCell(_Cell):
    """An Elman cell: `h' = tanh(x @ W + h @ U + b)`; the output is `h'`.

    Args:
        in_features: The input's last axis.
        hidden_features: The carry's (and output's) last axis.
        ctx: The Context to draw the kernels' keys from.

    Example:
        ```python
        cell = nnx.SimpleCell(3, 4, ctx=nnx.context(0))
        h = cell.initialize_carry((2, 3))
        h, y = cell(h, jnp.ones((2, 3)))
        assert h.shape == y.shape == (2, 4)
        ```
    """

    def __init__(self, in_features: int, hidden_features: int, *, ctx: Context) -> None:
        self._sizes("SimpleCell", in_features, hidden_features)
        self.input = Linear(in_features, hidden_features, ctx=ctx)
        self.hidden = Linear(hidden_features, hidden_features, use_bias=False, ctx=ctx)

    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step: `(h, x) -> (h', h')`."""
        h = jnp.tanh(self.input(x) + self.hidden(carry))
        return h, h


class GRUCell(_Cell):
    """A gated recurrent unit: reset and update gates, `h' = (1 - z) * n + z * h`.

    `r = sigmoid(x Wr + h Ur)`, `z = sigmoid(x Wz + h Uz)`,
    `n = tanh(x Wn + r * (h Un + bn))`; the output is `h'`.

    Args:
        in_features: The input's last axis.
        hidden_features: The carry's (and output's) last axis.
        ctx: The Context to draw the kernels' keys from.

    Example:
        ```python
        cell = nnx.GRUCell(3, 4, ctx=nnx.context(0))
        h, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
        assert h.shape == (2, 4) and jnp.allclose(h, y)
        ```
    """

    def __init__(self, in_features: int, hidden_features: int, *, ctx: Context) -> None:
        self._sizes("GRUCell", in_features, hidden_features)
        self.input = Linear(in_features, 3 * hidden_features, ctx=ctx)
        self.hidden = Linear(hidden_features, 3 * hidden_features, ctx=ctx)

    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step: `(h, x) -> (h', h')`."""
        xr, xz, xn = jnp.split(self.input(x), 3, axis=-1)
        hr, hz, hn = jnp.split(self.hidden(carry), 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1.0 - z) * n + z * carry
        return h, h


class LSTMCell(_Cell):
    """A long short-term memory cell; the carry is `(c, h)`, the output `h'`.

    `i, f, g, o` from `x W + h U + b`; `c' = sigmoid(f) * c + sigmoid(i) * tanh(g)`,
    `h' = sigmoid(o) * tanh(c')`.

    Args:
        in_features: The input's last axis.
        hidden_features: The size of `c`, `h` and the output.
        ctx: The Context to draw the kernels' keys from.

    Example:
        ```python
        cell = nnx.LSTMCell(3, 4, ctx=nnx.context(0))
        (c, h), y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
        assert c.shape == h.shape == y.shape == (2, 4)
        ```
    """

    def __init__(self, in_features: int, hidden_features: int, *, ctx: Context) -> None:
        self._sizes("LSTMCell", in_features, hidden_features)
        self.input = Linear(in_features, 4 * hidden_features, use_bias=False, ctx=ctx)
        self.hidden = Linear(hidden_features, 4 * hidden_features, ctx=ctx)

    def initialize_carry(self, input_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
        """A zero `(c, h)` for inputs of `input_shape` (`(batch..., in_features)`)."""
        zeros: jax.Array = super().initialize_carry(input_shape)
        return zeros, zeros

    def __call__(
        self, carry: tuple[jax.Array, jax.Array], x: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        """One step: `((c, h), x) -> ((c', h'), h')`."""
        c, h = carry
        i, f, g, o = jnp.split(self.input(x) + self.hidden(h), 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h


def _flip(x: jax.Array, lengths: jax.Array | None) -> jax.Array:
    """Reverse the time axis (1) of `x`, within each sequence's length if given."""
    if lengths is None:
        return jnp.flip(x, axis=1)
    t = jnp.arange(x.shape[1])
    idx = jnp.where(t[None, :] < lengths[:, None], lengths[:, None] - 1 - t[None, :], t[None, :])
    idx = idx.reshape(*idx.shape, *([1] * (x.ndim - 2)))
    return jnp.take_along_axis(x, idx, axis=1)


class RNN(Module):
    """Run a cell over the time axis of `(batch, time, features)` inputs, in one
    compiled step (`jax.lax.scan`).

    Args:
        cell: A cell (`cell(carry, x) -> (carry, y)` with `initialize_carry`).
        return_carry: Whether calls return `(carry, outputs)` rather than the outputs.
            Default False.
        reverse: Whether to run from the last step to the first (outputs stay in time
            order). Default False.

    Example:
        ```python
        rnn = nnx.RNN(nnx.GRUCell(3, 8, ctx=nnx.context(0)))
        assert rnn(jnp.ones((2, 5, 3))).shape == (2, 5, 8)
        carry, ys = rnn(jnp.ones((2, 5, 3)), return_carry=True)
        assert jnp.allclose(carry, ys[:, -1])
        ```
    """

    def __init__(self, cell: Module, *, return_carry: bool = False, reverse: bool = False) -> None:
        self.cell = cell
        self.return_carry = return_carry
        self.reverse = reverse

    def __call__(
        self,
        inputs: Shaped[Array, "batch time features"],
        *,
        initial_carry: Any = None,
        seq_lengths: jax.Array | None = None,
        return_carry: bool | None = None,
        reverse: bool | None = None,
    ) -> Any:
        """The outputs `(batch, time, hidden)` (and the final carry with `return_carry`).

        Args:
            inputs: `(batch, time, features)`.
            initial_carry: The carry to start from. Default: the cell's zero carry.
            seq_lengths: `(batch,)` integer lengths: steps past a sequence's length
                leave its carry unchanged and output zeros. Default: all of `time`.
            return_carry: Overrides the attribute for this call.
            reverse: Overrides the attribute for this call.

        Returns:
            The outputs, or `(final carry, outputs)`.
        """
        backwards = self.reverse if reverse is None else reverse
        x = jnp.asarray(inputs)
        carry = initial_carry
        if carry is None:
            init: Callable[[tuple[int, ...]], Any] = getattr(self.cell, "initialize_carry")  # noqa: B009
            carry = init((x.shape[0], x.shape[2]))
        if backwards:
            x = _flip(x, seq_lengths)
        cell = cast("Callable[[Any, jax.Array], tuple[Any, jax.Array]]", self.cell)
        time_first = jnp.swapaxes(x, 0, 1)
        steps = jnp.arange(x.shape[1])

        def step(carry: Any, item: tuple[jax.Array, jax.Array]) -> tuple[Any, jax.Array]:
            x_t, t = item
            new_carry, y = cell(carry, x_t)
            if seq_lengths is None:
                return new_carry, y
            alive = t < seq_lengths  # (batch,)

            def keep(new: jax.Array, old: jax.Array) -> jax.Array:
                mask = alive.reshape(-1, *([1] * (new.ndim - 1)))
                return jnp.where(mask, new, old)

            new_carry = jax.tree.map(keep, new_carry, carry)
            return new_carry, keep(y, jnp.zeros_like(y))

        carry, ys = _lax_scan(step, carry, (time_first, steps))
        outputs = jnp.swapaxes(ys, 0, 1)
        if backwards:
            outputs = _flip(outputs, seq_lengths)
        if self.return_carry if return_carry is None else return_carry:
            return carry, outputs
        return outputs

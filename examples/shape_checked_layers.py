"""Shape-checked layers: a wrong-shaped weight is caught where it is assigned.

    python examples/shape_checked_layers.py

Declares a layer with jaxtyping annotations, then makes classic mistakes — a
transposed weight, an int bias, a Variable of the wrong kind, a weight that disagrees
with another attribute about a dimension — and prints the error each one raises.
Then the classic mistakes of what a layer is *given*: too many features, a missing
batch axis where one is required, channels-first images into a channels-last Conv,
queries of the wrong width into attention, BatchNorm over the wrong axis. Finally it
shows that checks run at trace time under `jax.jit` (no per-call cost) and can be
turned off.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

import nnx


class Affine(nnx.Module):
    w: nnx.Param[Float[Array, "din dout"]]
    b: nnx.Param[Float[Array, " dout"]]
    scale: Float[Array, " din"]

    def __init__(self, din: int, dout: int, *, ctx: nnx.Context) -> None:
        self.w = nnx.Param(jax.random.normal(ctx.make_rng("params"), (din, dout)))
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.scale = jnp.ones((din,))

    def __call__(self, x: Float[Array, "n din"]) -> Float[Array, "n dout"]:
        return (x * self.scale) @ self.w + self.b


def show(label: str, mistake: object, error: type[Exception] = nnx.ShapeCheckError) -> None:
    try:
        assert callable(mistake)
        mistake()
    except error as e:
        print(f"--- {label}: caught ({type(e).__name__})\n{e}\n")
    else:
        raise AssertionError(f"{label}: not caught")


def main() -> None:
    layer = Affine(4, 3, ctx=nnx.context(0))

    show("transposed weight", lambda: setattr(layer, "w", jnp.ones((3, 4))))
    show("int bias", lambda: setattr(layer, "b", jnp.zeros((3,), jnp.int32)))
    show(  # the kind is checked before the shape: the ValueError of any module
        "BatchStat where a Param lives",
        lambda: setattr(layer, "b", nnx.BatchStat(jnp.zeros(3))),
        ValueError,
    )
    show("scale disagrees with w about din", lambda: setattr(layer, "scale", jnp.ones((5,))))
    assert layer.w.shape == (4, 3)  # every failed assignment left the old value

    # calls: the inputs are checked against the dimensions the layer holds
    show("5 features into a din=4 layer", lambda: layer(jnp.ones((2, 5))))
    show("no batch axis where 'n din' is declared", lambda: layer(jnp.ones((4,))))
    conv = nnx.Conv(3, 8, (3, 3), ctx=nnx.context(1))
    show("channels-first image into a channels-last Conv", lambda: conv(jnp.ones((1, 3, 32, 32))))
    attention = nnx.MultiHeadAttention(num_heads=2, in_features=16, ctx=nnx.context(2))
    show("queries of 8 features into in_features=16", lambda: attention(jnp.ones((1, 5, 8))))
    norm = nnx.BatchNorm(16, ctx=nnx.context(3))
    show("BatchNorm over the wrong axis", lambda: norm(jnp.ones((16, 4)), True))

    traces: list[int] = []

    @nnx.jit
    def grow(layer: Affine) -> None:
        traces.append(1)  # runs only while tracing: the check costs nothing per call
        layer.w = layer.w * 2

    for _ in range(3):
        grow(layer)
    print(f"nnx.jit: 3 calls, {len(traces)} trace (the check ran once, at trace time)")

    with nnx.shape_checks(False):
        layer.w = jnp.ones((7, 7))  # unchecked on purpose
    print(f"with nnx.shape_checks(False): w is now {layer.w.shape}")


if __name__ == "__main__":
    main()

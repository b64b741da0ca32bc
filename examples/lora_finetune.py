"""Fine-tune only LoRA adapters: pretrain an MLP on one regression task, then adapt it
to a shifted task by training `nnx.LoRAParam`s alone.

    python examples/lora_finetune.py

The layers are `nnx.LoRALinear`: an `nnx.Linear` plus a rank-2 adapter whose update
starts at zero. Pretraining uses `wrt=nnx.Param` minus the adapters; fine-tuning uses
`wrt=nnx.LoRAParam`, so the pretrained kernels stay bit for bit what they were.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nnx

PRETRAINED = nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))


class MLP(nnx.Module):
    hidden: nnx.LoRALinear
    out: nnx.LoRALinear

    def __init__(self, *, ctx: nnx.Context) -> None:
        self.hidden = nnx.LoRALinear(4, 32, lora_rank=2, ctx=ctx)
        self.out = nnx.LoRALinear(32, 1, lora_rank=2, ctx=ctx)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(jnp.tanh(self.hidden(x)))


def task(key: jax.Array, shift: float) -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(key, (256, 4))
    return x, jnp.sin(x.sum(axis=1, keepdims=True)) + shift * x[:, :1]


def loss_fn(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((model(x) - y) ** 2)


def train(model: MLP, wrt: nnx.Filter, x: jax.Array, y: jax.Array, steps: int) -> float:
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=wrt)

    @nnx.jit
    def step(opt: nnx.Optimizer[MLP]) -> jax.Array:
        loss, grads = nnx.value_and_grad(loss_fn, wrt=wrt)(opt.model, x, y)
        opt.update(grads)
        return loss

    for _ in range(steps):
        step(opt)
    return float(loss_fn(model, x, y))


def main() -> None:
    model = MLP(ctx=nnx.context(0))
    x_a, y_a = task(jax.random.key(1), shift=0.0)
    print(f"pretrained on task A: loss {train(model, PRETRAINED, x_a, y_a, 300):.4f}")
    kernels = {p: np.asarray(v.value) for p, v in model.filter(PRETRAINED).items()}
    x_b, y_b = task(jax.random.key(2), shift=1.5)
    before = float(loss_fn(model, x_b, y_b))
    after = train(model, nnx.LoRAParam, x_b, y_b, 300)
    adapters = sum(v.value.size for v in model.filter(nnx.LoRAParam).values())
    total = sum(v.value.size for v in model.filter(nnx.Param).values())
    print(
        f"task B: loss {before:.4f} before, {after:.4f} after tuning {adapters} of {total} params"
    )
    unchanged = all(
        np.array_equal(kernels[p], v.value) for p, v in model.filter(PRETRAINED).items()
    )
    print(f"pretrained parameters unchanged: {unchanged}")
    assert unchanged and after < before / 2


if __name__ == "__main__":
    main()

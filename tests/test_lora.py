"""LoRA: nnx.LoRAParam, nnx.LoRA, nnx.LoRALinear; fine-tuning only the adapters."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnx


def test_lora_is_the_low_rank_update_plus_the_base():
    base = nnx.Linear(4, 3, ctx=nnx.context(0))
    lora = nnx.LoRA(4, 2, 3, base_module=base, ctx=nnx.context(1))
    lora.lora_b = jax.random.normal(jax.random.key(2), (2, 3))
    x = jax.random.normal(jax.random.key(3), (5, 4))
    np.testing.assert_allclose(lora(x), base(x) + x @ lora.lora_a @ lora.lora_b, rtol=1e-5)
    alone = nnx.LoRA(4, 2, 3, ctx=nnx.context(1))
    np.testing.assert_allclose(alone(x), jnp.zeros((5, 3)))  # lora_b starts at zero
    with pytest.raises(ValueError, match="lora_rank must be a positive int"):
        nnx.LoRA(4, 0, 3, ctx=nnx.context(0))


def test_lora_params_are_params_with_their_own_collection():
    layer = nnx.LoRALinear(4, 3, lora_rank=2, ctx=nnx.context(0))
    assert issubclass(nnx.LoRAParam, nnx.Param)
    assert set(layer.filter(nnx.LoRAParam)) == {("lora", "lora_a"), ("lora", "lora_b")}
    assert set(layer.filter("lora_params")) == {("lora", "lora_a"), ("lora", "lora_b")}
    assert set(layer.filter("params")) == {("bias",), ("kernel",)}
    assert len(layer.filter(nnx.Param)) == 4  # a type filter includes the subclass


def test_fine_tuning_with_wrt_lora_param_changes_only_the_adapters():
    layer = nnx.LoRALinear(4, 3, lora_rank=2, ctx=nnx.context(0))
    kernel, bias = layer.kernel, layer.bias
    opt = nnx.Optimizer(layer, optax.adam(0.05), wrt=nnx.LoRAParam)
    x = jax.random.normal(jax.random.key(0), (16, 4))
    y = jnp.sin(x[:, :3])

    def loss(m: nnx.LoRALinear) -> jax.Array:
        return jnp.mean((m(x) - y) ** 2)

    @nnx.jit
    def step(opt: nnx.Optimizer[nnx.LoRALinear]) -> jax.Array:
        value, grads = nnx.value_and_grad(loss, wrt=nnx.LoRAParam)(opt.model)
        opt.update(grads)
        return value

    first = step(opt)
    for _ in range(30):
        last = step(opt)
    assert float(last) < float(first)
    assert layer.kernel is kernel and layer.bias is bias  # the base is untouched
    assert not np.allclose(layer.lora.lora_b, 0.0)

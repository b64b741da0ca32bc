"""Low-rank adaptation: `nnx.LoRAParam`, `nnx.LoRA` and `nnx.LoRALinear`, so that
`nnx.grad(loss, wrt=nnx.LoRAParam)` fine-tunes only the adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Shaped
from typing_extensions import TypeVar

from .._context import Context
from .._module import Module
from .._variables import Param
from . import initializers
from ._common import positive
from ._linear import Linear

__all__ = ["LoRA", "LoRALinear", "LoRAParam"]

A = TypeVar("A", default=Any)

_default_a_init = initializers.he_uniform()
_default_b_init = initializers.zeros()


class LoRAParam(Param[A]):
    """A LoRA adapter's parameter (collection `"lora_params"`): a `Param`, so filters
    by type (`nnx.Param`) include it, and `nnx.LoRAParam` selects the adapters only."""

    __slots__ = ()
    collection: ClassVar[str] = "lora_params"


class LoRA(Module):
    """A low-rank update `x @ lora_a @ lora_b`, optionally added to a base module's output.

    Args:
        in_features: The input's last axis.
        lora_rank: The rank of the update (> 0).
        out_features: The output's last axis.
        base_module: A callable (e.g. a frozen `nnx.Linear`) whose output the update is
            added to. Default None: the update alone.
        param_dtype: The adapters' dtype. Default float32.
        a_initializer: Initializer of `lora_a`. Default He uniform.
        b_initializer: Initializer of `lora_b`. Default zeros (the update starts at 0).
        ctx: The Context to draw the adapters' keys from (stream `"params"`).

    Example:
        ```python
        lora = nnx.LoRA(4, 2, 3, ctx=nnx.context(0))
        assert lora.lora_a.shape == (4, 2) and lora.lora_b.shape == (2, 3)
        assert jnp.allclose(lora(jnp.ones((5, 4))), 0.0)  # lora_b starts at zero
        ```
    """

    lora_a: LoRAParam[Shaped[Array, "in_features lora_rank"]]
    lora_b: LoRAParam[Shaped[Array, "lora_rank out_features"]]

    def __init__(
        self,
        in_features: int,
        lora_rank: int,
        out_features: int,
        *,
        base_module: Callable[..., Any] | None = None,
        param_dtype: Any = jnp.float32,
        a_initializer: initializers.Initializer = _default_a_init,
        b_initializer: initializers.Initializer = _default_b_init,
        ctx: Context,
    ) -> None:
        din = positive("LoRA", "in_features", in_features)
        rank = positive("LoRA", "lora_rank", lora_rank)
        dout = positive("LoRA", "out_features", out_features)
        self.lora_a = LoRAParam(a_initializer(ctx.make_rng("params"), (din, rank), param_dtype))
        self.lora_b = LoRAParam(b_initializer(ctx.make_rng("params"), (rank, dout), param_dtype))
        self.base_module = base_module

    def __call__(
        self, x: Shaped[Array, "*batch in_features"]
    ) -> Shaped[Array, "*batch out_features"]:
        """`base_module(x) + x @ lora_a @ lora_b` (without a base, the update alone)."""
        out: jax.Array = x @ self.lora_a @ self.lora_b
        if self.base_module is not None:
            out = self.base_module(x) + out
        return out


class LoRALinear(Linear):
    """An `nnx.Linear` with a LoRA adapter: `linear(x) + x @ lora.lora_a @ lora.lora_b`.

    Args:
        in_features: The input's last axis.
        out_features: The output's last axis.
        lora_rank: The adapter's rank (> 0).
        ctx: The Context to draw keys from.
        **linear_options: Passed on to `nnx.Linear` (`use_bias`, initializers, ...).

    Example:
        ```python
        layer = nnx.LoRALinear(4, 3, lora_rank=2, ctx=nnx.context(0))
        x = jnp.ones((2, 4))
        assert jnp.allclose(layer(x), x @ layer.kernel + layer.bias)  # zero update at first
        grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2), wrt=nnx.LoRAParam)(layer)
        assert set(grads) == {("lora", "lora_a"), ("lora", "lora_b")}
        ```
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        lora_rank: int,
        ctx: Context,
        **linear_options: Any,
    ) -> None:
        super().__init__(in_features, out_features, ctx=ctx, **linear_options)
        self.lora = LoRA(in_features, lora_rank, out_features, ctx=ctx)

    def __call__(
        self, inputs: Shaped[Array, "*batch in_features"]
    ) -> Shaped[Array, "*batch out_features"]:
        """The linear map plus the adapter's update."""
        base: jax.Array = super().__call__(inputs)
        return base + self.lora(inputs)

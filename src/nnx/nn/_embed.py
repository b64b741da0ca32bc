"""Embedding lookup."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Shaped

from .._context import Context
from .._module import Module
from .._variables import Param
from . import initializers
from ._common import positive
from ._dtypes import promote_dtype

__all__ = ["Embed"]

default_embed_init = initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)


class Embed(Module):
    """A table of `num_embeddings` vectors of size `features`.

    `embed(ids)` looks rows up (`ids` of any integer shape), `embed.attend(q)` scores
    `q` against them (e.g. output logits tied to the input embedding). `embedding` is
    a `(num_embeddings, features)` Param drawn from `ctx.make_rng("params")`.

    Args:
        num_embeddings: Number of rows (> 0).
        features: Size of each vector (> 0).
        dtype: The dtype the table (and `attend`'s query) is cast to when used.
            Default: the table's own dtype for a lookup, the promoted dtype of query
            and table for `attend`.
        param_dtype: The dtype of the table. Default float32.
        embedding_init: Initializer of the table. Default
            `variance_scaling(1.0, "fan_in", "normal", out_axis=0)`.
        ctx: The Context to draw the key from (stream `"params"`).

    Raises:
        ValueError: If a size is not a positive int.

    Example:
        ```python
        embed = nnx.Embed(10, 4, ctx=nnx.context(0))
        ids = jnp.array([[1, 2, 3]])
        vectors = embed(ids)
        assert vectors.shape == (1, 3, 4)
        assert jnp.allclose(vectors[0, 0], embed.embedding[1])
        logits = embed.attend(vectors)
        assert logits.shape == (1, 3, 10)
        ```
    """

    embedding: Param[Shaped[Array, "num_embeddings features"]]
    num_embeddings: int
    features: int

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        embedding_init: initializers.Initializer = default_embed_init,
        ctx: Context,
    ) -> None:
        positive("Embed", "num_embeddings", num_embeddings)
        positive("Embed", "features", features)
        self.embedding = Param(
            embedding_init(ctx.make_rng("params"), (num_embeddings, features), param_dtype)
        )
        self.num_embeddings = num_embeddings
        self.features = features
        self.dtype = dtype

    def __call__(self, inputs: Shaped[Array, "*batch"]) -> Shaped[Array, "*batch features"]:
        """Look up the rows `inputs` index.

        Args:
            inputs: Integer ids of any shape. Ids from `-num_embeddings` to -1
                count from the end; others out of range give rows of NaN (no error).

        Returns:
            An array of shape `(*inputs.shape, features)`.

        Raises:
            ValueError: If `inputs` is not of an integer dtype.
        """
        inputs = jnp.asarray(inputs)
        if not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise ValueError(
                f"Embed: input type must be an integer or unsigned integer, got {inputs.dtype}"
            )
        (embedding,) = promote_dtype(self.embedding, dtype=self.dtype, inexact=False)
        return jnp.take(embedding, inputs, axis=0)

    def attend(
        self, query: Shaped[Array, "*batch features"]
    ) -> Shaped[Array, "*batch num_embeddings"]:
        """`query @ embedding.T`: a score per embedding (e.g. tied output logits).

        Args:
            query: An array of shape `(..., features)`.

        Returns:
            An array of shape `(..., num_embeddings)`, of the promoted dtype.
        """
        query, embedding = promote_dtype(query, self.embedding, dtype=self.dtype)
        return jnp.dot(query, embedding.T)

"""nnx's exception types and the long, user-facing messages that go with them.

Messages are kept here as constants so that each one shows the fix, in one place.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ShapeCheckError", "TraceContextError"]


class TraceContextError(Exception):
    """A Module or Context was used under a JAX trace it was not created in.

    Raised when a Module is mutated, or a Context draws a random key, inside a
    `jax.jit`, `jax.vmap`, `jax.grad`, `jax.lax.scan`, ... trace that the object did
    not come from (or after it leaked out of one). The message shows the fix: pass
    the Module through an nnx transform (`nnx.jit`, ...), or partition it outside and
    merge it inside. Reading a Module is allowed.

    Example:
        ```python
        model = nnx.Linear(2, 2, ctx=nnx.context(0))

        @jax.jit
        def bad(x: jax.Array) -> jax.Array:
            model.kernel = model.kernel * 2  # `model` belongs to the outer trace
            return x

        try:
            bad(jnp.ones(2))
        except nnx.TraceContextError as e:
            assert "Cannot mutate Module from different trace level" in str(e)
        else:
            raise AssertionError("expected a TraceContextError")
        ```
    """


class ShapeCheckError(TypeError):
    """A value assigned to a Module attribute does not fit its annotation.

    A subclass of `TypeError`. The message names the module class, the attribute,
    the expected annotation, the actual `dtype[shape]`, the reason, and which
    attributes bound the dimensions it conflicts with. The old value stays in place.
    See `nnx.shape_checks`.

    Example:
        ```python
        from jaxtyping import Array, Float

        class Affine(nnx.Module):
            w: nnx.Param[Float[Array, "din dout"]]
            b: nnx.Param[Float[Array, " dout"]]

            def __init__(self, din: int, dout: int) -> None:
                self.w = nnx.Param(jnp.zeros((din, dout)))
                self.b = nnx.Param(jnp.zeros((dout,)))

        m = Affine(4, 3)
        try:
            m.w = jnp.ones((3, 4))  # transposed: dout is bound to 3 by .b
        except nnx.ShapeCheckError as e:
            assert isinstance(e, TypeError)
            assert "Affine.w: expected Param[Float[Array, 'din dout']]" in str(e)
            assert "dout=3 (from .b)" in str(e)
        assert m.w.shape == (4, 3)  # unchanged
        ```
    """


MSG_MODULE_TRACE: Final = """\
Cannot mutate {type}.{name}: Cannot mutate Module from different trace level. This
{type} was created under a different JAX trace than the current one (e.g. it was
created outside a jax.jit / jax.vmap / jax.grad / jax.lax.scan that is tracing now, or
it leaked out of one). Mutations made here would be lost or would leak tracers.

Fix: pass the module through an nnx transform, which keeps its state in sync:

    @nnx.jit
    def step(model, x):
        model.count += 1          # fine: `model` was passed in

or use the functional API: partition outside, merge inside, update_state outside:

    state, moduledef = model.partition()
    def f(state, x):
        model = moduledef.merge(state)   # a module created under this trace
        ...
        return model.get_state()
    model.update_state(jax.jit(f)(state, x))"""

MSG_CONTEXT_TRACE: Final = """\
Cannot use this Context here: Cannot use Context from a different trace level. It was
created under a different JAX trace than the current one (e.g. outside the jax.jit /
jax.vmap / jax.grad / jax.lax.scan that is tracing now). Drawing keys here would make
the RNG stream stale or leak tracers.

Fix: split the Context outside and rebuild it inside:

    pure_ctx = ctx.partition()           # a pytree: crosses jax.jit whole
    @jax.jit
    def f(pure_ctx, x):
        ctx = pure_ctx.merge()
        key = ctx.make_rng("dropout")

or pass `ctx=` to an nnx transform, which does this for you."""

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
    not come from (or after it leaked out of one).
    """


class ShapeCheckError(TypeError):
    """A value assigned to a Module attribute does not fit its annotation.

    The message names the module class, the attribute, the expected annotation, the
    actual `dtype[shape]`, the reason, and which attributes bound the dimensions it
    conflicts with. The old value stays in place.
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

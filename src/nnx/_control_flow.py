"""Lifted control flow: `nnx.cond`, `nnx.switch`, `nnx.fori_loop`, `nnx.while_loop`.

Each is `jax.lax`'s own, run through the lifting protocol of `_lift.py` in graph mode:
the Modules among the operands (or the loop value) are split into their leaves, rebuilt
inside each branch or step, and what the taken branch or the loop changed is written
back into the caller's Modules. Branches and loop steps must agree on the output
structure, so they return every leaf (`leave(changes_only=False)`), and a change of a
Module's structure inside (an attribute added or removed) is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import jax

from ._lift import Lifted, LiftStatic, StaticBox, enter, is_sequence, leave
from ._module import Module

__all__ = ["cond", "fori_loop", "switch", "while_loop"]

R = TypeVar("R")
V = TypeVar("V")

_lax_cond: Callable[..., Any] = getattr(jax.lax, "cond")  # noqa: B009
_lax_switch: Callable[..., Any] = getattr(jax.lax, "switch")  # noqa: B009
_lax_fori_loop: Callable[..., Any] = getattr(jax.lax, "fori_loop")  # noqa: B009
_lax_while_loop: Callable[..., Any] = getattr(jax.lax, "while_loop")  # noqa: B009

MSG_STRUCTURE: Final = (
    "{transform}: the {what} changed the structure of a Module (an attribute added, "
    "removed or made static), which its other {others} would not match. Change "
    "Module structure outside {transform}; inside, assign new values to existing "
    "attributes."
)
MSG_COND_CHANGED: Final = (
    "nnx.while_loop: cond_fun changed a Module; it may only read them. Make the change in body_fun."
)
MSG_NOT_THE_SAME: Final = (
    "{transform}: {what} must return the Modules it was given (changed in place), at "
    "the same positions; position {position} holds a {got}."
)


def _run(static: LiftStatic, f: Callable[..., Any], transform: str, what: str) -> Any:
    """`f` as a function of `(leaves, args)`: rebuild, call, return `(out, changes)`."""

    def run(leaves: list[Any], args: tuple[Any, ...]) -> tuple[Any, Any]:
        root, call_args, _ = enter(static, leaves, args, {})
        out = f(*call_args)
        return out, _all_leaves(root, static, leaves, transform, what, "branches")

    return run


def _all_leaves(
    root: Module | None,
    static: LiftStatic,
    leaves: list[Any],
    transform: str,
    what: str,
    others: str,
) -> Any:
    changes = leave(root, static, leaves, transform, changes_only=False)
    if changes is not None and changes[1].value[0] is not None:
        raise ValueError(MSG_STRUCTURE.format(transform=transform, what=what, others=others))
    return changes


def cond(pred: Any, true_fun: Callable[..., R], false_fun: Callable[..., R], *operands: Any) -> R:
    """`jax.lax.cond` over operands that may be Modules: the taken branch's changes to
    them are written back.

    Args:
        pred: A scalar boolean (traced or not).
        true_fun: Called with the operands when `pred` is true.
        false_fun: Called with the operands otherwise; it must return the same
            structure as `true_fun`.
        *operands: Modules (shared between them as usual), Contexts and pytrees.

    Returns:
        The output of the branch taken.

    Raises:
        ValueError: If a branch changes a Module's structure.

    Example:
        ```python
        counter = nnx.Linear(2, 2, ctx=nnx.context(0))
        counter.calls = nnx.BatchStat(jnp.array(0))

        def count(m: nnx.Linear) -> jax.Array:
            m.calls = m.calls + 1
            return m.calls

        def skip(m: nnx.Linear) -> jax.Array:
            return m.calls

        assert int(nnx.cond(True, count, skip, counter)) == 1
        assert int(nnx.cond(False, count, skip, counter)) == 1
        assert int(counter.calls) == 1
        ```
    """
    lift = Lifted(operands, {})
    out, changes = _lax_cond(
        pred,
        _run(lift.static, true_fun, "nnx.cond", "branch"),
        _run(lift.static, false_fun, "nnx.cond", "branch"),
        lift.traced,
        lift.args,
    )
    lift.write_back(changes)
    return out  # type: ignore[no-any-return]


def switch(index: Any, branches: Sequence[Callable[..., R]], *operands: Any) -> R:
    """`jax.lax.switch` over operands that may be Modules: the chosen branch's changes
    to them are written back.

    Args:
        index: An integer scalar; clamped into range, as `jax.lax.switch` does.
        branches: The functions to choose from, each taking the operands and returning
            the same structure.
        *operands: Modules, Contexts and pytrees.

    Returns:
        The output of the chosen branch.

    Raises:
        ValueError: If a branch changes a Module's structure.

    Example:
        ```python
        lin = nnx.Linear(2, 2, ctx=nnx.context(0))
        scale = [lambda m: m.kernel.sum(), lambda m: 2 * m.kernel.sum()]
        assert jnp.allclose(nnx.switch(1, scale, lin), 2 * lin.kernel.sum())
        ```
    """
    lift = Lifted(operands, {})
    runs = [_run(lift.static, f, "nnx.switch", "branch") for f in branches]
    out, changes = _lax_switch(index, runs, lift.traced, lift.args)
    lift.write_back(changes)
    return out  # type: ignore[no-any-return]


class _LoopValue:
    """A loop value split for JAX: its Modules (the value itself, or items of a tuple or
    list) as a Lifted, the rest carried as is."""

    def __init__(self, value: Any, transform: str) -> None:
        self.transform = transform
        self.kind: Callable[[Sequence[Any]], Any] | None = None
        self.items: tuple[Any, ...] = (value,)
        if is_sequence(value):
            self.kind = type(value)
            self.items = tuple(value)
        self.lift = Lifted(self.items, {})

    def rebuild(self, leaves: list[Any], args: tuple[Any, ...]) -> tuple[Module | None, Any]:
        """Inside: the value, with the rebuilt Modules in place."""
        root, items, _ = enter(self.lift.static, leaves, args, {})
        return root, self._pack(items)

    def carry(self, root: Module | None, leaves: list[Any], given: Any, new: Any) -> Any:
        """Inside: the next carry, from the value a step returned."""
        new_items = tuple(new) if self.kind is not None else (new,)
        given_items = tuple(given) if self.kind is not None else (given,)
        for position, (old, item) in enumerate(zip(given_items, new_items)):
            if isinstance(old, Module) and item is not old:
                raise ValueError(
                    MSG_NOT_THE_SAME.format(
                        transform=self.transform,
                        what="body_fun",
                        position=position,
                        got=type(item).__name__,
                    )
                )
        args = tuple(None if isinstance(i, Module) else i for i in new_items)
        changes = _all_leaves(root, self.lift.static, leaves, self.transform, "loop body", "steps")
        return (changes[0] if changes is not None else leaves), args

    def result(self, leaves: list[Any], args: tuple[Any, ...]) -> Any:
        """Outside, after the loop: write the Modules' final leaves back, return the value."""
        if self.lift.root is not None:
            self.lift.write_back((leaves, StaticBox((None, tuple(range(len(leaves)))))))
        return self._pack([o if isinstance(o, Module) else a for o, a in zip(self.items, args)])

    def _pack(self, items: Sequence[Any]) -> Any:
        if self.kind is None:
            return items[0]
        return self.kind(items)


def fori_loop(
    lower: int | jax.Array, upper: int | jax.Array, body_fun: Callable[[Any, V], V], init_val: V
) -> V:
    """`jax.lax.fori_loop` whose value may be (or hold, as a tuple or list) Modules:
    `body_fun(i, val)` changes them in place and returns the value; the final state is
    written back into the caller's Modules.

    Args:
        lower: The first index.
        upper: One past the last index.
        body_fun: `(i, val) -> val`; it returns the Modules it was given (at the same
            positions) and new values for the rest.
        init_val: A Module, a tuple or list of Modules and pytrees, or a pytree.

    Returns:
        The final value (its Modules are the caller's, updated).

    Raises:
        ValueError: If the body changes a Module's structure or returns another Module.

    Example:
        ```python
        lin = nnx.Linear(2, 2, ctx=nnx.context(0))
        lin.steps = nnx.BatchStat(jnp.array(0))

        def body(i: jax.Array, val: tuple[nnx.Linear, jax.Array]):
            m, total = val
            m.steps = m.steps + 1
            return m, total + i

        m, total = nnx.fori_loop(0, 4, body, (lin, jnp.array(0)))
        assert m is lin and int(lin.steps) == 4 and int(total) == 6
        ```
    """
    value = _LoopValue(init_val, "nnx.fori_loop")

    def step(i: Any, carry: tuple[list[Any], tuple[Any, ...]]) -> Any:
        leaves, args = carry
        root, val = value.rebuild(leaves, args)
        return value.carry(root, leaves, val, body_fun(i, val))

    leaves, args = _lax_fori_loop(lower, upper, step, (value.lift.traced, value.lift.args))
    return value.result(leaves, args)  # type: ignore[no-any-return]


def while_loop(cond_fun: Callable[[V], Any], body_fun: Callable[[V], V], init_val: V) -> V:
    """`jax.lax.while_loop` whose value may be (or hold, as a tuple or list) Modules:
    `body_fun(val)` changes them in place; `cond_fun(val)` may only read them; the final
    state is written back into the caller's Modules.

    Args:
        cond_fun: `val -> bool scalar`: whether to run the body again.
        body_fun: `val -> val`, returning the Modules it was given.
        init_val: A Module, a tuple or list of Modules and pytrees, or a pytree.

    Returns:
        The final value.

    Raises:
        ValueError: If `cond_fun` changes a Module, or the body changes a Module's
            structure or returns another Module.

    Example:
        ```python
        lin = nnx.Linear(2, 2, ctx=nnx.context(0))
        lin.steps = nnx.BatchStat(jnp.array(0))

        def body(m: nnx.Linear) -> nnx.Linear:
            m.steps = m.steps + 1
            return m

        nnx.while_loop(lambda m: m.steps < 5, body, lin)
        assert int(lin.steps) == 5
        ```
    """
    value = _LoopValue(init_val, "nnx.while_loop")

    def test(carry: tuple[list[Any], tuple[Any, ...]]) -> Any:
        leaves, args = carry
        root, val = value.rebuild(leaves, args)
        keep_going = cond_fun(val)
        changes = leave(root, value.lift.static, leaves, "nnx.while_loop")
        if changes is not None and (changes[0] or changes[1].value[0] is not None):
            raise ValueError(MSG_COND_CHANGED)
        return keep_going

    def step(carry: tuple[list[Any], tuple[Any, ...]]) -> Any:
        leaves, args = carry
        root, val = value.rebuild(leaves, args)
        return value.carry(root, leaves, val, body_fun(val))

    leaves, args = _lax_while_loop(test, step, (value.lift.traced, value.lift.args))
    return value.result(leaves, args)  # type: ignore[no-any-return]

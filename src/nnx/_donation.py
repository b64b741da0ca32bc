"""Buffer donation for `nnx.jit`: which module leaves and which arguments a call
donates, and how they travel.

A donated input buffer is gone after the call (XLA reuses it for an output). So:

- every donated module leaf is also an output of the compiled function, changed or
  not, and is written back: the Module never holds a deleted array, and its values
  are those of the undonated call;
- an array object that appears twice among the inputs (a Module holding it in two
  Variables, or a Module and another argument) cannot be donated once and read
  again: such module leaves are kept, not donated, and a donated argument that shares
  an array with another input is refused with a clear error (XLA's own is
  "Attempt to use a buffer that was previously donated");
- a Context cannot be donated: its keys are not outputs.

The compiled function takes the kept and the donated parts as separate arguments and
rejoins them inside (`Donated.join`); the donated leaves' indices are part of its
static key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Final

import jax

from ._context import PureContext
from ._lift import Lifted, LiftStatic
from ._module import GraphSpec

__all__ = ["Donated", "DonationSplit", "split_donated"]

MSG_DONATED_CONTEXT: Final = (
    "nnx.jit({fun}): {which} is donated but holds a Context; its keys are not returned "
    "by the call, so it cannot give up its buffers. Remove it from donate_argnums/"
    "donate_argnames."
)
MSG_DONATED_SHARED: Final = (
    "nnx.jit({fun}): the donated {which} holds an array that another input (a Module "
    "or another argument) also holds; once donated, that buffer could not be read "
    "again. Pass a copy (jnp.array(x, copy=True)) or do not donate it."
)
_CACHE_LIMIT: Final = 64


class Donated:
    """The donated parameters of one `nnx.jit` function: positions and names (each
    completed from the other through the signature)."""

    __slots__ = ("_module_leaves", "fun", "names", "nums")

    def __init__(self, fun: Callable[..., Any], nums: tuple[int, ...], names: tuple[str, ...]):
        self.fun = getattr(fun, "__name__", "function")
        self.nums = frozenset(nums)
        self.names = frozenset(names)
        self._module_leaves: dict[LiftStatic, tuple[int, ...]] = {}

    def covers(self, slot: int | str) -> bool:
        return slot in self.nums if isinstance(slot, int) else slot in self.names

    def module_leaves(self, static: LiftStatic) -> tuple[int, ...]:
        """The indices of the graph leaves that belong to donated Modules, for one
        graph structure and placement of the Modules (cached)."""
        found = self._module_leaves.get(static)
        if found is None:
            graph = static.graph
            assert isinstance(graph, GraphSpec)
            slots = static.module_slots
            donated = {j for j, slot in enumerate(slots) if self.covers(slot)}
            if not donated:
                found = ()
            elif len(slots) == 1:
                found = tuple(range(len(graph.paths)))
            else:  # several Modules form one nnx.Sequence: a path starts with the index
                found = tuple(i for i, p in enumerate(graph.paths) if p[0] in donated)
            if len(self._module_leaves) >= _CACHE_LIMIT:
                self._module_leaves.clear()
            self._module_leaves[static] = found
        return found

    @staticmethod
    def join(kept: list[Any], donated: list[Any], indices: tuple[int, ...]) -> list[Any]:
        """The graph's leaves from the kept ones and the donated ones at `indices`."""
        at = set(indices)
        kept_it, donated_it = iter(kept), iter(donated)
        return [
            next(donated_it) if i in at else next(kept_it) for i in range(len(kept) + len(donated))
        ]


class DonationSplit:
    """One call's inputs split for donation (see `split_donated`)."""

    __slots__ = ("args", "donated_args", "donated_kwargs", "indices", "kept", "kwargs", "leaves")

    def __init__(self) -> None:
        self.indices: tuple[int, ...] = ()
        self.kept: list[Any] = []
        self.leaves: list[Any] = []
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        self.donated_args: dict[int, Any] = {}
        self.donated_kwargs: dict[str, Any] = {}


def split_donated(
    donate: Donated, lift: Lifted, args: list[Any], kwargs: dict[str, Any]
) -> DonationSplit:
    """Split one call: the module leaves to donate (`indices`, `leaves`) and to keep,
    and the non-module arguments to donate (`donated_args`/`donated_kwargs`, None in
    their place in `args`/`kwargs`). `args`/`kwargs` have None at the Modules' and the
    static arguments' places."""
    split = DonationSplit()
    module_slots = set(lift.static.module_slots)
    new_args = list(args)
    for i, value in enumerate(args):
        if i in donate.nums and i not in module_slots and value is not None:
            _refuse_context(donate, f"argument {i}", value)
            split.donated_args[i] = value
            new_args[i] = None
    new_kwargs = dict(kwargs)
    for name, value in kwargs.items():
        if name in donate.names and name not in module_slots and value is not None:
            _refuse_context(donate, repr(name), value)
            split.donated_kwargs[name] = value
            new_kwargs[name] = None
    split.args, split.kwargs = tuple(new_args), new_kwargs

    leaves: list[Any] = lift.traced
    candidates = donate.module_leaves(lift.static) if lift.root is not None else ()
    # how often each buffer is an input (Python scalars are not buffers)
    uses = Counter(id(x) for x in leaves if isinstance(x, jax.Array))
    uses.update(_array_ids((split.args, split.kwargs)))
    for which, value in (
        *((f"argument {i}", v) for i, v in split.donated_args.items()),
        *((repr(k), v) for k, v in split.donated_kwargs.items()),
    ):
        own = _array_ids(value)
        if any(uses[i] for i in own) or len(set(own)) < len(own):
            raise ValueError(MSG_DONATED_SHARED.format(fun=donate.fun, which=which))
    split.indices = tuple(i for i in candidates if uses[id(leaves[i])] == 1)
    at = set(split.indices)
    split.leaves = [leaves[i] for i in split.indices]
    split.kept = [x for i, x in enumerate(leaves) if i not in at]
    return split


def _array_ids(tree: Any) -> list[int]:
    return [id(x) for x in jax.tree_util.tree_leaves(tree) if isinstance(x, jax.Array)]


def _refuse_context(donate: Donated, which: str, value: Any) -> None:
    if isinstance(value, PureContext) or any(isinstance(x, PureContext) for x in _items(value)):
        raise ValueError(MSG_DONATED_CONTEXT.format(fun=donate.fun, which=which))


def _items(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [*value]
    return [value]

"""`nnx.jit`: `jax.jit` for functions of Modules, keyed on the graph's structure, returning
only the leaves that changed."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, cast, overload

from typing_extensions import ParamSpec

from ._compat import (
    jax_jit,
)
from ._donation import Donated, split_donated
from ._lift import Lifted, LiftStatic, StaticBox, argnums_tuple, enter, leave

__all__ = ["jit"]

P = ParamSpec("P")
R = TypeVar("R")


# ------------------------------------------------------------------------------------
# jit


class _JitStatic:
    """The hashable part of an `nnx.jit` call: the Modules' LiftStatic, the static
    arguments and, with donation, the indices of the donated module leaves."""

    __slots__ = ("_hash", "donated", "lift", "static_args")

    def __init__(
        self,
        lift: LiftStatic,
        static_args: tuple[tuple[int | str, Any], ...],
        donated: tuple[int, ...] = (),
    ) -> None:
        self.lift = lift
        self.static_args = static_args
        self.donated = donated
        self._hash = hash((lift, static_args, tuple(v.__class__ for _, v in static_args), donated))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or (
            isinstance(other, _JitStatic)
            and self._hash == other._hash
            and self.static_args == other.static_args
            and self.donated == other.donated
            and all(
                type(a) is type(b) for (_, a), (_, b) in zip(self.static_args, other.static_args)
            )
            and self.lift == other.lift
        )


@overload
def jit(
    fun: Callable[P, R],
    /,
    *,
    stateful: bool = True,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    donate_argnums: int | Sequence[int] = (),
    donate_argnames: str | Sequence[str] = (),
    **jit_kwargs: Any,
) -> Callable[P, R]: ...
@overload
def jit(
    fun: None = None,
    /,
    *,
    stateful: bool = True,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    donate_argnums: int | Sequence[int] = (),
    donate_argnames: str | Sequence[str] = (),
    **jit_kwargs: Any,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def jit(
    fun: Callable[P, R] | None = None,
    /,
    *,
    stateful: bool = True,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    donate_argnums: int | Sequence[int] = (),
    donate_argnames: str | Sequence[str] = (),
    **jit_kwargs: Any,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """`jax.jit` for functions of Modules: `nnx.jit(step)(model, x)`.

    Module arguments (top-level, positional or keyword; several Modules form one graph,
    so sharing between them survives) are split into their state, traced, and rebuilt
    inside; every change made inside (new values, new or deleted Variables, static
    attributes) is written back into the same Module objects after the call, and only
    the leaves that changed come back out of the compiled function. Contexts among
    the arguments (`ctx=`) are split and rebuilt inside: one Context passed on every
    call draws fresh keys each time without retracing. Other arguments are traced as
    by `jax.jit`, except the static ones.

    The cache is keyed on the graph's structure: `fun` is traced again when a
    module's structure, a static attribute, a leaf's shape or dtype, or a static
    argument changes (by `==`, or by type: `1` and `1.0` trace apart), not when only
    values change. Keeps `fun`'s signature for type checkers; works as a decorator,
    with or without options, also on methods (`self` is a Module argument).

    Args:
        fun: The function to compile. None: return a decorator with these options.
        stateful: Write the changes made inside back into the Modules. False
            discards them (the Modules are left as they were).
        static_argnums: Positions of arguments passed as Python values (hashable,
            part of the cache key) instead of traced, as for `jax.jit`; a parameter
            named by position is also static when passed by keyword.
        static_argnames: Names of such arguments; also static when passed by
            position.
        donate_argnums: Positions of arguments whose buffers the call may reuse for
            its outputs, as for `jax.jit` (on accelerators a train step then holds
            one copy of the parameters and optimizer state, not two). A donated
            Module keeps working: every one of its arrays is replaced by the call's
            output, changed or not, so none is left deleted; the results are those
            of the undonated call. A donated array argument (not in a Module) is
            deleted by the call, as with `jax.jit`. An array that a Module holds
            twice, or that another argument also holds, is not donated.
        donate_argnames: Names of such arguments; also donated when passed by
            position.
        **jit_kwargs: Other `jax.jit` options (`in_shardings`, `out_shardings`,
            `keep_unused`, ...), passed on.

    Returns:
        The compiled function (or, with `fun=None`, a decorator).

    Raises:
        ValueError: If an argument is both static and donated; at a call, if a
            donated argument is a Context (its keys are not returned).
        TypeError: At a call, if a static argument is not hashable, or a static
            attribute of a Module was set to a traced value inside.
        ValueError: At a call, if `fun` adds, removes or relinks submodules (create
            them outside); the Modules are then left unchanged.

    Example:
        ```python
        class Counter(nnx.Module):
            def __init__(self, *, ctx: nnx.Context) -> None:
                self.linear = nnx.Linear(2, 2, ctx=ctx)
                self.calls = nnx.var("calls", jnp.array(0))

            def __call__(self, x: jax.Array) -> jax.Array:
                self.calls += 1
                return self.linear(x)


        traces = []


        @nnx.jit(static_argnums=2)
        def step(model: Counter, x: jax.Array, power: int) -> jax.Array:
            traces.append(power)  # runs while tracing only
            return model(x) ** power


        model, x = Counter(ctx=nnx.context(0)), jnp.ones((1, 2))
        step(model, x, 2)
        step(model, x, 2)
        assert model.calls == 2 and traces == [2]  # written back, traced once
        step(model, x, 3)  # a new static value: traced again
        assert traces == [2, 3]

        peek = nnx.jit(lambda m, x: m(x), stateful=False)
        assert peek(model, x).shape == (1, 2) and model.calls == 3  # discarded
        ```
    """
    if fun is None:  # used as @nnx.jit(...)
        options = dict(stateful=stateful, static_argnums=static_argnums, **jit_kwargs)
        decorator = functools.partial(
            jit,
            static_argnames=static_argnames,
            donate_argnums=donate_argnums,
            donate_argnames=donate_argnames,
            **options,
        )
        return cast("Callable[[Callable[P, R]], Callable[P, R]]", decorator)
    f: Callable[..., Any] = fun
    static_nums, static_names = _static_slots(
        f,
        argnums_tuple(static_argnums),
        (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames),
    )

    donate_nums, donate_names = _static_slots(
        f,
        argnums_tuple(donate_argnums),
        (donate_argnames,) if isinstance(donate_argnames, str) else tuple(donate_argnames),
    )
    if donate_nums or donate_names:
        _refuse_static_donation(f, static_nums, static_names, donate_nums, donate_names)
        return _donating_jit(
            f,
            stateful,
            static_nums,
            static_names,
            Donated(f, donate_nums, donate_names),
            jit_kwargs,
        )

    inner = _traced(f, stateful)
    jitted = jax_jit(inner, static_argnums=(0,), **jit_kwargs)

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        lift = Lifted(args, kwargs)
        call_args, call_kwargs, static_args = _take_static(
            f, lift.args, lift.kwargs, static_nums, static_names
        )
        # the LiftStatic alone keys the trace when there are no static arguments
        static = _JitStatic(lift.static, tuple(static_args)) if static_args else lift.static
        out, changes = jitted(static, lift.traced, tuple(call_args), call_kwargs)
        lift.write_back(changes)
        return out  # type: ignore[no-any-return]

    return wrapper


def _traced(
    f: Callable[..., Any], stateful: bool
) -> Callable[
    [_JitStatic | LiftStatic, list[Any], tuple[Any, ...], dict[str, Any]], tuple[Any, Any]
]:
    """The function `jax.jit` traces: rebuild the modules from their leaves and the
    static arguments, call `f`, and return its output with what changed."""

    def inner(
        static: _JitStatic | LiftStatic,
        leaves: list[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, Any]:
        if isinstance(static, _JitStatic):
            args_list = list(args)
            for slot, value in static.static_args:
                if isinstance(slot, int):
                    args_list[slot] = value
                else:
                    kwargs = {**kwargs, slot: value}
            args, lift = tuple(args_list), static.lift
        else:
            lift = static
        root, call_args, call_kwargs = enter(lift, leaves, args, kwargs)
        out = f(*call_args, **call_kwargs)
        donated = static.donated if isinstance(static, _JitStatic) else ()
        if not stateful:
            # donated leaves come back as they went in: their input buffers are gone
            return out, ([leaves[i] for i in donated], StaticBox((None, donated)))
        return out, leave(root, lift, leaves, "nnx.jit", returned=donated)

    return inner


def _donating_jit(
    f: Callable[..., Any],
    stateful: bool,
    static_nums: tuple[int, ...],
    static_names: tuple[str, ...],
    donate: Donated,
    jit_kwargs: dict[str, Any],
) -> Callable[..., Any]:
    """`nnx.jit` with buffer donation: the donated module leaves and arguments travel
    as separate, donated arguments of the compiled function; every donated module
    leaf comes back out and is written back (see `_donation.py`)."""
    inner = _traced(f, stateful)

    def split_inner(
        static: _JitStatic,
        kept: list[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        donated: list[Any],
        donated_args: dict[int, Any],
        donated_kwargs: dict[str, Any],
    ) -> tuple[Any, Any]:
        leaves = donate.join(kept, donated, static.donated)
        full_args = tuple(donated_args.get(i, a) for i, a in enumerate(args))
        return inner(static, leaves, full_args, {**kwargs, **donated_kwargs})

    jitted = jax_jit(split_inner, static_argnums=(0,), donate_argnums=(4, 5, 6), **jit_kwargs)

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        lift = Lifted(args, kwargs)
        call_args, call_kwargs, static_args = _take_static(
            f, lift.args, lift.kwargs, static_nums, static_names
        )
        split = split_donated(donate, lift, call_args, call_kwargs)
        static = _JitStatic(lift.static, tuple(static_args), split.indices)
        out, changes = jitted(
            static,
            split.kept,
            split.args,
            split.kwargs,
            split.leaves,
            split.donated_args,
            split.donated_kwargs,
        )
        lift.write_back(changes)
        return out

    return wrapper


MSG_STATIC_DONATED: Final = (
    "nnx.jit({fun}): {which} is both static and donated. A static argument is a Python "
    "value, not a buffer: remove it from donate_argnums/donate_argnames."
)


def _refuse_static_donation(
    fun: Callable[..., Any],
    static_nums: tuple[int, ...],
    static_names: tuple[str, ...],
    donate_nums: tuple[int, ...],
    donate_names: tuple[str, ...],
) -> None:
    # positions and names name the same parameters (each completed from the other)
    both = [f"argument {i}" for i in sorted(set(static_nums) & set(donate_nums))] or [
        repr(n) for n in sorted(set(static_names) & set(donate_names))
    ]
    if both:
        name = getattr(fun, "__name__", "function")
        raise ValueError(MSG_STATIC_DONATED.format(fun=name, which=", ".join(both)))


def _take_static(
    f: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    static_nums: tuple[int, ...],
    static_names: tuple[str, ...],
) -> tuple[list[Any], dict[str, Any], list[tuple[int | str, Any]]]:
    """Take the static arguments out of a call: `(args, kwargs, [(slot, value)])`."""
    call_args = list(args)
    static_args: list[tuple[int | str, Any]] = []
    for i in static_nums:
        if i < len(call_args):
            static_args.append((i, _hashable_static(f, i, call_args[i])))
            call_args[i] = None
    call_kwargs = kwargs
    for name in static_names:
        if name in call_kwargs:
            static_args.append((name, _hashable_static(f, name, call_kwargs[name])))
            call_kwargs = {k: v for k, v in call_kwargs.items() if k != name}
    return call_args, call_kwargs, static_args


def _static_slots(
    fun: Callable[..., Any], nums: tuple[int, ...], names: tuple[str, ...]
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The positions and names of the static arguments, each completed from the other
    through `fun`'s signature, as `jax.jit` does: `static_argnums=1` also makes the
    parameter at position 1 static when it is passed by keyword, and vice versa."""
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):  # no signature: take them as given
        return tuple(sorted({i for i in nums if i >= 0})), names
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    resolved = {i + len(positional) if i < 0 else i for i in nums}
    by_keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    more_names = {
        positional[i].name
        for i in resolved
        if 0 <= i < len(positional) and positional[i].kind is by_keyword
    }
    more_nums = {i for i, p in enumerate(positional) if p.name in names and p.kind is by_keyword}
    all_nums = tuple(sorted(i for i in resolved | more_nums if i >= 0))
    return all_nums, tuple(sorted(set(names) | more_names))


MSG_UNHASHABLE_STATIC: Final = (
    "{fun}: the static argument {which} is a {type}, which is not hashable ({error}). "
    "Static arguments key the compilation cache: pass a hashable value (a tuple instead "
    "of a list, a frozen dataclass), or make it an ordinary (traced) argument."
)


def _hashable_static(fun: Callable[..., Any], which: int | str, value: Any) -> Any:
    try:
        hash(value)
    except TypeError as e:
        where = f"at position {which}" if isinstance(which, int) else repr(which)
        raise TypeError(
            MSG_UNHASHABLE_STATIC.format(
                fun=f"nnx.jit({getattr(fun, '__name__', 'function')})",
                which=where,
                type=type(value).__name__,
                error=e,
            )
        ) from None
    return value

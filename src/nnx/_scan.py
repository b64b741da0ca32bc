"""Scan over layers: `nnx.scan` (a lifted `jax.lax.scan` over a module whose state is
stacked) and `nnx.Scan` (a stack of `length` modules built with `jax.vmap`, applied with
`nnx.scan`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast, overload

import jax
from typing_extensions import ParamSpec, TypedDict, Unpack

from ._compat import (
    jax_vmap,
)
from ._context import Context
from ._filters import Filter, FilterT
from ._lift import (
    Lifted,
    LiftedCall,
    SplitContext,
    call_named,
    enter,
    is_sequence,
    is_tuple,
    leading_sizes,
    leave,
    move_axis,
    refuse_broadcast_changes,
    tree_map,
)
from ._module import (
    Module,
    merge_into,
)
from ._spmd import PARTITION_NAME
from ._state import State
from ._variables import is_variable

__all__ = ["Scan", "ScanModule", "ScanOptions", "scan"]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=Module)


_lax_scan: Callable[..., Any] = getattr(jax.lax, "scan")  # noqa: B009


@dataclasses.dataclass(frozen=True)
class ScanOptions:
    """How state and RNG streams are treated by a scan over layers: the options of
    `nnx.scan` and `nnx.Scan`, stored as the static attribute `options` of a Scan.

    The module's state is partitioned by the filters `(*variable_axes, variable_broadcast,
    variable_carry)`, each entry going to the first that matches, every entry matched.
    Frozen and hashable: the keyword options are normalized (mappings become tuples
    of pairs, lists of filters tuples).
    """

    variable_axes: tuple[tuple[Filter, int], ...] = ()
    """`(filter, axis)` pairs (given as a mapping `{filter: axis}`): state stacked along
    `axis`, one slice per step (the layers' parameters). Default: none."""
    variable_broadcast: Filter = None
    """State shared by every step, read-only inside: changing it raises ValueError (use
    `variable_carry` for state that changes). Default None (nothing)."""
    variable_carry: Filter = ...
    """State threaded from step to step and written back at the end (counters).
    Default `...`: everything the other filters leave."""
    split_rngs: Filter = None
    """The RNG streams of `ctx=` split into one key per step (a name, a tuple or list of
    names, `...` for all); the other streams are shared by every step. Default None.
    Naming a stream the Context lacks is fine unless nothing is split then, or the name
    looks like a typo of a stream that would be shared (`ValueError`)."""
    in_axes: int | None = 0
    """The axis of `xs` scanned over (one slice per step); None passes the whole `xs`
    to every step. Default 0."""
    out_axes: int = 0
    """The axis of the stacked per-step outputs `ys`. Default 0."""
    length: int | None = None
    """The number of steps (layers); needed to build stacked layers or split streams at
    init, and at a call when nothing stacked tells it. Default None: from the stacked
    state and `xs`."""
    reverse: bool = False
    """Scan from the last layer to the first, as for `jax.lax.scan`."""
    unroll: int = 1
    """As for `jax.lax.scan`: steps unrolled per loop iteration."""
    metadata_params: tuple[tuple[str, Any], ...] = ()
    """`{nnx.PARTITION_NAME: "layers"}` inserts the name of the stacked axis into the
    `sharding` of each stacked Variable that has one (absent inside the body)."""

    @property
    def filters(self) -> tuple[Filter, ...]:
        """The partition filters: `(*variable_axes filters, variable_broadcast,
        variable_carry)`."""
        return (*(f for f, _ in self.variable_axes), self.variable_broadcast, self.variable_carry)

    @property
    def axes(self) -> tuple[int, ...]:
        """The stacking axis of each `variable_axes` filter, in order."""
        return tuple(axis for _, axis in self.variable_axes)

    @property
    def partition_name(self) -> str | None:
        """The name `metadata_params` gives the stacked axis, or None."""
        name: str | None = dict(self.metadata_params).get(PARTITION_NAME)
        return name


_DEFAULT_OPTIONS: Final = ScanOptions()


def _freeze(filter: Filter) -> Filter:
    """Lists become tuples, so that the options are hashable (static)."""
    if is_sequence(filter):
        return tuple(_freeze(f) for f in filter)
    return filter


class ScanKwargs(TypedDict, Generic[FilterT], total=False):
    """The options `nnx.scan` and `nnx.Scan` take as keywords
    (`**options: Unpack[ScanKwargs[FilterT]]`); their meaning and defaults are the fields of
    `nnx.ScanOptions`. Every key is optional; `variable_axes` and `metadata_params`
    are mappings here (None: empty). An unknown key raises `TypeError`."""

    variable_axes: Mapping[FilterT, int] | None
    variable_broadcast: Filter
    variable_carry: Filter
    split_rngs: Filter
    in_axes: int | None
    out_axes: int
    length: int | None
    reverse: bool
    unroll: int
    metadata_params: Mapping[str, Any] | None


_OPTION_NAMES: Final = frozenset(ScanKwargs.__annotations__)


def _options(kwargs: ScanKwargs[Any], who: str) -> ScanOptions:
    """The ScanOptions of these keywords (defaults: ScanOptions's own), with filters
    made hashable: the options are a static attribute of `nnx.Scan`."""
    unknown = sorted(set(kwargs) - _OPTION_NAMES)
    if unknown:
        raise TypeError(
            f"{who}: unknown option(s) {unknown}; the options are {sorted(_OPTION_NAMES)}"
        )
    given: dict[str, Any] = dict(kwargs)
    if "variable_axes" in given:
        axes: Mapping[Filter, int] = given["variable_axes"] or {}
        given["variable_axes"] = tuple((_freeze(f), axis) for f, axis in axes.items())
    if "metadata_params" in given:
        params: Mapping[str, Any] = given["metadata_params"] or {}
        given["metadata_params"] = tuple(sorted(params.items()))
    for name in ("variable_broadcast", "variable_carry", "split_rngs"):
        if name in given:
            given[name] = _freeze(given[name])
    return dataclasses.replace(_DEFAULT_OPTIONS, **given)


MSG_SCAN_OUTPUT: Final = (
    "nnx.scan: the scanned function must return a pair (carry, y) (y may be None), "
    "got {got}. Return the new carry and the per-step output: `return carry, y`."
)


def _describe_output(out: object) -> str:
    if is_tuple(out):
        return f"a tuple of {len(out)}"
    return f"a {type(out).__name__}"


_BROADCAST_WHAT: Final = "the same for every step, in variable_broadcast"
_BROADCAST_FIX: Final = (
    "Carry it from step to step with variable_carry, stack it with variable_axes, or "
    "return the new values instead."
)


def _scan_call(
    options: ScanOptions,
    fn: Callable[..., Any],
    module: Module,
    carry: Any,
    xs: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    ctx: Context | None,
) -> tuple[Any, Any]:
    n_axes = len(options.variable_axes)
    lift = Lifted((module,), {}, options.filters)
    states: tuple[State[Any], ...] = lift.traced
    name = options.partition_name
    axes_states = [
        move_axis(_remove_axis(s, axis, name), axis, 0)
        for s, axis in zip(states[:n_axes], options.axes)
    ]
    broadcast_state, carry_state = states[n_axes], states[n_axes + 1]
    xs = move_axis(xs, options.in_axes, 0) if options.in_axes is not None else xs
    length = _scan_length(options, xs, axes_states)
    rngs = SplitContext(ctx, options.split_rngs, length, "nnx.scan")
    xs_in = xs if options.in_axes is not None else None

    def body(carry_in: tuple[Any, State[Any]], sliced: tuple[Any, ...]) -> tuple[Any, Any]:
        user_carry, carry_state = carry_in
        axes_slices, x, step_keys = sliced
        traced = (*axes_slices, broadcast_state, carry_state)
        layer, _, _ = enter(lift.static, traced, lift.args, lift.kwargs)
        x_arg = x if options.in_axes is not None else xs
        out = fn(layer, user_carry, x_arg, *args, **rngs.add_to(kwargs, step_keys))
        if not is_tuple(out) or len(out) != 2:
            raise TypeError(MSG_SCAN_OUTPUT.format(got=_describe_output(out)))
        new_carry, y = out
        new_states, new_moduledef = leave(layer, lift.static, traced, "nnx.scan")
        refuse_broadcast_changes(
            broadcast_state, new_states[n_axes], "nnx.scan", _BROADCAST_WHAT, _BROADCAST_FIX
        )
        return (new_carry, new_states[n_axes + 1]), (y, tuple(new_states[:n_axes]), new_moduledef)

    (carry_out, carry_state_out), (ys, new_axes, new_moduledef) = _lax_scan(
        body,
        (carry, carry_state),
        (tuple(axes_states), xs_in, rngs.split_keys),
        length=length,
        reverse=options.reverse,
        unroll=options.unroll,
    )
    updates = [
        _add_axis(move_axis(s, 0, axis), axis, name) for s, axis in zip(new_axes, options.axes)
    ]
    lift.write_back(((*updates, carry_state_out), new_moduledef))
    return carry_out, move_axis(ys, 0, options.out_axes)


def _scan_length(options: ScanOptions, xs: Any, axes_states: list[Any]) -> int:
    """The one length the stacked state, the scanned inputs and `length=` agree on."""
    lengths: set[int] = leading_sizes(xs, 0 if options.in_axes is not None else None)
    for s in axes_states:
        lengths |= leading_sizes(s, 0)
    if options.length is not None:
        lengths.add(options.length)
    if len(lengths) != 1:
        raise ValueError(
            "nnx.scan: cannot tell the scan length: "
            + (
                f"the stacked state and inputs disagree ({sorted(lengths)})"
                if lengths
                else "nothing is stacked; pass length="
            )
        )
    (length,) = lengths
    return length


def _add_axis(state: Any, axis: int, name: str | None) -> Any:
    """Insert the axis `name` into each stacked Variable's `sharding` at `axis`."""
    if name is None:
        return state

    def add(x: Any) -> Any:
        if is_variable(x) and x.sharding is not None:
            names = list(x.sharding)
            names.insert(axis if axis >= 0 else len(names) + axis + 1, name)
            return x.replace(sharding=tuple(names))
        return x

    return tree_map(add, state, is_leaf=is_variable)


def _remove_axis(state: Any, axis: int, name: str | None) -> Any:
    """Undo `_add_axis`: the per-layer `sharding` seen inside the body."""
    if name is None:
        return state

    def remove(x: Any) -> Any:
        if is_variable(x) and x.sharding is not None:
            names = list(x.sharding)
            if names[axis] != name:
                raise ValueError(
                    f"nnx.scan: expected the axis name {name!r} at position {axis} of the "
                    f"sharding {x.sharding} of a stacked {type(x).__name__} (metadata_params "
                    f"{{PARTITION_NAME: {name!r}}}), found {names[axis]!r}"
                )
            del names[axis]
            return x.replace(sharding=tuple(names))
        return x

    return tree_map(remove, state, is_leaf=is_variable)


@overload
def scan(
    fn: Callable[P, R], /, *, is_init: bool | None = None, **options: Unpack[ScanKwargs[FilterT]]
) -> Callable[P, R]: ...
@overload
def scan(
    fn: None = None, /, *, is_init: bool | None = None, **options: Unpack[ScanKwargs[FilterT]]
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def scan(
    fn: Callable[P, R] | None = None,
    /,
    *,
    is_init: bool | None = None,
    **options: Unpack[ScanKwargs[FilterT]],
) -> Any:
    """A lifted `jax.lax.scan` over a module whose state is stacked ("scan over layers").

    `scan(f)(module, carry, xs, *args, ctx=None, **kwargs)` calls
    `f(layer, carry, x, *args, **kwargs) -> (carry, y)` once per step and returns
    `(carry, ys)`, the `y`s stacked along `out_axes`. `layer` is the module rebuilt
    with one slice of the `variable_axes` state, the `variable_broadcast` state and
    the carried state; `x` is one slice of `xs` along `in_axes` (the whole `xs` with
    `in_axes=None`); `args` go to every step. JAX traces and compiles `f` once, not
    once per layer. The new slices and the carried state are written back to
    `module`. With `ctx=`, the streams `split_rngs` names give each step its own key
    (passed on as `ctx=`). Works as a decorator, also on methods (`self` is the
    module).

    On `__init__` (or with `is_init=True`) it builds instead: `length` layers, each
    initialized by the decorated `__init__` under `jax.vmap` (with its own keys from
    the `split_rngs` streams of `ctx=`), their `variable_axes` state stacked, all on
    the real `self`.

    Args:
        fn: The function, or method, to scan. None: return a decorator.
        is_init: Build stacked layers instead of scanning. Default None: when `fn`
            is named `__init__`.
        **options: The options of `nnx.ScanOptions` (`variable_axes`,
            `variable_broadcast`, `variable_carry`, `split_rngs`, `in_axes`,
            `out_axes`, `length`, `reverse`, `unroll`, `metadata_params`).

    Returns:
        The scanned function (or a decorator), with `fn`'s signature.

    Raises:
        TypeError: If an option is unknown; at a call, if the first argument is not
            a Module or `f` does not return a pair `(carry, y)`.
        ValueError: At a call, if the stacked state, `xs` and `length` disagree on the
            number of steps, nothing tells it, or `split_rngs` splits nothing; when
            building stacked layers or splitting streams without `length`.

    Example:
        ```python
        class Deep(nnx.Module):
            @nnx.scan(variable_axes={nnx.Param: 0}, split_rngs="params", length=3)
            def __init__(self, dim: int, *, ctx: nnx.Context) -> None:
                self.linear = nnx.Linear(dim, dim, ctx=ctx)  # one layer's

            @nnx.scan(variable_axes={nnx.Param: 0}, in_axes=None)
            def __call__(self, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
                h = jnp.tanh(self.linear(h) + x)  # self: one layer
                return h, jnp.linalg.norm(h)  # (carry, y)


        deep = Deep(2, ctx=nnx.context(0))
        assert deep.linear.kernel.shape == (3, 2, 2)  # 3 layers, stacked
        h, norms = deep(jnp.ones((1, 2)), jnp.zeros((1, 2)))  # same x every step
        assert h.shape == (1, 2) and norms.shape == (3,)
        ```
    """
    scan_options = _options(options, "nnx.scan")

    def decorate(f: Callable[P, R]) -> Callable[P, R]:
        body = cast("Callable[..., Any]", f)
        if is_init or (is_init is None and getattr(f, "__name__", None) == "__init__"):

            def init_wrapper(self: Module, *args: Any, **kwargs: Any) -> None:
                cls = type(self)

                def make(step_kwargs: dict[str, Any]) -> Module:
                    fresh: Module = Module.__new__(cls)
                    body(fresh, *args, **step_kwargs)
                    return fresh

                states, moduledef = _stacked_init(scan_options, make, kwargs, "nnx.scan(__init__)")
                merge_into(self, moduledef, states)

            wrapper: Callable[..., Any] = functools.wraps(f)(init_wrapper)
        else:

            def scan_wrapper(
                module: Any,
                carry: Any,
                xs: Any,
                *args: Any,
                ctx: Context | None = None,
                **kwargs: Any,
            ) -> Any:
                if not isinstance(module, Module):
                    raise TypeError(f"nnx.scan expects a Module first, got {type(module).__name__}")
                return _scan_call(scan_options, body, module, carry, xs, args, kwargs, ctx)

            wrapper = functools.wraps(f)(scan_wrapper)
        return cast("Callable[P, R]", wrapper)

    return decorate if fn is None else decorate(fn)


def _stacked_init(
    options: ScanOptions,
    make: Callable[[dict[str, Any]], Module],
    kwargs: dict[str, Any],
    who: str,
) -> tuple[tuple[State[Any], ...], Any]:
    """`length` modules built by `make(kwargs)` under `jax.vmap` (each with its own
    keys from the `split_rngs` streams of `kwargs["ctx"]`): their states partitioned
    by the scan filters, the `variable_axes` ones stacked, and the ModuleDef."""
    call_kwargs = dict(kwargs)
    ctx = call_kwargs.pop("ctx", None)
    if not isinstance(ctx, Context):
        if ctx is not None:
            call_kwargs["ctx"] = ctx
        ctx = None
    if ctx is None and not options.variable_axes:
        # nothing to stack or split: one module, built as is
        states, moduledef = make(call_kwargs).partition(*options.filters)
        return tuple(states), moduledef
    n = options.length
    if n is None:
        raise ValueError(
            f"{who}: pass length= (the number of layers) to build stacked layers "
            "(variable_axes) or to split RNG streams"
        )
    rngs = SplitContext(ctx, options.split_rngs, n, who)

    def init(step_keys: dict[str, Any]) -> tuple[Any, Any]:
        module = make(rngs.add_to(call_kwargs, step_keys))
        states, moduledef = module.partition(*options.filters)
        return states, moduledef  # a plain tuple: vmap's out_axes prefix matches it

    out_axes = ((*options.axes, None, None), None)
    states, moduledef = jax_vmap(init, in_axes=(0,), out_axes=out_axes, axis_size=n)(
        rngs.split_keys
    )
    name = options.partition_name
    stacked = tuple(
        _add_axis(s, axis, name) if i < len(options.axes) else s
        for i, (s, axis) in enumerate(zip(states, (*options.axes, 0, 0)))
    )
    return stacked, moduledef


class Scan(Module, Generic[M]):
    """`length` copies of a module with stacked state, applied with a lifted scan.

    `nnx.Scan(Block, variable_axes={nnx.Param: 0}, split_rngs="params", length=4)`
    returns a constructor, not a module: calling it with Block's own arguments
    (`(dim, ctx=ctx)`) builds 4 Blocks under `jax.vmap` (each from its own `"params"`
    key) as one Block whose Params are stacked on axis 0, held as the submodule
    `scan_module` of an `nnx.Scan` (static attributes `module_constructor` and
    `options`, an `nnx.ScanOptions`). The options are keywords, those of `nnx.scan`;
    `length` is needed to stack or split.

    Calling the Scan, `m(carry, xs, *args, ctx=None)`, scans
    `Block.__call__(carry, x, *args) -> (carry, y)` over the layers and returns
    `(carry, ys)`; `m.call.method(carry, xs)` scans another method. A Scan is an
    ordinary Module otherwise (paths start with `"scan_module"`).

    Raises:
        TypeError: If the options are not keywords, or one is unknown.
        ValueError: When building, as for `nnx.scan` on `__init__` (`length` missing,
            `split_rngs` splitting nothing).

    Example:
        ```python
        class Block(nnx.Module):
            def __init__(self, dim: int, *, ctx: nnx.Context) -> None:
                self.linear = nnx.Linear(dim, dim, ctx=ctx)

            def __call__(self, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
                h = jnp.tanh(self.linear(h) + x)
                return h, jnp.sum(h)  # (carry, y)

            def norm(self, h: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
                return h, jnp.linalg.norm(self.linear.kernel)


        stack = nnx.Scan(
            Block,
            variable_axes={nnx.Param: 0},  # Params stacked on axis 0, a slice a layer
            split_rngs="params",  # each layer initialized from its own key
            length=4,
        )(3, ctx=nnx.context(0))
        assert isinstance(stack.scan_module, Block)
        assert stack.scan_module.linear.kernel.shape == (4, 3, 3)

        h, ys = stack(jnp.ones((1, 3)), jnp.zeros((4, 1, 3)))  # an x per layer
        assert h.shape == (1, 3) and ys.shape == (4,)
        _, norms = stack.call.norm(jnp.ones((1, 3)), None)  # another method
        assert norms.shape == (4,) and not jnp.allclose(norms[0], norms[1])
        ```
    """

    module_constructor: Callable[..., M]
    """The constructor given to `nnx.Scan` (static)."""
    options: ScanOptions
    """The scan options (static)."""
    scan_module: M
    """The stacked layers: one module whose `variable_axes` state has the layer axis."""

    if TYPE_CHECKING:

        def __new__(  # type: ignore[misc]
            cls, constructor: Callable[P, M], /, **options: Unpack[ScanKwargs[FilterT]]
        ) -> Callable[P, Scan[M]]: ...

    else:

        def __new__(cls, *args, **kwargs):
            if not args and not kwargs:  # copy/pickle: an empty instance
                return Module.__new__(cls)
            constructor, *rest = args
            if rest:
                raise TypeError(
                    f"nnx.{cls.__name__}(constructor, **options) takes the options as "
                    "keywords; the layer's own arguments go to the constructor it returns"
                )
            return _factory(cls, constructor, _options(kwargs, f"nnx.{cls.__name__}"))

    def __call__(
        self, carry: Any, xs: Any, *args: Any, ctx: Context | None = None, **kwargs: Any
    ) -> tuple[Any, Any]:
        """Scan the layers' `__call__`: `layer(carry, x, *args, **kwargs) -> (carry, y)`.

        Args:
            carry: The initial carry.
            xs: Scanned along `in_axes` (one slice per layer), or passed whole with
                `in_axes=None`; None if the layers take no input.
            *args: Passed to every layer.
            ctx: A Context: the `split_rngs` streams give each layer its own key;
                passed on to the layers as `ctx=`. Default None: none passed.
            **kwargs: Passed to every layer.

        Returns:
            `(carry, ys)`: the final carry, and the `y`s stacked along `out_axes`.
        """
        return _scan_call(
            self.options, _call_method("__call__"), self.scan_module, carry, xs, args, kwargs, ctx
        )

    if TYPE_CHECKING:

        @property
        def call(self) -> M:
            """Scan any method of the layers: `m.call.method(carry, xs, *args, ctx=None)`.

            `m.call(carry, xs)` is `m(carry, xs)`; the method is called as
            `layer.method(carry, x, *args) -> (carry, y)`.

            Returns:
                An `nnx.LiftedCall`. For the type checkers it is the wrapped module type,
                so `m.call(...)` and `m.call.method(...)` carry the layer's signatures.
            """
            ...

    else:

        @property
        def call(self) -> LiftedCall:
            # the runtime accessor; documented in the branch above
            return LiftedCall(self._scan_method)

    def _scan_method(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        carry, xs, *rest = args
        ctx = kwargs.pop("ctx", None)
        return _scan_call(
            self.options, _call_method(name), self.scan_module, carry, xs, tuple(rest), kwargs, ctx
        )


ScanModule = Scan
"""`nnx.Scan` under the name nnx gave the class of its instances before 0.1 (when
`nnx.Scan` was a factory function); an alias kept for older code:
`isinstance(m, nnx.ScanModule)` is `isinstance(m, nnx.Scan)`."""


def _factory(cls: type[Scan[Any]], constructor: Callable[..., Any], options: ScanOptions) -> Any:
    def build(*args: Any, **kwargs: Any) -> Scan[Any]:
        def make(step_kwargs: dict[str, Any]) -> Module:
            made: Module = constructor(*args, **step_kwargs)
            return made

        states, moduledef = _stacked_init(options, make, kwargs, f"nnx.{cls.__name__}")
        scan: Scan[Any] = Module.__new__(cls)
        scan.module_constructor = constructor
        scan.options = options
        scan.scan_module = moduledef.merge(*states)
        return scan

    build.__name__ = f"{cls.__name__}({getattr(constructor, '__name__', 'constructor')})"
    build.__doc__ = getattr(constructor, "__doc__", None)
    return build


def _call_method(name: str) -> Callable[..., Any]:
    """`f(layer, *args, **kwargs)` = `layer.<name>(*args, **kwargs)`."""
    return functools.partial(call_named, name)

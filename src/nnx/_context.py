"""Context: explicit RNG streams and flags, passed to Modules as `ctx=`."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, cast

import jax
import numpy as np

from ._compat import TraceState, current_trace, is_prng_key_dtype, jax_jit, register_pytree_node
from ._errors import MSG_CONTEXT_TRACE, TraceContextError

__all__ = ["Context", "ContextDef", "PureContext", "RngStream", "context"]

KeyLike = Any  # a typed key (jax.random.key) or a raw uint32[2] key (PRNGKey)

MSG_UNKNOWN_STREAM: Final = (
    "Unknown Rng Stream: {name!r}. This Context has streams {streams}. Create it with "
    "that stream, e.g. nnx.context({name}=0) (or nnx.context(0) for 'params')."
)


def _fold_data(name: str, path: tuple[int, ...]) -> np.uint32:
    text = " ".join([name, *map(str, path)]).encode()
    data: np.uint32 = np.uint32(int.from_bytes(hashlib.blake2s(text).digest()[:4], "big"))
    return data


# One compiled fold_in: eagerly, jax.random.fold_in dispatches its primitives one by
# one (~0.5 ms on CPU); jitted it is one dispatch (~15 us). Under a trace it inlines.
# The data is a uint32 argument, so every draw reuses the one compilation per key type.
_fold_in: Callable[[KeyLike, np.uint32], jax.Array] = jax_jit(jax.random.fold_in)


class RngStream:
    """A base key plus a counter: each draw folds the stream name, its path of
    ancestor counts and the counter into the key, then advances the counter.

    Draws are deterministic: the same key, path and count give the same key. A
    Context holds one RngStream per stream name; passing an RngStream to
    `nnx.context` shares it (draws from either advance it).

    Args:
        key: The base key: a typed key (`jax.random.key(seed)`) or a raw
            `jax.random.PRNGKey(seed)`.
        count: How many draws were made so far. Default 0.
        count_path: The counts of the ancestor streams this one was forked from.
            Default `()`.

    Example:
        ```python
        stream = nnx.RngStream(jax.random.key(0))
        a, b = stream.make_rng("params"), stream.make_rng("params")
        assert stream.count == 2
        assert not jnp.array_equal(jax.random.key_data(a), jax.random.key_data(b))
        child = stream.fork()
        assert child.count_path == (2,) and stream.count == 3
        ```
    """

    __slots__ = ("count", "count_path", "key")

    def __init__(self, key: KeyLike, count: int = 0, count_path: tuple[int, ...] = ()) -> None:
        self.key = key
        self.count = count
        self.count_path = count_path

    def make_rng(self, name: str) -> jax.Array:
        """A fresh key: `key` folded with `name`, the path and the count; advances the count.

        Args:
            name: The stream name, folded into the key (so streams with one base key
                give different keys).

        Returns:
            A key of the base key's type (typed, or a raw `uint32` key).
        """
        data = _fold_data(name, (*self.count_path, self.count))
        self.count += 1
        return _fold_in(self.key, data)

    def fork(self) -> RngStream:
        """A child stream (same key, one more level of path); advances this one.

        Returns:
            A new RngStream with count 0 and path `(*count_path, count)`.
        """
        child = RngStream(self.key, 0, (*self.count_path, self.count))
        self.count += 1
        return child

    def __repr__(self) -> str:
        return f"RngStream(count={self.count}, count_path={self.count_path})"


def _is_flag_mapping(x: object) -> bool:
    return isinstance(x, Mapping) and all(
        isinstance(k, str) for k in cast("Mapping[object, Any]", x)
    )


def _is_key(x: jax.Array) -> bool:
    """A single typed key, or a single raw uint32 key (threefry's [2], rbg's [4])."""
    if is_prng_key_dtype(x.dtype):
        return x.shape == ()
    return x.dtype == np.uint32 and x.shape in ((2,), (4,))


def _as_key(value: Any, name: str) -> KeyLike:
    if isinstance(value, RngStream):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return jax.random.key(int(cast(int, value)))
    if isinstance(value, jax.Array):
        if _is_key(value):
            return value
        raise TypeError(
            f"RNG stream {name!r}: {value.dtype}{list(value.shape)} is not a PRNG key. Pass a "
            "typed key (jax.random.key(seed), shape ()) or a raw one (jax.random.PRNGKey(seed), "
            "uint32[2]), or an int seed."
        )
    raise TypeError(
        f"RNG stream {name!r} needs an int seed, a jax.random.key(...) / PRNGKey(...) "
        f"array or an RngStream, got {type(value).__name__}."
    )


class Context:
    """RNG streams and flags for Module construction and calls.

    Build it with `nnx.context(0)` (seed for `"params"`), `nnx.context(params=0,
    dropout=1)` or `nnx.context(flags=dict(use_running_average=True))`. Layers take it
    as `ctx=`: `__init__` draws parameter keys from `"params"`, calls draw e.g. from
    `"dropout"` and read flags (`deterministic`, `use_running_average`) when neither
    the call nor the layer sets them.

    A Context remembers the JAX trace it was created under: drawing a key under
    another trace (inside a `jax.jit`, `jax.vmap`, ... it was not created in) raises
    `nnx.TraceContextError`. To cross a JAX transform, split it with `partition()`
    and rebuild it inside with `merge()`, or pass it as `ctx=` to an nnx transform.

    Args:
        rngs: The streams, by name.
        flags: Flag values, by name. Default: none.

    Example:
        ```python
        ctx = nnx.context(0, dropout=1, flags=dict(deterministic=True))
        assert ctx.rng_names == ("dropout", "params")
        assert ctx.get_flag("deterministic") is True
        key = ctx.make_rng("dropout")
        assert jax.random.normal(key, (2,)).shape == (2,)

        @jax.jit
        def draw(x: jax.Array) -> jax.Array:
            return jax.random.normal(ctx.make_rng("dropout"), x.shape)  # from outside

        try:
            draw(jnp.ones(2))
        except nnx.TraceContextError:
            pass
        else:
            raise AssertionError("expected a TraceContextError")
        ```
    """

    __slots__ = ("_flags", "_rngs", "_trace")

    def __init__(
        self,
        rngs: Mapping[str, RngStream],
        flags: Mapping[str, Any] | None = None,
    ) -> None:
        self._rngs: dict[str, RngStream] = dict(rngs)
        self._flags: dict[str, Any] = dict(flags) if flags else {}
        self._trace: TraceState = current_trace()

    def _check_trace(self) -> None:
        if not self._trace.is_valid():
            raise TraceContextError(MSG_CONTEXT_TRACE)

    def make_rng(self, name: str) -> jax.Array:
        """A fresh key from stream `name` (each call gives a different key).

        Args:
            name: The stream name, e.g. `"params"` or `"dropout"`.

        Returns:
            A key: typed if the stream was seeded with an int or a typed key, a raw
            `uint32` key if it was seeded with `jax.random.PRNGKey`.

        Raises:
            ValueError: If the Context has no stream `name` ("Unknown Rng Stream").
            nnx.TraceContextError: If called under a JAX trace other than the one the
                Context was created in.

        Example:
            ```python
            ctx = nnx.context(0)
            k1, k2 = ctx.make_rng("params"), ctx.make_rng("params")
            assert not jnp.array_equal(jax.random.key_data(k1), jax.random.key_data(k2))
            try:
                ctx.make_rng("dropout")
            except ValueError as e:
                assert "Unknown Rng Stream" in str(e)
            ```
        """
        stream = self._rngs.get(name)
        if stream is None:
            raise ValueError(MSG_UNKNOWN_STREAM.format(name=name, streams=sorted(self._rngs)))
        self._check_trace()
        return stream.make_rng(name)

    def has_rng(self, name: str) -> bool:
        """Whether the Context has a stream called `name`."""
        return name in self._rngs

    @property
    def rng_names(self) -> tuple[str, ...]:
        """The stream names, sorted."""
        return tuple(sorted(self._rngs))

    @property
    def flags(self) -> Mapping[str, Any]:
        """A read-only view of the flags."""
        return MappingProxyType(self._flags)

    def has_flag(self, name: str) -> bool:
        """Whether the Context has a flag called `name`."""
        return name in self._flags

    def get_flag(self, name: str, default: Any = None) -> Any:
        """The value of flag `name`, or `default` (None) if it is not set.

        Args:
            name: The flag name.
            default: What to return if the flag is not set.

        Returns:
            The flag's value, or `default`.
        """
        return self._flags.get(name, default)

    def copy(self) -> Context:
        """A Context sharing this one's streams (draws advance both) and flags.

        The flags are copied (a new dict with the same values). The copy shares this
        one's trace too: a copy made inside `jax.jit` of a Context from outside cannot
        draw there either (its keys would be baked into the trace).

        Returns:
            The new Context.
        """
        new = Context.__new__(Context)
        new._rngs = dict(self._rngs)
        new._flags = dict(self._flags)
        new._trace = self._trace
        return new

    def partition(self) -> PureContext:
        """A pytree (keys, ContextDef) that crosses JAX transforms whole.

        `pure.merge()` rebuilds a Context whose streams are children of these: each
        child's base key is a fresh draw from its parent stream, so its keys differ from
        any this Context gives later, deterministically. The ContextDef holds only the
        stream names and flags, so partitioning the same Context again and again (e.g.
        once per `nnx.jit` call) gives an equal ContextDef and no retrace.

        Returns:
            A `PureContext`: `(keys, contextdef)`, `keys` a dict of one key per stream.

        Raises:
            nnx.TraceContextError: If called under a JAX trace other than the one the
                Context was created in.

        Example:
            ```python
            ctx = nnx.context(0, dropout=1, flags=dict(deterministic=False))

            @jax.jit
            def noise(pure: nnx.PureContext, x: jax.Array) -> jax.Array:
                inner = pure.merge()  # a Context of this trace
                assert inner.get_flag("deterministic") is False
                return x + jax.random.normal(inner.make_rng("dropout"), x.shape)

            a = noise(ctx.partition(), jnp.zeros(3))
            b = noise(ctx.partition(), jnp.zeros(3))  # fresh keys, same compilation
            assert a.shape == (3,) and not jnp.allclose(a, b)
            ```
        """
        self._check_trace()
        keys: dict[str, KeyLike] = {}
        for name in sorted(self._rngs):
            keys[name] = self._rngs[name].make_rng(name)
        counts = tuple((name, ()) for name in keys)
        return PureContext(keys, ContextDef(counts, tuple(sorted(self._flags.items()))))

    def __repr__(self) -> str:
        return f"Context(rngs={list(sorted(self._rngs))}, flags={self._flags!r})"


@dataclasses.dataclass(frozen=True)
class ContextDef:
    """The static half of a partitioned Context: stream paths and flags (hashable).

    Attributes:
        rng_counts: `(stream name, count path)` for each stream.
        flags: `(name, value)` for each flag, sorted by name.
    """

    rng_counts: tuple[tuple[str, tuple[int, ...]], ...]
    flags: tuple[tuple[str, Any], ...]

    def merge(self, keys: Mapping[str, KeyLike]) -> Context:
        """A new Context, of the current trace, with one stream per key.

        Args:
            keys: One base key per stream name of this ContextDef.

        Returns:
            The Context, with this ContextDef's flags.

        Raises:
            ValueError: If the key names are not exactly the ContextDef's streams.
        """
        paths = dict(self.rng_counts)
        if set(keys) != set(paths):
            raise ValueError(
                f"Keys {sorted(keys)} do not match the ContextDef's streams {sorted(paths)}."
            )
        return Context(
            {name: RngStream(keys[name], 0, paths[name]) for name in keys}, dict(self.flags)
        )


class PureContext(tuple[dict[str, KeyLike], ContextDef]):
    """`(keys, contextdef)`: a Context split into a pytree of keys and static data.

    Made by `Context.partition()`; `PureContext(keys, contextdef)` takes a dict of one
    key per stream name and the `ContextDef`. A tuple and a pytree: the keys are its
    leaves, the ContextDef its static aux data, so it crosses `jax.jit` whole.
    """

    __slots__ = ()

    def __new__(cls, keys: dict[str, KeyLike], contextdef: ContextDef) -> PureContext:
        return super().__new__(cls, (keys, contextdef))

    @property
    def keys(self) -> dict[str, KeyLike]:
        """The keys, one per stream name."""
        return self[0]

    @property
    def contextdef(self) -> ContextDef:
        """The static half: stream paths and flags."""
        return self[1]

    def merge(self) -> Context:
        """Rebuild a Context, of the current trace, from the keys and the ContextDef.

        Returns:
            The Context; its streams are children of the partitioned ones.
        """
        return self[1].merge(self[0])


def _pure_context_flatten(
    pure: PureContext,
) -> tuple[tuple[dict[str, KeyLike]], ContextDef]:
    return (pure[0],), pure[1]


def _pure_context_unflatten(contextdef: ContextDef, children: Iterable[Any]) -> PureContext:
    (keys,) = children
    return PureContext(keys, contextdef)


register_pytree_node(PureContext, _pure_context_flatten, _pure_context_unflatten)


def context(
    params: int | jax.Array | RngStream | None = None,
    *,
    flags: Mapping[str, Any] | None = None,
    **rngs: int | jax.Array | RngStream,
) -> Context:
    """A Context: `context(0)` seeds `"params"`; other streams by keyword.

    `context(params=0, dropout=1)` makes two streams; `flags` are read by layers via
    `get_flag` (`deterministic`, `use_running_average`). Streams seeded with different
    values, or with the same value under different names, give different keys.

    Args:
        params: The seed of the `"params"` stream: an int, a key
            (`jax.random.key(seed)` or a raw `jax.random.PRNGKey(seed)`) or an
            `RngStream` (shared, not copied). Default: no `"params"` stream.
        flags: A mapping of flag names (`str`) to values. Default: none.
        **rngs: More streams, by name, seeded as `params` is.

    Returns:
        The Context, tied to the current JAX trace.

    Raises:
        TypeError: If a seed is not an int, a single key or an RngStream, if `flags`
            is not a mapping with `str` keys, or if `params` is given twice.

    Example:
        ```python
        ctx = nnx.context(0, dropout=1, flags=dict(deterministic=True))
        layer = nnx.Linear(2, 3, ctx=ctx)  # keys from "params"
        dropout = nnx.Dropout(0.5)
        x = jnp.ones((1, 2))
        assert jnp.allclose(dropout(layer(x), ctx=ctx), layer(x))  # deterministic flag
        same = nnx.Linear(2, 3, ctx=nnx.context(0))
        assert jnp.allclose(same.kernel, layer.kernel)  # same seed, same parameters
        ```
    """
    if flags is not None and not _is_flag_mapping(flags):
        raise TypeError(
            f"context(flags=...) takes a mapping of flag names (str) to values, got "
            f"{flags!r}; e.g. nnx.context(flags=dict(deterministic=True))."
        )
    if params is not None:
        if "params" in rngs:
            raise TypeError("context() got 'params' both positionally and by keyword")
        rngs["params"] = params
    streams: dict[str, RngStream] = {}
    for name, value in rngs.items():
        key = _as_key(value, name)
        streams[name] = key if isinstance(key, RngStream) else RngStream(key)
    return Context(streams, flags)

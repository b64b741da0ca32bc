"""Agreement between the processes of a multi-process JAX job (`jax.distributed`), for
the steps of a checkpoint save or restore that every process must take together.

`agree(error, value)` is called by every process at the same point. It exchanges,
through the key-value store of `jax.distributed` (no device computation, so it works
whatever the devices and collectives), whether each process failed and one integer
(e.g. the step number the primary process chose). If any process failed,
every process raises: the failing one its own exception, the others an exception of
the same type (when it is one of the usual I/O and value errors, else RuntimeError)
that names the failing process and repeats its message. So a failure on one process
fails all of them, instead of leaving the others waiting at orbax's next barrier.

In a single-process job `agree` does nothing but re-raise.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Final

from ._compat import JAX_VERSION, distributed_client, process_count, process_index

__all__ = ["agree", "is_multiprocess", "is_primary", "require_supported"]

_MESSAGE_CHARS: Final = 4000
_PREFIX: Final = "nnx/agree"
_rounds = itertools.count()
AGREE_TIMEOUT_S: Final = 1800.0
"""How long a process waits for the others at an agreement point (a save's slowest
process may still be writing its shards)."""
_ERROR_TYPES: Final[dict[str, type[Exception]]] = {
    t.__name__: t
    for t in (
        FileExistsError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
        TimeoutError,
        OSError,
        ValueError,
        TypeError,
        KeyError,
    )
}
MSG_NO_ANSWER: Final = (
    "{what}: process {process} did not reach the same point within {timeout:.0f} s (it "
    "failed before it, or hangs); every process stops here."
)
MSG_FAILED_ELSEWHERE: Final = (
    "{what} failed on process {process} of {count}, so it fails on every process: {message}"
)


MIN_JAX: Final = (0, 8)
MSG_OLD_JAX: Final = (
    "{what} in a multi-process job needs jax >= {need}; this is jax {have}. With older "
    "releases orbax-checkpoint cannot write or read arrays spread over several processes "
    "(jax 0.4.36: its distributed client lacks key_value_try_get; jax 0.6.2: orbax fails "
    "in replica_slices). Upgrade jax, or save from a single process."
)


def is_multiprocess() -> bool:
    return process_count() > 1


def require_supported(what: str) -> None:
    """Refuse, on every process alike, a multi-process checkpoint with a jax release
    that orbax cannot do it with (a clear error instead of orbax's own, or a hang)."""
    if JAX_VERSION < MIN_JAX:
        have = ".".join(map(str, JAX_VERSION))
        need = ".".join(map(str, MIN_JAX))
        raise NotImplementedError(MSG_OLD_JAX.format(what=what, need=need, have=have))


def is_primary() -> bool:
    """Whether this process writes what is global (the marker, the file lists)."""
    return process_index() == 0


def agree(what: str, error: BaseException | None, value: int = 0) -> list[int]:
    """Every process's `value`, once every process has reached this point; raises on
    every process if `error` is set on any (see the module docstring)."""
    if not is_multiprocess():
        if error is not None:
            raise error
        return [value]
    client = distributed_client()
    count, me = process_count(), process_index()
    round_ = next(_rounds)  # every process agrees at the same points, in the same order
    record = {"value": value, "error": None if error is None else _describe(error)}
    client.key_value_set(f"{_PREFIX}/{round_}/{me}", json.dumps(record))
    records: list[Any] = []
    for process in range(count):
        try:
            text = client.blocking_key_value_get(
                f"{_PREFIX}/{round_}/{process}", int(AGREE_TIMEOUT_S * 1000)
            )
        except Exception:
            raise TimeoutError(
                MSG_NO_ANSWER.format(what=what, process=process, timeout=AGREE_TIMEOUT_S)
            ) from error
        records.append(json.loads(text))
    if error is not None:
        raise error
    for process, record in enumerate(records):
        if record["error"] is not None:
            name, message = str(record["error"][0]), str(record["error"][1])
            kind = _ERROR_TYPES.get(name, RuntimeError)
            shown = f"{name}: {message}" if kind is RuntimeError else message
            raise kind(
                MSG_FAILED_ELSEWHERE.format(what=what, process=process, count=count, message=shown)
            )
    return [int(r["value"]) for r in records]


def _describe(error: BaseException) -> tuple[str, str]:
    return type(error).__name__, str(error)[:_MESSAGE_CHARS]

"""Where a checkpoint lives on disk, and how a save replaces it without ever losing it.

A checkpoint path ``P`` is a directory that nnx owns::

    P/nnx-checkpoint.json      the marker: format name and version (nnx wrote this)
    P/.nnx-lock                what savers lock (exclusively) and readers (shared)
    P/<step>/                  an orbax CheckpointManager step: the items `state`, `nnx`
    P/<step>/nnx-files.json    the files that save wrote into that step

orbax's CheckpointManager gives each save its own step directory and finalizes it
atomically (written under a temporary name, renamed when complete), so the newest
finalized step is always a whole checkpoint. nnx adds what orbax does not do:

- a save holds an exclusive `flock` on ``P/.nnx-lock`` for its whole duration, so two
  processes never write one path at once (the second waits, then sees the first's
  checkpoint: with ``overwrite=False`` it fails);
- only a directory that nnx marked may be written into (or an empty one);
- an overwrite writes the new step first and removes the older steps only after the
  new one is final; a step is removed only if it holds nothing but the files its save
  listed (files you added keep it, with a warning), and it is checked for being
  removable before anything is written;
- the temporary directories of killed saves are removed by the next save (orbax's
  ``cleanup_tmp_directories``), under the lock, so never a live one.

So at every moment of a save or an overwrite, ``P`` holds a restorable checkpoint
(the newest finalized step), and `restore`/`load` read exactly that. Remote paths
(``gs://...``) have no file locks: there orbax's own atomic finalization is all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import time
import warnings
from collections.abc import Generator
from pathlib import Path as FsPath
from types import ModuleType
from typing import Any, Final

from typing_extensions import TypeIs

from ._multihost import agree, is_multiprocess, is_primary, require_supported

__all__ = ["read_dir", "write_items"]

MARKER: Final = "nnx-checkpoint.json"
LOCK: Final = ".nnx-lock"
FILES: Final = "nnx-files.json"
LAYOUT: Final = "nnx-checkpoint-dir"
LAYOUT_VERSION: Final = 1
LOCK_TIMEOUT_S: Final = 600.0
_ITEMS: Final = ("state", "nnx")

MSG_EXISTS: Final = (
    "Checkpoint directory {path} already exists.\n"
    "Fix: save to a new directory, or pass overwrite=True to replace it."
)
MSG_NOT_OURS: Final = (
    "Not saving into {path}: it is {what}, not an nnx checkpoint (nnx marks the "
    "directories it writes with {marker}). nnx writes only into its own checkpoints or "
    "an empty directory; remove it yourself or choose another path."
)
MSG_LEGACY: Final = (
    "Not overwriting {path}: it was written by an earlier nnx release (checkpoint layout "
    "without {marker}), which nnx can read but not replace in place. Fix: save to a new "
    "path (nnx.checkpoints.load / restore still read this one), or remove it yourself."
)
MSG_USER_FILES: Final = (
    "Not overwriting {path}: the checkpoint step {step} holds files that nnx did not write "
    "({files}), and replacing the checkpoint would delete them. Move them elsewhere, or "
    "save to another path."
)
MSG_NOT_WRITABLE: Final = (
    "Cannot save into {path}: {what} is not writable ({reason}). Nothing was written; "
    "the checkpoint there (if any) is unchanged. Fix the permissions or save elsewhere."
)
MSG_BUSY: Final = (
    "Cannot {action} {path}: another process has held its lock ({lock}) for over "
    "{timeout:.0f} s. If no other save is running, that process hangs; stop it."
)
MSG_MISSING: Final = "No checkpoint at {path} (the directory does not exist)."
MSG_INCOMPLETE: Final = (
    "No complete checkpoint at {path}: the directory is an nnx checkpoint, but no save "
    "into it has finished (one was interrupted, or is running now). Save again."
)
MSG_NOT_NNX: Final = (
    "{path} is not an nnx checkpoint (it has no {marker} and no 'nnx' item).\n"
    "Checkpoints written by nnx.checkpoints.save have them; read other orbax "
    "checkpoints with orbax directly."
)
MSG_BAD_MARKER: Final = (
    "{path}/{marker} is damaged or was edited by hand ({reason}). nnx writes it; "
    "if the checkpoint steps beside it are intact, restore the file as "
    '{{"format": "{layout}", "version": {version}}}.'
)
MSG_KEPT_STEP: Final = (
    "The new checkpoint in {path} is complete, but the older step {step} was kept: "
    "{reason}. Remove it yourself once you no longer need it."
)


def _stage(name: str) -> None:
    """A point between two steps of a save, where a crash must leave a restorable
    checkpoint. Does nothing; the crash-safety tests kill the process here."""


def _is_dict(x: object) -> TypeIs[dict[str, Any]]:
    return type(x) is dict


def _is_local(path: Any) -> bool:
    return isinstance(path, FsPath)


# ------------------------------------------------------------------------------------
# The marker, the lock, the steps


def _read_marker(path: FsPath) -> dict[str, Any] | None:
    marker = path / MARKER
    if not marker.exists():
        return None
    try:
        data: Any = json.loads(marker.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(
            MSG_BAD_MARKER.format(
                path=path, marker=MARKER, reason=e, layout=LAYOUT, version=LAYOUT_VERSION
            )
        ) from None
    if not _is_dict(data) or data.get("format") != LAYOUT:
        raise ValueError(
            MSG_BAD_MARKER.format(
                path=path,
                marker=MARKER,
                reason=f"unexpected content {data!r}",
                layout=LAYOUT,
                version=LAYOUT_VERSION,
            )
        )
    return data


def _write_json_atomically(target: FsPath, data: Any) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


@contextlib.contextmanager
def _locked(path: FsPath, *, exclusive: bool, action: str) -> Generator[None, None, None]:
    """Hold `P/.nnx-lock` (exclusive for a save, shared for a read) while inside.
    flock locks go away with the process that held them, so a killed save never
    leaves the path locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no inter-process lock
        yield
        return
    lock_path = path / LOCK
    try:
        flags = (os.O_RDWR | os.O_CREAT) if exclusive else os.O_RDONLY
        fd = os.open(lock_path, flags, 0o644)
    except OSError:
        if exclusive:
            raise
        yield  # a read-only copy of a checkpoint, with no lock file: nothing to wait for
        return
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        MSG_BUSY.format(
                            action=action, path=path, lock=lock_path, timeout=LOCK_TIMEOUT_S
                        )
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _manager(ocp: ModuleType, path: Any) -> Any:
    options = ocp.CheckpointManagerOptions(
        create=False,
        cleanup_tmp_directories=True,
        enable_async_checkpointing=False,
        max_to_keep=None,
    )
    return ocp.CheckpointManager(path, options=options, item_names=_ITEMS)


def _step_files(step_dir: FsPath) -> list[str]:
    """The files in a step directory, but for nnx's own list of them (and a partial
    write of that list, which a killed save may leave)."""
    return sorted(
        str(p.relative_to(step_dir))
        for p in step_dir.rglob("*")
        if p.is_file() and p.name != FILES and not p.name.startswith(f".{FILES}.tmp-")
    )


@dataclasses.dataclass(frozen=True)
class _Problem:
    """Why an older step must not (`user_files`), or cannot, be removed."""

    reason: str
    user_files: tuple[str, ...] = ()
    not_writable: bool = False


def _removal_problem(step_dir: FsPath) -> _Problem | None:
    listed = step_dir / FILES
    if not listed.exists():
        return _Problem(
            f"it has no {FILES} (a save was stopped right after orbax completed it), so "
            "nnx cannot tell whether you added files to it"
        )
    try:
        known = set(json.loads(listed.read_text()))
    except (OSError, ValueError) as e:
        return _Problem(f"its {FILES} cannot be read ({e})")
    extra = tuple(f for f in _step_files(step_dir) if f not in known)
    if extra:
        return _Problem(f"it holds files that nnx did not write: {list(extra[:5])}", extra)
    for directory in (step_dir, *(p for p in step_dir.rglob("*") if p.is_dir())):
        if not os.access(directory, os.W_OK | os.X_OK):
            return _Problem(f"{directory} is not writable", not_writable=True)
    return None


# ------------------------------------------------------------------------------------
# Saving


def _claim(path: FsPath) -> None:
    """Check, before the lock, that `path` is ours to write into, and create it."""
    if path.is_symlink() and not path.is_dir():
        raise FileExistsError(
            MSG_NOT_OURS.format(path=path, what="a broken symlink", marker=MARKER)
        )
    if path.exists() and not path.is_dir():
        raise FileExistsError(MSG_NOT_OURS.format(path=path, what="a file", marker=MARKER))
    if not path.exists():
        parent = path.parent
        parent.mkdir(parents=True, exist_ok=True)
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(
                MSG_NOT_WRITABLE.format(
                    path=path, what=f"its parent {parent}", reason="no write access"
                )
            )
        path.mkdir(exist_ok=True)
    else:
        _is_marked(path)  # before the lock file is made in it
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(
                MSG_NOT_WRITABLE.format(path=path, what="the directory", reason="no write access")
            )


def _is_marked(path: FsPath) -> bool:
    """Whether `path` is an nnx checkpoint directory; False for an empty one; raises
    for anything else (nothing is written into a directory nnx does not own)."""
    if _read_marker(path) is not None:
        return True
    if (path / "nnx").is_dir():
        raise FileExistsError(MSG_LEGACY.format(path=path, marker=MARKER))
    others = sorted(p.name for p in path.iterdir() if p.name != LOCK)
    if others:
        what = f"a directory holding {others[:5]}"
        raise FileExistsError(MSG_NOT_OURS.format(path=path, what=what, marker=MARKER))
    return False


def write_items(ocp: ModuleType, path: Any, items: dict[str, Any], overwrite: bool) -> None:
    """Save the orbax `items` (`state`, `nnx`) as the checkpoint at `path`."""
    if not _is_local(path):
        _write_remote(ocp, path, items, overwrite)
        return
    if is_multiprocess():
        _write_multiprocess(ocp, path, items, overwrite)
        return
    _claim(path)
    with _locked(path, exclusive=True, action="save to"):
        steps = _prepare(path, overwrite)
        new_step = steps[-1] + 1 if steps else 0
        with _manager(ocp, path) as manager:
            manager.save(new_step, args=ocp.args.Composite(**items))
            manager.wait_until_finished()
        _stage("finalized")
        _commit(path, new_step, steps)


def _prepare(path: FsPath, overwrite: bool) -> list[int]:
    """Under the lock: mark `path` as ours, check that a save may go ahead (and that
    an overwrite can remove what it replaces), and return the existing steps."""
    _stage("locked")
    if not _is_marked(path):  # checked again: another save may have marked it
        _write_json_atomically(path / MARKER, {"format": LAYOUT, "version": LAYOUT_VERSION})
    _stage("marked")
    steps = _finalized_steps(path)
    if steps and not overwrite:
        raise FileExistsError(MSG_EXISTS.format(path=path))
    for step in steps:  # what an overwrite will remove: check it first
        problem = _removal_problem(path / str(step))
        if problem is not None and problem.user_files:
            raise FileExistsError(
                MSG_USER_FILES.format(path=path, step=step, files=list(problem.user_files[:5]))
            )
        if problem is not None and problem.not_writable:
            raise PermissionError(
                MSG_NOT_WRITABLE.format(path=path, what=f"step {step}", reason=problem.reason)
            )
    _stage("checked")
    return steps


def _finalized_steps(path: FsPath) -> list[int]:
    """The steps orbax finalized (it names a step directory by its number once it is
    complete; before that the name is temporary), oldest first."""
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit() and p.is_dir())


def _commit(path: FsPath, new_step: int, old_steps: list[int]) -> None:
    """After orbax finalized `new_step`: list its files, then remove the older steps."""
    step_dir = path / str(new_step)
    _write_json_atomically(step_dir / FILES, _step_files(step_dir))
    _stage("listed")
    for step in old_steps:
        _remove_step(path, path / str(step))


def _write_multiprocess(
    ocp: ModuleType, path: FsPath, items: dict[str, Any], overwrite: bool
) -> None:
    """A save in a multi-process job: every process calls it with the same path. The
    primary process alone claims, locks, marks and checks the directory and picks the
    step; every process then writes its shards through orbax (which coordinates the
    processes and finalizes the step once); the primary lists the files and removes
    the older steps. Each phase ends with `agree`, so a failure anywhere fails the
    save on every process, with the same error, instead of a hang."""
    require_supported("nnx.checkpoints.save")
    with contextlib.ExitStack() as held:
        error: BaseException | None = None
        steps: list[int] = []
        if is_primary():
            try:
                _claim(path)
                held.enter_context(_locked(path, exclusive=True, action="save to"))
                steps = _prepare(path, overwrite)
            except Exception as e:
                error = e
        else:
            error = _check_writable(path)
        new_step = agree("nnx.checkpoints.save", error, steps[-1] + 1 if steps else 0)[0]
        try:
            with _manager(ocp, path) as manager:
                manager.save(new_step, args=ocp.args.Composite(**items))
                manager.wait_until_finished()
        except Exception as e:
            error = e
        agree("nnx.checkpoints.save", error)
        _stage("finalized")
        if is_primary():
            try:
                _commit(path, new_step, steps)
            except Exception as e:
                error = e
        agree("nnx.checkpoints.save", error)


def _check_writable(path: FsPath) -> BaseException | None:
    """On a non-primary process: whether it can write its shards into `path` (the
    primary creates it; on another host's view of the filesystem it may not be)."""
    where = path if path.exists() else path.parent
    if where.exists() and not os.access(where, os.W_OK | os.X_OK):
        return PermissionError(
            MSG_NOT_WRITABLE.format(path=path, what=str(where), reason="no write access")
        )
    return None


def _remove_step(path: FsPath, step_dir: FsPath) -> None:
    """Remove an older step once a newer one is final; keep it (and say so) if it
    holds anything nnx did not write, or cannot be removed."""
    problem = _removal_problem(step_dir)
    reason = problem.reason if problem is not None else ""
    if problem is None:
        try:
            # the file list goes last: a removal stopped halfway still shows the rest
            # as nnx's own, and the next save finishes it
            for f in _step_files(step_dir):
                (step_dir / f).unlink()
                _stage("removing")
            shutil.rmtree(step_dir)
            return
        except OSError as e:
            reason = f"removing it failed ({e})"
    warnings.warn(MSG_KEPT_STEP.format(path=path, step=step_dir.name, reason=reason), stacklevel=4)


def _write_remote(ocp: ModuleType, path: Any, items: dict[str, Any], overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(MSG_EXISTS.format(path=path))
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
        checkpointer.save(path, ocp.args.Composite(**items), force=overwrite)


# ------------------------------------------------------------------------------------
# Reading


@contextlib.contextmanager
def read_dir(ocp: ModuleType, path: Any) -> Generator[Any, None, None]:
    """The directory holding the items of the checkpoint at `path` (its newest
    finalized step), held so that no save removes it while it is read. In a
    multi-process job every process reads the step the primary process found (and
    fails if any process cannot read the checkpoint)."""
    if not is_multiprocess():
        with _read_dir(path) as found:
            yield found
        return
    require_supported("nnx.checkpoints.restore")
    with contextlib.ExitStack() as held:
        error: BaseException | None = None
        items_dir: Any = None
        try:
            items_dir = held.enter_context(_read_dir(path))
        except Exception as e:
            error = e
        step = int(items_dir.name) if _is_local(path) and items_dir.name.isdigit() else -1
        chosen = agree("nnx.checkpoints.restore", error, step)[0]
        if chosen >= 0 and chosen != step:
            items_dir = path / str(chosen)
        yield items_dir


@contextlib.contextmanager
def _read_dir(path: Any) -> Generator[Any, None, None]:
    if not path.exists():
        raise FileNotFoundError(MSG_MISSING.format(path=path))
    if not _is_local(path):
        yield path
        return
    if _read_marker(path) is None:
        if (path / "nnx").is_dir():
            yield path  # the layout of earlier nnx releases: the items at the top
            return
        if all(p.name == LOCK for p in path.iterdir()):  # a first save stopped early
            raise FileNotFoundError(MSG_INCOMPLETE.format(path=path))
        raise ValueError(MSG_NOT_NNX.format(path=path, marker=MARKER))
    with _locked(path, exclusive=False, action="read"):
        steps = _finalized_steps(path)
        if not steps:
            raise FileNotFoundError(MSG_INCOMPLETE.format(path=path))
        yield path / str(steps[-1])

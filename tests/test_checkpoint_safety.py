"""Checkpoints never lose data, never delete what nnx did not write, never run code
from a checkpoint, and say clearly what is wrong with a damaged one.

The crash tests run a save in a subprocess and SIGKILL it at each step of a first
save and of an overwrite (at nnx's own steps and at each of orbax's renames); after
every kill, the path must hold a whole checkpoint (the old one or the new one), and
the next save must succeed and clean up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import nnx
from nnx import _checkpoint_dir

pytest.importorskip("orbax.checkpoint")


def _state(value: float) -> nnx.State:
    return nnx.State(
        {("w",): nnx.Param(jnp.full((4,), value)), ("n",): nnx.BatchStat(jnp.int32(7))}
    )


def _value(path: Path) -> float:
    loaded = nnx.checkpoints.load(path)
    assert loaded[("n",)].value == 7
    w = np.asarray(loaded[("w",)].value)
    assert np.all(w == w[0])
    return float(w[0])


def _steps(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir())


# ----------------------------------------------------------------------------------
# 1, 2: only what nnx wrote is ever replaced


def test_overwrite_refuses_an_unmarked_directory_even_with_an_nnx_folder(tmp_path):
    victim = tmp_path / "data"
    (victim / "nnx").mkdir(parents=True)
    (victim / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="earlier nnx release|not an nnx checkpoint"):
        nnx.checkpoints.save(victim, _state(1.0), overwrite=True)
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in victim.iterdir()) == ["nnx", "thesis.tex"]


def test_overwrite_refuses_to_delete_files_added_inside_a_checkpoint(tmp_path):
    path = tmp_path / "ckpt"
    nnx.checkpoints.save(path, _state(1.0))
    (step,) = _steps(path)
    notes = path / step / "state" / "my-notes.txt"
    notes.write_text("mine")
    with pytest.raises(FileExistsError, match=r"my-notes\.txt(.|\n)*would delete them"):
        nnx.checkpoints.save(path, _state(2.0), overwrite=True)
    assert notes.read_text() == "mine"
    assert _value(path) == 1.0
    assert _steps(path) == [step]  # nothing new was written
    notes.unlink()
    nnx.checkpoints.save(path, _state(2.0), overwrite=True)
    assert _value(path) == 2.0


def test_files_beside_the_steps_are_kept(tmp_path):
    path = tmp_path / "ckpt"
    nnx.checkpoints.save(path, _state(1.0))
    (path / "README").write_text("run 7")
    nnx.checkpoints.save(path, _state(2.0), overwrite=True)
    assert (path / "README").read_text() == "run 7"
    assert _value(path) == 2.0
    assert len(_steps(path)) == 1


def test_a_broken_symlink_is_refused(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError, match="broken symlink"):
        nnx.checkpoints.save(link, _state(1.0))


def test_a_symlink_to_a_checkpoint_directory_is_written_through(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    nnx.checkpoints.save(link, _state(1.0))
    nnx.checkpoints.save(link, _state(2.0), overwrite=True)
    assert link.is_symlink()
    assert _value(real) == 2.0


# ----------------------------------------------------------------------------------
# 5: what can be checked is checked first; a late failure is reported


def test_an_old_step_that_cannot_be_removed_stops_the_overwrite_before_writing(
    tmp_path, monkeypatch
):
    path = tmp_path / "ckpt"
    nnx.checkpoints.save(path, _state(1.0))
    (step,) = _steps(path)
    real_access = os.access

    def access(p: object, mode: int) -> bool:
        if str(p).startswith(str(path / step)) and mode & os.W_OK:
            return False  # as a read-only step directory would be for a normal user
        return real_access(p, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(_checkpoint_dir.os, "access", access)
    with pytest.raises(PermissionError, match=r"step 0 is not writable(.|\n)*Nothing was written"):
        nnx.checkpoints.save(path, _state(2.0), overwrite=True)
    monkeypatch.undo()
    assert _steps(path) == [step]
    assert _value(path) == 1.0


def test_a_removal_that_fails_late_keeps_the_old_step_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    nnx.checkpoints.save(path, _state(1.0))

    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(f"read-only file system: {self}")

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.warns(UserWarning, match=r"is complete, but the older step 0 was kept"):
        nnx.checkpoints.save(path, _state(2.0), overwrite=True)
    monkeypatch.undo()
    assert _steps(path) == ["0", "1"]
    assert _value(path) == 2.0
    nnx.checkpoints.save(path, _state(3.0), overwrite=True)  # the next save tidies up
    assert _steps(path) == ["2"]


def test_a_read_only_parent_is_refused_up_front(tmp_path, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(
        _checkpoint_dir.os,
        "access",
        lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode),
    )
    with pytest.raises(PermissionError, match="not writable"):
        nnx.checkpoints.save(tmp_path / "ckpt", _state(1.0))
    assert not (tmp_path / "ckpt").exists()


# ----------------------------------------------------------------------------------
# 3, 4: crashes and concurrent saves (subprocesses)

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import jax.numpy as jnp
    import nnx
    from nnx import _checkpoint_dir

    stage, path, value, overwrite = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "1"
    renames = [0]
    real_rename = os.rename

    def kill_at(name):
        if name == stage:
            os.kill(os.getpid(), signal.SIGKILL)

    def rename(a, b, *args, **kwargs):
        renames[0] += 1
        kill_at(f"rename-{renames[0]}")  # before orbax's n-th rename
        return real_rename(a, b, *args, **kwargs)

    _checkpoint_dir._stage = kill_at
    os.rename = rename
    hold = os.environ.get("HOLD_LOCK_FILE")
    if hold:  # announce that the lock is held, then keep it a while
        def kill_or_hold(name):
            if name == "locked":
                open(hold, "w").close()
                import time; time.sleep(3)
        _checkpoint_dir._stage = kill_or_hold
    state = nnx.State(
        {("w",): nnx.Param(jnp.full((4,), value)), ("n",): nnx.BatchStat(jnp.int32(7))}
    )
    try:
        nnx.checkpoints.save(path, state, overwrite=overwrite)
    except FileExistsError as e:
        print("EXISTS:", e)
        sys.exit(3)
    print("SAVED")
    """
)

STAGES = [
    "locked",
    "marked",
    "checked",
    "rename-1",
    "rename-2",
    "rename-3",
    "finalized",
    "listed",
    "removing",
]


def _run_child(
    tmp_path: Path, stage: str, path: Path, value: float, overwrite: bool, **env: str
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.run(
        [sys.executable, str(script), stage, str(path), str(value), "1" if overwrite else "0"],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu", **env},
        timeout=120,
    )


@pytest.mark.parametrize("stage", STAGES)
def test_a_killed_overwrite_leaves_the_old_or_the_new_checkpoint(tmp_path, stage: str):
    path = tmp_path / "ckpt"
    nnx.checkpoints.save(path, _state(1.0))
    done = _run_child(tmp_path, stage, path, 2.0, overwrite=True)
    assert done.returncode == -9, done.stderr
    value = _value(path)  # always a whole checkpoint
    assert value in (1.0, 2.0)
    if stage in ("finalized", "listed", "removing"):
        assert value == 2.0  # the new step was final before the kill
    else:
        assert value == 1.0
    # the next save succeeds and leaves only its own step (no staging, no old steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a step the kill left without its file list
        nnx.checkpoints.save(path, _state(3.0), overwrite=True)
    assert _value(path) == 3.0
    leftovers = [n for n in _steps(path) if not n.isdigit()]
    assert leftovers == []
    if stage != "finalized":
        assert len(_steps(path)) == 1


@pytest.mark.parametrize("stage", ["locked", "marked", "checked", "rename-1", "rename-3"])
def test_a_killed_first_save_leaves_no_checkpoint_and_the_next_save_succeeds(tmp_path, stage: str):
    path = tmp_path / "ckpt"
    done = _run_child(tmp_path, stage, path, 2.0, overwrite=False)
    assert done.returncode == -9, done.stderr
    with pytest.raises(FileNotFoundError, match="No complete checkpoint|does not exist"):
        nnx.checkpoints.load(path)
    nnx.checkpoints.save(path, _state(1.0))  # overwrite=False: nothing was there yet
    assert _value(path) == 1.0
    assert _steps(path) == ["0"]


def test_concurrent_saves_without_overwrite_let_exactly_one_win(tmp_path):
    path = tmp_path / "ckpt"
    held = tmp_path / "held"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    first = subprocess.Popen(
        [sys.executable, str(script), "none", str(path), "1.0", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "HOLD_LOCK_FILE": str(held)},
    )
    try:
        while not held.exists() and first.poll() is None:  # until it holds the lock
            os.sched_yield()
        assert held.exists(), first.communicate()
        second = _run_child(tmp_path, "none", path, 2.0, overwrite=False)
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "SAVED" in out
    assert second.returncode == 3, second.stderr
    assert "already exists" in second.stdout
    assert _value(path) == 1.0


# ----------------------------------------------------------------------------------
# 6: load never imports what a checkpoint names


def test_load_never_imports_a_module_named_by_the_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    nnx.checkpoints.save(path, nnx.State({("w",): nnx.Param(jnp.ones(2))}))
    (step,) = _steps(path)
    record_file = path / step / "nnx" / "metadata"
    record = json.loads(record_file.read_text())
    text = json.dumps(record).replace("nnx._variables:Param", "evil_nnx_payload:Param")
    assert "evil_nnx_payload" in text
    record_file.write_text(text)
    marker = tmp_path / "pwned"
    (tmp_path / "evil_nnx_payload.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Param: collection = 'params'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"evil_nnx_payload:Param is not defined in this process"):
        nnx.checkpoints.load(path)
    assert not marker.exists()
    assert "evil_nnx_payload" not in sys.modules


def test_load_finds_kinds_defined_in_this_process(tmp_path):
    class Local(nnx.Variable[jnp.ndarray]):
        pass

    state = nnx.State({("v",): Local(jnp.ones(2))})
    nnx.checkpoints.save(tmp_path / "ckpt", state)
    loaded = nnx.checkpoints.load(tmp_path / "ckpt")
    assert type(loaded[("v",)]) is Local


# ----------------------------------------------------------------------------------
# damaged checkpoints: a ValueError that says so


def _damaged(tmp_path: Path) -> Path:
    path = tmp_path / "ckpt"
    nnx.checkpoints.save(path, _state(1.0))
    return path


def test_a_missing_state_item(tmp_path):
    path = _damaged(tmp_path)
    import shutil

    shutil.rmtree(path / "0" / "state")
    with pytest.raises(ValueError, match=r"damaged or was edited by hand: its arrays"):
        nnx.checkpoints.load(path)
    with pytest.raises(ValueError, match=r"damaged or was edited by hand: its arrays"):
        nnx.checkpoints.restore(path, _state(0.0))


def test_a_record_that_is_not_json(tmp_path):
    path = _damaged(tmp_path)
    (path / "0" / "nnx" / "metadata").write_text("{not json")
    with pytest.raises(ValueError, match="not an nnx checkpoint"):
        nnx.checkpoints.load(path)


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r["entries"][0].pop("leaves"),
        lambda r: r["entries"][0].update(path="w"),
        lambda r: r.update(entries={"w": 1}),
        lambda r: r["entries"][0]["leaves"].clear(),
    ],
)
def test_a_record_with_missing_or_wrong_fields(tmp_path, edit):
    path = _damaged(tmp_path)
    meta = path / "0" / "nnx" / "metadata"
    record = json.loads(meta.read_text())
    edit(record)
    meta.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"damaged or was edited by hand"):
        nnx.checkpoints.load(path)


def test_a_damaged_marker(tmp_path):
    path = _damaged(tmp_path)
    (path / "nnx-checkpoint.json").write_text("[]")
    with pytest.raises(ValueError, match=r"nnx-checkpoint.json is damaged(.|\n)*restore the file"):
        nnx.checkpoints.load(path)

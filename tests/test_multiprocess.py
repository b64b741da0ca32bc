"""Two processes on localhost joined by `jax.distributed` (CPU collectives through
gloo), each with 2 CPU devices, forming a 2 x 2 ("data", "model") mesh: sharded
training with `nnx.jit` equals a single process on the same mesh, and a checkpoint
saved by both processes restores sharded in both and in a single process afterwards.
The work itself is `tests/_multiprocess_worker.py`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nnx._compat import JAX_VERSION
from nnx._multihost import MIN_JAX

WORKER = Path(__file__).with_name("_multiprocess_worker.py")
TIMEOUT_S = 240

_JAX = ".".join(map(str, JAX_VERSION))
new_jax = pytest.mark.skipif(
    JAX_VERSION < MIN_JAX,
    reason=(
        f"jax {_JAX}: orbax-checkpoint cannot save arrays spread over several processes "
        "with it (nnx refuses with NotImplementedError: test_old_jax_refuses_clearly)"
    ),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_job(task: str, processes: int, directory: Path) -> list[dict[str, Any]]:
    """Run the worker as a job of `processes` processes; each one's RESULT."""
    port = str(_free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(WORKER.parent), env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), task, str(processes), str(i), port, str(directory)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(processes)
    ]
    results: list[dict[str, Any]] = []
    for i, proc in enumerate(procs):
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"process {i} of the {task!r} job hung")
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, f"process {i} of {task!r} failed:\n{err[-3000:]}"
        results.append(json.loads(lines[-1].removeprefix("RESULT ")))
    return results


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The single-process reference, the two-process training (with its checkpoint),
    a single process restoring that checkpoint, and the two-process failure checks."""
    root = tmp_path_factory.mktemp("multiprocess")
    (root / "single").mkdir()
    (root / "two").mkdir()
    return {
        "single": run_job("train", 1, root / "single")[0],
        "two": run_job("train", 2, root / "two"),
        "reread": run_job("restore", 1, root / "two")[0],
        "fail": run_job("fail", 2, root / "two"),
    }


@new_jax
def test_two_processes_train_as_one(jobs: dict[str, Any]) -> None:
    single, two = jobs["single"], jobs["two"]
    assert [r["process"] for r in two] == [0, 1]
    assert all(r["devices"] == 4 for r in two) and single["devices"] == 4
    # bit for bit: the same global computation on the same mesh
    assert two[0]["losses"] == two[1]["losses"] == single["losses"]
    assert two[0]["trained"] == two[1]["trained"] == single["trained"]
    assert two[0]["losses"][-1] < two[0]["losses"][0]


@new_jax
def test_a_two_process_checkpoint_restores_sharded_in_both(jobs: dict[str, Any]) -> None:
    for result in jobs["two"]:
        trained, restored = result["trained"], result["restored"]
        assert set(restored) == set(trained) == {"down/bias", "down/kernel", "up/bias", "up/kernel"}
        for path, entry in restored.items():
            assert entry["value"] == trained[path]["value"], path
            assert entry["dtype"] == trained[path]["dtype"] == "float32"
            assert entry["spec"] == result["intended"][path], path
        assert restored["up/kernel"]["spec"] == [None, "model"]
        assert restored["down/kernel"]["spec"] == ["model"]


@new_jax
def test_a_single_process_restores_the_two_process_checkpoint(jobs: dict[str, Any]) -> None:
    reread, trained = jobs["reread"], jobs["two"][0]["trained"]
    for path, entry in reread["restored"].items():
        assert entry["value"] == trained[path]["value"], path
        assert entry["spec"] == reread["intended"][path], path


@new_jax
def test_a_failure_on_one_process_fails_every_process(jobs: dict[str, Any]) -> None:
    first, second = jobs["fail"]
    # the checkpoint exists: only the primary finds out, both fail with its error
    assert first["errors"][0].startswith("FileExistsError: Checkpoint directory")
    assert second["errors"][0].startswith(
        "FileExistsError: nnx.checkpoints.save failed on process 0 of 2"
    )
    assert "already exists" in second["errors"][0]
    # process 1 cannot write: both fail with its error
    assert second["errors"][1].startswith("PermissionError: simulated:")
    assert first["errors"][1].startswith(
        "PermissionError: nnx.checkpoints.save failed on process 1 of 2"
    )
    # and the job went on: an overwrite by both, restored by both
    for result in (first, second):
        for path, entry in result["restored"].items():
            assert entry["value"] == result["saved"][path]["value"], path


@pytest.mark.skipif(JAX_VERSION >= MIN_JAX, reason=f"jax {_JAX} supports multi-process saves")
def test_old_jax_refuses_clearly(tmp_path: Path) -> None:
    results = run_job("refused", 2, tmp_path)
    for result in results:
        (error,) = result["errors"]
        assert error.startswith("NotImplementedError: nnx.checkpoints.save in a multi-process")
        assert f"this is jax {_JAX}" in error

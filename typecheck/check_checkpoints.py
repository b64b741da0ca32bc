"""Static checks of nnx.checkpoints (checked by mypy and pyright, never run).

`restore` gives back the target's own type: the Module subclass for a Module, a
State for a State; `load` gives a State.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
from typing_extensions import assert_type

import nnx


class Model(nnx.Module):
    w: nnx.Param[jax.Array]

    def __init__(self, w: jax.Array) -> None:
        self.w = nnx.Param(w)


def checks(model: Model, path: Path, params: nnx.State[nnx.Param[jax.Array]]) -> None:
    nnx.checkpoints.save(path, model)
    nnx.checkpoints.save("relative/dir", params, overwrite=True)
    assert_type(nnx.checkpoints.restore(path, model), Model)
    abstract = nnx.eval_shape(lambda: Model(jax.numpy.ones(2)))
    assert_type(nnx.checkpoints.restore(path, abstract), Model)
    assert_type(nnx.checkpoints.restore(path, params), nnx.State[Any])
    assert_type(nnx.checkpoints.load(path), nnx.State[Any])


def negatives(model: Model, path: Path) -> None:
    nnx.checkpoints.save(path, {"w": 1})  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    nnx.checkpoints.restore(path, [model])  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    nnx.checkpoints.save(path, model, True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    nnx.checkpoints.load(3.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

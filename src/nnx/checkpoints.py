"""Checkpoints with orbax-checkpoint (``pip install "nnx[checkpoint]"``).

    nnx.checkpoints.save(path, model)              # or a State
    model = nnx.checkpoints.restore(path, model)   # into a fresh or an abstract model
    state = nnx.checkpoints.load(path)             # no target: the saved State

A round trip is exact: values, dtypes, Variable kinds and metadata. Restoring into a
target of another structure raises a ValueError that lists every differing path.
"""

from ._checkpoints import load as load, restore as restore, save as save

__all__ = ["load", "restore", "save"]

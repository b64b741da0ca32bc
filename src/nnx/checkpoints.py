"""Checkpoints with orbax-checkpoint (``pip install "nnx[checkpoint]"``).

- `save(path, model)` writes a Module's whole state (or a State) as a directory;
- `restore(path, model)` fills a fresh or an abstract (`nnx.eval_shape`) model in
  place, or returns a new State for a State target;
- `load(path)` reads the saved State without a target.

A round trip is exact: values, dtypes, Variable kinds and metadata. Restoring into a
target of another structure raises a ValueError that lists every differing path, and
changes nothing. A save never leaves `path` without a whole checkpoint (the old one
until the new one is complete), and writes only directories nnx made.

Example:
    ```python
    import tempfile
    from pathlib import Path

    model = nnx.Linear(2, 3, ctx=nnx.context(0))
    path = Path(tempfile.mkdtemp()) / "ckpt"
    nnx.checkpoints.save(path, model)

    abstract = nnx.eval_shape(lambda: nnx.Linear(2, 3, ctx=nnx.context(1)))
    restored = nnx.checkpoints.restore(path, abstract)  # filled in place
    assert restored is abstract and restored.get_state() == model.get_state()
    assert nnx.checkpoints.load(path) == model.get_state()
    ```
"""

from ._checkpoints import load as load, restore as restore, save as save

__all__ = ["load", "restore", "save"]

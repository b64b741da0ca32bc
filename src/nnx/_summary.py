"""`nnx.summary` (a table of a model's modules, Variables and parameter counts) and
`nnx.iter_modules`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._filters import Path
from ._module import Module
from ._module_object import vars_of
from ._nodes import ARRAY, BOXED_NODE, kind_of
from ._variables import is_node_box

__all__ = ["iter_modules", "summary"]


def iter_modules(module: Module) -> Iterator[tuple[Path, Module]]:
    """Every module of the graph under `module` with its path, depth first (a shared
    submodule once); the same as `module.modules()`.

    Example:
        ```python
        model = nnx.Sequential(nnx.Linear(2, 3, ctx=nnx.context(0)), nnx.relu)
        assert [path for path, _ in nnx.iter_modules(model)] == [(), (0,)]
        ```
    """
    return module.modules()


def _leaf_info(value: Any) -> tuple[str, str, int, int]:
    """`(collection, dtype[shape], size, bytes)` of a state attribute."""
    collection = "(array)"
    payload = value
    if is_node_box(value):
        collection = type(value).collection
        payload = value.value
    shape = tuple(getattr(payload, "shape", ()))
    dtype = getattr(payload, "dtype", None)
    size = int(getattr(payload, "size", 1))
    itemsize = int(getattr(dtype, "itemsize", 0))
    text = f"{dtype}[{','.join(map(str, shape))}]" if dtype is not None else type(payload).__name__
    return collection, text, size, size * itemsize


def _rows(module: Module) -> tuple[list[tuple[str, str, str, str]], dict[str, list[int]]]:
    rows: list[tuple[str, str, str, str]] = []
    totals: dict[str, list[int]] = {}
    for path, m in module.modules():
        variables: list[str] = []
        counts: dict[str, list[int]] = {}
        for name, value in sorted(vars_of(m).items()):
            if kind_of(value) not in (ARRAY, BOXED_NODE):
                continue
            collection, text, size, nbytes = _leaf_info(value)
            variables.append(f"{name}: {text}")
            for bucket in (counts, totals):
                entry = bucket.setdefault(collection, [0, 0])
                entry[0] += size
                entry[1] += nbytes
        where = "/".join(map(str, path)) or "(root)"
        rows.append((where, type(m).__name__, ", ".join(variables), _counts_text(counts)))
    return rows, totals


def _counts_text(counts: dict[str, list[int]]) -> str:
    return ", ".join(f"{c}: {n:,} ({_bytes(b)})" for c, (n, b) in sorted(counts.items()))


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            break
    return f"{size:.1f} {unit}"


def summary(module: Module) -> str:
    """A text table of the module graph: each submodule's path and type, its own
    Variables (`name: dtype[shape]`), and its state's size per collection; then a
    total line ("Total: N params ..."). Shared submodules appear once.

    Args:
        module: The root module.

    Returns:
        The table, to print.

    Example:
        ```python
        model = nnx.Sequential(nnx.Linear(2, 3, ctx=nnx.context(0)), nnx.relu)
        table = nnx.summary(model)
        assert "kernel: float32[2,3]" in table and "Total: 9 params" in table
        ```
    """
    rows, totals = _rows(module)
    header = ("path", "type", "variables", "size")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    rule = "─" * (sum(widths) + 3 * 3)
    lines = [" │ ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), rule]
    lines += [" │ ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    params = totals.get("params", [0, 0])
    lines += [rule, f"Total: {params[0]:,} params ({_bytes(params[1])}); {_counts_text(totals)}"]
    return "\n".join(lines)

"""Our README.md: its Python blocks run, in order, in one namespace; its commands are CI's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nnx

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_python_blocks() -> None:
    assert len(_python_blocks()) >= 6


def test_readme_blocks_run(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in _python_blocks():
        exec(compile(block, str(README), "exec", dont_inherit=True), namespace)
    out = capsys.readouterr().out
    assert "State({\n  ('b',): Param(value=Array(float32[2]))," in out
    assert "TraceContextError" in out
    assert "bound by other attributes: dout=3 (from .b)" in out
    assert "Proj.__call__: argument x: expected Float[Array, 'n din'], got float32[2,5]" in out
    assert "din=3 (bound by .w)" in out
    assert "Linear.__call__: argument inputs: expected Shaped[Array, '*batch in_features']" in out
    model: object = namespace["model"]
    assert isinstance(model, nnx.Module)
    assert model.count == 2  # type: ignore[attr-defined]


def test_readme_commands_are_the_ci_commands() -> None:
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_command = "python3 -m pip install --quiet nox uv && python3 -m nox"
    assert test_command in text
    assert "INSTALL_STEP='python3 -m pip install --quiet nox uv'" in ci
    assert "NOX_STEP='python3 -m nox'" in ci
    assert 'python3 -m pip install -e ".[examples]" && python3 examples/train_digits.py' in text
    assert (README.parent / "examples" / "train_digits.py").exists()


def test_readme_typing_block_is_the_type_checked_file() -> None:
    # typecheck/check_readme.py is checked by mypy and pyright in CI; the README shows
    # the same code, so what it claims about inferred types stays true
    block = re.search(r"## Static typing\n.*?```python\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    checked = (README.parent / "typecheck" / "check_readme.py").read_text()
    assert checked.endswith(block.group(1))

"""Test, lint, type-check and documentation sessions for nnx.

    python3 -m pip install nox uv    # once
    python3 -m nox                   # default sessions (what CI runs)
    python3 -m nox -l                # list every session; defaults are marked '*'
    python3 -m nox -s matrix         # tests and examples on every JAX_MATRIX pair
    python3 -m nox -t examples       # every example script, on every pair
    python3 -m nox -s docs           # the documentation site, into build/site
    python3 -m nox -s "tests(python='3.10', jax='0.4.36')" -- -x -k linear   # args go to pytest

Session ids are built from JAX_MATRIX: ``tests(python='3.10', jax='0.4.36')`` and
``typecheck(python='3.13', jax='0.12.0.1')``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nox

# ---------------------------------------------------------------------------
# The supported (python, jax) pairs, oldest first. jax and jaxlib are pinned to
# the same version. Other sessions (typecheck, bench, the default examples runs) use
# OLDEST and NEWEST, so edit the pairs here and nowhere else.
# ---------------------------------------------------------------------------
JAX_MATRIX: list[tuple[str, str]] = [
    ("3.10", "0.4.36"),  # oldest supported: first jax with "stackless" tracing
    ("3.11", "0.6.2"),
    ("3.11", "0.8.3"),
    ("3.11", "0.10.2"),  # what the dev venv runs
    ("3.12", "0.12.0.1"),  # the Python most users run, with the newest jax it supports
    ("3.13", "0.12.0.1"),  # newest supported
]
OLDEST = JAX_MATRIX[0]
NEWEST = JAX_MATRIX[-1]

# The same ruff as in the dev venv, so formatting does not drift between releases.
RUFF = "ruff==0.17.6"
LINT_PATHS = ["src", "tests", "typecheck", "benchmarks", "examples", "noxfile.py"]
XLA_DEVICES_FLAG = "--xla_force_host_platform_device_count=8"

# uv: use the system certificate store, and never download an interpreter
# (only the package index is reachable here; a missing Python must fail loudly).
os.environ.setdefault("UV_SYSTEM_CERTS", "1")
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
# pyright's PyPI wrapper would otherwise ask PyPI whether a newer pyright exists.
os.environ.setdefault("PYRIGHT_PYTHON_IGNORE_WARNINGS", "1")


def _add_pyenv_pythons_to_path() -> None:
    """Put pyenv's real interpreters (not its shims) on PATH.

    pyenv's shims only run the version selected by PYENV_VERSION/.python-version,
    so a bare ``python3.10`` shim fails and nox would report the interpreter as
    missing. Prepending ``$PYENV_ROOT/versions/3.1X.Y/bin`` lets nox find each
    one. Does nothing where pyenv is absent.
    """
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found: list[tuple[int, int, str]] = []
    for bin_dir in root.glob("versions/3.1[0-3].*/bin"):
        match = re.fullmatch(r"3\.(1[0-3])\.(\d+)", bin_dir.parent.name)  # skips 3.13.0t etc.
        if match and bin_dir.is_dir():
            found.append((int(match[1]), -int(match[2]), str(bin_dir)))
    path = os.environ.get("PATH", "").split(os.pathsep)
    # Oldest minor first, newest patch of each minor first.
    new = [d for _, _, d in sorted(found) if d not in path]
    if new:
        os.environ["PATH"] = os.pathsep.join([*new, *path])


_add_pyenv_pythons_to_path()

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True
nox.options.error_on_external_run = True  # every tool must come from the session's venv
nox.options.download_python = "never"


def _session_id(kind: str, python: str, jax: str) -> str:
    return f"{kind}(python={python!r}, jax={jax!r})"


def _jax_pins(jax: str) -> list[str]:
    return [f"jax=={jax}", f"jaxlib=={jax}"]


@nox.session(tags=["tests"])
@nox.parametrize(("python", "jax"), JAX_MATRIX)
def tests(session: nox.Session, jax: str) -> None:
    """Run pytest against one pinned jax/jaxlib; args after `--` go to pytest."""
    session.install("-e", ".[test]", *_jax_pins(jax))
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} {XLA_DEVICES_FLAG}".strip()
    session.run("pytest", *session.posargs, env={"XLA_FLAGS": xla_flags})


@nox.session(tags=["typecheck"])
@nox.parametrize(("python", "jax"), [OLDEST, NEWEST])
def typecheck(session: nox.Session, jax: str) -> None:
    """mypy --strict and pyright strict (per pyproject) for this Python and jax.

    Against the oldest jax, pyright reports "partially unknown" types as warnings:
    jax 0.4.36's own annotations leave array-like parameters unknown (bare
    np.ndarray), which strict mode would otherwise blame on every jnp call. Every
    other strict rule stays an error there, and the newest jax is checked fully strict.
    """
    # pyright[nodejs] brings node from PyPI; without it pyright needs node on PATH
    # or downloads one with nodeenv, which cannot reach the internet here.
    session.install("-e", ".[typecheck,test]", "pyright[nodejs]", *_jax_pins(jax))
    assert isinstance(session.python, str)
    session.run("mypy", "--python-version", session.python, *session.posargs)
    config = ["-p", "typecheck/pyright-oldest-jax.json"] if (session.python, jax) == OLDEST else []
    session.run(
        "pyright",
        *config,
        "--pythonversion",
        session.python,
        "--pythonpath",
        str(Path(session.bin) / "python"),
        *session.posargs,
    )


# Every script in examples/ is run by the examples session and must finish within
# this many seconds on a 2-core CPU (they take 5-30 s there).
EXAMPLE_BUDGET_S = 60.0


@nox.session(tags=["examples"])
@nox.parametrize(("python", "jax"), JAX_MATRIX)
def examples(session: nox.Session, jax: str) -> None:
    """Run every examples/*.py script (or those named after `--`), print their run
    times, and fail if one fails or takes longer than EXAMPLE_BUDGET_S."""
    session.install("-e", ".[examples]", *_jax_pins(jax))
    scripts = session.posargs or sorted(str(p) for p in Path("examples").glob("*.py"))
    times: list[tuple[str, float]] = []
    for script in scripts:
        start = time.perf_counter()
        session.run("python", script)
        times.append((script, time.perf_counter() - start))
    session.log("example run times (jax %s):", jax)
    for script, seconds in times:
        session.log("  %-36s %6.1f s", script, seconds)
    slow = [
        f"{script} ({seconds:.0f} s)" for script, seconds in times if seconds > EXAMPLE_BUDGET_S
    ]
    if slow:
        session.error(f"over the {EXAMPLE_BUDGET_S:.0f} s budget: {', '.join(slow)}")


@nox.session(python=False, default=False)
def matrix(session: nox.Session) -> None:
    """Run the whole tests and examples matrix (every JAX_MATRIX pair); not a default
    session."""
    for python, jax in JAX_MATRIX:
        session.notify(_session_id("tests", python, jax), posargs=session.posargs)
    for python, jax in JAX_MATRIX:
        session.notify(_session_id("examples", python, jax))


@nox.session(python=NEWEST[0], default=False)
def bench(session: nox.Session) -> None:
    """The benchmarks, next to flax.nnx and equinox on the same work (newest jax)."""
    session.install("-e", ".", "flax", "equinox", *_jax_pins(NEWEST[1]))
    scripts = ("bench_partition", "bench_shape_checks", "bench_call_checks", "bench_transforms")
    for script in scripts:
        session.run("python", f"benchmarks/{script}.py", *session.posargs)


DOCS_SITE_DIR = "build/site"


@nox.session(python=NEWEST[0])
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs.yml, docs/) into build/site with
    `mkdocs build --strict`: a broken cross-reference, a missing object or a griffe
    docstring warning fails it. Args after `--` go to mkdocs build."""
    # mkdocstrings reads src/ and the installed jax statically (no import); ruff
    # formats the signatures.
    session.install("-e", ".[docs]", RUFF, *_jax_pins(NEWEST[1]))
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        DOCS_SITE_DIR,
        *session.posargs,
        env={"NO_MKDOCS_2_WARNING": "1"},  # mkdocs-material's banner about MkDocs 2.0
    )
    session.log("site written to %s (open index.html, or run `mkdocs serve`)", DOCS_SITE_DIR)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(RUFF)
    # Empty folders are not in a git clone; ruff errors on a missing path.
    paths = [p for p in LINT_PATHS if Path(p).exists()]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


nox.options.sessions = [
    "lint",
    "docs",  # ~15 s from a cold venv (uv), ~8 s of it the build
    _session_id("typecheck", *OLDEST),
    _session_id("typecheck", *NEWEST),
    _session_id("tests", *OLDEST),
    _session_id("tests", *NEWEST),
    _session_id("examples", *OLDEST),
    _session_id("examples", *NEWEST),
]

"""The documentation site (`docs/`, built by `python3 -m nox -s docs`), checked
without mkdocs:

(a) the ```python blocks of each page under docs/ run: the blocks of one page in
    order, in one namespace (as tests/test_readme.py does for the README);
(b) every public name of `nnx`, `nnx.nn`, `nnx.nn.initializers` and
    `nnx.checkpoints` is documented by a `::: identifier` directive of an API page
    (docs/api/*.md): the directive names it (under that name, in any of these
    modules), or names a module that has it as a public member;
(c) the ```python blocks in docstrings run, each in a fresh namespace holding `nnx`,
    `jax`, `jnp` and `np` (the convention for docstring examples: a fenced block with
    `assert`s). The docstrings are those of the public objects that nnx defines, of
    their public methods and properties (`__init__` and `__call__` included), and the
    attribute docstrings of public module-level names (`nnx.Filter`). Objects that nnx
    re-exports from JAX (`nnx.relu`, the jax initializers) are JAX's to test.

A public name is what the typing spec says a `py.typed` package exports: the names
in `__all__` if the module has one, else its module-level definitions and the
imports re-exported as `import x as x`, none starting with an underscore.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import re
import sys
import textwrap
import types
from collections.abc import Iterable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API = DOCS / "api"
MKDOCS_YML = ROOT / "mkdocs.yml"

# The modules whose public names the API reference must cover.
CHECKED_MODULES = ("nnx", "nnx.nn", "nnx.nn.initializers", "nnx.checkpoints", "nnx.metrics")

PAGES = sorted(DOCS.rglob("*.md"))
_PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# `::: identifier`, then its indented YAML options, if any.
_DIRECTIVE = re.compile(r"^:::[ \t]+(\S+)[ \t]*\n((?:[ \t]+\S.*\n|[ \t]*\n)*)", re.MULTILINE)
_MEMBERS_OPTION = re.compile(r"^[ \t]+members:[ \t]*(.*)$", re.MULTILINE)
_LIST_ITEM = re.compile(r"^[ \t]+-[ \t]+(\w+)[ \t]*$")
_DOCSTRING_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)```(?:python|py)[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


# ------------------------------------------------------------------------------------
# (a) the pages' Python blocks run


def page_blocks(page: Path) -> list[str]:
    return _PYTHON_BLOCK.findall(page.read_text())


def test_docs_pages_exist() -> None:
    guide = {p.name for p in DOCS.glob("*.md")}
    assert {"index.md", "tour.md", "transforms.md", "shape-checks.md"} <= guide
    assert {"typing.md", "checkpoints.md", "migrating.md"} <= guide
    assert len(list(API.glob("*.md"))) >= 12


def test_every_page_is_in_the_nav() -> None:
    config = MKDOCS_YML.read_text()
    missing = [str(p.relative_to(DOCS)) for p in PAGES if str(p.relative_to(DOCS)) not in config]
    assert not missing, f"pages missing from the nav of mkdocs.yml: {missing}"


@pytest.mark.parametrize(
    "page", [p for p in PAGES if page_blocks(p)], ids=lambda p: str(p.relative_to(DOCS))
)
def test_page_blocks_run(page: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    source = str(page.relative_to(ROOT))
    for block in page_blocks(page):
        exec(compile(block, source, "exec", dont_inherit=True), namespace)


# ------------------------------------------------------------------------------------
# (b) the API reference covers every public name


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of a module body, those inside `if`/`try`/`with` blocks included
    (`if TYPE_CHECKING: from ... import X as X`), those of functions and classes not."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _module_level(block)
            for handler in node.handlers:
                yield from _module_level(handler.body)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)


def _assigned_names(node: ast.stmt) -> list[str]:
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign):
        targets = [node.target]
    return [t.id for t in targets if isinstance(t, ast.Name)]


def public_names(module: types.ModuleType) -> list[str]:
    """The names `module` exports, as the typing spec defines them (see above)."""
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return sorted(exported)
    names: set[str] = set()
    for node in _module_level(ast.parse(inspect.getsource(module)).body):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(a.asname for a in node.names if a.asname and a.asname == a.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        else:
            names.update(_assigned_names(node))
    return sorted(n for n in names if not n.startswith("_"))


def resolve(identifier: str) -> object:
    """The object a mkdocstrings identifier (`nnx.nn.Linear.__call__`) names."""
    parts = identifier.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(identifier)


def directive_members(options: str) -> tuple[str, ...] | None:
    """The `members:` option of a directive's options block: the names listed (inline
    `[a, b]` or as `- a` lines), `()` for `false`, None if absent (all members)."""
    match = _MEMBERS_OPTION.search(options)
    if match is None:
        return None
    inline = match[1].strip()
    if inline in ("false", "False", "[]"):
        return ()
    if inline.startswith("["):
        return tuple(n.strip() for n in inline.strip("[]").split(",") if n.strip())
    names = []
    for line in options[match.end() :].lstrip("\n").splitlines():
        item = _LIST_ITEM.match(line)
        if item is None:
            break
        names.append(item[1])
    return tuple(names)


def api_directives() -> list[tuple[str, str, tuple[str, ...] | None]]:
    """`(page, identifier, members)` for every `::: identifier` of the API pages."""
    return [
        (page.name, identifier, directive_members(options))
        for page in sorted(API.glob("*.md"))
        for identifier, options in _DIRECTIVE.findall(page.read_text())
    ]


def documented(
    directives: Iterable[tuple[str, tuple[str, ...] | None]],
) -> set[tuple[int, str]]:
    """`(id(object), name)` for every object the `(identifier, members)` directives
    document under `name`: the named objects, and the public members of the named
    modules (those of the `members:` option, if it has one)."""
    covered: set[tuple[int, str]] = set()
    for identifier, members in directives:
        obj = resolve(identifier)
        covered.add((id(obj), identifier.rsplit(".", 1)[-1]))
        if isinstance(obj, types.ModuleType):
            names = public_names(obj) if members is None else members
            covered.update((id(getattr(obj, n)), n) for n in names)
    return covered


def test_directive_parsing() -> None:
    text = textwrap.dedent(
        """\
        # Page

        ::: pkg.a

        ::: pkg.b
            options:
              heading_level: 3
              members:
                - x
                - y
              show_source: false

        ::: pkg.c
            options:
              members: [u, v]
        ::: pkg.d
            options:
              members: false
        """
    )
    found = [(i, directive_members(o)) for i, o in _DIRECTIVE.findall(text)]
    assert found == [
        ("pkg.a", None),
        ("pkg.b", ("x", "y")),
        ("pkg.c", ("u", "v")),
        ("pkg.d", ()),
    ]


def test_public_names_rule() -> None:
    # __all__ where there is one; else definitions and `import x as x` re-exports
    assert public_names(nnx.checkpoints) == ["load", "restore", "save"]
    names = public_names(nnx)
    assert {"Module", "State", "jit", "relu", "TrainState", "nn", "checkpoints"} <= set(names)
    assert not {"TYPE_CHECKING", "PackageNotFoundError", "annotations"} & set(names)
    assert "zeros" in public_names(nnx.nn.initializers)
    assert "Any" not in public_names(nnx.nn.initializers)


def test_every_public_submodule_is_checked() -> None:
    for name in CHECKED_MODULES:
        module = importlib.import_module(name)
        for public in public_names(module):
            value = getattr(module, public)
            if isinstance(value, types.ModuleType):
                assert value.__name__ in CHECKED_MODULES, value.__name__


@pytest.mark.parametrize(
    ("page", "identifier", "members"),
    api_directives(),
    ids=[f"{page}:{identifier}" for page, identifier, _ in api_directives()],
)
def test_api_directive_names_a_public_object(
    page: str, identifier: str, members: tuple[str, ...] | None
) -> None:
    assert not any(part.startswith("_") for part in identifier.split(".")), (
        f"{page}: document the public name, not {identifier}"
    )
    obj = resolve(identifier)
    for name in members or ():
        assert hasattr(obj, name), f"{page}: {identifier} has no member {name}"


@pytest.mark.parametrize("module_name", CHECKED_MODULES)
def test_api_reference_covers_every_public_name(module_name: str) -> None:
    module = importlib.import_module(module_name)
    covered = documented((identifier, members) for _, identifier, members in api_directives())
    missing = [
        f"{module_name}.{name}"
        for name in public_names(module)
        if not isinstance(getattr(module, name), types.ModuleType)
        and (id(getattr(module, name)), name) not in covered
    ]
    assert not missing, f"public names without a `::: ` directive in docs/api/: {missing}"


# ------------------------------------------------------------------------------------
# (c) the Python blocks in docstrings run


def docstring_blocks(doc: str | None) -> list[str]:
    """The ```python (or ```py) fenced blocks of a docstring, dedented."""
    if not doc:
        return []
    text = inspect.cleandoc(doc)
    return [textwrap.dedent(m["code"]) for m in _DOCSTRING_BLOCK.finditer(text)]


def _defined_in(obj: object, package: str) -> bool:
    if isinstance(obj, types.ModuleType):
        return obj.__name__.split(".")[0] == package
    module = obj.__dict__.get("__module__") if isinstance(obj, type) else None
    module = module or getattr(obj, "__module__", None)
    return isinstance(module, str) and module.split(".")[0] == package


_MEMBER_TYPES = (
    types.FunctionType,
    property,
    classmethod,
    staticmethod,
    type,
)


def _members(cls: type, package: str) -> Iterator[tuple[type, str, object]]:
    """`(defining class, name, attribute)` for the public methods, properties and
    nested classes of `cls` (`__init__` and `__call__` included) that `package`
    defines, inherited ones too."""
    for klass in cls.__mro__:
        if not _defined_in(klass, package):
            continue
        for name, attr in vars(klass).items():
            if name.startswith("_") and name not in ("__init__", "__call__"):
                continue
            if isinstance(attr, _MEMBER_TYPES) and (
                not isinstance(attr, type) or _defined_in(attr, package)
            ):
                yield klass, name, attr


def attribute_docstrings(source: str) -> dict[str, str]:
    """The docstrings of the module-level assignments in `source`: a string literal
    right after `X = ...` or `X: T = ...` documents `X` (griffe's convention)."""
    body = ast.parse(source).body
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            for name in _assigned_names(node):
                docs[name] = after.value.value
    return docs


def collect_docstring_examples(
    objects: Iterable[tuple[str, object]], package: str = "nnx"
) -> list[tuple[str, str]]:
    """`(label, code)` for each fenced Python block in the docstrings of `objects`
    (`(public name, object)` pairs: modules, classes, functions) that `package`
    defines, and of their public members. Each docstring is taken once, labelled
    with the first public name it is reached by (for a member inherited from a
    private class, that class's qualified name)."""
    objects = list(objects)
    label_of = {}
    for name, obj in objects:
        label_of.setdefault(id(obj), name)
    seen: set[int] = set()
    examples: list[tuple[str, str]] = []

    def add(label: str, owner: object, doc: str | None) -> None:
        if id(owner) in seen:
            return
        seen.add(id(owner))
        examples.extend((f"{label}[{i}]", code) for i, code in enumerate(docstring_blocks(doc)))

    for name, obj in objects:
        if isinstance(obj, types.ModuleType) and _defined_in(obj, package):
            add(name, obj, obj.__doc__)
        elif isinstance(obj, type) and _defined_in(obj, package):
            add(name, obj, obj.__doc__)
            for klass, member, attr in _members(obj, package):
                owner = label_of.get(id(klass), f"{klass.__module__}.{klass.__qualname__}")
                add(f"{owner}.{member}", attr, attr.__doc__)
        elif callable(obj) and _defined_in(obj, package):
            add(name, obj, obj.__doc__)
    return examples


def _defining_modules(package: str) -> Iterator[types.ModuleType]:
    """Every module of `package` whose source defines a module-level name (so that the
    attribute docstrings of `Filter`, `PARTITION_NAME`, ... are found where they are
    written), the public ones first."""
    root = Path(importlib.import_module(package).__file__ or "").parent
    names = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        names.append(".".join((package, *parts)).removesuffix(".__init__"))
    for name in sorted(names, key=lambda n: (any(p.startswith("_") for p in n.split(".")), n)):
        yield importlib.import_module(name)


def public_objects() -> list[tuple[str, object]]:
    """`(qualified public name, object)` for the checked modules and their names."""
    objects: list[tuple[str, object]] = []
    for module_name in CHECKED_MODULES:
        module = importlib.import_module(module_name)
        objects.append((module_name, module))
        objects.extend((f"{module_name}.{n}", getattr(module, n)) for n in public_names(module))
    return objects


def _public_attribute_docs() -> list[tuple[str, str]]:
    """Attribute docstrings of the public module-level names that nnx does not
    define as classes or functions (`nnx.Filter`, `nnx.PARTITION_NAME`, ...), found in
    the module that assigns them."""
    wanted = {
        (id(obj), name.rsplit(".", 1)[-1]): name
        for name, obj in public_objects()
        if not _defined_in(obj, "nnx")
    }
    examples: list[tuple[str, str]] = []
    done: set[str] = set()
    for module in _defining_modules("nnx"):
        for attr, doc in attribute_docstrings(inspect.getsource(module)).items():
            label = wanted.get((id(getattr(module, attr, None)), attr))
            if label is not None and label not in done:
                done.add(label)
                blocks = docstring_blocks(doc)
                examples.extend((f"{label}[{i}]", code) for i, code in enumerate(blocks))
    return examples


def all_docstring_examples() -> list[tuple[str, str]]:
    return collect_docstring_examples(public_objects()) + _public_attribute_docs()


DOCSTRING_EXAMPLES = all_docstring_examples()


def run_docstring_example(label: str, code: str) -> None:
    namespace: dict[str, object] = {
        "__name__": "docstring_example",
        "nnx": nnx,
        "jax": jax,
        "jnp": jnp,
        "np": np,
    }
    exec(compile(code, f"<docstring of {label}>", "exec", dont_inherit=True), namespace)


@pytest.mark.parametrize(
    ("label", "code"), DOCSTRING_EXAMPLES, ids=[label for label, _ in DOCSTRING_EXAMPLES]
)
def test_docstring_example_runs(label: str, code: str) -> None:
    run_docstring_example(label, code)


def test_docstring_examples_have_unique_labels() -> None:
    labels = [label for label, _ in DOCSTRING_EXAMPLES]
    assert len(labels) == len(set(labels))


class _Sample:
    """A sample class.

    ```python
    assert nnx.Param(jnp.ones(2)).value.shape == (2,)
    ```
    """

    def method(self) -> None:
        """A method, whose example is indented inside a section.

        Example:
            ```python
            x = np.arange(3)
            assert jax.tree.map(lambda a: a + 1, {"x": x})["x"].tolist() == [1, 2, 3]
            ```

        ```py
        assert 1 + 1 == 2
        ```
        """

    @property
    def prop(self) -> int:
        """A property.

        ```python
        raise AssertionError("the example ran")
        ```
        """
        return 0

    def _private(self) -> None:
        """Not collected.

        ```python
        raise AssertionError("a private method's example was collected")
        ```
        """

    def undocumented(self) -> None:
        pass


def _sample_function() -> None:
    """```python
    assert True
    ```"""


_Sample.__module__ = _sample_function.__module__ = "sample.module"


def test_collection_on_an_inline_sample() -> None:
    text_block = "No example here.\n\n```text\nnot python\n```\n"
    assert docstring_blocks(text_block) == []
    assert docstring_blocks(None) == []
    objects = [("sample.Sample", _Sample), ("sample.function", _sample_function)]
    objects.append(("sample.Sample2", _Sample))  # a second name: collected once
    examples = collect_docstring_examples(objects, package="sample")
    labels = [label for label, _ in examples]
    assert labels == [
        "sample.Sample[0]",
        "sample.Sample.method[0]",
        "sample.Sample.method[1]",
        "sample.Sample.prop[0]",
        "sample.function[0]",
    ]
    run_docstring_example(*examples[0])
    run_docstring_example(*examples[1])  # dedented out of the "Example:" section
    run_docstring_example(*examples[2])
    with pytest.raises(AssertionError, match="the example ran"):
        run_docstring_example(*examples[3])
    # objects defined elsewhere (re-exports from JAX) are not collected
    assert collect_docstring_examples([("nnx.relu", nnx.relu)]) == []


def test_attribute_docstrings_on_an_inline_sample() -> None:
    source = textwrap.dedent(
        '''
        X = 1
        """X's docstring.

        ```python
        assert nnx.PARTITION_NAME == "partition_name"
        ```
        """
        Y: int = 2
        """Y's docstring."""
        Z = 3

        def f():
            W = 4
            """not module-level"""
        '''
    )
    docs = attribute_docstrings(source)
    assert set(docs) == {"X", "Y"}
    (code,) = docstring_blocks(docs["X"])
    run_docstring_example("X", code)


def test_collection_reaches_public_docstrings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whether or not they hold examples yet, the collection reads the docstrings of
    # the public modules, classes, functions and methods (inherited ones too) and
    # the attribute docstrings of names such as nnx.Filter.
    reached: list[str | None] = []

    def spy(doc: str | None) -> list[str]:
        reached.append(doc)
        return []

    monkeypatch.setattr(sys.modules[__name__], "docstring_blocks", spy)
    all_docstring_examples()
    for doc in (
        nnx.__doc__,
        nnx.checkpoints.__doc__,
        nnx.Module.__doc__,
        nnx.Module.partition.__doc__,
        nnx.ModuleDef.merge.__doc__,
        nnx.jit.__doc__,
        nnx.Linear.__doc__,
        nnx.Embed.attend.__doc__,
        nnx.nn.initializers.zeros.__doc__,
    ):
        assert doc in reached
    filters_source = inspect.getsource(sys.modules[nnx.to_predicate.__module__])
    assert attribute_docstrings(filters_source)["Filter"] in reached
    assert nnx.relu.__doc__ not in reached  # JAX's

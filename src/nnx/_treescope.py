"""Rich reprs in treescope (``pip install treescope``), for notebooks and IDEs.

Modules, Variables and States define `__treescope_repr__`, which treescope calls
when it is installed; treescope is imported only then, so it stays optional.
A Module shows its attributes with Variables boxed (their kind and metadata
visible), a Variable its value and metadata, a State its paths and entries.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["render_constructor", "render_mapping"]


def _color(cls: type[Any]) -> str:
    formatting_util: Any = importlib.import_module("treescope.formatting_util")
    color: str = formatting_util.color_from_string(cls.__qualname__)
    return color


def render_constructor(
    obj: object, attributes: Mapping[str, Any], path: str | None, subtree_renderer: Any
) -> Any:
    """`Type(attr=..., ...)`, foldable, colored by type."""
    repr_lib: Any = importlib.import_module("treescope.repr_lib")
    return repr_lib.render_object_constructor(
        object_type=type(obj),
        attributes=attributes,
        path=path,
        subtree_renderer=subtree_renderer,
        color=_color(type(obj)),
    )


def render_mapping(
    obj: object, mapping: Mapping[Any, Any], path: str | None, subtree_renderer: Any
) -> Any:
    """`Type({key: value, ...})`, foldable."""
    repr_lib: Any = importlib.import_module("treescope.repr_lib")
    return repr_lib.render_dictionary_wrapper(
        object_type=type(obj), wrapped_dict=mapping, path=path, subtree_renderer=subtree_renderer
    )

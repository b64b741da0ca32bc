"""`nnx.var` and `nnx.variable_type`: Variables by collection name."""

from __future__ import annotations

import re
from typing import Any

from typing_extensions import TypeVar

from ._variables import Variable, collection_class

__all__ = ["var", "variable_type"]

A = TypeVar("A", default=Any)


def variable_type(collection: str) -> type[Variable[Any]]:
    """The Variable class of `collection`, made (once) if no class declares it.

    `variable_type("params") is nnx.Param`; an unknown name gives a new Variable
    subclass whose `collection` is that name (its class name is the name in
    CamelCase), and the same class on every later call. If several classes declare
    one collection, the first one defined is returned.

    Args:
        collection: A collection name.

    Returns:
        The Variable class.

    Raises:
        TypeError: If the collection belongs to a Node class that is not a Variable
            (`"node"`, `"tree_node"`).

    Example:
        ```python
        assert nnx.variable_type("params") is nnx.Param
        Scores = nnx.variable_type("doc_scores")
        assert issubclass(Scores, nnx.Variable) and Scores.collection == "doc_scores"
        assert nnx.variable_type("doc_scores") is Scores
        ```
    """
    cls = collection_class(collection)
    if cls is None:
        name = "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", collection))
        namespace = {"__slots__": (), "collection": collection, "_nnx_made_for_collection": True}
        cls = type(name or "Collection", (Variable,), namespace)
    if not issubclass(cls, Variable):
        raise TypeError(
            f"Collection {collection!r} belongs to {cls.__name__}, which is not a Variable."
        )
    return cls


def var(collection: str, value: A, **metadata: Any) -> Variable[A]:
    """A Variable of the given collection: `variable_type(collection)(value, **metadata)`.

    `nnx.var("intermediates", y)` is an `nnx.Intermediate`; an unknown collection name
    gets its own Variable class (see `variable_type`), so string filters find it.

    Args:
        collection: The collection name.
        value: The value.
        **metadata: Metadata fields (`sharding=` included).

    Returns:
        A new Variable of that collection's class.

    Raises:
        TypeError: If the collection belongs to a Node class that is not a Variable.

    Example:
        ```python
        y = nnx.var("intermediates", jnp.ones(2))
        assert type(y) is nnx.Intermediate
        flag = nnx.var("doc_flags", True)
        assert type(flag).collection == "doc_flags"
        state = nnx.State({("flag",): flag, ("y",): y})
        assert list(state.filter("doc_flags")) == [("flag",)]
        ```
    """
    return variable_type(collection)(value, **metadata)

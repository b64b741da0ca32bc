"""A griffe extension for the API reference (loaded by mkdocstrings, see mkdocs.yml).

griffe takes a class's signature, and the parameters its docstring's `Args:` are
checked against, from `__init__` only. Some nnx classes are built by `__new__`
(`nnx.Pure`, `nnx.PureContext`: tuple subclasses), so their documented arguments
would be reported as "not in the signature". For a class with a `__new__` of its own
and no `__init__`, this gives the class an `__init__` with `__new__`'s parameters
(`cls` dropped). A `__new__(cls, *args, **kwargs)` says nothing, and is left alone.
"""

from __future__ import annotations

from typing import Any

import griffe

_VARIADIC = (griffe.ParameterKind.var_positional, griffe.ParameterKind.var_keyword)


class NewAsInit(griffe.Extension):
    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        new = cls.members.get("__new__")
        if "__init__" in cls.members or not isinstance(new, griffe.Function):
            return
        params = list(new.parameters)[1:]
        if not params or all(p.kind in _VARIADIC for p in params):
            return
        self_param = griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
        init = griffe.Function(
            "__init__",
            lineno=new.lineno,
            endlineno=new.endlineno,
            parameters=griffe.Parameters(self_param, *params),
            returns="None",
        )
        cls.set_member("__init__", init)

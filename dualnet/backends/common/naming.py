"""Identifiers in generated Python: one `Namespace` per scope hands them out.

A .dnet name (a layer, hyperparameter, variable, dimension or model) becomes a Python
identifier through the namespace of the scope it lives in. The namespace never hands out a
keyword, a soft keyword, a builtin, a name its scope reserves (the framework's module names,
the runtime helpers, the base class's attributes), a name Python would mangle inside a class
(`__x`), or a name it already gave to another .dnet name: two different names never meet in
one identifier (`len` and `len_` become `len_` and `len__`). The same key always gets the
same identifier, so rebinding a variable reuses its name.
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Hashable, Iterable

# (builtins' private names such as `_` are left out: the REPL and gettext set them at will)
PYTHON_RESERVED = frozenset(
    set(keyword.kwlist)
    | set(keyword.softkwlist)
    | {n for n in dir(builtins) if not n.startswith("_")}
)


def mangled(name: str) -> bool:
    """Whether Python would mangle `name` inside a class body (`__x`, but not `__x__`)."""
    return name.startswith("__") and not name.endswith("__")


def dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


class Namespace:
    """Identifiers for one scope of generated code. `reserved`: names the scope must not
    use (besides Python's keywords and builtins, always reserved)."""

    def __init__(self, reserved: Iterable[str] = ()):
        self._reserved = PYTHON_RESERVED | frozenset(reserved)
        self._given: dict[Hashable, str] = {}
        self._taken: set[str] = set()

    def name(self, key: Hashable, wanted: str) -> str:
        """The identifier for `key`, `wanted` where that is free (else `wanted_`, ...)."""
        if key in self._given:
            return self._given[key]
        candidate = (
            wanted
            if wanted.isidentifier()
            else "_" + "".join(c if c.isalnum() or c == "_" else "_" for c in wanted)
        )
        if candidate.startswith("__") and candidate.strip("_"):
            candidate = "_" + candidate.lstrip("_")  # `__x`, `__x__`: never Python's own
        while not self.free(candidate):
            candidate += "_"
        self._given[key] = candidate
        self._taken.add(candidate)
        return candidate

    def free(self, name: str) -> bool:
        """Whether `name` may still be handed out."""
        return not (name in self._reserved or name in self._taken or mangled(name) or dunder(name))

    def reserve(self, names: Iterable[str]) -> None:
        """Names that must not be handed out from now on (used as they are elsewhere)."""
        self._taken.update(names)

    def get(self, key: Hashable) -> str | None:
        return self._given.get(key)

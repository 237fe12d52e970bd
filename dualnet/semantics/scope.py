"""Name resolution: local → model → file → built-ins, with "did you mean" suggestions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dualnet.diagnostics import DualnetError, Span, error
from dualnet.ops import REGISTRY
from dualnet.ops.common import INIT_FUNCTIONS
from dualnet.ops.pool import LAYER_FORMS
from dualnet.ops.registry import suggest
from dualnet.semantics.loader import ModuleInfo
from dualnet.semantics.values import (
    POISON,
    Builtin,
    FunctionRef,
    InitFunction,
    LayerType,
    ModelRef,
    Namespace,
)
from dualnet.syntax.parser import keyword_as_name, keywords

BUILTINS: dict[str, Any] = {"range": Builtin("range"), "Sequential": Builtin("Sequential")}
for _name, _op in REGISTRY.items():
    BUILTINS[_name] = LayerType(_op) if _op.is_layer else FunctionRef(_op)
for _name, _function in LAYER_FORMS.items():
    BUILTINS[_name] = LayerType(REGISTRY[_function], _name)
for _name in INIT_FUNCTIONS:
    BUILTINS[_name] = InitFunction(_name)


class ModuleScope:
    """The names a file sees: its constants and models, its imports, then the built-ins.
    Constants are evaluated on first use by `eval_const(module, decl)`."""

    def __init__(self, module: ModuleInfo, eval_const: Callable[[ModuleInfo, Any], Any]):
        self.module = module
        self.eval_const = eval_const

    def find(self, name: str) -> tuple[bool, Any]:
        return _find_in_module(self.module, name, self.eval_const, imports=True)

    def visible(self) -> list[str]:
        m = self.module
        names = [*m.consts, *m.models, *m.imported, *m.namespaces, *BUILTINS]
        for other in m.import_alls:
            names += [*other.consts, *other.models]
        return names


def _find_in_module(m: ModuleInfo, name: str, eval_const, imports: bool) -> tuple[bool, Any]:
    if imports and name in m.failed:
        return True, POISON  # its import already failed with a diagnostic
    if name in m.consts:
        return True, eval_const(m, m.consts[name])
    if name in m.models:
        return True, ModelRef(m.models[name], m)
    if imports:
        if name in m.imported:
            other, original, _ = m.imported[name]
            return _find_in_module(other, original, eval_const, imports=False)
        if name in m.namespaces:
            return True, Namespace(m.namespaces[name][0])
        for other in m.import_alls:
            found, value = _find_in_module(other, name, eval_const, imports=False)
            if found:
                return True, value
    if name in BUILTINS:
        return True, BUILTINS[name]
    return False, None


def namespace_member(ns: Namespace, name: str, span: Span, eval_const) -> Any:
    found, value = _find_in_module(ns.module, name, eval_const, imports=False)
    if not found or name in BUILTINS and name not in ns.module.models:
        hint = suggest(name, [*ns.module.models, *ns.module.consts])
        raise error(
            "E-NAME",
            f"{ns.module.display} declares no `{name}`",
            span,
            "not found",
            [f"did you mean `{hint}`?"] if hint else [],
        )
    return value


_PYTHON_CONSTANTS = {"None": "none", "True": "true", "False": "false"}


def _undefined(name: str, span: Span, visible: list[str]) -> DualnetError:
    """A name found nowhere: a keyword, Python's spelling of a literal, or a typo."""
    unquoted = (span.end_line, span.end_column - span.column) == (span.line, len(name))
    if name in keywords() and unquoted:
        return keyword_as_name(name, span)
    if name in _PYTHON_CONSTANTS:
        notes = [f"dualnet writes `{_PYTHON_CONSTANTS[name]}`"]
    else:
        hint = suggest(name, visible)
        notes = [f"did you mean `{hint}`?"] if hint else []
    return error("E-NAME", f"`{name}` is not defined", span, "unknown name", notes)


class Scope:
    """A chain of dictionaries ending in a file scope."""

    def __init__(self, names: dict[str, Any], parent: Scope | ModuleScope):
        self.names = names
        self.parent = parent

    def find(self, name: str) -> tuple[bool, Any]:
        if name in self.names:
            return True, self.names[name]
        return self.parent.find(name)

    def lookup(self, name: str, span: Span) -> Any:
        found, value = self.find(name)
        if not found:
            raise _undefined(name, span, self.visible())
        return value

    def visible(self) -> list[str]:
        return [*self.names, *self.parent.visible()]

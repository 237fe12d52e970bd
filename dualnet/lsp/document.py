"""What the language server knows of one document: its syntax tree (the last text that
parsed), the checked IR's types by source span, and name resolution at a position — local
variables, the model's layers and hyperparameters, the file's declarations, imports, ops."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from dualnet.diagnostics import Span
from dualnet.frontend import Summary
from dualnet.ir.graph import LayerInstance, ModelInstance
from dualnet.semantics.scope import BUILTINS
from dualnet.semantics.values import FunctionRef, LayerType
from dualnet.syntax import ast

Pos = tuple[int, int]  # 1-based line and column, as in `Span`
Key = tuple[int, int, int, int]  # a span in the document, without its file


def key(span: Span) -> Key:
    return (span.line, span.column, span.end_line, span.end_column)


def traced_span(expr) -> Span:
    """The span the tracer gives the value of `expr`: a pipe's value is its last stage's."""
    while isinstance(expr, ast.Pipe):
        expr = expr.func
    return expr.span


def contains(span: Span, pos: Pos) -> bool:
    """Whether `pos` lies in `span` or just after it (a cursor at the end of a name)."""
    return (span.line, span.column) <= pos <= (span.end_line, span.end_column)


def children(node) -> list:
    """The syntax nodes directly inside `node`."""
    out = []
    for f in fields(node):
        value = getattr(node, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            if is_dataclass(item) and not isinstance(item, Span):
                out.append(item)
    return out


def path_at(tree: ast.Module, pos: Pos) -> list:
    """The nodes containing `pos`, outermost first (an explicit walk: any depth)."""
    path, node = [], tree
    while node is not None:
        path.append(node)
        node = next((c for c in children(node) if contains(c.span, pos)), None)
    return path


@dataclass(frozen=True)
class Binding:
    """A local name of a forward: an argument, an assignment's target or a loop variable."""

    name: str
    span: Span  # where it is bound (the target)
    start: Pos  # from where it is in effect
    kind: str  # arg | assign | for
    value: ast.Expr | None = None  # the assigned expression
    index: int | None = None  # the target's position in `a, b = ...`


def bindings(forward: ast.Forward) -> list[Binding]:
    """The forward's local names in source order."""
    out = [Binding(a.name, a.span, (0, 0), "arg", index=i) for i, a in enumerate(forward.args)]

    def walk(body) -> None:
        for stmt in body:
            end = (stmt.span.end_line, stmt.span.end_column)
            if isinstance(stmt, ast.Assign):
                many = len(stmt.targets) > 1
                for i, t in enumerate(stmt.targets):
                    out.append(
                        Binding(t.id, t.span, end, "assign", stmt.value, i if many else None)
                    )
            elif isinstance(stmt, ast.Annotated):
                out.append(Binding(stmt.target.id, stmt.target.span, end, "assign", stmt.value))
            elif isinstance(stmt, ast.For):
                start = (stmt.var.span.end_line, stmt.var.span.end_column)
                out.append(Binding(stmt.var.id, stmt.var.span, start, "for", stmt.iterable))
                walk(stmt.body)
            elif isinstance(stmt, ast.If):
                walk(stmt.body)
                walk(stmt.orelse)

    walk(forward.body)
    return out


def binding_at(forward: ast.Forward, name: str, pos: Pos) -> Binding | None:
    """The binding of `name` in effect at `pos` (or bound right there)."""
    found = None
    for b in bindings(forward):
        if b.name != name:
            continue
        if contains(b.span, pos):
            return b
        if b.start <= pos:
            found = b
    return found


@dataclass(frozen=True)
class Target:
    """What a name at a position refers to."""

    kind: str  # local | layer | hyper | dim | model | const | op | import | namespace
    name: str
    span: Span | None = None  # its declaration
    file: Path | None = None  # the file declaring it
    node: object = None  # Binding, ast.LayerDecl, ast.Hyper, ast.Model, ast.Const, OpDef
    owner: ast.Model | None = None  # a layer's or hyperparameter's model


@dataclass
class Document:
    """One open document, checked: the tree of its last text that parsed, the summary of
    its last check, and the types of its values by span."""

    path: Path  # real path (the document need not exist on disk)
    text: str
    tree: ast.Module | None
    summary: Summary
    files: dict[Path, ast.Module] = field(default_factory=dict)  # the imported files' trees
    types: dict[Key, list[tuple[str, ...]]] = field(default_factory=dict)
    tree_text: str = ""  # the text `tree` was parsed from (`text`, or an earlier one)
    # The check of an open document that imports this one, with this very text: where this
    # file's models get their instances (a file of blocks checks none of its own).
    importer: Summary | None = None

    # ---------------------------------------------------------------- building

    @classmethod
    def build(cls, path: Path, text: str, summary: Summary, old: Document | None):
        """From the check of `text`: its trees (the root's and its imports'), the traced
        types. When `text` does not parse, `old`'s tree stays (positions may be stale)."""
        trees = {Path(p): tree for p, tree in summary.trees.items()}
        tree, tree_text = trees.pop(path, None), text
        if tree is None and old is not None:
            tree, tree_text = old.tree, old.tree_text
        return cls(path, text, tree, summary, files=trees, tree_text=tree_text).typed()

    def typed(self) -> Document:
        self.types = _types(self.roots(), self.path)
        return self

    def imported_by(self, summary: Summary) -> Document | None:
        """This document with `summary`'s instances of its models, if `summary` (the check
        of another file) read this document's very text."""
        tree = summary.trees.get(str(self.path))
        if tree is None or summary.sources.texts.get(tree.path) != self.text:
            return None
        return replace(self, importer=summary).typed()

    def roots(self) -> list[ModelInstance]:
        """The entry instances of this document's check and of its importer's."""
        summaries = [self.summary, self.importer] if self.importer else [self.summary]
        return [s.instance for s in summaries if s.instance is not None]

    # ---------------------------------------------------------------- types

    def types_at(self, span: Span, index: int | None = None) -> list[str]:
        """The distinct types the value at `span` has (one per instance and loop iteration
        that differ)."""
        out: list[str] = []
        for outputs in self.types.get(key(span), ()):
            i = index or 0
            if i < len(outputs) and outputs[i] not in out:
                out.append(outputs[i])
        return out

    def binding_types(self, forward: ast.Forward, b: Binding, depth: int = 0) -> list[str]:
        if b.kind == "arg":
            return self.types_at(b.span)
        if b.kind != "assign" or depth > 50:
            return []
        if isinstance(b.value, ast.Name):  # `y = x`: x's types
            start = (b.value.span.line, b.value.span.column)
            inner = binding_at(forward, b.value.id, start)
            return self.binding_types(forward, inner, depth + 1) if inner else []
        return self.types_at(traced_span(b.value), b.index)

    def instances(self, model: ast.Model) -> list[ModelInstance]:
        """The checked instances of `model` (a declaration in this document)."""
        out, stack = [], list(reversed(self.roots()))
        while stack:
            inst = stack.pop()
            decl = inst.decl
            if decl is not None and key(decl.span) == key(model.span) and self.here(decl.span):
                out.append(inst)
            stack.extend(
                c for c in reversed(inst.children.values()) if isinstance(c, ModelInstance)
            )
        return out

    def layer_instances(self, model: ast.Model, name: str) -> list[LayerInstance | ModelInstance]:
        return [i.children[name] for i in self.instances(model) if name in i.children]

    def values(self, model: ast.Model, name: str) -> list[str]:
        """The distinct values instances of `model` give a hyperparameter, a value declared
        among its layers (`hidden = C * t`) or a size its forward's signature names."""
        out: list[str] = []
        for inst in self.instances(model):
            for table in (inst.hyper, inst.sizes, inst.call_dims):
                if name in table and str(table[name]) not in out:
                    out.append(str(table[name]))
                    break
        return out

    def here(self, span: Span) -> bool:
        return _real(span.file) == self.path

    # ---------------------------------------------------------------- names

    def resolve(self, path: list, pos: Pos) -> Target | None:
        """What the innermost name of `path` (from `path_at`) refers to."""
        node = path[-1]
        if isinstance(node, ast.Import):
            if contains(node.path_span, pos):
                target = self.import_file(self.path, node)
                return Target("import", node.path, node.path_span, target)
            return None
        if isinstance(node, ast.ImportName):
            imp = path[-2]
            return self.exported(self.import_file(self.path, imp), node.name)
        if isinstance(node, ast.Hyper) and isinstance(path[-2], ast.Model):
            return Target("hyper", node.name, node.span, self.path, node, path[-2])
        if isinstance(node, ast.Arg):
            forward = _innermost(path, ast.Forward)
            b = next((b for b in bindings(forward) if b.span == node.span), None)
            return Target("local", node.name, node.span, self.path, b) if b else None
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            ns = self.resolve_name(node.value.id, path, (node.value.span.line, 1))
            if ns is not None and ns.kind == "namespace" and not contains(node.value.span, pos):
                return self.exported(ns.file, node.name)
            return None
        if isinstance(node, ast.Name):
            return self.resolve_name(node.id, path, pos)
        model = _innermost(path, ast.Model)
        if isinstance(node, ast.DimName) and model is not None:
            return Target("dim", node.name, owner=model)
        return None

    def resolve_name(self, name: str, path: list, pos: Pos) -> Target | None:
        """`name` as the scope at `pos` sees it: local → model → file → built-ins."""
        forward = _innermost(path, ast.Forward)
        model = _innermost(path, ast.Model)
        if forward is not None:
            b = binding_at(forward, name, pos)
            if b is not None:
                return Target("local", name, b.span, self.path, b)
        if model is not None:
            for member in model.members:
                if isinstance(member, ast.LayerDecl) and member.name.id == name:
                    return Target("layer", name, member.name.span, self.path, member, model)
            for hyper in model.hypers:
                if hyper.name == name:
                    return Target("hyper", name, hyper.span, self.path, hyper, model)
        found = self.declared(self.path, self.tree, name)
        if found is not None:
            return found
        builtin = BUILTINS.get(name)
        if isinstance(builtin, LayerType | FunctionRef):  # an op, or a layer form (MaxPool2d)
            return Target("op", name, node=builtin.op)
        return None

    def declared(self, file: Path, tree: ast.Module | None, name: str, depth: int = 0):
        """`name` as declared or imported by the file `file`."""
        if tree is None or depth > 20:
            return None
        for decl in tree.decls:
            if isinstance(decl, ast.Model | ast.Const) and decl.name.id == name:
                kind = "model" if isinstance(decl, ast.Model) else "const"
                return Target(kind, name, decl.name.span, file, decl)
            if isinstance(decl, ast.Import):
                other = self.import_file(file, decl)
                if decl.names is not None:
                    for item in decl.names:
                        if (item.alias or item.name) == name:
                            return self.exported(other, item.name, depth + 1) or Target(
                                "import", name, item.span, file
                            )
                elif decl.alias == name:
                    return Target("namespace", name, decl.path_span, other)
                elif other is not None:
                    found = self.declared(other, self.tree_of(other), name, depth + 1)
                    if found is not None:
                        return found
        return None

    def exported(self, file: Path | None, name: str, depth: int = 0) -> Target | None:
        return None if file is None else self.declared(file, self.tree_of(file), name, depth)

    def import_file(self, file: Path, decl: ast.Import) -> Path | None:
        """The file an import names (relative to the importing file), if it exists."""
        if not decl.path or "\x00" in decl.path:
            return None
        target = Path(os.path.realpath(file.parent / decl.path))
        return target if target.is_file() else None

    def source_of(self, file: Path | None) -> str:
        """The text of `file`'s tree: the one it was parsed from."""
        tree = self.tree_of(file) if file else None
        if tree is None:
            return ""
        if tree is self.tree:
            return self.tree_text
        return self.summary.sources.texts.get(tree.path, "")

    def tree_of(self, file: Path) -> ast.Module | None:
        return self.tree if file == self.path else self.files.get(file)


def _innermost(path: list, kind):
    for node in reversed(path):
        if isinstance(node, ast.TrainFunction) and kind is ast.Forward:
            return node.forward
        if isinstance(node, kind):
            return node
    return None


def _real(file: str) -> Path:
    return Path(os.path.realpath(file))


def _types(roots: list[ModelInstance], path: Path) -> dict[Key, list[tuple[str, ...]]]:
    """Every traced value in the file `path`, by span: each node's output types."""
    out: dict[Key, list[tuple[str, ...]]] = {}
    here: dict[str, bool] = {}

    def add(span: Span | None, types: tuple[str, ...]) -> None:
        if span is None:
            return
        if span.file not in here:
            here[span.file] = _real(span.file) == path
        if here[span.file]:
            out.setdefault(key(span), []).append(types)

    stack = list(reversed(roots))
    while stack:
        inst = stack.pop()
        for graph in inst.graphs:
            for v in graph.inputs:
                add(v.span, (str(v.type),))
            for node in graph.nodes:
                if node.outputs:
                    add(node.outputs[0].span or node.span, tuple(str(v.type) for v in node.outputs))
        stack.extend(c for c in reversed(inst.children.values()) if isinstance(c, ModelInstance))
    return out

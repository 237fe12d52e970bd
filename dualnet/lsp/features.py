"""The language features on a checked `Document`, as LSP values: diagnostics, hover,
definition, completion, document symbols and formatting. Positions and ranges count code
points (the server converts them to and from the client's units)."""

from __future__ import annotations

import re
from pathlib import Path

from lsprotocol import types as lsp

from dualnet.diagnostics import Diagnostic, DualnetError, Span
from dualnet.fmt import format_source
from dualnet.ir.graph import LayerInstance, ModelInstance
from dualnet.ir.types import DTYPES, TensorType
from dualnet.lsp.document import (
    Binding,
    Document,
    Pos,
    Target,
    bindings,
    path_at,
    traced_span,
)
from dualnet.ops import OpDef
from dualnet.semantics.scope import BUILTINS
from dualnet.semantics.values import FunctionRef, LayerType
from dualnet.syntax import ast
from dualnet.syntax.parser import keywords

KEYWORDS = sorted(keywords() | {"train"})  # `train` is a name the parser checks


def span_range(span: Span | None) -> lsp.Range:
    """A span as an LSP range (0-based); a location outside the text is the file's start."""
    if span is None or not span.line:
        return lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0))
    return lsp.Range(
        lsp.Position(span.line - 1, span.column - 1),
        lsp.Position(span.end_line - 1, max(span.end_column - 1, 0)),
    )


def diagnostics(doc: Document) -> list[lsp.Diagnostic]:
    """The check's diagnostics; those in other files (an import) sit at the file's start
    and say where they are."""
    return [_diagnostic(d, doc) for d in doc.summary.diagnostics]


def _diagnostic(d: Diagnostic, doc: Document) -> lsp.Diagnostic:
    here = d.span is not None and d.span.line and doc.here(d.span)
    message = d.message if here or d.span is None else f"{d.span}: {d.message}"
    if d.label:
        message += f" ({d.label})"
    message = "\n".join([message, *d.notes])
    return lsp.Diagnostic(
        range=span_range(d.span if here else None),
        message=message,
        severity=lsp.DiagnosticSeverity.Error,
        code=d.code,
        source="dualnet",
    )


# ---------------------------------------------------------------- hover


def hover(doc: Document, pos: Pos) -> lsp.Hover | None:
    if doc.tree is None:
        return None
    path = path_at(doc.tree, pos)
    target = doc.resolve(path, pos)
    text = _describe(doc, target, path) if target else None
    if text is None:  # any other expression: the value's type, where it was traced
        types = doc.types_at(traced_span(path[-1])) if len(path) > 1 else []
        text = _code("\n".join(types)) if types else None
    if text is None:
        return None
    return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, text), span_range(path[-1].span))


def _code(text: str) -> str:
    return f"```dnet\n{text}\n```"


def _describe(doc: Document, t: Target, path: list) -> str | None:
    if t.kind == "local":
        forward = next(
            (n.forward if isinstance(n, ast.TrainFunction) else n)
            for n in reversed(path)
            if isinstance(n, ast.Forward | ast.TrainFunction)
        )
        return _local(doc, forward, t.node)
    if t.kind == "layer":
        return _layer(doc, t)
    if t.kind == "hyper":
        values = doc.values(t.owner, t.name)
        text = _code(_source(doc, t.file, t.node.span))
        return text + (f"\n\nvalues: {', '.join(_some(values))}" if values else "")
    if t.kind == "dim":
        values = doc.values(t.owner, t.name)
        if values == [t.name]:
            return _code(f"{t.name}  # any size: symbolic")
        return _code(f"{t.name} = {' | '.join(_some(values))}") if values else None
    if t.kind == "model":
        return _model(doc, t)
    if t.kind == "const":
        lines = _source(doc, t.file, t.node.span).split("\n")
        return _code("\n".join(_some(lines, 12)))
    if t.kind == "op":
        return op_doc(t.node)
    if t.kind in ("import", "namespace") and t.file is not None:
        return f"`{t.file}`"
    return None


def _local(doc: Document, forward: ast.Forward, b: Binding) -> str | None:
    types = doc.binding_types(forward, b)
    if not types:
        return None
    return _code("\n".join(f"{b.name}: {t}" for t in _some(types)))


def _some(items: list[str], most: int = 8) -> list[str]:
    """The first `most` items, then how many more there are."""
    if len(items) <= most:
        return items
    return [*items[:most], f"# ... and {len(items) - most} more"]


def _layer(doc: Document, t: Target) -> str:
    decl: ast.LayerDecl = t.node
    source = _source(doc, t.file, decl.value.span).split("\n")
    first = source[0] + (" ..." if len(source) > 1 else "")
    lines = [_code(f"{t.name} = {first}")]
    shown: list[str] = []
    for child in doc.layer_instances(t.owner, t.name):
        text = _instance_text(child)
        if text not in shown:
            shown.append(text)
    if len(shown) > 4:
        shown = [*shown[:4], f"... and {len(shown) - 4} more configurations"]
    values = doc.values(t.owner, t.name)  # a compile-time value, not a layer
    if values and not shown:
        shown = [f"values: {', '.join(_some(values))}"]
    return "\n\n".join(lines + shown)


def _instance_text(child: LayerInstance | ModelInstance) -> str:
    """A layer's tensors and output, or a model instance's parameter count and outputs."""
    if isinstance(child, LayerInstance):
        rows = [
            f"{name}: {TensorType(spec.dtype, spec.shape)}"
            for name, spec in [*child.params.items(), *child.buffers.items()]
        ]
        outputs = ", ".join(str(o) for o in child.output_types) or "(never called)"
        rows.append(f"-> {outputs}")
        rows.append(f"# {child.op}, {child.param_count:,} parameters")
        return _code("\n".join(rows))
    outputs = [str(v.type) for g in child.graphs[:1] for v in g.outputs]
    rows = [f"# {child.definition}, {child.param_count:,} parameters"]
    if outputs:
        rows.append(f"-> {', '.join(outputs)}")
    return _code("\n".join(rows))


def _model(doc: Document, t: Target) -> str:
    model: ast.Model = t.node
    header = _source(doc, t.file, model.span).split("{", 1)[0].strip()
    text = _code(header)
    if t.file == doc.path:
        counts = sorted({i.param_count for i in doc.instances(model)})
        if counts:
            text += "\n\n" + ", ".join(f"{c:,}" for c in counts) + " parameters"
    return text


def op_doc(op: OpDef) -> str:
    """An op's signature (a layer's constructor and call) and its documentation."""
    rows = [f"{op.name}{op.construct}  # constructor"] if op.is_layer else []
    rows.append(f"{op.name}{op.signature}" if not op.is_layer else f"layer{op.signature}")
    return _code("\n".join(rows)) + (f"\n\n{op.doc}" if op.doc else "")


def _source(doc: Document, file: Path | None, span: Span) -> str:
    """The source text of `span` in `file` (this document or one it imports), as the
    check read it."""
    lines = doc.source_of(file).splitlines()[span.line - 1 : span.end_line]
    if not lines:
        return ""
    if len(lines) == 1:
        return lines[0][span.column - 1 : span.end_column - 1]
    lines[0] = lines[0][span.column - 1 :]
    lines[-1] = lines[-1][: span.end_column - 1]
    return "\n".join(lines)


# ---------------------------------------------------------------- definition


def definition(doc: Document, pos: Pos) -> lsp.Location | None:
    if doc.tree is None:
        return None
    path = path_at(doc.tree, pos)
    t = doc.resolve(path, pos)
    if t is None or t.file is None:
        return None
    if t.kind in ("import", "namespace"):  # the imported file itself
        return lsp.Location(t.file.as_uri(), span_range(None))
    return lsp.Location(t.file.as_uri(), span_range(t.span))


# ---------------------------------------------------------------- completion

_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\($")


def completion(doc: Document, text: str, pos: Pos) -> list[lsp.CompletionItem]:
    """Keyword arguments of the op whose call the cursor is in, then every name in scope:
    locals, the model's layers and hyperparameters, the file's declarations, ops, keywords
    and element types."""
    items = _keyword_args(doc, text, pos)
    names: dict[str, lsp.CompletionItemKind] = {}
    path = path_at(doc.tree, pos) if doc.tree else []
    forward = next((n for n in reversed(path) if isinstance(n, ast.Forward)), None)
    model = next((n for n in reversed(path) if isinstance(n, ast.Model)), None)
    if forward is not None:
        for b in bindings(forward):
            if b.start <= pos:
                names.setdefault(b.name, lsp.CompletionItemKind.Variable)
    if model is not None:
        for m in model.members:
            if isinstance(m, ast.LayerDecl):
                names.setdefault(m.name.id, lsp.CompletionItemKind.Field)
        for h in model.hypers:
            names.setdefault(h.name, lsp.CompletionItemKind.TypeParameter)
    for decl in doc.tree.decls if doc.tree else ():
        if isinstance(decl, ast.Model):
            names.setdefault(decl.name.id, lsp.CompletionItemKind.Class)
        elif isinstance(decl, ast.Const):
            names.setdefault(decl.name.id, lsp.CompletionItemKind.Constant)
        elif isinstance(decl, ast.Import) and decl.names is not None:
            for item in decl.names:
                names.setdefault(item.alias or item.name, lsp.CompletionItemKind.Class)
        elif isinstance(decl, ast.Import) and decl.alias:
            names.setdefault(decl.alias, lsp.CompletionItemKind.Module)
    for name, value in BUILTINS.items():
        kind = lsp.CompletionItemKind.Class if isinstance(value, LayerType) else _FUNCTION
        names.setdefault(name, kind)
    for word in KEYWORDS:
        names.setdefault(word, lsp.CompletionItemKind.Keyword)
    for dtype in DTYPES:
        names.setdefault(dtype, lsp.CompletionItemKind.TypeParameter)
    items += [lsp.CompletionItem(label=n, kind=k, sort_text=f"1{n}") for n, k in names.items()]
    return items


_FUNCTION = lsp.CompletionItemKind.Function


def _keyword_args(doc: Document, text: str, pos: Pos) -> list[lsp.CompletionItem]:
    """`name=` for each attribute of the op whose parentheses hold the cursor."""
    call = _open_call(text, pos)
    builtin = BUILTINS.get(call or "")
    if not isinstance(builtin, LayerType | FunctionRef):
        return []
    op = builtin.op
    path = path_at(doc.tree, pos) if doc.tree else []
    in_forward = any(isinstance(n, ast.Forward | ast.TrainFunction) for n in path)
    signature = op.construct if op.is_layer and not in_forward else op.signature
    return [
        lsp.CompletionItem(
            label=f"{p.name}=",
            kind=lsp.CompletionItemKind.Property,
            detail=f"{call}{signature}",
            sort_text=f"0{i:03}",
        )
        for i, p in enumerate(signature.params)
        if not p.is_tensor
    ]


def _open_call(text: str, pos: Pos) -> str | None:
    """The name before the innermost unclosed `(` before `pos` (within 2,000 characters)."""
    lines = text.split("\n")
    if not 0 < pos[0] <= len(lines):
        return None
    before = "\n".join(lines[: pos[0] - 1] + [lines[pos[0] - 1][: pos[1] - 1]])[-2000:]
    depth = 0
    for i in range(len(before) - 1, -1, -1):
        c = before[i]
        if c in ")]}":
            depth += 1
        elif c in "([{":
            if depth == 0:
                found = _CALL.search(before[: i + 1]) if c == "(" else None
                return found.group(1) if found else None
            depth -= 1
    return None


# ---------------------------------------------------------------- formatting


def formatting(text: str, path: Path) -> list[lsp.TextEdit] | None:
    """One edit replacing the text with `dualnet fmt`'s layout; none when it is already in
    it, None when it does not parse (the diagnostics say why)."""
    try:
        formatted = format_source(text, str(path))
    except DualnetError:
        return None
    if formatted == text:
        return []
    lines = text.split("\n")
    end = lsp.Position(len(lines) - 1, len(lines[-1]))  # code points
    return [lsp.TextEdit(lsp.Range(lsp.Position(0, 0), end), formatted)]


# ---------------------------------------------------------------- symbols


def symbols(doc: Document) -> list[lsp.DocumentSymbol]:
    """Models (their layers, hyperparameters and forward), constants and train blocks."""
    out = []
    for decl in doc.tree.decls if doc.tree else ():
        if isinstance(decl, ast.Model):
            members = [_symbol(h.name, lsp.SymbolKind.TypeParameter, h.span) for h in decl.hypers]
            for m in decl.members:
                if isinstance(m, ast.LayerDecl):
                    members.append(_symbol(m.name.id, lsp.SymbolKind.Field, m.span, m.name.span))
                else:
                    members.append(_symbol("forward", lsp.SymbolKind.Method, m.span))
            out.append(
                _symbol(decl.name.id, lsp.SymbolKind.Class, decl.span, decl.name.span, members)
            )
        elif isinstance(decl, ast.Const):
            out.append(_symbol(decl.name.id, lsp.SymbolKind.Constant, decl.span, decl.name.span))
        elif isinstance(decl, ast.Train):
            functions = [
                _symbol(f.name.id, lsp.SymbolKind.Method, f.span, f.name.span)
                for f in decl.functions
            ]
            out.append(
                _symbol(
                    f"train {decl.model.id}", lsp.SymbolKind.Namespace, decl.span, None, functions
                )
            )
    return out


def _symbol(name, kind, span, selection=None, members=()) -> lsp.DocumentSymbol:
    return lsp.DocumentSymbol(
        name=name,
        kind=kind,
        range=span_range(span),
        selection_range=span_range(selection or span),
        children=list(members) or None,
    )

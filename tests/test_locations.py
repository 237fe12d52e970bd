"""Every diagnostic of every command carries a location (issue 11): a place in a .dnet file,
or the file, command-line option, environment variable or API argument it is about. This
walks dualnet's code and fails on a diagnostic built without one."""

from __future__ import annotations

import ast
from pathlib import Path

from dualnet.diagnostics import Diagnostic, SourceCache, Span, option, render, whole_file

PACKAGE = Path(__file__).resolve().parents[1] / "dualnet"


def _span_argument(call: ast.Call) -> ast.expr | None:
    if len(call.args) > 2:
        return call.args[2]
    return next((k.value for k in call.keywords if k.arg == "span"), None)


def test_no_diagnostic_is_built_without_a_location():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name not in ("error", "Diagnostic") or len(node.args) < 2:
                continue
            span = _span_argument(node)
            if span is None or (isinstance(span, ast.Constant) and span.value is None):
                missing.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not missing, missing


def test_locations_outside_source_text_render_as_what_they_name():
    file = render(Diagnostic("E-WEIGHTS", "bad", whole_file("w.safetensors")), SourceCache())
    assert file.splitlines()[1].strip() == "--> w.safetensors"
    flag = render(Diagnostic("E-INPUT", "bad", option("--dims")), SourceCache())
    assert flag.splitlines()[1].strip() == "--> command line: --dims"
    assert str(Span("m.dnet", 3, 5, 3, 9)) == "m.dnet:3:5"

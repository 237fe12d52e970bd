"""The package's layers (docs/architecture.md): a module imports only from its own layer or
lower ones, a backend's folder from no other backend's, and no imports go in a circle.
Imports are read from the source (every `import`, at any depth, but those under
`if TYPE_CHECKING:`, which never run)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dualnet"

# lowest first; a module belongs to the first entry that is it or a package above it
LAYERS = [
    ("dualnet.diagnostics", "dualnet.version"),
    # with two framework-free descriptions the checker and the backends read
    (
        "dualnet.budget",
        "dualnet.memory",
        "dualnet.extras",
        "dualnet.training.spec",
        "dualnet.verify.dropout_masks",
    ),
    ("dualnet.ir",),
    ("dualnet.io",),
    ("dualnet.ops",),
    ("dualnet.syntax",),
    ("dualnet.semantics", "dualnet.checks"),
    ("dualnet.frontend",),
    # framework-free tools on the checked program: pictures, summaries, formatting, the editor
    ("dualnet.graph", "dualnet.fmt", "dualnet.lsp"),
    ("dualnet.backends",),
    ("dualnet.compiler",),
    ("dualnet.training",),
    ("dualnet.verify",),
    ("dualnet.api", "dualnet.cli", "dualnet.__main__", "dualnet"),
]
BACKEND_FOLDERS = ("torch", "keras", "onnx")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            return  # typing only: never runs
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "dualnet":
                for alias in node.names:  # `from dualnet.x import y`: y may be a module
                    full = f"{node.module}.{alias.name}"
                    found.add(_resolve(full if full in MODULES else node.module))
        elif isinstance(node, ast.Import):
            found.update(_resolve(a.name) for a in node.names if a.name.split(".")[0] == "dualnet")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _layer(name: str) -> int:
    for index, members in enumerate(LAYERS):
        if any(name == m or name.startswith(m + ".") for m in members if m != "dualnet"):
            return index
    assert name == "dualnet", f"{name} belongs to no layer: add it to LAYERS"
    return len(LAYERS) - 1


def test_every_module_belongs_to_a_layer():
    for name in MODULES:
        _layer(name)


def test_no_import_goes_up_a_layer():
    upward = [
        f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
        for name, targets in GRAPH.items()
        for target in targets
        if _layer(target) > _layer(name)
    ]
    assert not upward, "\n".join(upward)


def test_a_backend_folder_imports_no_other_backend():
    crossing = []
    for name, targets in GRAPH.items():
        mine = name.split(".")[2] if name.startswith("dualnet.backends.") else None
        if mine not in BACKEND_FOLDERS:
            continue
        for target in targets:
            theirs = target.split(".")[2] if target.startswith("dualnet.backends.") else None
            if theirs in BACKEND_FOLDERS and theirs != mine:
                crossing.append(f"{name} imports {target}")
    assert not crossing, "\n".join(crossing)


def test_no_imports_go_in_a_circle():
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            connect(v)
    assert not circles, circles


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path):
    """The rules above can fail: a made-up graph with both faults is caught."""
    global GRAPH
    saved = GRAPH
    GRAPH = {**saved, "dualnet.ir.dims": saved["dualnet.ir.dims"] | {"dualnet.compiler"}}
    try:
        try:
            test_no_import_goes_up_a_layer()
        except AssertionError as exc:
            assert "dualnet.ir.dims (layer 2) imports dualnet.compiler" in str(exc)
        else:
            raise AssertionError("an upward import went unseen")
        try:
            test_no_imports_go_in_a_circle()
        except AssertionError:
            pass
        else:
            raise AssertionError("a circle went unseen")
    finally:
        GRAPH = saved


def test_the_fuzzer_package_imports_hypothesis_only_when_used():
    code = (
        "import sys, dualnet.verify.fuzzing as f\n"
        "assert 'hypothesis' not in sys.modules\n"
        "f.CONSTRUCTS\n"
        "assert 'hypothesis' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_backend_is_the_folder_of_its_name():
    """`rows.lowering_row` imports `dualnet.backends.<name>.lowering`."""
    from dualnet.backends import BACKENDS

    for name, backend in BACKENDS.items():
        assert backend.name == name and backend.package == f"dualnet.backends.{name}"
        assert (PACKAGE / "backends" / name / "lowering.py").is_file()

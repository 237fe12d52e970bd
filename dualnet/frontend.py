"""The front end's door: check a .dnet file into a typed IR and a summary (`check_file`)."""

from __future__ import annotations

import gc
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dualnet.budget import Budget, BudgetExceeded, active
from dualnet.checks.autodiff import check_gradients
from dualnet.diagnostics import (
    Diagnostic,
    DualnetError,
    SourceCache,
    Span,
    error,
    option,
    shorten,
)
from dualnet.ir.graph import Graph, LayerInstance, ModelInstance
from dualnet.ops.binding import Arg
from dualnet.ops.registry import suggest
from dualnet.semantics.checker import Checker, require_hyper_name
from dualnet.semantics.evaluator import Evaluator
from dualnet.semantics.loader import Loader
from dualnet.semantics.training import check_train_blocks, check_training
from dualnet.semantics.values import ModelRef, ModelSpec
from dualnet.syntax import ast
from dualnet.syntax.parser import parse
from dualnet.training.spec import TrainSpec


@dataclass(frozen=True)
class LayerRow:
    path: str
    op: str
    output: str
    params: int


@dataclass
class Summary:
    """The result of checking one entry model."""

    model: str
    file: str
    instance: ModelInstance | None
    graph: Graph | None
    diagnostics: list[Diagnostic]
    sources: SourceCache
    layers: list[LayerRow] = field(default_factory=list)
    files: tuple[str, ...] = ()  # every source file read (real paths): outputs never replace one
    training: TrainSpec | None = None  # the entry model's checked `train` block, if any
    trees: dict[str, ast.Module] = field(default_factory=dict)  # real path → syntax tree

    @property
    def ok(self) -> bool:
        return not self.diagnostics

    @property
    def trainable_params(self) -> int:
        return self.instance.param_count if self.instance else 0

    @property
    def buffers(self) -> int:
        return self.instance.buffer_count if self.instance else 0

    @property
    def output_types(self) -> list[str]:
        if not self.graph:
            return []
        names = self.graph.output_names or [None] * len(self.graph.outputs)
        return [
            f"{n}: {v.type}" if n else str(v.type)
            for n, v in zip(names, self.graph.outputs, strict=True)
        ]

    @property
    def input_types(self) -> list[str]:
        return [f"{v.name}: {v.type}" for v in self.graph.inputs] if self.graph else []


def check_file(
    path: str,
    model: str | None = None,
    include_dirs: tuple[str, ...] = (),
    hyper: dict[str, Any] | None = None,
    text: str | None = None,
) -> Summary:
    """Parse, resolve, instantiate and check `model` (default: the file's last model),
    within the front end's work budget (`dualnet.budget`). Never raises for bad input:
    problems are in `Summary.diagnostics`. `text` replaces the file's content on disk (an
    editor's unsaved buffer); imports are read from disk."""
    enabled = gc.isenabled()
    gc.disable()  # the checker allocates many small acyclic objects: skip collection passes
    loader = Loader(tuple(include_dirs))
    checker = Checker()
    summary = Summary(model or "", path, None, None, checker.diagnostics, loader.sources)
    try:
        with active(Budget()):
            _check(summary, loader, checker, model, hyper, text)
    except BudgetExceeded as exc:  # stops everything, error recovery included
        checker.diagnostics.extend(exc.diagnostics)
        summary.instance = summary.graph = None  # partial: nothing of it is reported
    except DualnetError as exc:  # the budget's own setting ($DUALNET_CHECK_CPU_SECONDS)
        checker.diagnostics.extend(exc.diagnostics)
    finally:
        if enabled:
            gc.enable()
    if summary.instance is not None:
        summary.layers = [
            LayerRow(layer.path, layer.op, _first_output(layer), layer.param_count)
            for layer in summary.instance.layers()
        ]
    return summary


def _check(
    summary: Summary,
    loader: Loader,
    checker: Checker,
    model: str | None,
    hyper: dict[str, Any] | None,
    text: str | None,
) -> None:
    path = summary.file
    try:
        root = loader.load_root(path, text)
    except DualnetError as exc:
        checker.diagnostics.extend(exc.diagnostics)
        return
    finally:
        summary.files = tuple(str(p) for p in loader.modules)
        summary.trees = {str(p): m.tree for p, m in loader.modules.items()}
    checker.diagnostics.extend(loader.diagnostics)
    for module in loader.modules.values():  # every constant, used or not, is checked once
        for decl in module.consts.values():
            checker.eval_const(module, decl)
    try:
        ref = _entry(root, model)
        summary.model = ref.name
        given = _hyper_args(hyper)
        for name, arg in given.items():
            require_hyper_name(ref, name, arg.span)
        _require_defaults(ref, given)
        spec = ModelSpec(ref, checker.hyper_values(ref, given, ref.model.span), ref.model.span)
        frame = checker.new_frame(spec, "")
        frame.instance.given = tuple(given)
        summary.instance = frame.instance
        summary.graph = checker.entry_graph(frame)
        checker.alias_ties()
    except DualnetError as exc:
        checker.record(exc)
    if summary.ok and summary.graph is not None:
        checker.diagnostics.extend(check_gradients(summary.instance, summary.graph))
    check_train_blocks(checker, root)
    if summary.ok and summary.graph is not None:
        local = model or summary.model  # the name the root file gives the entry model
        summary.training = check_training(checker, root, local, summary.instance, summary.graph)


def _first_output(layer: LayerInstance) -> str:
    return ", ".join(str(t) for t in layer.output_types) if layer.built else "(never called)"


def _hyper_args(hyper: dict[str, Any] | None) -> dict[str, Arg]:
    """The caller's hyperparameters, each located at `command line: --hyper NAME` (also the
    Python API's keyword of that name)."""
    return {k: Arg(v, option(f"--hyper {k}")) for k, v in (hyper or {}).items()}


def _require_defaults(ref: ModelRef, given: dict[str, Any]) -> None:
    """An entry model gets its hyperparameters from defaults or the caller (`--hyper`, the
    API's `**hyper`)."""
    missing = [h for h in ref.model.hypers if h.default is None and h.name not in given]
    if missing:
        names = ", ".join(f"`{h.name}`" for h in missing)
        raise error(
            "E-MODEL",
            f"model {ref.name} needs a value for {names} to be checked on its own",
            missing[0].span,
            "no default",
            [
                f"give {names} a default, give a value with --hyper {missing[0].name}=VALUE, "
                f"or check a model that uses {ref.name} (--model NAME)"
            ],
        )


def parse_hyper(items: Sequence[str]) -> dict[str, Any]:
    """`--hyper NAME=VALUE` items → {NAME: value}; VALUE is written as a .dnet literal
    (`3`, `0.5`, `true`, `none`, `"relu"`, `(3, 3)`) and evaluated as the checker does."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name) or not text.strip() or "\n" in text:
            shown = shorten(item.replace("\n", "␤"))  # one line
            raise error(
                "E-SYNTAX",
                f"`--hyper {shown}` is not NAME=VALUE",
                option("--hyper"),
                notes=["one hyperparameter per --hyper, e.g. --hyper width=64"],
            )
        if name in out:
            raise error("E-ARGS", f"hyperparameter `{name}` given twice", option("--hyper"))
        out[name] = _literal(name, text.strip())
    return out


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LITERALS = 'ints, floats, true, false, none, strings in quotes ("relu") and tuples ((3, 3))'


def _literal(name: str, text: str) -> Any:
    """The value of `text`, a .dnet literal, parsed and evaluated by the front end's own
    parser and evaluator."""
    span = option(f"--hyper {name}")
    try:
        decls, why = parse(f"const value = {text}", span.file).decls, []
    except DualnetError as exc:
        decls, why = (), [exc.diagnostics[0].message]
    if len(decls) != 1 or not _is_literal(decls[0].value):
        if len(decls) == 1 and isinstance(decls[0].value, ast.Name):
            why = [f"a string is written in quotes: --hyper '{name}=\"{text}\"'"]
        raise error(
            "E-VALUE",
            f"--hyper {name}: `{shorten(text)}` is not a .dnet literal",
            span,
            notes=[*why, f"a value is one of {_LITERALS}"],
        )
    return Evaluator(Checker(), None, None).eval(decls[0].value)  # a literal names nothing


def _is_literal(expr: ast.Expr) -> bool:
    """A literal: a number (signed), string, bool, none, or a tuple of literals."""
    if isinstance(expr, ast.Unary):
        return expr.op in ("+", "-") and isinstance(expr.operand, ast.Literal)
    if isinstance(expr, ast.TupleExpr):
        return all(_is_literal(item) for item in expr.items)
    return isinstance(expr, ast.Literal)


def _file_start(root) -> Span:
    return Span(root.display, 1, 1, 1, 1)


def _entry(root, model: str | None) -> ModelRef:
    if model is None:
        declared = [n for n in root.models if n not in root.derived]
        if not declared:
            raise error(
                "E-MODEL",
                f"{root.display} declares no model",
                _file_start(root),
                notes=["a file to check declares at least one `model`"],
            )
        return ModelRef(root.models[declared[-1]], root)
    if model in root.models:
        return ModelRef(root.models[model], root)
    if model in root.imported and model in root.imported[model][0].models:
        other, original, _ = root.imported[model]
        return ModelRef(other.models[original], other)
    hint = suggest(model, root.models)
    raise error(
        "E-MODEL",
        f"{root.display} has no model `{model}`",
        _file_start(root),
        notes=[
            f"did you mean `{hint}`?"
            if hint
            else "models here: " + (", ".join(root.models) or "none")
        ],
    )

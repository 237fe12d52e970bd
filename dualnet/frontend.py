"""The front end's door: check a .dnet file into a typed IR and a summary (`check_file`)."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

from dualnet.budget import Budget, BudgetExceeded, active
from dualnet.checks.autodiff import check_gradients
from dualnet.diagnostics import Diagnostic, DualnetError, SourceCache, Span, error
from dualnet.ir.graph import Graph, LayerInstance, ModelInstance
from dualnet.ops.binding import Arg
from dualnet.ops.registry import suggest
from dualnet.semantics.checker import Checker
from dualnet.semantics.loader import Loader
from dualnet.semantics.values import ModelRef, ModelSpec


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
        return [str(v.type) for v in self.graph.outputs] if self.graph else []

    @property
    def input_types(self) -> list[str]:
        return [f"{v.name}: {v.type}" for v in self.graph.inputs] if self.graph else []


def check_file(
    path: str,
    model: str | None = None,
    include_dirs: tuple[str, ...] = (),
    hyper: dict[str, Any] | None = None,
) -> Summary:
    """Parse, resolve, instantiate and check `model` (default: the file's last model),
    within the front end's work budget (`dualnet.budget`). Never raises for bad input:
    problems are in `Summary.diagnostics`."""
    enabled = gc.isenabled()
    gc.disable()  # the checker allocates many small acyclic objects: skip collection passes
    loader = Loader(tuple(include_dirs))
    checker = Checker()
    summary = Summary(model or "", path, None, None, checker.diagnostics, loader.sources)
    try:
        with active(Budget()):
            _check(summary, loader, checker, model, hyper)
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
) -> None:
    path = summary.file
    try:
        root = loader.load_root(path)
    except DualnetError as exc:
        checker.diagnostics.extend(exc.diagnostics)
        return
    finally:
        summary.files = tuple(str(p) for p in loader.modules)
    checker.diagnostics.extend(loader.diagnostics)
    for module in loader.modules.values():  # every constant, used or not, is checked once
        for decl in module.consts.values():
            checker.eval_const(module, decl)
    try:
        ref = _entry(root, model)
        summary.model = ref.name
        _require_defaults(ref, hyper or {})
        spec = ModelSpec(
            ref, checker.hyper_values(ref, _hyper_args(hyper), ref.model.span), ref.model.span
        )
        frame = checker.new_frame(spec, "")
        summary.instance = frame.instance
        summary.graph = checker.entry_graph(frame)
    except DualnetError as exc:
        checker.record(exc)
    if summary.ok and summary.graph is not None:
        checker.diagnostics.extend(check_gradients(summary.instance, summary.graph))


def _first_output(layer: LayerInstance) -> str:
    return ", ".join(str(t) for t in layer.output_types) if layer.built else "(never called)"


def _hyper_args(hyper: dict[str, Any] | None):
    span = Span("<api>", 1, 1, 1, 1)
    return {k: Arg(v, span) for k, v in (hyper or {}).items()}


def _require_defaults(ref: ModelRef, given: dict[str, Any]) -> None:
    """An entry model gets its hyperparameters from defaults (or the API's `hyper`)."""
    missing = [h for h in ref.model.hypers if h.default is None and h.name not in given]
    if missing:
        names = ", ".join(f"`{h.name}`" for h in missing)
        raise error(
            "E-MODEL",
            f"model {ref.name} needs a value for {names} to be checked on its own",
            missing[0].span,
            "no default",
            [f"give {names} a default, or check a model that uses {ref.name} (--model NAME)"],
        )


def _file_start(root) -> Span:
    return Span(root.display, 1, 1, 1, 1)


def _entry(root, model: str | None) -> ModelRef:
    if model is None:
        if not root.models:
            raise error(
                "E-MODEL",
                f"{root.display} declares no model",
                _file_start(root),
                notes=["a file to check declares at least one `model`"],
            )
        name = list(root.models)[-1]
        return ModelRef(root.models[name], root)
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

"""Checking a `train` block (docs/language.md, "Training") into a `TrainSpec`: its settings
are compile-time values of the optimiser and schedule (`dualnet.training.spec`), its `loss`
and `metrics` the parameter-free models the loader declared for them (`derived_name`),
checked as entry models and matched against the trained model's outputs."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from dualnet.checks.autodiff import live_inputs
from dualnet.diagnostics import DualnetError, Span, error
from dualnet.ir.graph import Graph, ModelInstance
from dualnet.ir.tagged import untagged
from dualnet.ir.types import TensorType
from dualnet.ops.binding import describe
from dualnet.ops.registry import suggest
from dualnet.semantics.checker import Checker
from dualnet.semantics.evaluator import Evaluator
from dualnet.semantics.loader import ROLES, ModuleInfo, derived_name
from dualnet.semantics.scope import Scope
from dualnet.semantics.values import POISON, ModelRef, ModelSpec
from dualnet.syntax import ast
from dualnet.training.spec import (
    OPTIMIZERS,
    OPTIONS,
    SCHEDULE_OPTIONS,
    SCHEDULES,
    OptimizerSpec,
    ScheduleSpec,
    TrainSpec,
)

SETTINGS = ("optimizer", "schedule", "clip_grad_norm", "clip_grad_value", "accumulate")
# The types of the optimiser's and schedule's keyword arguments: their spec's fields, less
# those the block sets otherwise (the name, the schedule, clipping); each optimiser and
# schedule takes its own (`OPTIONS`, `SCHEDULE_OPTIONS`), as PyTorch's classes do.
_OPTIMIZER_ARGS = {
    f.name: f.type
    for f in fields(OptimizerSpec)
    if f.name not in ("name", "schedule", "clip_norm", "clip_value")
}
_SCHEDULE_ARGS = {f.name: f.type for f in fields(ScheduleSpec) if f.name != "kind"}


def check_train_blocks(checker: Checker, root: ModuleInfo) -> None:
    """Every train block of the file names a model of the file."""
    imported = [n for n, (other, original, _) in root.imported.items() if original in other.models]
    known = [n for n in [*root.models, *imported] if n not in root.derived]
    for name, block in root.trains.items():
        if name not in known:
            hint = suggest(name, known)
            checker.record(
                error(
                    "E-MODEL",
                    f"train block for an unknown model `{name}`",
                    block.model.span,
                    "no such model",
                    [f"did you mean `{hint}`?" if hint else "models: " + ", ".join(known)],
                )
            )


def check_training(
    checker: Checker, root: ModuleInfo, name: str, instance: ModelInstance, graph: Graph
) -> TrainSpec | None:
    """The checked train block of the entry model, `name` in the root file (None without
    one); problems are recorded."""
    block = root.trains.get(name)
    if block is None:
        return None
    try:
        return _train_spec(checker, root, instance, graph, block)
    except DualnetError as exc:
        checker.record(exc)
        return None


def _train_spec(
    checker: Checker, root: ModuleInfo, instance: ModelInstance, graph: Graph, block: ast.Train
) -> TrainSpec | None:
    settings = _unique(block.settings, "setting", SETTINGS)
    functions = _unique(block.functions, "function", ROLES)
    for needed, kind in (("optimizer", settings), ("loss", functions)):
        if needed not in kind:
            example = "optimizer = SGD(lr=0.1)" if needed == "optimizer" else _LOSS_EXAMPLE
            raise error(
                "E-MODEL",
                f"the train block of `{block.model.id}` has no `{needed}`",
                block.model.span,
                f"`{needed}` missing",
                [f"add {example}"],
            )
    scope = Scope(dict(instance.hyper), checker.module_scope(root))
    value = _Values(checker, scope)
    schedule = _schedule(value, settings.get("schedule"))
    clip = {
        key: value.number(settings[name].value, name, positive=True)
        for key, name in (("clip_norm", "clip_grad_norm"), ("clip_value", "clip_grad_value"))
        if name in settings
    }
    if len(clip) == 2:
        raise error(
            "E-ARGS",
            "clip_grad_norm and clip_grad_value together",
            settings["clip_grad_value"].span,
            "second clipping",
            ["clip gradients by norm or by value, not both"],
        )
    optimizer = _optimizer(value, settings["optimizer"].value, schedule, clip)
    accumulate = 1
    if "accumulate" in settings:
        expr = settings["accumulate"].value
        accumulate = value.get(expr, int, "accumulate")
        if accumulate < 1:
            raise error("E-VALUE", f"accumulate is {accumulate}, expected ≥ 1", expr.span)
    outputs = [v.type for v in graph.outputs]
    loss_fn = functions["loss"]
    loss_graph = _derived_graph(checker, root, block, "loss", outputs)
    result = loss_graph.outputs
    if len(result) != 1 or result[0].type.rank or not result[0].type.dtype.is_float:
        found = ", ".join(str(v.type) for v in result)
        raise error(
            "E-TYPE",
            f"the loss returns {found}, expected one float scalar f32[]",
            loss_fn.forward.returns.span if loss_fn.forward.returns else loss_fn.name.span,
            "not a scalar",
        )
    if not live_inputs(loss_graph) & set(range(len(outputs))):
        raise error(
            "E-GRAD",
            "the loss does not depend differentiably on the model's outputs",
            loss_fn.name.span,
            "no gradient reaches the model",
            ["use the outputs (the first arguments) through differentiable ops"],
        )
    targets = tuple((v.name, str(v.type)) for v in loss_graph.inputs[len(outputs) :])
    metrics, names = None, ()
    if "metrics" in functions:
        metrics_fn = functions["metrics"]
        metrics_graph = _derived_graph(checker, root, block, "metrics", outputs)
        found = tuple((v.name, str(v.type)) for v in metrics_graph.inputs[len(outputs) :])
        if found != targets:
            raise error(
                "E-TYPE",
                f"metrics take the targets {_show(found)}, the loss {_show(targets)}",
                metrics_fn.name.span,
                "other targets",
                ["metrics take the model's outputs, then the loss's targets"],
            )
        scalars = all(not v.type.rank and v.type.dtype.is_float for v in metrics_graph.outputs)
        if not metrics_graph.output_names or not scalars:
            raise error(
                "E-TYPE",
                "metrics return named float scalars",
                metrics_fn.forward.returns.span if metrics_fn.forward.returns else metrics_fn.span,
                "expected named f32[] outputs",
                ["-> (accuracy: f32[], top3: f32[]), or -> (accuracy: f32[]) for one"],
            )
        metrics = derived_name(block.model.id, "metrics")
        names = metrics_graph.output_names
    return TrainSpec(
        block.model.id,
        derived_name(block.model.id, "loss"),
        optimizer,
        targets,
        metrics,
        accumulate,
        tuple(names),
    )


_LOSS_EXAMPLE = "loss(logits: f32[B, C], labels: i64[B]) -> f32[] { return ... }"


def _show(targets) -> str:
    return "(" + ", ".join(f"{n}: {t}" for n, t in targets) + ")"


def _unique(items, kind: str, known: tuple[str, ...]) -> dict:
    """Items by name; an unknown or repeated name is an error."""
    out: dict = {}
    for item in items:
        name = item.name.id
        if name not in known:
            hint = suggest(name, known)
            raise error(
                "E-NAME",
                f"a train block has no {kind} `{name}`",
                item.name.span,
                f"unknown {kind}",
                [f"did you mean `{hint}`?" if hint else f"{kind}s: {', '.join(known)}"],
            )
        if name in out:
            raise error(
                "E-REDEFINED",
                f"`{name}` is set twice in a train block",
                item.name.span,
                "set again here",
                [f"first set at {out[name].name.span}"],
            )
        out[name] = item
    return out


class _Values:
    """Compile-time values of a train block (constants and the model's hyperparameters)."""

    def __init__(self, checker: Checker, scope: Scope):
        self.checker, self.scope = checker, scope

    def eval(self, expr: ast.Expr) -> Any:
        value = untagged(Evaluator(self.checker, self.scope, None).eval(expr))
        if value is POISON:
            raise DualnetError([])  # already reported
        return value

    def get(self, expr: ast.Expr, kind, what: str) -> Any:
        """`expr`'s value of `kind` (int, float, bool, str; float takes an int too)."""
        value = self.eval(expr)
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise error(
                "E-TYPE",
                f"{what} expects {kind.__name__}, found {describe(value)}",
                expr.span,
                f"expected {kind.__name__}",
            )
        return value

    def number(self, expr: ast.Expr, what: str, positive: bool = False) -> float:
        value = self.get(expr, float, what)
        if positive and not value > 0:
            raise error("E-VALUE", f"{what} is {value}, expected > 0", expr.span)
        return value

    def keywords(self, call: ast.Call, name: str, known: dict[str, str]) -> dict[str, Any]:
        """A call's keyword arguments, each of its declared type; no positional ones."""
        if call.args:
            raise error(
                "E-ARGS",
                f"{name} takes keyword arguments only",
                call.args[0].span,
                "positional argument",
                [f"{name}({next(iter(known))}=...)"],
            )
        out: dict[str, Any] = {}
        for kw in call.keywords:
            if kw.name not in known:
                hint = suggest(kw.name, known)
                raise error(
                    "E-ARGS",
                    f"{name} has no argument `{kw.name}`",
                    kw.span,
                    "unknown argument",
                    [f"did you mean `{hint}`?" if hint else f"{name} takes {', '.join(known)}"],
                )
            if kw.name in out:
                raise error("E-ARGS", f"argument `{kw.name}` given twice", kw.span)
            out[kw.name] = self._typed(kw, known[kw.name], name)
        return out

    def _typed(self, kw: ast.Keyword, type_text: str, name: str) -> Any:
        what = f"{name}'s `{kw.name}`"
        if "tuple" in type_text:
            value = self.eval(kw.value)
            if not (
                isinstance(value, tuple)
                and len(value) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            ):
                raise error(
                    "E-TYPE",
                    f"{what} expects two numbers, found {describe(value)}",
                    kw.value.span,
                    "expected (float, float)",
                )
            return tuple(float(v) for v in value)
        kind = next(k for k in (bool, int, float, str) if k.__name__ in type_text)
        return self.get(kw.value, kind, what)


def _call(expr: ast.Expr, what: str, known: tuple[str, ...]) -> tuple[str, ast.Call | None]:
    """`NAME(...)` or `NAME`, with NAME one of `known` (any case)."""
    call = expr if isinstance(expr, ast.Call) else None
    head = call.func if call else expr
    if not isinstance(head, ast.Name):
        raise error("E-TYPE", f"expected {what} such as {known[0]}(...)", expr.span, f"no {what}")
    found = next((k for k in known if k.lower() == head.id.lower()), None)
    if found is None:
        hint = suggest(head.id, known)
        raise error(
            "E-NAME",
            f"unknown {what} `{head.id}`",
            head.span,
            f"unknown {what}",
            [f"did you mean `{hint}`?" if hint else f"{what}s: {', '.join(known)}"],
        )
    return found, call


def _optimizer(value: _Values, expr: ast.Expr, schedule: ScheduleSpec, clip: dict) -> OptimizerSpec:
    name, call = _call(expr, "optimizer", OPTIMIZERS)
    known = {k: _OPTIMIZER_ARGS[k] for k in (*OPTIONS[name], "no_decay_vectors")}
    options = value.keywords(call, name, known) if call else {}
    return _build(
        lambda o: OptimizerSpec(name, **o, **clip, schedule=schedule), options, call or expr
    )


def _schedule(value: _Values, setting: ast.TrainSetting | None) -> ScheduleSpec:
    if setting is None:
        return ScheduleSpec()
    kind, call = _call(setting.value, "schedule", SCHEDULES)
    warmup = ("warmup_steps", "warmup_start_factor") if kind != "one_cycle" else ()
    known = {k: _SCHEDULE_ARGS[k] for k in (*SCHEDULE_OPTIONS[kind], *warmup)}
    options = value.keywords(call, kind, known) if call else {}
    return _build(lambda o: ScheduleSpec(kind, **o), options, call or setting.value)


def _build(make, options: dict, where: ast.Expr):
    """The spec `make(options)` builds; its ValueError becomes E-VALUE at the option without
    which the spec would be valid (`nesterov=true` without momentum), else at an option the
    message names (`t_max=0`), else at the whole call."""
    try:
        return make(options)
    except ValueError as exc:
        keywords = where.keywords if isinstance(where, ast.Call) else ()
        culprits = [kw for kw in keywords if _valid(make, _without(options, kw.name))]
        culprits = culprits or [kw for kw in keywords if kw.name in str(exc)]
        span: Span = culprits[0].span if culprits else where.span
        raise error("E-VALUE", str(exc), span, "invalid option") from None


def _without(options: dict, name: str) -> dict:
    return {k: v for k, v in options.items() if k != name}


def _valid(make, options: dict) -> bool:
    try:
        make(options)
    except ValueError:
        return False
    return True


def _derived_graph(
    checker: Checker, root: ModuleInfo, block: ast.Train, role: str, outputs: list
) -> Graph:
    """Trace the `role` function's model and match its first arguments with `outputs`."""
    name = derived_name(block.model.id, role)
    ref = ModelRef(root.models[name], root)
    frame = checker.new_frame(ModelSpec(ref, {}, ref.model.span), "")
    graph = checker.entry_graph(frame)
    if graph is None:
        raise DualnetError([])
    args = frame.forward.args
    if len(args) < len(outputs):
        raise error(
            "E-ARGS",
            f"{role} takes {len(args)} arguments, the model has {len(outputs)} outputs",
            frame.forward.span,
            "too few arguments",
            [f"{role} takes the model's outputs first, then the targets"],
        )
    dims: dict[str, Any] = {}
    for arg, v, want in zip(args, graph.inputs, outputs, strict=False):
        if not _matches(v.type, want, dims):
            raise error(
                "E-TYPE",
                f"{role} argument `{arg.name}` is {v.type}, the model's output is {want}",
                arg.type.span,
                f"expected {want}",
            )
    return graph


def _matches(got: TensorType, want: TensorType, dims: dict[str, Any]) -> bool:
    """Same dtype and rank; each size equal, a name standing for one size throughout."""
    if got.dtype != want.dtype or got.rank != want.rank:
        return False
    for g, w in zip(got.shape, want.shape, strict=True):
        if isinstance(g, int):
            if g != w:
                return False
        elif dims.setdefault(str(g), str(w)) != str(w):
            return False
    return True

"""A checked training spec in words and as JSON (`dualnet check`): the optimiser with its
effective options (PyTorch's defaults filled in), the schedule, clipping, accumulation, the
loss and metrics, and which tensors train. Imports no framework."""

from __future__ import annotations

from dualnet.ir.graph import ModelInstance
from dualnet.training.spec import (
    OPTIONS,
    SCHEDULE_OPTIONS,
    OptimizerSpec,
    ScheduleSpec,
    TrainSpec,
)


def trained_tensors(instance: ModelInstance, spec: TrainSpec) -> tuple[int, int, int]:
    """(parameters, tensors, tensors without weight decay) the optimiser updates: trainable
    parameters, a tied one once, the vectors (rank ≤ 1) undecayed with `no_decay_vectors`."""
    shapes = [
        p.shape
        for layer in instance.layers()
        for name, p in layer.params.items()
        if p.trainable and name not in layer.tied
    ]
    params = sum(layer.param_count for layer in instance.layers())
    undecayed = sum(len(s) <= 1 for s in shapes) if spec.optimizer.no_decay_vectors else 0
    return params, len(shapes), undecayed


def optimizer_options(opt: OptimizerSpec) -> dict:
    return {k: getattr(opt, k) for k in OPTIONS[opt.name]} | (
        {"no_decay_vectors": True} if opt.no_decay_vectors else {}
    )


def schedule_options(schedule: ScheduleSpec) -> dict:
    options = {k: getattr(schedule, k) for k in SCHEDULE_OPTIONS[schedule.kind]}
    if schedule.warmup_steps:
        options |= {k: getattr(schedule, k) for k in ("warmup_steps", "warmup_start_factor")}
    return options


def _call(name: str, options: dict) -> str:
    shown = ", ".join(f"{k}={_value(v)}" for k, v in options.items())
    return f"{name}({shown})" if options else name


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        return f"({', '.join(_value(x) for x in v)})"
    return "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def describe(spec: TrainSpec, instance: ModelInstance) -> list[str]:
    """The spec in a few lines."""
    opt = spec.optimizer
    params, tensors, undecayed = trained_tensors(instance, spec)
    clip = (
        f"by norm {opt.clip_norm:g}"
        if opt.clip_norm is not None
        else f"by value {opt.clip_value:g}"
        if opt.clip_value is not None
        else "none"
    )
    targets = ", ".join(f"{n}: {t}" for n, t in spec.targets) or "none"
    lines = [
        f"training {spec.model}:",
        f"  optimizer: {_call(opt.name, optimizer_options(opt))}",
        f"  schedule: {_call(opt.schedule.kind, schedule_options(opt.schedule))}",
        f"  gradient clipping: {clip}; accumulate: {spec.accumulate} batch"
        + ("es" if spec.accumulate > 1 else "")
        + " per step",
        f"  loss: {spec.loss}(outputs, targets) -> f32[]; targets: {targets}",
    ]
    if spec.metrics:
        lines.append(f"  metrics: {spec.metrics} -> {', '.join(spec.metric_names)}")
    lines.append(
        f"  trains {params:,} parameters in {tensors} tensors; "
        f"no weight decay on {undecayed} tensors"
    )
    return lines


def to_json(spec: TrainSpec, instance: ModelInstance) -> dict:
    params, tensors, undecayed = trained_tensors(instance, spec)
    opt = spec.optimizer
    return {
        "model": spec.model,
        "optimizer": {"name": opt.name, **optimizer_options(opt)},
        "schedule": {"kind": opt.schedule.kind, **schedule_options(opt.schedule)},
        "clip_grad_norm": opt.clip_norm,
        "clip_grad_value": opt.clip_value,
        "accumulate": spec.accumulate,
        "loss": spec.loss,
        "targets": [{"name": n, "type": t} for n, t in spec.targets],
        "metrics": spec.metrics,
        "metric_names": list(spec.metric_names),
        "trained_parameters": params,
        "trained_tensors": tensors,
        "no_weight_decay_tensors": undecayed,
    }

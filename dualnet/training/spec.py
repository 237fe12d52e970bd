"""One description of an optimiser and its learning-rate schedule, which both frameworks
build from (`torch_optim.build_torch`, `keras_optim.build_keras`).

The meaning is PyTorch's: `torch.optim`'s names, formulas and defaults (an option left None
takes the optimiser's PyTorch default), `torch.optim.lr_scheduler`'s schedules stepped once
per optimiser step, `clip_grad_norm_` / `clip_grad_value_`. `no_decay_vectors` is the usual
parameter grouping: no weight decay on tensors of rank ≤ 1 in PyTorch's layout (biases,
norm scales and shifts). Importing this module imports no framework.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, fields

from dualnet.diagnostics import DualnetError, error, option

OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")
SCHEDULES = ("constant", "step", "cosine", "one_cycle")

# PyTorch's defaults per optimiser (torch 2.x), for the options that differ between them
DEFAULTS = {
    "SGD": {"lr": 1e-3, "weight_decay": 0.0},
    "Adam": {"lr": 1e-3, "eps": 1e-8, "weight_decay": 0.0},
    "AdamW": {"lr": 1e-3, "eps": 1e-8, "weight_decay": 1e-2},
    "RMSprop": {"lr": 1e-2, "eps": 1e-8, "weight_decay": 0.0},
    "Adagrad": {"lr": 1e-2, "eps": 1e-10, "weight_decay": 0.0},
}
ONE_CYCLE = (
    "pct_start",
    "anneal_strategy",
    "div_factor",
    "final_div_factor",
    "three_phase",
    "cycle_momentum",
    "base_momentum",
    "max_momentum",
)
# The options each optimiser reads, in torch.optim's order
OPTIONS = {
    "SGD": ("lr", "momentum", "dampening", "nesterov", "weight_decay"),
    "Adam": ("lr", "betas", "eps", "weight_decay", "amsgrad"),
    "AdamW": ("lr", "betas", "eps", "weight_decay", "amsgrad"),
    "RMSprop": ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"),
    "Adagrad": ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"),
}
# The options each schedule reads (and warmup_steps, warmup_start_factor but for one_cycle)
SCHEDULE_OPTIONS = {
    "constant": (),
    "step": ("step_size", "gamma"),
    "cosine": ("t_max", "eta_min"),
    "one_cycle": ("total_steps", "max_lr", *ONE_CYCLE),
}
MOMENTUM = {"SGD", "RMSprop"}  # the optimisers with a `momentum` option
BETAS = {"Adam", "AdamW"}


@dataclass(frozen=True)
class ScheduleSpec:
    """A per-step learning-rate schedule (PyTorch's scheduler of that kind), after
    `warmup_steps` of `LinearLR(warmup_start_factor)` when those are > 0."""

    kind: str = "constant"
    step_size: int = 1  # step: StepLR
    gamma: float = 0.1
    t_max: int | None = None  # cosine: CosineAnnealingLR (required)
    eta_min: float = 0.0
    total_steps: int | None = None  # one_cycle: OneCycleLR (required)
    max_lr: float | None = None  # default: the optimiser's lr
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    cycle_momentum: bool = True
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    warmup_steps: int = 0
    warmup_start_factor: float = 1.0 / 3

    def one_cycle_options(self) -> dict:
        """The one-cycle options, by the name both OneCycleLR classes take them under."""
        return {k: getattr(self, k) for k in ONE_CYCLE}

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule `{self.kind}`: one of {', '.join(SCHEDULES)}")
        if self.kind == "cosine" and not (self.t_max or 0) > 0:
            raise ValueError("the cosine schedule needs t_max > 0")
        if self.kind == "one_cycle":
            if not (self.total_steps or 0) > 0:
                raise ValueError("the one_cycle schedule needs total_steps > 0")
            if self.warmup_steps:
                raise ValueError("one_cycle warms up by itself: no warmup_steps")
            if self.anneal_strategy not in ("cos", "linear"):
                raise ValueError("anneal_strategy is `cos` or `linear`")
        if self.kind == "step" and self.step_size < 1:
            raise ValueError("the step schedule needs step_size ≥ 1")
        if self.warmup_steps < 0 or not 0 < self.warmup_start_factor <= 1:
            raise ValueError("warmup_steps ≥ 0 and 0 < warmup_start_factor ≤ 1")


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimiser with PyTorch's options (None: its PyTorch default, `DEFAULTS`)."""

    name: str
    lr: float | None = None
    momentum: float = 0.0  # SGD, RMSprop
    dampening: float = 0.0  # SGD
    nesterov: bool = False  # SGD
    betas: tuple[float, float] = (0.9, 0.999)  # Adam, AdamW
    amsgrad: bool = False  # Adam, AdamW
    alpha: float = 0.99  # RMSprop
    centered: bool = False  # RMSprop
    lr_decay: float = 0.0  # Adagrad
    initial_accumulator_value: float = 0.0  # Adagrad
    eps: float | None = None
    weight_decay: float | None = None
    no_decay_vectors: bool = False
    clip_norm: float | None = None
    clip_value: float | None = None
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer `{self.name}`: one of {', '.join(OPTIMIZERS)}")
        for key, value in DEFAULTS[self.name].items():
            if getattr(self, key, None) is None:
                object.__setattr__(self, key, value)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0")
        if self.momentum and self.name not in MOMENTUM:
            raise ValueError(f"{self.name} has no momentum (SGD and RMSprop do)")
        if not self.lr > 0 or self.weight_decay < 0 or (self.eps is not None and self.eps < 0):
            raise ValueError("lr > 0, weight_decay ≥ 0 and eps ≥ 0")
        if self.clip_norm is not None and self.clip_value is not None:
            raise ValueError("clip by norm or by value, not both")
        for clip in (self.clip_norm, self.clip_value):
            if clip is not None and not clip > 0:
                raise ValueError("a clipping bound is > 0")
        cycles = self.schedule.kind == "one_cycle" and self.schedule.cycle_momentum
        if cycles and self.name not in MOMENTUM | BETAS:
            raise ValueError(f"one_cycle cycles the momentum, which {self.name} lacks")

    @property
    def max_lr(self) -> float:
        """The one-cycle schedule's peak learning rate."""
        return self.schedule.max_lr if self.schedule.max_lr is not None else self.lr


def parse_optimizer(text: str, lr: float | None, schedule: str | None, steps: int) -> OptimizerSpec:
    """`NAME[:key=value,...]` (`SGD:momentum=0.9,nesterov=True`), the learning rate `lr`
    (None: the optimiser's default) and `schedule` (`KIND[:key=value,...]`; a cosine schedule
    lasts `steps` and a one-cycle one spans them unless told otherwise) as a spec; E-INPUT
    naming the option on bad text."""
    name, options = _parse(text, "--optimizer")
    if name is not None and name.lower() in {n.lower() for n in OPTIMIZERS}:
        name = next(n for n in OPTIMIZERS if n.lower() == name.lower())
    kind, extra = _parse(schedule or "constant", "--schedule")
    if kind == "cosine":
        extra.setdefault("t_max", steps)
    if kind == "one_cycle":
        extra.setdefault("total_steps", steps)
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    try:
        sched = ScheduleSpec(kind, **extra)
    except (TypeError, ValueError) as exc:
        raise _bad("--schedule", schedule, exc) from None
    try:
        return OptimizerSpec(
            name, **({"lr": lr} if lr is not None else {}), **options, schedule=sched
        )
    except (TypeError, ValueError) as exc:
        raise _bad("--optimizer", text, exc) from None


def _parse(text: str, flag: str) -> tuple[str, dict]:
    head, _, rest = text.partition(":")
    options = {}
    for item in filter(None, (part.strip() for part in _split(rest))):
        key, sep, value = item.partition("=")
        try:
            if not sep or not key.strip().isidentifier():
                raise ValueError("an option is key=value")
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError) as exc:
            raise _bad(flag, text, exc) from None
    return head.strip(), options


def _split(text: str) -> list[str]:
    """Split at the commas outside parentheses (`betas=(0.9, 0.99)` is one option)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _bad(flag: str, text: str | None, exc: Exception) -> DualnetError:
    kind = OptimizerSpec if flag == "--optimizer" else ScheduleSpec
    known = ", ".join(f.name for f in fields(kind) if f.name not in ("name", "kind", "schedule"))
    return error(
        "E-INPUT",
        f"`{text}` is not a valid {flag[2:]}: {exc}",
        option(flag),
        notes=[f"write NAME or NAME:key=value,...; the keys are {known}"],
    )


def f32_tolerance(spec: OptimizerSpec) -> float:
    """The float32 parity target: 1e-5 for SGD, 1e-4 for the adaptive optimisers."""
    return 1e-5 if spec.name == "SGD" else 1e-4


@dataclass(frozen=True)
class TrainSpec:
    """A checked `train` declaration: what both frameworks' training code follows.

    `loss` and `metrics` name parameter-free models of the checked program whose forward
    takes the trained model's outputs, then the targets (`targets`: each one's name and
    type as written, e.g. ("labels", "i64[B]")); the loss returns an `f32[]`, the metrics
    named `f32[]` scalars (averaged over the examples of an epoch; `metric_names` in order).
    `accumulate` optimiser steps take the mean gradient of that many batches."""

    model: str
    loss: str
    optimizer: OptimizerSpec
    targets: tuple[tuple[str, str], ...] = ()
    metrics: str | None = None
    accumulate: int = 1
    metric_names: tuple[str, ...] = ()

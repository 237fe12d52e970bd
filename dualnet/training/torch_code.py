"""The generated PyTorch training file: the loss and metrics modules, `make_optimizer`
(`torch.optim` and `lr_scheduler` objects as `torch_optim.build_torch` builds them, behind an
`Optimizer` that clips and accumulates), `train_step` and `eval_step`. It imports torch
only and takes the model as an argument (a generated module, or one wrapped in DDP)."""

from __future__ import annotations

import textwrap

from dualnet.backends.common.python_class import fmt_literal
from dualnet.training.codegen import (
    Roles,
    assemble,
    call,
    constants,
    headline,
    import_block,
    role_sources,
)
from dualnet.training.spec import OptimizerSpec, TrainSpec

OPTIMIZER_OPTIONS = {
    "SGD": ("momentum", "dampening", "nesterov"),
    "Adam": ("betas", "eps", "amsgrad"),
    "AdamW": ("betas", "eps", "amsgrad"),
    "RMSprop": ("alpha", "eps", "momentum", "centered"),
    "Adagrad": ("lr_decay", "initial_accumulator_value", "eps"),
}


def torch_training(roles: Roles, spec: TrainSpec) -> str:
    imports, definitions = role_sources(roles, "torch")
    ours = {"import torch", "from torch import nn"}
    if spec.accumulate > 1:
        ours.add("import contextlib")
    if _scheduler(spec.optimizer):
        ours.add("from torch.optim import lr_scheduler")
    return assemble(
        [
            _docstring(roles, spec),
            "from __future__ import annotations",
            import_block({*imports, *ours}),
            constants(roles, spec.accumulate),
        ],
        [*definitions, _optimizer_class(spec.optimizer, spec.accumulate), _steps(roles, spec)],
    )


def _docstring(roles: Roles, spec: TrainSpec) -> str:
    head = headline(roles, spec, "PyTorch", describe(spec.optimizer))
    return (
        f'"""{head}\n\n'
        "    optimizer = make_optimizer(model)\n"
        "    logs = train_step(model, optimizer, inputs, targets)  # each batch\n"
        "    logs = eval_step(model, inputs, targets)\n\n"
        "`inputs` and `targets` are sequences of tensors in the order of INPUTS and TARGETS;\n"
        "`model` any module with the model's forward (the generated one, or it in DDP).\n"
        'Edit the .dnet source and regenerate rather than editing this file.\n"""'
    )


def optimizer_arguments(spec: OptimizerSpec) -> list[str]:
    """`torch.optim.<name>`'s keyword arguments for the spec, as source."""
    values = {
        "lr": spec.lr,
        **{key: getattr(spec, key) for key in OPTIMIZER_OPTIONS[spec.name]},
        "weight_decay": spec.weight_decay,
    }
    return [f"{k}={fmt_literal(v)}" for k, v in values.items()]


def _scheduler(spec: OptimizerSpec) -> str | None:
    """The `lr_scheduler` expression over `self.optimizer`, or None (a constant rate)."""
    s, opt = spec.schedule, "self.optimizer"
    if s.kind == "one_cycle":
        options = [f"{k}={fmt_literal(v)}" for k, v in s.one_cycle_options().items()]
        return call(
            "lr_scheduler.OneCycleLR",
            [opt, fmt_literal(spec.max_lr), fmt_literal(s.total_steps), *options],
            8,
        ).lstrip()
    main = {
        "constant": None,
        "step": (f"lr_scheduler.StepLR({opt}, {fmt_literal(s.step_size)}, {fmt_literal(s.gamma)})"),
        "cosine": (
            f"lr_scheduler.CosineAnnealingLR({opt}, {fmt_literal(s.t_max)}, "
            f"{fmt_literal(s.eta_min)})"
        ),
    }[s.kind]
    if not s.warmup_steps:
        return main
    warmup = (
        f"lr_scheduler.LinearLR({opt}, {fmt_literal(s.warmup_start_factor)}, 1.0, "
        f"{fmt_literal(s.warmup_steps)})"
    )
    if main is None:
        return warmup
    return (
        "lr_scheduler.SequentialLR(\n"
        f"            {opt},\n"
        f"            [\n                {warmup},\n                {main},\n            ],\n"
        f"            milestones=[{s.warmup_steps}],\n        )"
    )


def _optimizer_class(spec: OptimizerSpec, accumulate: int) -> str:
    if spec.no_decay_vectors:
        groups = (
            "        groups = [\n"
            '            {"params": [p for p in self.params if p.ndim > 1]},\n'
            '            {"params": [p for p in self.params if p.ndim <= 1], '
            '"weight_decay": 0.0},\n'
            "        ]\n"
        )
    else:
        groups = '        groups = [{"params": self.params}]\n'
    make = call(f"torch.optim.{spec.name}", ["groups", *optimizer_arguments(spec)], 8).lstrip()
    scheduler = _scheduler(spec)
    clip = ""
    if spec.clip_norm is not None:
        clip = f"        nn.utils.clip_grad_norm_(self.params, {fmt_literal(spec.clip_norm)})\n"
    if spec.clip_value is not None:
        clip = f"        nn.utils.clip_grad_value_(self.params, {fmt_literal(spec.clip_value)})\n"
    what = describe(spec)
    lines = [
        "class Optimizer:",
        f'    """{textwrap.fill(what, 80, subsequent_indent="    ")}.\n\n'
        "    Used like a torch.optim optimiser: `zero_grad()` before the first batch of each\n"
        "    optimiser step, `step()` after each batch's backward(); every ACCUMULATE-th\n"
        "    `step()` clips the gradients and steps the optimiser and the learning-rate\n"
        '    schedule."""',
        "",
        "    def __init__(self, model: nn.Module) -> None:",
        "        self.params = [p for p in model.parameters() if p.requires_grad]",
        groups.rstrip("\n"),
        f"        self.optimizer = {make}",
        f"        self.scheduler = {scheduler}" if scheduler else None,
        "        self.batches = 0  # backward() calls since the start",
        "",
        "    @property" if accumulate > 1 else None,
        "    def steps_next(self) -> bool:" if accumulate > 1 else None,
        '        """Whether the next step() steps the optimiser."""' if accumulate > 1 else None,
        "        return (self.batches + 1) % ACCUMULATE == 0" if accumulate > 1 else None,
        "" if accumulate > 1 else None,
        "    @property",
        "    def lr(self) -> float:",
        '        """The learning rate of the next step."""',
        '        return self.optimizer.param_groups[0]["lr"]',
        "",
        "    def step(self) -> bool:",
        '        """After a batch\'s backward(); whether the optimiser stepped."""',
        "        self.batches += 1",
        "        if self.batches % ACCUMULATE:" if accumulate > 1 else None,
        "            return False" if accumulate > 1 else None,
        clip.rstrip("\n") or None,
        "        self.optimizer.step()",
        "        self.scheduler.step()" if scheduler else None,
        "        return True",
        "",
        "    def zero_grad(self) -> None:",
        "        self.optimizer.zero_grad()",
        "",
        "    def state_dict(self) -> dict:",
        "        return {",
        '            "optimizer": self.optimizer.state_dict(),',
        '            "scheduler": self.scheduler.state_dict(),' if scheduler else None,
        '            "batches": self.batches,',
        "        }",
        "",
        "    def load_state_dict(self, state: dict) -> None:",
        '        self.optimizer.load_state_dict(state["optimizer"])',
        '        self.scheduler.load_state_dict(state["scheduler"])' if scheduler else None,
        '        self.batches = state["batches"]',
    ]
    body = "\n".join(line for line in lines if line is not None)
    over = ", over the trainable parameters of `model`"
    return (
        body + "\n\n\n"
        "def make_optimizer(model: nn.Module) -> Optimizer:\n"
        f'    """{textwrap.fill(what + over, 80, subsequent_indent="    ")}."""\n'
        "    return Optimizer(model)"
    )


def describe(spec: OptimizerSpec) -> str:
    """`torch.optim.Adam (lr 0.001), schedule cosine, ...`: one line for docstrings."""
    s = spec.schedule
    parts = [f"torch.optim.{spec.name} (lr {spec.lr:g})"]
    if s.kind != "constant":
        parts.append(f"{s.kind} schedule")
    if s.warmup_steps:
        parts.append(f"{s.warmup_steps} warmup steps")
    if spec.no_decay_vectors:
        parts.append("no weight decay on vectors")
    if spec.clip_norm is not None:
        parts.append(f"gradients clipped to norm {spec.clip_norm:g}")
    if spec.clip_value is not None:
        parts.append(f"gradients clipped to ±{spec.clip_value:g}")
    return ", ".join(parts)


def _steps(roles: Roles, spec: TrainSpec) -> str:
    outputs = "*outputs" if roles.named_outputs or len(roles.outputs) > 1 else "outputs"
    loss = f"LOSS({outputs}, *targets)"
    if spec.metrics:
        values = f"METRIC_MODULE({outputs}, *targets)"
        if roles.named_metrics:
            metrics = f"{values}._asdict()"
        elif len(roles.metric_names) == 1:
            metrics = f'{{"{roles.metric_names[0]}": {values}}}'
        else:
            metrics = f"dict(zip(METRICS, {values}, strict=True))"
        metric_line = f"\n        logs.update({metrics})"
        eval_metrics = f"\n    logs.update({metrics})"
    else:
        metric_line = eval_metrics = ""
    forward = (
        "    outputs = model(*inputs)\n"
        f"    loss = {loss}\n"
        f"    {'(loss / ACCUMULATE).backward()' if spec.accumulate > 1 else 'loss.backward()'}\n"
    )
    if spec.accumulate > 1:  # DDP all-reduces only the backward before a step
        forward = (
            "    # in DistributedDataParallel, the gradients of the batches between two steps add\n"
            "    # up on each replica (no_sync); the backward before a step all-reduces their sum\n"
            '    local = hasattr(model, "no_sync") and not optimizer.steps_next\n'
            "    with model.no_sync() if local else contextlib.nullcontext():\n"
            + textwrap.indent(forward, "    ")
        )
    zero = "    optimizer.zero_grad()\n"
    if spec.accumulate > 1:
        first = "    if optimizer.batches % ACCUMULATE == 0:  # an optimiser step's first batch\n"
        zero = first + textwrap.indent(zero, "    ")
    instances = f"LOSS = {spec.loss}()  # parameter-free: no device to move to\n"
    if spec.metrics:
        instances += f"METRIC_MODULE = {spec.metrics}()\n"
    return (
        instances + "\n\n"
        "def train_step(model: nn.Module, optimizer: Optimizer, inputs, targets) -> dict:\n"
        '    """One training batch (the model in training mode): `optimizer.zero_grad()` at an\n'
        "    optimiser step's first batch, forward, loss, backward, `optimizer.step()`; the\n"
        "    batch's loss and metrics as 0-d tensors, detached. The gradients stay on the\n"
        '    parameters until the next step\'s first batch, as in the usual PyTorch loop."""\n'
        "    model.train()\n" + zero + forward + "    optimizer.step()\n"
        "    with torch.no_grad():\n"
        f'        logs = {{"loss": loss.detach()}}{metric_line}\n'
        "    return logs\n\n\n"
        "@torch.no_grad()\n"
        "def eval_step(model: nn.Module, inputs, targets) -> dict:\n"
        '    """One evaluation batch (the model in evaluation mode): its loss and metrics."""\n'
        "    model.eval()\n"
        "    outputs = model(*inputs)\n"
        f'    logs = {{"loss": {loss}}}{eval_metrics}\n'
        "    return logs"
    )

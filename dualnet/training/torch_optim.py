"""An `OptimizerSpec` as `torch.optim` objects: the optimiser (two parameter groups when
`no_decay_vectors`), its `lr_scheduler`, and the clipping, behind one `step()`."""

from __future__ import annotations

from dataclasses import dataclass

from dualnet.training.spec import OptimizerSpec


@dataclass
class TorchTraining:
    """The optimiser, its scheduler (None: a constant learning rate) and the clipping of
    one spec; `step()` after `backward()`: clip, optimiser step, scheduler step."""

    spec: OptimizerSpec
    params: list
    optimizer: object
    scheduler: object | None

    def step(self) -> None:
        import torch

        if self.spec.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.params, self.spec.clip_value)
        if self.spec.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.spec.clip_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()


def build_torch(spec: OptimizerSpec, named_parameters) -> TorchTraining:
    """The spec's optimiser over `named_parameters` ((name, tensor) pairs: a module's
    `named_parameters()`; those without requires_grad are left out)."""
    import torch

    params = [p for _, p in named_parameters if p.requires_grad]
    groups: list = [{"params": params}]
    if spec.no_decay_vectors:
        groups = [
            {"params": [p for p in params if p.ndim > 1]},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    common = {"lr": spec.lr, "weight_decay": spec.weight_decay}
    make = {
        "SGD": lambda: torch.optim.SGD(
            groups,
            momentum=spec.momentum,
            dampening=spec.dampening,
            nesterov=spec.nesterov,
            **common,
        ),
        "Adam": lambda: torch.optim.Adam(
            groups, betas=spec.betas, eps=spec.eps, amsgrad=spec.amsgrad, **common
        ),
        "AdamW": lambda: torch.optim.AdamW(
            groups, betas=spec.betas, eps=spec.eps, amsgrad=spec.amsgrad, **common
        ),
        "RMSprop": lambda: torch.optim.RMSprop(
            groups,
            alpha=spec.alpha,
            eps=spec.eps,
            momentum=spec.momentum,
            centered=spec.centered,
            **common,
        ),
        "Adagrad": lambda: torch.optim.Adagrad(
            groups,
            lr_decay=spec.lr_decay,
            initial_accumulator_value=spec.initial_accumulator_value,
            eps=spec.eps,
            **common,
        ),
    }
    optimizer = make[spec.name]()
    return TorchTraining(spec, params, optimizer, _scheduler(spec, optimizer))


def _scheduler(spec: OptimizerSpec, optimizer):
    from torch.optim import lr_scheduler as lr

    s = spec.schedule
    if s.kind == "one_cycle":
        return lr.OneCycleLR(optimizer, spec.max_lr, s.total_steps, **s.one_cycle_options())
    main = {
        "constant": lambda: None,
        "step": lambda: lr.StepLR(optimizer, s.step_size, s.gamma),
        "cosine": lambda: lr.CosineAnnealingLR(optimizer, s.t_max, s.eta_min),
    }[s.kind]
    if not s.warmup_steps:
        return main()
    warmup = lr.LinearLR(optimizer, s.warmup_start_factor, 1.0, s.warmup_steps)
    after = main()
    if after is None:
        return warmup
    return lr.SequentialLR(optimizer, [warmup, after], milestones=[s.warmup_steps])

"""An `OptimizerSpec` as a Keras optimizer with PyTorch's formulas, from the runtime module
`backends/runtime/keras_optimizers.py`: its text (`runtime_source`, what a generated file
carries) executed once (`runtime`), never imported, as every runtime module."""

from __future__ import annotations

from functools import cache
from types import MappingProxyType

import numpy as np

from dualnet.backends.common.python_class import fmt_literal
from dualnet.backends.runtime_source import RUNTIME, helper_sources
from dualnet.training.codegen import call
from dualnet.training.spec import OptimizerSpec

MODULE = RUNTIME / "keras_optimizers.py"
HEADER = (
    "from __future__ import annotations\n\nimport math\n\nimport keras\nfrom keras import ops\n"
)


def runtime_source() -> str:
    """The runtime module's definitions as one self-contained Python file."""
    return "\n\n".join([HEADER, *(s.strip() + "\n" for s in helper_sources(MODULE).values())])


@cache
def runtime() -> MappingProxyType:
    """The runtime module's classes by name (`TorchAdam`, `TorchCosineLR`, ...)."""
    namespace: dict = {"__name__": "dualnet_keras_optimizers"}
    exec(compile(runtime_source(), str(MODULE), "exec"), namespace)
    return MappingProxyType(namespace)


def build_keras(spec: OptimizerSpec, no_decay=(), accumulate: int = 1):
    """The spec's Keras optimizer, sparing the variables `no_decay` weight decay (a
    generated model's: `vector_variables`), stepping with the mean gradient of every
    `accumulate` batches. Its learning-rate variable (a constant rate) has Keras's float
    type: build it under float64 for float64 training."""
    namespace = {**runtime(), "no_decay": list(no_decay) or None}
    extra = [f"gradient_accumulation_steps={accumulate}"] if accumulate > 1 else []
    return eval(optimizer_source(spec, "no_decay", extra=extra), namespace)  # noqa: S307


def optimizer_source(spec: OptimizerSpec, no_decay: str, indent: int = 0, extra=()) -> str:
    """The Python expression of the spec's optimizer over the runtime classes (what
    `build_keras` evaluates and a generated training file writes), `no_decay` the source of
    the variables spared weight decay, `extra` more arguments (source); laid out as ruff
    formats it at `indent`."""
    common = [
        f"learning_rate={_schedule(spec, indent + 4, 88 - len('learning_rate='))}",
        f"weight_decay={fmt_literal(spec.weight_decay)}",
        f"no_decay={no_decay}",
        f"clip_norm={fmt_literal(spec.clip_norm)}",
        f"clip_value={fmt_literal(spec.clip_value)}",
    ]
    beta_1, beta_2 = spec.betas
    adam = {"beta_1": beta_1, "beta_2": beta_2, "epsilon": spec.eps, "amsgrad": spec.amsgrad}
    options = {
        "SGD": {"momentum": spec.momentum, "dampening": spec.dampening, "nesterov": spec.nesterov},
        "Adam": adam,
        "AdamW": adam,
        "RMSprop": {
            "alpha": spec.alpha,
            "epsilon": spec.eps,
            "momentum": spec.momentum,
            "centered": spec.centered,
        },
        "Adagrad": {
            "lr_decay": spec.lr_decay,
            "initial_accumulator_value": spec.initial_accumulator_value,
            "epsilon": spec.eps,
        },
    }[spec.name]
    args = [common[0], *(f"{k}={fmt_literal(v)}" for k, v in options.items()), *common[1:]]
    args.extend(extra)
    return call(f"Torch{spec.name}", args, indent).lstrip()


def _schedule(spec: OptimizerSpec, indent: int, limit: int) -> str:
    s = spec.schedule
    if s.kind == "one_cycle":
        options = [f"{k}={fmt_literal(v)}" for k, v in s.one_cycle_options().items()]
        return call(
            "TorchOneCycleLR",
            [fmt_literal(spec.max_lr), fmt_literal(s.total_steps), *options],
            indent,
            limit,
        ).lstrip()
    lr = fmt_literal(spec.lr)
    main = {
        "constant": None,
        "step": f"TorchStepLR({lr}, {fmt_literal(s.step_size)}, {fmt_literal(s.gamma)})",
        "cosine": f"TorchCosineLR({lr}, {fmt_literal(s.t_max)}, {fmt_literal(s.eta_min)})",
    }[s.kind]
    if s.warmup_steps:
        args = [lr, fmt_literal(s.warmup_steps), fmt_literal(s.warmup_start_factor)]
        return call("TorchWarmup", [*args, *([main] if main else [])], indent, limit).lstrip()
    return lr if main is None else main


def vector_variables(model) -> list:
    """The trainable variables of a generated Keras model that hold PyTorch tensors of rank
    ≤ 1 only (biases, norm scales and shifts, in whatever shape Keras keeps them: a
    MultiHeadAttention bias is (heads, head size) there): `no_decay_vectors`'s group."""
    from dualnet.backends.keras.state import torch_named

    variables = list(model.trainable_variables)
    ids = {id(v): i + 1 for i, v in enumerate(variables)}  # 0: a tensor's filler
    named = torch_named(model, lambda v: np.full(v.shape, ids.get(id(v), 0), np.float64))
    matrix = {int(k) for t in named.values() if t.ndim > 1 for k in np.unique(t)}
    vector = {int(k) for t in named.values() if t.ndim <= 1 for k in np.unique(t)}
    return [v for i, v in enumerate(variables, 1) if i in vector and i not in matrix]

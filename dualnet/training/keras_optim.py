"""An `OptimizerSpec` as a Keras optimizer with PyTorch's formulas, from the runtime module
`backends/runtime/keras_optimizers.py`: its text (`runtime_source`, what a generated file
carries) executed once (`runtime`), never imported, as every runtime module."""

from __future__ import annotations

from functools import cache
from types import MappingProxyType

import numpy as np

from dualnet.backends.runtime_source import RUNTIME, helper_sources
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


def build_keras(spec: OptimizerSpec, no_decay=()):
    """The spec's Keras optimizer, sparing the variables `no_decay` weight decay (a
    generated model's: `vector_variables`). Its learning-rate variable (a constant rate)
    has Keras's float type: build it under float64 for float64 training."""
    rt = runtime()
    common = {
        "learning_rate": _schedule(spec, rt),
        "weight_decay": spec.weight_decay,
        "no_decay": list(no_decay) or None,
        "clip_norm": spec.clip_norm,
        "clip_value": spec.clip_value,
    }
    beta_1, beta_2 = spec.betas
    adam = {"beta_1": beta_1, "beta_2": beta_2, "epsilon": spec.eps, "amsgrad": spec.amsgrad}
    make = {
        "SGD": lambda: rt["TorchSGD"](
            momentum=spec.momentum, dampening=spec.dampening, nesterov=spec.nesterov, **common
        ),
        "Adam": lambda: rt["TorchAdam"](**adam, **common),
        "AdamW": lambda: rt["TorchAdamW"](**adam, **common),
        "RMSprop": lambda: rt["TorchRMSprop"](
            alpha=spec.alpha,
            epsilon=spec.eps,
            momentum=spec.momentum,
            centered=spec.centered,
            **common,
        ),
        "Adagrad": lambda: rt["TorchAdagrad"](
            lr_decay=spec.lr_decay,
            initial_accumulator_value=spec.initial_accumulator_value,
            epsilon=spec.eps,
            **common,
        ),
    }
    return make[spec.name]()


def _schedule(spec: OptimizerSpec, rt):
    s = spec.schedule
    if s.kind == "one_cycle":
        return rt["TorchOneCycleLR"](spec.max_lr, s.total_steps, **s.one_cycle_options())
    main = {
        "constant": lambda: None,
        "step": lambda: rt["TorchStepLR"](spec.lr, s.step_size, s.gamma),
        "cosine": lambda: rt["TorchCosineLR"](spec.lr, s.t_max, s.eta_min),
    }[s.kind]()
    if s.warmup_steps:
        return rt["TorchWarmup"](spec.lr, s.warmup_steps, s.warmup_start_factor, main)
    return spec.lr if main is None else main


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

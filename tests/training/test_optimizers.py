"""The Keras optimizers and schedules of `runtime/keras_optimizers.py` against `torch.optim`,
weight for weight: the same initial tensors and the same 100 gradients in both, the
tensors compared after every step (float64: 1e-10 relative; float32: 1e-5 for SGD,
1e-4 for the adaptive ones)."""

from __future__ import annotations

import numpy as np
import pytest

from dualnet.training.spec import OptimizerSpec, ScheduleSpec, f32_tolerance

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from dualnet.backends.keras.gradients import keras_float64  # noqa: E402
from dualnet.training.keras_optim import build_keras, runtime, runtime_source  # noqa: E402
from dualnet.training.torch_optim import build_torch  # noqa: E402

STEPS = 100
SHAPES = [(4, 3), (3,), (2, 3, 2, 2), (5,)]

CASES = {
    "sgd": OptimizerSpec("SGD", lr=0.1),
    "sgd-momentum-step": OptimizerSpec(
        "SGD",
        lr=0.05,
        momentum=0.9,
        dampening=0.1,
        weight_decay=1e-2,
        schedule=ScheduleSpec("step", step_size=30, gamma=0.5),
    ),
    "sgd-nesterov-warmup-cosine": OptimizerSpec(
        "SGD",
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        schedule=ScheduleSpec("cosine", t_max=80, eta_min=1e-4, warmup_steps=10),
    ),
    "sgd-one-cycle": OptimizerSpec(
        "SGD", lr=0.1, momentum=0.9, schedule=ScheduleSpec("one_cycle", total_steps=STEPS)
    ),
    "sgd-clip-value": OptimizerSpec("SGD", lr=0.1, momentum=0.5, clip_value=0.5),
    "adam": OptimizerSpec("Adam"),
    "adam-amsgrad-decay-cosine": OptimizerSpec(
        "Adam",
        lr=1e-2,
        amsgrad=True,
        weight_decay=1e-3,
        betas=(0.8, 0.99),
        schedule=ScheduleSpec("cosine", t_max=STEPS),
    ),
    "adam-one-cycle-three-phase": OptimizerSpec(
        "Adam",
        schedule=ScheduleSpec(
            "one_cycle", total_steps=STEPS, three_phase=True, anneal_strategy="linear"
        ),
    ),
    "adam-clip-norm": OptimizerSpec("Adam", lr=1e-2, clip_norm=1.0),
    "adamw": OptimizerSpec("AdamW", lr=1e-2),
    "adamw-no-decay-vectors-warmup": OptimizerSpec(
        "AdamW",
        lr=1e-2,
        weight_decay=0.1,
        no_decay_vectors=True,
        schedule=ScheduleSpec(warmup_steps=20, warmup_start_factor=0.1),
    ),
    "rmsprop": OptimizerSpec("RMSprop"),
    "rmsprop-centered-momentum-step": OptimizerSpec(
        "RMSprop",
        momentum=0.9,
        centered=True,
        weight_decay=1e-2,
        schedule=ScheduleSpec("step", step_size=25, gamma=0.3),
    ),
    "rmsprop-one-cycle": OptimizerSpec(
        "RMSprop", schedule=ScheduleSpec("one_cycle", total_steps=STEPS)
    ),
    "adagrad": OptimizerSpec("Adagrad"),
    "adagrad-decay": OptimizerSpec(
        "Adagrad", lr=0.1, lr_decay=1e-2, weight_decay=1e-2, initial_accumulator_value=0.1
    ),
}


def _problem(seed: int, dtype) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Initial tensors, and per step one gradient per tensor (scales that vary by tensor
    and step, a few exact zeros)."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = []
    for t in range(STEPS):
        step = []
        for i, s in enumerate(SHAPES):
            g = rng.standard_normal(s) * (0.1 + i) * (1 + np.sin(t / 7))
            g[rng.random(s) < 0.05] = 0.0
            step.append(g.astype(dtype))
        grads.append(step)
    return init, grads


def _torch(spec, init, grads) -> list[list[np.ndarray]]:
    params = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in init]
    training = build_torch(spec, [(str(i), p) for i, p in enumerate(params)])
    seen = []
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = torch.from_numpy(g.copy())
        training.step()
        seen.append([p.detach().numpy().copy() for p in params])
    return seen


def _keras(spec, init, grads) -> list[list[np.ndarray]]:
    import tensorflow as tf

    variables = [keras.Variable(x, dtype=str(x.dtype)) for x in init]
    vectors = [v for v in variables if len(v.shape) <= 1] if spec.no_decay_vectors else []
    optimizer = build_keras(spec, vectors)
    optimizer.build(variables)
    apply = tf.function(lambda grads: optimizer.apply(grads, variables))
    seen = []
    for step in grads:
        apply([tf.constant(g) for g in step])
        seen.append([v.numpy() for v in variables])
    return seen


def _worst(ours, theirs) -> float:
    """The largest max |a − b| / max |b| over tensors and steps."""
    return max(
        float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(np.abs(b)))
        for step_a, step_b in zip(ours, theirs, strict=True)
        for a, b in zip(step_a, step_b, strict=True)
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_float64_matches_torch(case):
    spec = CASES[case]
    init, grads = _problem(sorted(CASES).index(case), np.float64)
    with keras_float64():
        ours = _keras(spec, init, grads)
    theirs = _torch(spec, init, grads)
    moved = _worst([init] * STEPS, theirs)
    assert moved > 1e-3  # the weights moved: a no-op optimizer would not pass
    assert _worst(ours, theirs) <= 1e-10


@pytest.mark.parametrize("case", ["sgd-momentum-step", "adam-amsgrad-decay-cosine", "rmsprop"])
def test_float32_matches_torch(case):
    spec = CASES[case]
    init, grads = _problem(7, np.float32)
    assert _worst(_keras(spec, init, grads), _torch(spec, init, grads)) <= f32_tolerance(spec)


def test_keras_builtin_adam_differs():
    """What the PyTorch-exact Adam is for: Keras's own, with PyTorch's settings, drifts."""
    init, grads = _problem(3, np.float64)
    with keras_float64():
        variables = [keras.Variable(x) for x in init]
        builtin = keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-8)
        for step in grads:
            builtin.apply([keras.ops.convert_to_tensor(g) for g in step], variables)
        ours = [[v.numpy() for v in variables]]
    assert _worst(ours, _torch(OptimizerSpec("Adam"), init, grads)[-1:]) > 1e-8


def test_runtime_source_is_self_contained():
    """The file a generated Keras model may carry: only the framework's imports, and what
    the checks of generated Keras source accept."""
    from dualnet.backends.common.source_code import validate
    from dualnet.backends.keras.backend import KERAS
    from dualnet.diagnostics import outside

    source = runtime_source()
    validate(source, set(KERAS.imports), outside("test"), set(KERAS.registrations))
    imports = [line for line in source.splitlines() if line.startswith(("import", "from"))]
    assert imports == [
        "from __future__ import annotations",
        "import math",
        "import keras",
        "from keras import ops",
    ]
    assert {"TorchSGD", "TorchAdam", "TorchAdamW", "TorchRMSprop", "TorchAdagrad"} <= set(runtime())


def test_config_round_trip():
    rt = runtime()
    schedule = rt["TorchWarmup"](0.1, 5, 0.2, rt["TorchCosineLR"](0.1, 50))
    optimizer = rt["TorchAdamW"](learning_rate=schedule, weight_decay=0.05, clip_norm=2.0)
    again = type(optimizer).from_config(optimizer.get_config())
    assert again.torch_weight_decay == 0.05 and again.clip_norm == 2.0
    for t in (0, 4, 5, 30):
        assert float(again._learning_rate(t)) == float(schedule(t))

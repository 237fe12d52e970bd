"""`dualnet gradcheck`: finite differences in float64 against each backend's autodiff, and
the gradients of one loss compared across backends; the worst tensor of each is reported.

The loss is L = Σ_k Σ output_k · R_k with fixed standard-normal R_k, the same in every
backend, in inference mode (Dropout off, BatchNorm on its running statistics), on the random
inputs of `dualnet parity` (B=1 unless `dims` say otherwise). Everything runs in float64.

Finite differences, as torch.autograd.gradcheck's fast mode: per tensor — each trainable
parameter, each float input — one standard-normal direction v; the difference quotient of L
along v is compared with ⟨∇L, v⟩. Decisions, each measured on the zoo:
- The error is |quotient − ⟨∇L, v⟩| / max(‖∇L‖, ν): relative to the gradient's norm, since
  E⟨∇L, v⟩² = ‖∇L‖² and a v nearly orthogonal to ∇L would inflate |⟨∇L, v⟩|. Below
  ν = u·S / (ε·TOLERANCE), with u float64's epsilon and S = Σ |output · R|, the quotient's
  rounding error alone would exceed the tolerance: a gradient that is zero in exact
  arithmetic (the key bias of attention, which softmax cancels) is compared with ν.
- Step ε = 1e-8, and the best of three quotients: central, forward and backward; where
  all three miss, the same at ε / 10. ReLU, max pooling and clamp have kinks, and in a CNN
  at 224x224 some unit lies within any step of one; a kink crossed on one side of θ spoils
  the central quotient and that side's, not the other side's (ResNet-18, central quotient
  only: errors to 3e-2 at ε = 1e-6, 4e-3 at 1e-8; the best of three at 1e-8: 3e-7).
  MobileNetV2's first layers move so many units that at 1e-8 kinks lie on both sides (its
  stem: 3e-3); at 1e-9, 1e-8. A wrong gradient spoils every quotient at every step.
- BatchNorm's running statistics are first set to the batch statistics of the inputs (one
  calibration pass in PyTorch); the parameters are the given ones. At a seeded
  initialisation (mean 0, variance 1) a deep network's activations shrink layer by layer in
  inference mode — MobileNetV2's to 3e-7 — its kinks lie closer than any step and some of
  its gradients are 1e-8: no difference quotient resolves them.

Per backend: PyTorch runs the generated module `.double()` (autograd); Keras the generated
model built under a float64 floatx and dtype policy from a float64 weight file
(GradientTape), with directions per Keras variable, named by the dualnet layer and the Keras
weight (`encoder.0.attention.query/kernel`). ONNX has no autodiff, and ONNX Runtime no
float64 Conv, ConvTranspose, LSTM or GRU kernels: the model's float64 ONNX graph
(`backends/onnx/float64.py`), run by ONNX's reference runtime, is differenced along
PyTorch's directions against PyTorch's gradient, so the graph is checked to have the
reference gradient (its float32 numerics in ONNX Runtime are `dualnet parity`'s).

Across backends, PyTorch's and Keras's gradients per tensor in PyTorch's names and layouts
(`torch_named`; Keras's one LSTM bias, b_ih + b_hh, against both PyTorch biases), error
max |a − b| / max(max |b|, μ), μ = u·G / GRADIENT_TOLERANCE with G the largest gradient
entry of any tensor: a gradient that is zero in exact arithmetic (a scalar added to every
score of a softmax) is rounding noise of about u·G in each framework, never the same twice
(a block's one-head attention bias: 1e-16 against 6e-17, "error 3", where G = 380). In
float64 only: in float32 a unit whose pre-activation rounds to
the other side of a ReLU in one framework changes the weight gradient of a 7x7 map by about
1/49 (ResNet-18's layer4: 5.6e-2 between PyTorch and Keras in float32, 1.4e-14 in float64).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from dualnet.backends import BACKENDS, TORCH
from dualnet.backends.gradients import float64
from dualnet.backends.initial import initial_weights
from dualnet.compiler import Program
from dualnet.diagnostics import DualnetError, error, option
from dualnet.extras import needs_extras
from dualnet.io.files import temporary_directory
from dualnet.io.weights import write_state
from dualnet.verify.parity import random_inputs
from dualnet.verify.runner import backend_bug
from dualnet.verify.table import render_table

EPS = 1e-8
TOLERANCE = 1e-5  # finite differences; the zoo's worst is 1.2e-6 (U-Net, Keras)
GRADIENT_TOLERANCE = 1e-7  # across backends; the zoo's worst is 6.6e-9 (BERT: Keras's gelu)
REFERENCE = TORCH  # the language's meaning: the gradient ONNX is differenced against


@dataclass(frozen=True)
class Check:
    """One tensor's finite-difference check in one backend."""

    backend: str
    tensor: str
    error: float

    @property
    def ok(self) -> bool:
        return self.error <= TOLERANCE


@dataclass(frozen=True)
class Agreement:
    """One tensor's gradient in two backends."""

    pair: tuple[str, str]
    tensor: str
    error: float

    @property
    def ok(self) -> bool:
        return self.error <= GRADIENT_TOLERANCE


@needs_extras
def gradcheck(
    program: Program,
    model: str | None,
    backends: list[str],
    weights: str | None = None,
    seed: int = 0,
    dims: dict[str, int] | None = None,
    eps: float = EPS,
) -> tuple[list[Check], list[Agreement], list[str]]:
    """The checks of every tensor in every backend, the agreements of every tensor's
    gradient across backends, and how each backend was checked."""
    if not 0 < eps < 1:
        raise error("E-INPUT", f"the step {eps:g} is not in (0, 1)", option("--eps"))
    summary = program.check(model)
    inputs = random_inputs(summary, {"B": 1, **(dims or {})}, seed, program.max_params)
    checks, where, agreements = [], [], []
    with temporary_directory() as tmp:
        file = os.path.join(tmp, "float64.safetensors")
        start = initial_weights(summary, weights, seed, program.max_params, vary=True)
        write_state(float64(start), file)
        state, outputs = _side(REFERENCE, program, model, file, {}, inputs, ()).calibrated()
        write_state(state, file)
        rng = np.random.default_rng([seed, 1])
        loss = [rng.standard_normal(o.shape) for o in outputs]
        reference = _side(REFERENCE, program, model, file, state, inputs, loss)
        gradients = reference.gradients()
        floor = _rounding_floor(gradients)
        directions = _directions(reference.tensors, seed, 2)
        for stream, (name, chosen) in enumerate(BACKENDS.items(), start=2):
            if name not in backends:
                continue
            side = (
                reference
                if chosen is REFERENCE
                else _side(chosen, program, model, file, state, inputs, loss)
            )
            own = side.gradients()
            if own is None:  # no autodiff: along the reference's directions, against its gradient
                checks += _checks(name, side, loss, gradients, directions, eps)
                where.append(f"{name}: {side.where}, differenced against PyTorch's gradient")
                continue
            mine = directions if side is reference else _directions(side.tensors, seed, stream)
            checks += _checks(name, side, loss, own, mine, eps)
            where.append(f"{name}: {side.where}")
            if side is not reference and REFERENCE.name in backends:
                theirs, aliases = side.torch_named(own), side.aliases(summary)
                agreements += [
                    Agreement(
                        (REFERENCE.name, name),
                        tensor,
                        _relative(theirs[aliases.get(tensor, tensor)], ours, floor),
                    )
                    for tensor, ours in gradients.items()
                ]
    return checks, agreements, where


def _side(chosen, program, model, file: str, state: dict, inputs: dict, loss):
    """`chosen`'s float64 side; its refusing the weight file gradcheck wrote is its own bug."""
    try:
        return chosen.gradient_side(program, model, file, state, inputs, loss)
    except DualnetError as exc:
        raise backend_bug(exc, chosen.name, file, "float64 weights") from None


def check_table(model: str, checks: list[Check], eps: float) -> str:
    """Per backend: the worst tensor's finite-difference check."""
    return _worst_table(
        f"{model}: finite differences in float64 (step {eps:g}) against "
        f"autodiff; |quotient - <grad, v>| / |grad|, tolerance {TOLERANCE:g}",
        "backend",
        checks,
        lambda c: c.backend,
        "FAIL",
    )


def agreement_table(model: str, agreements: list[Agreement]) -> str:
    """Per backend pair: the worst tensor's gradient difference."""
    if not agreements:
        return (
            f"{model}: no gradients compared across backends (that needs torch and keras; "
            "ONNX has no autodiff)"
        )
    return _worst_table(
        f"{model}: float64 gradients across backends; max |a-b| / max |b| "
        f"per tensor, tolerance {GRADIENT_TOLERANCE:g}",
        "backends",
        agreements,
        lambda a: " vs ".join(a.pair),
        "MISMATCH",
    )


def _worst_table(title: str, by: str, rows: list, key, failed: str) -> str:
    table = [
        [k, str(len(mine)), worst.tensor, f"{worst.error:.3g}", "ok" if worst.ok else failed]
        for k, mine, worst in _worst(rows, key)
    ]
    return render_table(
        title, [by, "tensors", "worst tensor", "error", "verdict"], table, right={1, 3}
    )


def _worst(rows: list, key) -> list[tuple]:
    """(key, its rows, the worst of them: a failing one first, then the largest error)."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return [(k, mine, max(mine, key=lambda r: (not r.ok, r.error))) for k, mine in groups.items()]


def _checks(
    backend: str,
    side,
    loss: list[np.ndarray],
    gradients: dict[str, np.ndarray],
    directions: dict[str, np.ndarray],
    eps: float,
) -> list[Check]:
    """Per tensor of `side`: the best difference quotient of the loss along its direction
    (step `eps`, and `eps` / 10 where that misses) against ⟨gradient, direction⟩, relative
    to max(‖gradient‖, the rounding floor ν of the step)."""
    outputs = side.outputs()
    base = _loss_value(outputs, loss)
    terms = sum(float(np.sum(np.abs(o * r))) for o, r in zip(outputs, loss, strict=True))
    out = []
    for name, value in side.tensors.items():
        v, g = directions[name], gradients[name]
        slope, norm = float(np.vdot(g, v)), float(np.linalg.norm(g))
        error = math.inf
        for step in (eps, eps / 10):
            up, down = (
                _loss_value(side.outputs(name, value + sign * step * v), loss) for sign in (1, -1)
            )
            miss = min(
                abs(q - slope)
                for q in ((up - down) / (2 * step), (up - base) / step, (base - down) / step)
            )
            scale = max(norm, np.finfo(np.float64).eps * terms / (step * TOLERANCE))
            error = min(error, miss / scale if scale else 0.0 if miss == 0 else math.inf)
            if error <= TOLERANCE:
                break
        out.append(Check(backend, name, error))
    return out


def _rounding_floor(gradients: dict[str, np.ndarray]) -> float:
    """μ = u·G / GRADIENT_TOLERANCE: below it, a gradient's scale is rounding (module doc)."""
    largest = max((float(np.max(np.abs(g), initial=0.0)) for g in gradients.values()), default=0)
    return float(np.finfo(np.float64).eps) * largest / GRADIENT_TOLERANCE


def _relative(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> float:
    """max |a − b| / max(max |b|, floor) (0 when both are zero)."""
    diff = float(np.max(np.abs(a - b), initial=0.0))
    scale = max(float(np.max(np.abs(b), initial=0.0)), floor)
    return diff / scale if scale else 0.0 if diff == 0 else math.inf


def _directions(tensors: dict[str, np.ndarray], seed: int, stream: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, stream])
    return {name: rng.standard_normal(value.shape) for name, value in tensors.items()}


def _loss_value(outputs: list[np.ndarray], loss: list[np.ndarray]) -> float:
    return sum(float(np.sum(o * r)) for o, r in zip(outputs, loss, strict=True))

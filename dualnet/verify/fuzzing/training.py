"""Training runs of a fuzzed program in training mode (one with trainable parameters):
`dualnet parity --train-steps` (`verify.train_parity`) with the case's optimiser at
PyTorch's defaults and the loss the sum of the outputs times a fixed random tensor, in
float64, from parity's weights (constant tensors redrawn, so that a zero bias does not put
an `abs` or a `relu` at its kink, where rounding picks the gradient's sign): the semantics
of every gradient and update formula. Not in float32, whose
rounding these programs amplify past any tolerance: a normalisation of a nearly constant
value turns rounding into gradients, and an adaptive optimiser steps each element by its
own gradient's scale, so an element whose gradient a norm or a softmax all but cancels
takes a full step in a direction rounding decides (fuzzing in float32 gave such programs
at about 2 in 1,000). A program whose generated Keras model does not build in float64 (one
that creates f32 tensors explicitly, which TensorFlow does not promote) has no training
run.

Rows: each step's loss, and each tensor of the state after the last step, its largest
difference (the elements an adaptive optimiser scales up from rounding noise left out, as
`train_parity` does) over the largest change of any tensor in the run: a random program's
tensor may hold nothing but rounding noise (a bias whose gradient a softmax cancels),
whose difference relative to itself says nothing, while a wrong update formula moves a
tensor by a fraction of its step. Held to TOLERANCE of that change, not parity's 1e-4:
these rows are for what moves a tensor by a good part of a step (a step missing, a weight
trained that PyTorch has not, a wrong formula), and float64 rounding, amplified where a
normalisation of an exactly constant value (as a BatchNorm after a bias, over 24
elements, 1/√eps ≈ 316) sums it into a gradient that should cancel, reached 1.6e-4 in one
program; formula details (an epsilon's place) are held to 1e-10 by tests/training. Where
`train_parity` left out gradient elements at rounding level (a bias before a BatchNorm,
which an adaptive optimiser moves by full steps in a direction rounding decides), the
running statistics fed by what those elements move are not held to it either: a note says
so. An element at rounding level in some steps only makes the steps after the first of
those undetermined under an adaptive optimiser: the run is held through that step
(`_held`), and a row says which steps were not compared."""

from __future__ import annotations

import numpy as np

from dualnet.backends.initial import initial_weights
from dualnet.compiler import Program
from dualnet.training.spec import OptimizerSpec
from dualnet.verify import parity
from dualnet.verify.train_parity import noise_floor, train_parity

STEPS = 3
TOLERANCE = 1e-3  # of the largest change in the run (module doc)
PAIR = ("torch", "keras-train")


def train_rows(program: Program, dims: dict[str, int], optimizer: str) -> list[parity.Difference]:
    summary = program.check()
    if not summary.trainable_params:
        return []
    spec = OptimizerSpec(optimizer)
    try:
        result = train_parity(
            program, None, spec, STEPS, dims=dims, f64=True, per_layer=True, vary=True
        )
    except Exception:  # noqa: BLE001 - a model Keras builds in float32 only (module doc)
        return []
    held, masks = _held(result)
    losses = zip(result.torch.losses[:held], result.keras.losses[:held], strict=True)
    rows = [parity._difference(f"train loss {t}", PAIR, a, b) for t, (a, b) in enumerate(losses, 1)]
    start = initial_weights(summary, None, 0, program.max_params, vary=True)
    ours, theirs = result.torch.history[held - 1], result.keras.history[held - 1]
    # (nothing moved in PyTorch: any difference counts as it is)
    moved = max(_largest(ours[n] - start[n]) for n in ours if n in start) or 1.0
    noise = any(n.startswith("left out:") for n in result.notes)
    if held < STEPS:  # the later steps, not compared: one row says so
        later = f"train steps {held + 1}-{STEPS}"
        rows.append(parity.Difference(later, (), PAIR, 0.0, 0.0, note=f"not compared: {CUT}"))
    for name, state in ours.items():
        where = masks.get(name)
        gaps = np.abs(theirs[name].astype(np.float64) - state)
        gap = float(np.max(gaps if where is None else gaps[where], initial=0.0))
        rel = gap / moved
        within = parity.TOLERANCE < rel <= TOLERANCE
        note = f"within {TOLERANCE:g} of the largest change" if within else ""
        if rel > TOLERANCE and noise and name not in result.torch.peaks:  # a buffer
            note = "a running statistic after parameters moved by rounding noise (left out)"
        rows.append(parity.Difference(f"train {name}", state.shape, PAIR, gap, rel, note=note))
    return rows


CUT = "an adaptive optimiser stepped gradient elements at rounding level before them (`_held`)"


def _held(result) -> tuple[int, dict[str, np.ndarray]]:
    """The steps compared, and per parameter the elements compared after the last of them.
    An element whose gradient is at rounding level in every step is left out (as
    `train_parity` does). One at rounding level in some step only (a normalisation of a
    constant that a step then makes vary, a unit a batch leaves dead: exactly zero in
    PyTorch, 1e-13 in Keras) takes, under an adaptive optimiser, a full step in a direction
    rounding decides, and everything after it depends on that direction: the run is held
    through the first such step, without those elements."""
    peaks, steps = result.torch.peaks, result.torch.gradients
    floor = noise_floor(peaks, f64=True)
    signal = {n: p > floor for n, p in peaks.items()}
    for t, sizes in enumerate(steps if result.spec.name != "SGD" else [], 1):
        masks = {n: signal[n] & (size > floor) for n, size in sizes.items()}
        if any((m != signal[n]).any() for n, m in masks.items()):
            return t, {**signal, **masks}
    return len(result.torch.losses), signal


def _largest(a: np.ndarray) -> float:
    return float(np.max(np.abs(a), initial=0.0))

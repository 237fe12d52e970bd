"""Training runs of a fuzzed program in training mode (one with trainable parameters):
`dualnet parity --train-steps` (`verify.train_parity`) with the case's optimiser at
PyTorch's defaults and the loss the sum of the outputs times a fixed random tensor, in
float64: the semantics of every gradient and update formula. Not in float32, whose
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
so."""

from __future__ import annotations

import numpy as np

from dualnet.backends.initial import initial_weights
from dualnet.compiler import Program
from dualnet.training.spec import OptimizerSpec
from dualnet.verify import parity
from dualnet.verify.train_parity import train_parity

STEPS = 3
TOLERANCE = 1e-3  # of the largest change in the run (module doc)
PAIR = ("torch", "keras-train")


def train_rows(program: Program, dims: dict[str, int], optimizer: str) -> list[parity.Difference]:
    summary = program.check()
    if not summary.trainable_params:
        return []
    spec = OptimizerSpec(optimizer)
    try:
        result = train_parity(program, None, spec, STEPS, dims=dims, f64=True)
    except Exception:  # noqa: BLE001 - a model Keras builds in float32 only (module doc)
        return []
    losses = zip(result.torch.losses, result.keras.losses, strict=True)
    rows = [parity._difference(f"train loss {t}", PAIR, a, b) for t, (a, b) in enumerate(losses, 1)]
    start, final = initial_weights(summary, None, 0, program.max_params), result.torch.state
    # (nothing moved in PyTorch: any difference counts as it is)
    moved = max(_largest(final[n] - start[n]) for n in final if n in start) or 1.0
    noise = any(n.startswith("left out:") for n in result.notes)
    for d in result.tensors:
        state = final[d.tensor]
        gap = d.error * _largest(state)  # the error is max |a − b| / max |b|
        if not np.isfinite(gap):  # PyTorch's tensor is all zeros (Keras's is not)
            gap = _largest(result.keras.state[d.tensor])
        rel = gap / moved
        within = parity.TOLERANCE < rel <= TOLERANCE
        note = f"within {TOLERANCE:g} of the largest change" if within else ""
        if rel > TOLERANCE and noise and d.tensor not in result.torch.peaks:  # a buffer
            note = "a running statistic after parameters moved by rounding noise (left out)"
        rows.append(parity.Difference(f"train {d.tensor}", state.shape, PAIR, gap, rel, note=note))
    return rows


def _largest(a: np.ndarray) -> float:
    return float(np.max(np.abs(a), initial=0.0))

"""Training runs of a fuzzed program in training mode (one with trainable parameters):
`dualnet parity --train-steps` (`verify.train_parity`) with the case's optimiser at
PyTorch's defaults and the loss the sum of the outputs times a fixed random tensor, in
float32 (programs may create f32 tensors explicitly, which a float64 Keras run refuses).
Rows: each step's loss, and each tensor of the state after the last step, its largest
difference (the elements an adaptive optimiser scales up from rounding noise left out, as
`train_parity` does) over the largest change of any tensor in the run: a random program's
tensor may hold nothing but rounding noise (a bias whose gradient a softmax cancels),
whose difference relative to itself says nothing, while a wrong update formula moves a
tensor by a fraction of its step.

Held to parity's tolerance, a mismatch is excused as float32 rounding where it is (1) an
adaptive optimiser's, up to 1 / NOISE (it steps each element by its own gradient's scale,
so a gradient element of NOISE · u · G, the smallest `train_parity` holds to its
tolerance, carries its relative error of up to 1 / NOISE into a full-size step), or (2)
within ROUNDING_FACTOR of PyTorch's own float32 training against its float64 training
(`train_parity.torch_rounding`: a norm of a nearly constant value, say, turns rounding
noise into gradients), or the whole run is noise there (`run`'s rules for outputs,
`rounding.py`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dualnet.backends.initial import initial_weights
from dualnet.compiler import Program
from dualnet.training.spec import OptimizerSpec
from dualnet.verify import parity
from dualnet.verify.fuzzing.rounding import NOISE as RUN_NOISE
from dualnet.verify.fuzzing.rounding import ROUNDING_FACTOR
from dualnet.verify.train_parity import NOISE, torch_rounding, train_parity

STEPS = 3
PAIR = ("torch", "keras-train")


def train_rows(program: Program, dims: dict[str, int], optimizer: str) -> list[parity.Difference]:
    summary = program.check()
    if not summary.trainable_params:
        return []
    spec = OptimizerSpec(optimizer)
    result = train_parity(program, None, spec, STEPS, dims=dims)
    losses = zip(result.torch.losses, result.keras.losses, strict=True)
    rows = [parity._difference(f"train loss {t}", PAIR, a, b) for t, (a, b) in enumerate(losses, 1)]
    start, final = initial_weights(summary, None, 0, program.max_params), result.torch.state
    moved = max(_largest(final[n] - start[n]) for n in final if n in start)
    for d in result.tensors:
        state = final[d.tensor]
        gap = d.error * _largest(state)  # the error is max |a − b| / max |b|
        rel = gap / moved
        note = ""
        if optimizer != "SGD" and parity.TOLERANCE < rel <= 1 / NOISE:
            note = f"float32 rounding: {optimizer} steps by each element's own gradient scale"
        rows.append(parity.Difference(f"train {d.tensor}", state.shape, PAIR, gap, rel, note=note))
    if any(not r.ok for r in rows):
        rows = _excused(program, dims, spec, rows, moved)
    return rows


def _excused(program: Program, dims: dict[str, int], spec, rows: list, moved: float) -> list:
    """The rows, a mismatch excused by PyTorch's own float32 error (module doc, (2))."""
    low, high = torch_rounding(program, spec, STEPS, dims)
    pairs = enumerate(zip(low.losses, high.losses, strict=True), 1)
    own = {f"train loss {t}": abs(a - b) / (1 + abs(b)) for t, (a, b) in pairs}
    own |= {f"train {n}": _largest(low.state[n] - high.state[n]) / moved for n in low.state}
    worst = max(own, key=own.get)

    def note(r) -> str:
        e = own.get(r.output)
        if r.ok:
            return r.note
        if e is not None and r.max_rel <= ROUNDING_FACTOR * e:
            return f"float32 rounding: PyTorch's float32 vs float64 training {e:.2g}"
        if own[worst] >= RUN_NOISE:
            return f"float32 noise: PyTorch's own {worst} is off by {own[worst]:.2g}"
        return ""

    return [replace(r, note=note(r)) for r in rows]


def _largest(a: np.ndarray) -> float:
    return float(np.max(np.abs(a), initial=0.0))

"""Running a case: check its program (a DualnetError is a finding), run it in every backend
from one seeded initialisation on the same inputs, and compare every pair; in training mode
also through Keras's own train step (`fit.py`) and three training steps (`training.py`)."""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from dualnet.backends import BACKENDS as REGISTERED
from dualnet.compiler import Program, load
from dualnet.verify import parity
from dualnet.verify.fuzzing.builder import ENTRY_FILE
from dualnet.verify.fuzzing.fit import fit_rows
from dualnet.verify.fuzzing.program import Case
from dualnet.verify.fuzzing.training import train_rows

ROUNDING_FACTOR = 8  # two float32 results differ by up to twice the error of each, and one
# framework's error (PyTorch's, measured) says only roughly what the other's is (seed 6001: 5.5x)
NOISE = 1e-2  # a float32 result this far from its float64 one is rounding noise, not a value

BACKENDS = tuple(REGISTERED)  # every registered backend


@dataclass
class Outcome:
    rows: list[parity.Difference]  # every output, every backend pair
    ops: Counter  # the registry ops of the checked graph, submodels included

    @property
    def failures(self) -> list[parity.Difference]:
        return [r for r in self.rows if not r.ok]


def count_ops(graph) -> Counter:
    ops = Counter()
    for node in graph.nodes:
        if node.kind in ("op", "layer"):
            ops[node.op] += 1
        elif node.kind == "call":
            ops += count_ops(node.callee)
    return ops


@contextmanager
def loaded(case: Case) -> Iterator[Program]:
    """The case's program, from its files in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="dualnet-fuzz-") as tmp:
        for name, text in case.files:
            (Path(tmp) / name).write_text(text)
        path = Path(tmp) / ENTRY_FILE
        path.write_text(case.source)
        yield load(str(path))


def excuse_rounding(program: Program, case: Case, rows: list) -> list:
    """The rows, a mismatch excused where float32 rounding alone explains it: an
    ill-conditioned program (a normalisation of nearly constant values, say) whose float32
    result is itself that far from its float64 result (same weights, same inputs; in
    training mode also the running statistics it updates, and the loss Keras's train step
    reports) — no backend can do better, and the difference says nothing of semantics. The
    measure is the larger of PyTorch's and Keras's own float32 error (its outputs):
    Keras computes a norm's variance as E[x²] − E[x]² (`ops.moments`), up to a few times
    PyTorch's error, which compounds over consecutive norms. Where any of PyTorch's own
    float32 results is off by NOISE or more, the program passes through a point where
    rounding decides what follows (normalising rounding noise): its float32 results carry
    no information, and every difference is excused."""
    torch_error = _float32_error(program, case)
    worst = max(torch_error, key=torch_error.get)
    chaotic = torch_error[worst] >= NOISE
    keras_error = _keras_float32_error(program, case)
    error = {k: max(e, keras_error.get(k, 0.0)) for k, e in torch_error.items()}

    def note(r) -> str | None:
        # (the loss of Keras's train step is the mean square of the one output's elements)
        name = "output" if r.output == "fit loss" else r.output.removeprefix("fit ")
        e = error.get(name)
        if e is not None and r.max_rel <= ROUNDING_FACTOR * e:
            who = "Keras" if keras_error.get(name, 0.0) > torch_error[name] else "PyTorch"
            return f"float32 rounding: {who} float32 vs float64 {e:.2g}"
        if chaotic:
            return f"float32 noise: PyTorch's own {worst} is off by {torch_error[worst]:.2g}"
        return None

    notes = [None if r.ok else note(r) for r in rows]
    return [r if n is None else replace(r, note=n) for r, n in zip(rows, notes, strict=True)]


def _relative_errors(low: dict, high: dict) -> dict[str, float]:
    import numpy as np

    return {
        name: float(np.max(np.abs(low[name] - high[name]), initial=0.0))
        / (1 + float(np.max(np.abs(high[name]), initial=0.0)))
        for name in low
    }


def _output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def _float32_error(program: Program, case: Case) -> dict[str, float]:
    """PyTorch's relative error in float32 against float64, per output row name ("output",
    "output_1", ...; in training mode also "state <buffer>", and "output" for the loss
    too when there is one output), from parity's weights."""
    import copy
    import os

    import torch

    from dualnet.backends.initial import initial_weights
    from dualnet.backends.torch.backend import TORCH
    from dualnet.backends.torch.masks import dropout_off
    from dualnet.io.files import temporary_directory
    from dualnet.io.weights import write_state

    summary = program.check()
    inputs = parity.random_inputs(summary, case.dims, 0)
    module = program.torch()
    with temporary_directory() as tmp:
        file = os.path.join(tmp, "weights.safetensors")
        write_state(initial_weights(summary, None, 0, vary=True), file)
        TORCH.weights_io()[1](module, file)
    module.train(case.train)
    dropout_off(module)  # as parity runs training mode
    given = [torch.from_numpy(inputs[v.name]) for v in summary.graph.inputs]
    runs = []
    for dtype in (torch.float32, torch.float64):
        copied = copy.deepcopy(module).to(dtype)
        with torch.no_grad():
            out = copied(*(t.to(dtype) if t.is_floating_point() else t for t in given))
        out = out if isinstance(out, tuple) else (out,)
        values = dict(zip(_output_names(len(out)), out, strict=True))
        if case.train:
            values.update(
                (f"state {k}", v) for k, v in copied.state_dict().items() if v.is_floating_point()
            )
        runs.append({k: v.double().numpy() for k, v in values.items()})
    return _relative_errors(*runs)


def _keras_float32_error(program: Program, case: Case) -> dict[str, float]:
    """Keras's relative error in float32 against the same model built in float64, per
    output (in the case's mode); none where the generated model does not build in
    float64."""
    import os

    import numpy as np

    from dualnet.backends.initial import initial_weights
    from dualnet.backends.keras.gradients import keras_float64
    from dualnet.backends.keras.masks import dropout_off
    from dualnet.backends.keras.state import load_keras
    from dualnet.io.files import temporary_directory
    from dualnet.io.weights import write_state

    summary = program.check()
    inputs = parity.random_inputs(summary, case.dims, 0)
    given = [inputs[v.name] for v in summary.graph.inputs]
    arrays = initial_weights(summary, None, 0, vary=True)  # as parity's
    runs = []
    with temporary_directory() as tmp:
        for wide in (False, True):
            cast = _float64 if wide else _same
            file = os.path.join(tmp, f"{wide}.safetensors")
            write_state({k: cast(a) for k, a in arrays.items()}, file)
            try:
                with keras_float64() if wide else _nothing():
                    model = program.keras()
                    load_keras(model, file)
                    dropout_off(model)  # as parity runs training mode
                    out = model(*(cast(x) for x in given), training=case.train)
            except Exception:  # noqa: BLE001 - a model that is float32 only: no measure
                return {}
            out = out if isinstance(out, tuple | list) else (out,)
            names = _output_names(len(out))
            runs.append({k: np.asarray(v, np.float64) for k, v in zip(names, out, strict=True)})
    return _relative_errors(*runs)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _float64(a):
    return a.astype("float64") if a.dtype == "float32" else a


def _same(a):
    return a


def run_case(case: Case, backends: tuple[str, ...] = BACKENDS) -> Outcome:
    """Check the case's program, run it in every backend and compare every pair (in
    training mode also the running statistics, and Keras's train step against PyTorch);
    an output whose shape differs from the generator's is a failing row against
    "expected"."""
    if case.train:  # (ONNX Runtime runs inference graphs only)
        backends = tuple(b for b in backends if not REGISTERED[b].no_training)
    with loaded(case) as program:
        ops = count_ops(program.check().graph)
        rows, _ = parity.compare(program, None, list(backends), dims=case.dims, train=case.train)
        if case.train and "keras" in backends:
            rows += fit_rows(program, case.dims)
            if case.optimizer and "torch" in backends:
                rows += train_rows(program, case.dims, case.optimizer)
        if any(not r.ok for r in rows):
            rows = excuse_rounding(program, case, rows)
    names = (
        ["output"] if len(case.shapes) == 1 else [f"output_{i}" for i in range(len(case.shapes))]
    )
    expected = dict(zip(names, case.shapes, strict=True))
    rows += [
        replace(r, pair=("expected", r.pair[0]), max_abs=math.inf, max_rel=math.inf)
        for r in rows
        if r.output in expected and r.shape != expected[r.output]
    ]
    return Outcome(rows, ops)

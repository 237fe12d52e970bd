"""Running a case: check its program (a DualnetError is a finding), run it in every backend
from one seeded initialisation on the same inputs, and compare every pair; in training mode
also through Keras's own train step (`fit.py`)."""

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


ROUNDING_FACTOR = 8  # two float32 results differ by up to twice the error of each, and one
# framework's error (PyTorch's, measured) says only roughly what the other's is (seed 6001: 5.5x)
NOISE = 1e-2  # a float32 result this far from its float64 one is rounding noise, not a value


def excuse_rounding(program: Program, case: Case, rows: list) -> list:
    """The rows, a mismatch excused where float32 rounding alone explains it: an
    ill-conditioned program (a normalisation of nearly constant values, say) whose PyTorch
    result in float32 is itself that far from its float64 result (same weights, same
    inputs; in training mode also the running statistics it updates, and the loss Keras's
    train step reports) — no backend can do better, and the difference says nothing of
    semantics. Where any of PyTorch's own float32 results is off by NOISE or more, the
    program passes through a point where rounding decides what follows (normalising
    rounding noise): its float32 results carry no information, and every difference is
    excused."""
    error = _float32_error(program, case)
    worst = max(error, key=error.get)
    chaotic = error[worst] >= NOISE

    def note(r) -> str | None:
        # (the loss of Keras's train step is the mean square of the one output's elements)
        e = error.get("output" if r.output == "fit loss" else r.output.removeprefix("fit "))
        if e is not None and r.max_rel <= ROUNDING_FACTOR * e:
            return f"float32 rounding: PyTorch float32 vs float64 {e:.2g}"
        if chaotic:
            return f"float32 noise: PyTorch's own {worst} is off by {error[worst]:.2g}"
        return None

    notes = [None if r.ok else note(r) for r in rows]
    return [r if n is None else replace(r, note=n) for r, n in zip(rows, notes, strict=True)]


def _float32_error(program: Program, case: Case) -> dict[str, float]:
    """PyTorch's relative error in float32 against float64, per output row name ("output",
    "output_1", ...; in training mode also "state <buffer>", and "output" for the loss
    too when there is one output)."""
    import copy

    import numpy as np
    import torch

    summary = program.check()
    inputs = parity.random_inputs(summary, case.dims, 0)
    module = program.torch(seed=0).train(case.train)
    for sub in module.modules():  # as parity runs training mode: Dropout off
        if isinstance(sub, torch.nn.Dropout):
            sub.p = 0.0
    given = [torch.from_numpy(inputs[v.name]) for v in summary.graph.inputs]
    runs = []
    for dtype in (torch.float32, torch.float64):
        copied = copy.deepcopy(module).to(dtype)
        with torch.no_grad():
            out = copied(*(t.to(dtype) if t.is_floating_point() else t for t in given))
        out = out if isinstance(out, tuple) else (out,)
        names = ["output"] if len(out) == 1 else [f"output_{i}" for i in range(len(out))]
        values = dict(zip(names, out, strict=True))
        if case.train:
            values.update(
                (f"state {k}", v) for k, v in copied.state_dict().items() if v.is_floating_point()
            )
        runs.append({k: v.double().numpy() for k, v in values.items()})
    low, high = runs
    return {
        name: float(np.max(np.abs(low[name] - high[name]), initial=0.0))
        / (1 + float(np.max(np.abs(high[name]), initial=0.0)))
        for name in low
    }


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

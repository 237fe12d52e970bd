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

import dualnet
from dualnet import parity
from dualnet.compiler import Program
from dualnet.fuzzing.builder import ENTRY_FILE
from dualnet.fuzzing.fit import fit_rows
from dualnet.fuzzing.program import Case

BACKENDS = ("torch", "keras", "onnx")


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
        yield dualnet.load(str(path))


ROUNDING_FACTOR = 4  # two float32 results may differ by about twice the error of each


def excuse_rounding(program: Program, case: Case, rows: list) -> list:
    """The rows, a mismatch excused where float32 rounding alone explains it: an
    ill-conditioned program (a normalisation of nearly constant values, say) whose PyTorch
    result in float32 is itself that far from its float64 result (same weights, same
    inputs) — no backend can do better, and the difference says nothing of semantics."""
    import numpy as np
    import torch

    summary = program.check()
    inputs = parity.random_inputs(summary, case.dims, 0)
    module = program.torch(seed=0).eval()
    given = [torch.from_numpy(inputs[v.name]) for v in summary.graph.inputs]
    with torch.no_grad():
        low = module(*given)
        high = module.double()(*(t.double() if t.is_floating_point() else t for t in given))
    low, high = (out if isinstance(out, tuple) else (out,) for out in (low, high))
    names = ["output"] if len(low) == 1 else [f"output_{i}" for i in range(len(low))]
    error = {}
    for name, a, b in zip(names, low, high, strict=True):
        a, b = a.double().numpy(), b.numpy()
        error[name] = float(np.max(np.abs(a - b), initial=0.0)) / \
            (1 + float(np.max(np.abs(b), initial=0.0)))
    return [replace(r, note=f"float32 rounding: PyTorch float32 vs float64 "
                    f"{error[r.output]:.2g}")
            if not r.ok and r.output in error and r.max_rel <= ROUNDING_FACTOR * error[r.output]
            else r for r in rows]


def run_case(case: Case, backends: tuple[str, ...] = BACKENDS) -> Outcome:
    """Check the case's program, run it in every backend and compare every pair (in
    training mode also the running statistics, and Keras's train step against PyTorch);
    an output whose shape differs from the generator's is a failing row against
    "expected"."""
    if case.train:  # ONNX Runtime runs inference graphs only
        backends = tuple(b for b in backends if b != "onnx")
    with loaded(case) as program:
        ops = count_ops(program.check().graph)
        rows, _ = parity.compare(program, None, list(backends), dims=case.dims, train=case.train)
        if case.train and "keras" in backends:
            rows += fit_rows(program, case.dims)
        elif any(not r.ok for r in rows):
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

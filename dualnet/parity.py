"""`dualnet parity`: one model in several backends from one weight file, the same random
inputs, and a table of the differences of every output for every backend pair.

Inputs are dtype- and range-aware: floats are standard normal, integer inputs are token ids
below the smallest Embedding vocabulary of the model (or 0/1 without one), bool masks are
mostly true with the first position always true.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from dualnet.compiler import Program
from dualnet.diagnostics import error
from dualnet.ir.dims import Dim
from dualnet.ir.types import DType
from dualnet.runner import run

TOLERANCE = 1e-4  # max |a - b| / (1 + max |b|), CONVENTIONS.md


@dataclass(frozen=True)
class Difference:
    output: str
    shape: tuple[int, ...]
    pair: tuple[str, str]
    max_abs: float
    max_rel: float

    @property
    def ok(self) -> bool:
        return self.max_rel <= TOLERANCE


def parse_dims(text: str | None) -> dict[str, int]:
    """`B=2,T=16` → {"B": 2, "T": 16} (E-INPUT when malformed)."""
    out: dict[str, int] = {}
    for item in filter(None, (text or "").split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier() or not value.strip().isdigit() \
                or int(value) < 1:
            raise error("E-INPUT", f"`{item}` is not NAME=SIZE (a positive int)", None)
        out[name.strip()] = int(value)
    return out


def random_inputs(summary, dims: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = min((int(layer.attrs["vocab"]) for layer in summary.instance.layers()
                 if layer.op == "Embedding"), default=2)
    out = {}
    for value in summary.graph.inputs:
        shape = [d if isinstance(d, int) else _size(d, dims) for d in value.type.shape]
        dtype = value.type.dtype
        if dtype.is_int:
            out[value.name] = rng.integers(0, vocab, shape).astype(dtype.numpy)
        elif dtype == DType.bool:
            mask = rng.random(shape) < 0.8
            mask[..., 0] = True
            out[value.name] = mask
        else:
            out[value.name] = rng.standard_normal(shape).astype(dtype.numpy or "float32")
    return out


def _size(d: Dim, dims: dict[str, int]) -> int:
    if d.symbol is None:
        raise error("E-INPUT", f"the input size `{d}` is not a plain dimension name", None)
    return dims.get(d.symbol, 2 if d.symbol == "B" else 8)


def compare(program: Program, model: str | None, backends: list[str],
            weights: str | None = None, seed: int = 0,
            dims: dict[str, int] | None = None) -> tuple[list[Difference], list[str]]:
    """The differences of every output for every backend pair, and where each backend ran."""
    summary = program.check(model)
    inputs = random_inputs(summary, dims or {}, seed)
    results, where = {}, []
    for backend in backends:
        results[backend], ran = run(program, model, backend, inputs, weights, seed)
        where.append(f"{backend}: {ran}")
    names = ["output"] if len(summary.graph.outputs) == 1 else \
        [f"output_{i}" for i in range(len(summary.graph.outputs))]
    out = []
    for a, b in itertools.combinations(backends, 2):
        for name, x, y in zip(names, results[a], results[b], strict=True):
            x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
            if x64.shape != y64.shape:
                out.append(Difference(name, x64.shape, (a, b), float("inf"), float("inf")))
                continue
            diff = float(np.max(np.abs(x64 - y64), initial=0.0))
            scale = 1 + float(np.max(np.abs(y64), initial=0.0))
            out.append(Difference(name, tuple(np.shape(x)), (a, b), diff, diff / scale))
    return out, where

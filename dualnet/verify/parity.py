"""`dualnet parity`: one model in several backends from one weight file, the same random
inputs, and a table of the differences of every output for every backend pair.

Inputs are dtype- and range-aware: floats are standard normal, an integer input holds ids
below the smallest vocabulary of the Embeddings it reaches (0/1 when it reaches none), bool
masks are mostly true with the first position always true.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from dualnet.compiler import Program
from dualnet.diagnostics import error, option
from dualnet.extras import needs_extras
from dualnet.ir.dims import Dim
from dualnet.ir.graph import state_key
from dualnet.ir.sizes import parse_dims, require_positive_sizes  # noqa: F401 (re-exported)
from dualnet.ir.types import DType
from dualnet.memory import require_elements
from dualnet.verify.runner import Probe, run
from dualnet.verify.table import render_table

TOLERANCE = 1e-4  # max |a - b| / (1 + max |b|), CONVENTIONS.md


@dataclass(frozen=True)
class Difference:
    output: str
    shape: tuple[int, ...]
    pair: tuple[str, str]
    max_abs: float
    max_rel: float
    where: str = ""  # file:line of a layer
    note: str = ""  # why the values were not compared
    other_shape: tuple[int, ...] | None = None  # the second backend's, where it differs

    @property
    def ok(self) -> bool:
        return self.other_shape is None and (bool(self.note) or self.max_rel <= TOLERANCE)

    @property
    def shapes_differ(self) -> str:
        """`shapes differ: [2, 10] vs [2, 5]`, or "" where the shapes agree."""
        if self.other_shape is None:
            return ""
        return f"shapes differ: {list(self.shape)} vs {list(self.other_shape)}"


def random_inputs(
    summary, dims: dict[str, int], seed: int, max_params: int | None = None
) -> dict[str, np.ndarray]:
    """Seeded inputs of the entry model's types (symbolic sizes from `dims`), refused
    (`dualnet.memory`) when they would be too large to allocate."""
    rng = np.random.default_rng(seed)
    vocab = vocabularies(summary)
    shapes = [
        [d if isinstance(d, int) else _size(d, dims) for d in value.type.shape]
        for value in summary.graph.inputs
    ]
    sizes = {
        d.symbol: n
        for value, shape in zip(summary.graph.inputs, shapes, strict=True)
        for d, n in zip(value.type.shape, shape, strict=True)
        if isinstance(d, Dim)
    }
    require_positive_sizes(summary.graph, sizes, "--dims, or B=2 and 8 where it gives none")
    require_elements(
        sum(math.prod(s) for s in shapes), "the random inputs", option("--dims"), max_params
    )
    out = {}
    for value, shape in zip(summary.graph.inputs, shapes, strict=True):
        dtype = value.type.dtype
        if dtype.is_int:
            out[value.name] = rng.integers(0, vocab.get(value.name, 2), shape).astype(dtype.numpy)
        elif dtype == DType.bool:
            mask = rng.random(shape) < 0.8
            mask[..., 0] = True
            out[value.name] = mask
        else:
            out[value.name] = rng.standard_normal(shape).astype(dtype.numpy or "float32")
    return out


def vocabularies(summary) -> dict[str, int]:
    """For each integer input, the smallest vocabulary of the Embeddings its values reach
    (through any op and any sub-model call), or the smallest known size they index (`take`,
    `x[index]`, and `gather`)."""
    vocab: dict[str, int] = {}

    def walk(instance, graph, origins: dict[int, frozenset]) -> None:
        for node in graph.nodes:
            reached = frozenset().union(*(origins.get(id(v), ()) for v in node.inputs))
            if node.kind == "call":
                for v, inner in zip(node.inputs, node.callee.inputs, strict=True):
                    origins[id(inner)] = origins.get(id(v), frozenset())
                walk(instance.child(node.target), node.callee, origins)
                for v, inner in zip(node.outputs, node.callee.outputs, strict=True):
                    origins[id(v)] = origins.get(id(inner), frozenset())
                continue
            if node.kind == "layer" and node.op == "Embedding":
                size = int(instance.child(node.target).attrs["vocab"])
                for name in reached:
                    vocab[name] = min(vocab.get(name, size), size)
            if node.kind == "op" and node.op in ("take", "gather"):  # index < x's axis size
                size = node.inputs[0].type.shape[node.attrs["axis"]]
                indices = origins.get(id(node.inputs[1]), ())
                for name in indices if isinstance(size, int) else ():
                    vocab[name] = min(vocab.get(name, size), size)
            for v in node.outputs:
                if v.type.dtype.is_int:
                    origins[id(v)] = reached

    walk(
        summary.instance,
        summary.graph,
        {id(v): frozenset([v.name]) for v in summary.graph.inputs if v.type.dtype.is_int},
    )
    return vocab


def _size(d: Dim, dims: dict[str, int]) -> int:
    if d.symbol is None:
        raise error(
            "E-INPUT", f"the input size `{d}` is not a plain dimension name", option("--dims")
        )
    return dims.get(d.symbol, 2 if d.symbol == "B" else 8)


@needs_extras
def compare(
    program: Program,
    model: str | None,
    backends: list[str],
    weights: str | None = None,
    seed: int = 0,
    dims: dict[str, int] | None = None,
    train: bool = False,
) -> tuple[list[Difference], list[str]]:
    """The differences of every output for every backend pair, and where each backend ran.
    With `train`, the models run in training mode (Dropout off) and the state they update
    (running statistics) is compared too."""
    summary, results, probes, where = _run_all(
        program,
        model,
        backends,
        weights,
        seed,
        dims,
        lambda: Probe(train=train, state={} if train else None),
    )
    rows = _output_rows(summary, backends, results)
    if train:
        names = [
            state_key(layer.path, name)
            for layer in summary.instance.layers()
            for name, spec in layer.buffers.items()
            if spec.dtype.is_float
        ]
        for a, b in itertools.combinations(backends, 2):
            rows += [
                _difference(f"state {n}", (a, b), probes[a].state[n], probes[b].state[n])
                for n in names
            ]
    return rows, where


@needs_extras
def compare_layers(
    program: Program,
    model: str | None,
    backends: list[str],
    weights: str | None = None,
    seed: int = 0,
    dims: dict[str, int] | None = None,
):
    """(output rows, layer rows, where): the outputs, then the outputs of every layer and
    sub-model call in the order they run (a sub-model after the layers inside it). A layer
    output a backend does not hold as such (no module of its own, or another shape: a Keras
    transposed convolution before its crop) is a row with a `note` saying why, not a
    mismatch."""
    summary, results, probes, where = _run_all(
        program, model, backends, weights, seed, dims, lambda: Probe(layers={})
    )
    rows, seen = [], {}
    for path, node in layer_calls(summary):
        call = seen[path] = seen.get(path, -1) + 1
        line = f"{node.span.file.rsplit('/', 1)[-1]}:{node.span.line}" if node.span else ""
        for j in range(len(node.outputs)):
            label = (
                path
                + (f" (call {call + 1})" if call else "")
                + (f" [{j}]" if len(node.outputs) > 1 else "")
            )
            got = {b: _recorded(probes[b].layers, path, call, j) for b in backends}
            for a, b in itertools.combinations(backends, 2):
                if got[a] is None or got[b] is None or got[a].shape != got[b].shape:
                    missing = a if got[a] is None else b if got[b] is None else None
                    note = f"no such output in {missing}" if missing else "shapes differ"
                    rows.append(Difference(label, (), (a, b), 0.0, 0.0, line, note))
                else:
                    rows.append(_difference(label, (a, b), got[a], got[b], line))
    return _output_rows(summary, backends, results), rows, where


def layer_calls(summary) -> list[tuple[str, object]]:
    """(path, node) of every layer and sub-model call, in the order they run."""
    out = []

    def walk(instance, graph) -> None:
        for node in graph.nodes:
            if node.kind == "call":
                walk(instance.child(node.target), node.callee)
            if node.kind in ("call", "layer"):
                out.append((instance.child(node.target).path, node))

    walk(summary.instance, summary.graph)
    return out


def _recorded(layers: dict[str, list], path: str, call: int, output: int):
    calls = layers.get(path, [])
    if call < len(calls) and output < len(calls[call]):
        return calls[call][output]
    return None


def _run_all(program, model, backends, weights, seed, dims, probe_for):
    summary = program.check(model)
    inputs = random_inputs(summary, dims or {}, seed, program.max_params)
    results, probes, where = {}, {}, []
    for backend in backends:
        probes[backend] = probe_for()
        results[backend], ran = run(
            program, model, backend, inputs, weights, seed, probes[backend], vary=True
        )
        where.append(f"{backend}: {ran}")
    return summary, results, probes, where


def _output_rows(summary, backends: list[str], results: dict) -> list[Difference]:
    names = summary.graph.output_labels()
    return [
        _difference(name, (a, b), x, y)
        for a, b in itertools.combinations(backends, 2)
        for name, x, y in zip(names, results[a], results[b], strict=True)
    ]


def _difference(name: str, pair: tuple[str, str], x, y, where: str = "") -> Difference:
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x64.shape != y64.shape:
        nan = float("nan")
        return Difference(name, x64.shape, pair, nan, nan, where, other_shape=y64.shape)
    diff = float(np.max(np.abs(x64 - y64), initial=0.0))
    scale = 1 + float(np.max(np.abs(y64), initial=0.0))
    return Difference(name, tuple(np.shape(x)), pair, diff, diff / scale, where)


def output_table(model: str, rows: list[Difference]) -> str:
    table = [
        [
            r.output,
            "x".join(map(str, r.shape)) or "scalar",
            " vs ".join(r.pair),
            *(
                ["—", "—", r.shapes_differ]
                if r.shapes_differ
                else [f"{r.max_abs:.3g}", f"{r.max_rel:.3g}", "ok" if r.ok else "MISMATCH"]
            ),
        ]
        for r in rows
    ]
    return render_table(
        f"{model}: tolerance {TOLERANCE:g} (max |a-b| / (1 + max |b|))",
        ["output", "shape", "backends", "max abs", "max rel", "verdict"],
        table,
        right={3, 4},
    )


def layer_table(rows: list[Difference], backends: list[str]) -> str:
    """One line per layer output (max rel per backend pair), then the first layer that
    diverges, if one does."""
    pairs = list(itertools.combinations(backends, 2))
    by_layer: dict[str, dict] = {}
    for r in rows:
        by_layer.setdefault(r.output, {})[r.pair] = r
    table = []
    for label, found in by_layer.items():
        first = next(iter(found.values()))
        cells = [found[p].note and "n/a" or f"{found[p].max_rel:.3g}" for p in pairs]
        verdict = "ok" if all(r.ok for r in found.values()) else "MISMATCH"
        notes = sorted({r.note for r in found.values() if r.note})
        table.append(
            [
                label,
                first.where,
                "x".join(map(str, first.shape)),
                *cells,
                "; ".join([verdict, *notes]),
            ]
        )
    text = render_table(
        "every layer, in the order they run (max rel per backend pair)",
        ["layer", "at", "shape", *(" vs ".join(p) for p in pairs), "verdict"],
        table,
        right=set(range(3, 3 + len(pairs))),
    )
    bad = next((r for r in rows if not r.ok), None)
    if bad is None:
        return text + "\nno layer diverges"
    return (
        text + f"\nfirst divergence: `{bad.output}` ({bad.where}), {' vs '.join(bad.pair)}"
        f" max rel {bad.max_rel:.3g}"
    )

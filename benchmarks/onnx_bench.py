#!/usr/bin/env python3
"""ONNX-backend benchmark for dualnet.

    python benchmarks/onnx_bench.py [--threads 2] [--budget 1.0] [--runs 5] [--strict]

Measures, on models/resnet18.dnet with one seeded weight file (non-trivial BatchNorm
statistics, keras_latency.random_state, written by `dualnet.io.weights.write_state`):
  1. Emission time: `dualnet.load(path).onnx(weights=W).SerializeToString()` in-process
     (parse, check, read the weights, emit, onnx.checker, serialize: every call starts from
     the .dnet file) against `torch.onnx.export` of the hand-written torchvision-style
     ResNet-18 (torch_latency.define_reference_models) holding the same weights, to bytes,
     with both exporters: the dynamo one (`dynamo=True`, needs onnxscript; its default
     opset) and the legacy TorchScript one (`dynamo=False`, dualnet's default opset). The
     torch module is built and loaded beforehand: only the export is timed. Batch
     symbolic in every graph. Timing: one warm-up call each, then the exporters are called
     in rotating order (A B C, B C A, ...) until a repetition cap or a time budget is
     reached; medians. Target: dynamo / dualnet >= 10x. Also the whole process
     `python -m dualnet compile models/resnet18.dnet --target onnx --weights W -o DIR`
     (median of --runs runs after one warm-up that writes the .pyc files).
  2. ONNX Runtime latency of those graphs (CPUExecutionProvider, --threads intra-op threads,
     one inter-op thread, default graph optimizations; thread spinning off, or each session's
     idle threads spin on the cores the next one runs on), batch 1 and 32, 224x224. Every graph
     must give dualnet's outputs within 1e-4 (relative to the largest magnitude) before
     anything is timed; then the sessions are run in rotating order and the medians taken.
     ratio = dualnet / torch exporter (of the medians), target <= 1.00; the value column
     also shows the median of the per-round ratios. A diagnostic variant, dualnet's graph
     with its absent trailing optional inputs ("") removed, is timed alongside (info).
  3. The graphs: op types and counts as exported and after ONNX Runtime's optimizations
     (the model ORT runs, saved with `optimized_model_filepath`), and the nodes of dualnet's
     graph with an absent trailing optional input.

Prints a table: measurement, value, target, ratio, verdict. Exits 0 unless --strict is
given and a target is missed (or a measurement failed).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import logging
import os
import statistics
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from keras_latency import max_rel_diff, random_state, rotated
from report import Row, failure, finish, fmt_s, ratio_row
from torch_latency import (
    bytecode_env,
    cpu_snapshot,
    define_reference_models,
    others_cpu_note,
    time_process,
)

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "resnet18.dnet"
SPEEDUP_TARGET = 10.0  # dynamo export time / dualnet emission time, at least
RATIO_TARGET = 1.00  # ORT latency, dualnet / torch
AGREE_RTOL = 1e-4
SIZE = 224
EXPORT_BATCH = 2  # example batch for the exporters (the graphs keep the batch symbolic)
DUALNET = "dualnet"
LEGACY = "torch legacy"
DYNAMO = "torch dynamo"
STRIPPED = "dualnet, no trailing ''"  # diagnostic variant of dualnet's graph
SHORT = {DUALNET: "dualnet", LEGACY: "legacy", DYNAMO: "dynamo", STRIPPED: "no ''"}
EXPORTERS = {LEGACY: "torch.onnx.export(dynamo=False)", DYNAMO: "torch.onnx.export(dynamo=True)"}


# ------------------------------------------------------------------ weights and exporters


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No warnings, log lines or progress prints from torch.onnx while it exports."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def write_weights(path: Path) -> None:
    import dualnet
    from dualnet.io.weights import write_state

    write_state(random_state(dualnet.load(str(MODEL)).check(), seed=1), path)


def torch_model(torch: Any, weights: Path) -> Any:
    import dualnet

    model = define_reference_models(torch)["resnet18"]()
    dualnet.load_weights(model, weights)
    return model.eval()


def torch_export(torch: Any, model: Any, args: tuple, dynamo: bool) -> bytes:
    """`torch.onnx.export` of `model` called on `args` (inputs x, x1, ...; output "output",
    the first axis of each symbolic), as bytes: the dynamo exporter (its default opset) or
    the legacy TorchScript one (dualnet's default opset)."""
    from dualnet.backends.onnx.emit import DEFAULT_OPSET

    inputs = ["x", *(f"x{i}" for i in range(1, len(args)))]
    names = {"input_names": inputs, "output_names": ["output"]}
    with quiet():
        if dynamo:
            dims = tuple({0: torch.export.Dim("B")} for _ in args)
            program = torch.onnx.export(
                model, args, dynamo=True, verbose=False, dynamic_shapes=dims, **names
            )
            return program.model_proto.SerializeToString()
        f = io.BytesIO()
        torch.onnx.export(
            model,
            args,
            f,
            dynamo=False,
            opset_version=DEFAULT_OPSET,
            dynamic_axes={name: {0: "B"} for name in [*inputs, "output"]},
            **names,
        )
        return f.getvalue()


def exporters(torch: Any, model: Any, weights: Path) -> dict[str, Callable[[], bytes]]:
    """Each way of getting the ResNet-18 ONNX model with the weights, as bytes."""
    import dualnet

    x = (torch.randn(EXPORT_BATCH, 3, SIZE, SIZE),)

    def emit() -> bytes:
        return dualnet.load(str(MODEL)).onnx(weights=str(weights)).SerializeToString()

    return {
        DUALNET: emit,
        LEGACY: lambda: torch_export(torch, model, x, dynamo=False),
        DYNAMO: lambda: torch_export(torch, model, x, dynamo=True),
    }


def dynamo_missing() -> str | None:
    if importlib.util.find_spec("onnxscript") is None:
        return "onnxscript not installed"
    return None


# ------------------------------------------------------------------ [1] emission


def bench_emit(
    torch: Any, weights: Path, runs: int, budget: float
) -> tuple[list[Row], dict[str, bytes]]:
    """The emission rows, and each exporter's model bytes (for the latency rows)."""
    print(
        f"\n[1] emission time, ResNet-18 with weights (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads): one warm-up each, then rotating order, medians"
    )
    fns = exporters(torch, torch_model(torch, weights), weights)
    missing = dynamo_missing()
    rows: list[Row] = []
    graphs: dict[str, bytes] = {}
    if missing:
        print(
            f"  {DYNAMO}: skipped, {missing} (the dynamo exporter needs it: the bench "
            "extra, `pip install -c constraints.txt -e '.[bench]'`, which `make bench` runs)"
        )
        rows.append(
            Row(
                f"emit speed-up: {DYNAMO} / dualnet",
                missing,
                f">= {SPEEDUP_TARGET:.0f}x",
                "-",
                "skipped",
            )
        )
        del fns[DYNAMO]
    for name, fn in list(fns.items()):
        try:
            graphs[name] = fn()
        except Exception as exc:
            print(f"  {name}: export failed\n{failure(exc)}")
            rows.append(Row(f"emit: {EXPORTERS.get(name, name)}", "error", "-", "-", "ERROR"))
            del fns[name]
    times = dict(zip(fns, rotated(list(fns.values()), 0, 40, runs, budget * 20), strict=True))
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        label = (
            "dualnet.load(...).onnx(weights=W).SerializeToString()"
            if name == DUALNET
            else EXPORTERS[name]
        )
        print(
            f"  {label:<56} {fmt_s(median):>10}  (n={len(times[name])}, "
            f"{len(graphs[name]) / 2**20:.1f} MiB)"
        )
        rows.append(Row(f"emit: {label}", f"{fmt_s(median)} (n={len(times[name])})"))
    if DUALNET in medians:
        for name in (DYNAMO, LEGACY):
            if name in medians:  # the target is against the dynamo exporter
                rows.append(
                    ratio_row(
                        f"emit speed-up: {name} / dualnet",
                        times[name],
                        times[DUALNET],
                        SPEEDUP_TARGET if name == DYNAMO else None,
                        at_least=True,
                        digits=1,
                    )
                )
    rows.append(cli_row(weights, runs, medians.get(DYNAMO)))
    return rows, graphs


def cli_row(weights: Path, runs: int, dynamo_s: float | None) -> Row:
    rel = os.path.relpath(MODEL, ROOT)
    label = f"python -m dualnet compile {rel} --target onnx --weights W"
    with tempfile.TemporaryDirectory(prefix="dualnet-bench-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "dualnet",
            "compile",
            str(MODEL),
            "--target",
            "onnx",
            "--weights",
            str(weights),
            "-o",
            tmp,
        ]
        median, why = time_process(cmd, runs, bytecode_env(os.path.join(tmp, "pycache")))
    if median is None:
        print(f"  {label}: failed, {why}")
        return Row(label, "error", "-", "-", "ERROR")
    print(f"  {label:<56} {fmt_s(median):>10}  (whole process, median of {runs})")
    ratio = f"{dynamo_s / median:.1f}x vs dynamo in-process" if dynamo_s else "-"
    return Row(label, f"{fmt_s(median)} (process)", "-", ratio, "info")


# ------------------------------------------------------------------ [2] ORT latency


def session(ort: Any, model: bytes, threads: int, optimized: Path | None = None) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # saving an NCHWc-optimized model warns
    # A finished run's intra-op threads spin for a while by default and take the cores from
    # the next session's run: interleaved sessions would measure each other's spinning (at
    # batch 1 on 2 CPUs, about 2x slower and skewed by the order).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def trailing_empty(model: Any) -> list[Any]:
    """The nodes whose last input is an absent optional one ("")."""
    return [n for n in model.graph.node if n.input and not n.input[-1]]


def stripped(data: bytes) -> bytes | None:
    """dualnet's graph with absent trailing optional inputs removed (None: there are none)."""
    import onnx

    model = onnx.load_from_string(data)
    nodes = trailing_empty(model)
    for node in nodes:
        while node.input and not node.input[-1]:
            node.input.pop()
    return model.SerializeToString() if nodes else None


def bound(sess: Any, x: np.ndarray) -> Callable[[], object]:
    name = sess.get_inputs()[0].name
    return lambda: sess.run(None, {name: x})[0]


def latency_case(batch: int, sessions: dict[str, Any], budget: float) -> list[Row]:
    x = np.random.default_rng(batch).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)
    calls = {name: bound(s, x) for name, s in sessions.items()}
    ref = calls[DUALNET]()
    rows: list[Row] = []
    for name in [n for n in calls if n != DUALNET]:
        diff = max_rel_diff(calls[name](), ref)
        if not diff <= AGREE_RTOL:
            print(f"  b{batch}: {name} disagrees with dualnet, max rel diff {diff:.2e}")
            rows.append(
                Row(
                    f"ORT b{batch}: dualnet / {name}",
                    f"outputs disagree ({diff:.1e})",
                    f"<= {RATIO_TARGET:.2f}",
                    "-",
                    "ERROR",
                )
            )
            del calls[name]
        else:
            print(f"  b{batch}: {name} vs dualnet, max rel diff {diff:.1e}")
    warmup, max_rounds, min_rounds, budget_s = (
        (5, 300, 20, budget * 8) if batch == 1 else (2, 40, 5, budget * 20)
    )
    times = dict(
        zip(
            calls,
            rotated(list(calls.values()), warmup, max_rounds, min_rounds, budget_s),
            strict=True,
        )
    )
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name in calls:
        print(f"  b{batch:<3} {name:<24} {fmt_s(medians[name]):>10}  (n={len(times[name])})")
    subjects = [DUALNET] + ([STRIPPED] if STRIPPED in calls else [])
    for subject in subjects:
        for name in (LEGACY, DYNAMO):
            if name in calls:  # the target is for dualnet's graph as emitted
                rows.append(
                    ratio_row(
                        f"ORT ResNet-18 b{batch}: {subject} / {name}",
                        times[subject],
                        times[name],
                        RATIO_TARGET if subject == DUALNET else None,
                    )
                )
    return rows


def bench_latency(
    graphs: dict[str, bytes], threads: int, budget: float
) -> tuple[list[Row], dict[str, bytes]]:
    """The latency rows, and the graphs measured (the diagnostic one included)."""
    import onnxruntime as ort

    print(
        f"\n[2] ONNX Runtime {ort.__version__} latency, CPUExecutionProvider, {threads} "
        "intra-op threads (no spinning), default graph optimizations, rotating order, medians"
    )
    if DUALNET not in graphs or len(graphs) < 2:
        print("  nothing to compare")
        return [
            Row("ORT latency", "error (no graphs)", f"<= {RATIO_TARGET:.2f}", "-", "ERROR")
        ], graphs
    extra = stripped(graphs[DUALNET])
    if extra is not None:
        graphs = {**graphs, STRIPPED: extra}
    sessions = {name: session(ort, data, threads) for name, data in graphs.items()}
    rows: list[Row] = []
    for batch in (1, 32):
        try:
            rows += latency_case(batch, sessions, budget)
        except Exception as exc:
            print(f"  b{batch}: failed\n{failure(exc)}")
            rows.append(
                Row(f"ORT ResNet-18 b{batch}", "error", f"<= {RATIO_TARGET:.2f}", "-", "ERROR")
            )
    return rows, graphs


# ------------------------------------------------------------------ [3] graphs


def op_counts(model: Any) -> Counter:
    return Counter(
        f"{n.domain.removeprefix('com.microsoft.')}:{n.op_type}" if n.domain else n.op_type
        for n in model.graph.node
    )


def optimized(ort: Any, onnx: Any, data: bytes, threads: int, workdir: Path) -> Any:
    """The model ONNX Runtime runs after its default graph optimizations."""
    path = workdir / "optimized.onnx"
    session(ort, data, threads, path)
    return onnx.load(str(path), load_external_data=False)


def bench_graphs(graphs: dict[str, bytes], threads: int) -> list[Row]:
    import onnx
    import onnxruntime as ort

    print(
        "\n[3] op types and counts: each graph as exported (oN: its opset) and after ONNX "
        "Runtime's default optimizations (ORT); nchwc: com.microsoft.nchwc"
    )
    counts: dict[str, Counter] = {}  # by row label
    columns: dict[str, str] = {}  # row label -> column header
    with tempfile.TemporaryDirectory(prefix="dualnet-bench-") as tmp:
        for name, data in graphs.items():
            model = onnx.load_from_string(data)
            opset = next(
                (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?"
            )
            counts[f"{name} (opset {opset})"] = op_counts(model)
            counts[f"{name} after ORT"] = op_counts(optimized(ort, onnx, data, threads, Path(tmp)))
            columns[f"{name} (opset {opset})"] = f"{SHORT[name]} o{opset}"
            columns[f"{name} after ORT"] = f"{SHORT[name]} ORT"
    ops = sorted(set().union(*counts.values()), key=lambda op: (":" in op, op))
    width = max(len(op) for op in ops)
    widths = {c: max(len(h), 5) for c, h in columns.items()}
    print(f"  {'':<{width}} " + " ".join(f"{h:>{widths[c]}}" for c, h in columns.items()))
    for op in [*ops, "total"]:
        cells = [
            sum(counts[c].values()) if op == "total" else counts[c].get(op, 0) for c in columns
        ]
        print(
            f"  {op:<{width}} "
            + " ".join(f"{v or '.':>{widths[c]}}" for v, c in zip(cells, columns, strict=True))
        )
    rows = [
        Row(f"ops {c}", ", ".join(f"{op} {n}" for op, n in counts[c].most_common()))
        for c in columns
    ]
    dual = onnx.load_from_string(graphs[DUALNET])
    empty = Counter(n.op_type for n in trailing_empty(dual))
    value = ", ".join(f"{op} {n}" for op, n in empty.items()) or "none"
    print(f"  dualnet nodes with an absent trailing optional input (''): {value}")
    rows.append(Row("dualnet nodes with an absent trailing input ('')", value))
    return rows


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="ORT intra-op threads and torch.set_num_threads (default 2)",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=1.0,
        help="base time budget per row in seconds (emission 20x, ORT batch 1 8x, batch 32 20x)",
    )
    ap.add_argument(
        "--runs",
        type=int,
        default=5,
        help="least rounds of the emission rows; runs of the CLI process",
    )
    ap.add_argument("--strict", action="store_true", help="exit 1 unless every verdict is ok")
    args = ap.parse_args(argv)

    print(
        f"dualnet ONNX-backend benchmark  (python {sys.version.split()[0]}, {sys.executable}, "
        f"{os.cpu_count()} CPUs)"
    )
    try:
        import onnxruntime  # noqa: F401
        import torch
    except ImportError as exc:
        print(
            f"\nONNX benchmark skipped: {exc}.\n    Install with "
            "`pip install -c constraints.txt -e '.[all]'` (or `make setup`)."
        )
        return finish(
            [Row("ONNX benchmark (all rows)", f"not installed ({exc.name})", "-", "-", "skipped")],
            args.strict,
        )
    torch.set_num_threads(args.threads)
    before = cpu_snapshot()
    with tempfile.TemporaryDirectory(prefix="dualnet-bench-") as tmp:
        weights = Path(tmp) / "resnet18.safetensors"
        write_weights(weights)
        rows, graphs = bench_emit(torch, weights, args.runs, args.budget)
    latency, graphs = bench_latency(graphs, args.threads, args.budget)
    note = others_cpu_note(before, cpu_snapshot())
    rows += latency
    rows += bench_graphs(graphs, args.threads)
    return finish(rows, args.strict, note)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The zoo against its reference implementations: forward latency, ONNX, Keras.

    python benchmarks/zoo_bench.py [--models efficientnet_b0,...] [--batches 1,32]
                                   [--parts torch,ort,emit,keras] [--threads 2]
                                   [--budget 2.0] [--emit-runs 3] [--strict]

For each zoo model written after a reference (benchmarks/zoo_cases.py: torchvision's
EfficientNet-B0, ViT-B/16, ConvNeXt-T, MobileNetV3-Small, MobileNetV2, ResNet-18 and
Inception-v3; transformers' GPT-2 small at T = 128 and Whisper encoder, whisper-tiny), the
reference is built with random weights and its `state_dict()` written unchanged to a
safetensors file, which every dualnet backend loads strictly. Parts (all by default):

- torch: the module `dualnet.load(path).torch()` generates / the reference, both in eval(),
  under torch.no_grad(), float32, target <= 1.02. Batches 1 and 32 (Whisper: 1 and 4).
- ort: ONNX Runtime on dualnet's graph / on `torch.onnx.export` of the reference, target
  <= 1.00 (ViT-B/16, ConvNeXt-T, EfficientNet-B0, GPT-2; benchmarks/zoo_onnx.py).
- emit: GPT-2 small's ONNX emission with weights into a file, dualnet / the dynamo exporter,
  target >= 10x faster (benchmarks/zoo_onnx.py).
- keras: the generated Keras model (channels-last, tf.function) / a Keras implementation of
  the same architecture, target <= 1.05 (benchmarks/zoo_keras.py).

Every comparison of two implementations holding the same weights first checks that they
agree (max |a-b| / (1 + max |b|) <= 1e-5). Timing: warm-up calls, then the two called in
alternating order until a time budget is spent; ratio = of the medians, measured in this
run. Prints one table (measurement, value, target, ratio, verdict); exits 0 unless --strict
is given and a target is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from report import Row, finish, part_rows, ratio_row
from torch_latency import interleaved
from zoo_cases import CASES, Case, disagreement, reference_state

RATIO_TARGET = 1.02
PARTS = ("torch", "ort", "emit", "keras")


def torch_rows(
    torch: Any, case: Case, reference: Any, weights: Path, batches: list[int], budget: float
) -> list[Row]:
    import dualnet

    generated = dualnet.load(str(case.path)).torch()
    dualnet.load_weights(generated, weights)
    generated.eval()
    rows = []
    for batch in batches:
        label = f"{case.name} b{batch}: generated / reference"
        x = case.inputs(torch, batch)
        with torch.no_grad():
            bad = disagreement(label, generated(x).numpy(), case.select(reference(x)).numpy())
            if bad:
                rows.append(bad)
                continue
            gen_t, ref_t = interleaved(
                generated, reference, (x,), warmup=2, max_pairs=200, min_pairs=3, budget_s=budget
            )
        rows.append(ratio_row(label, gen_t, ref_t, RATIO_TARGET))
        print(f"  {rows[-1].measurement}: {rows[-1].value}  ratio {rows[-1].ratio}", flush=True)
    return rows


def bench(torch: Any, tf: Any, case: Case, args: argparse.Namespace, tmp: str) -> list[Row]:
    """The rows of every part asked for that has `case`; a part that fails gives an ERROR row."""
    import zoo_keras
    import zoo_onnx

    weights = Path(tmp) / f"{case.name}.safetensors"
    reference = reference_state(case, weights)
    batches = args.batches or list(case.batches)
    parts = {
        "torch": lambda: torch_rows(torch, case, reference, weights, batches, args.budget),
        "ort": lambda: zoo_onnx.ort_rows(
            torch, case, reference, weights, batches, args.threads, args.budget
        ),
        "emit": lambda: zoo_onnx.emit_rows(torch, case, reference, weights, args.emit_runs, tmp),
        "keras": lambda: zoo_keras.keras_rows(torch, tf, case, weights, batches, args.budget),
    }
    models = {"ort": zoo_onnx.ORT_MODELS, "emit": zoo_onnx.EMIT_MODELS, "keras": zoo_keras.MODELS}
    chosen = [part for part in args.parts if case.name in models.get(part, CASES)]
    return part_rows(case.name, parts, chosen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(CASES), help="comma-separated zoo models")
    ap.add_argument("--batches", default="", help="batch sizes (default: each model's)")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts to run")
    ap.add_argument("--threads", type=int, default=2, help="torch, ORT and TF threads (2)")
    ap.add_argument("--budget", type=float, default=2.0, help="seconds of timing per row")
    ap.add_argument("--emit-runs", type=int, default=3, help="rounds of the emission row")
    ap.add_argument("--strict", action="store_true", help="exit 1 unless every verdict is ok")
    args = ap.parse_args(argv)
    for flag, known in (("models", CASES), ("parts", PARTS)):
        unknown = [m for m in getattr(args, flag).split(",") if m not in known]
        if unknown:
            ap.error(f"unknown {flag} {', '.join(unknown)}; known: {', '.join(known)}")
    args.parts = args.parts.split(",")
    args.batches = [int(b) for b in args.batches.split(",") if b]
    import torch

    torch.set_num_threads(args.threads)
    tf = None
    if "keras" in args.parts:
        from keras_latency import import_tensorflow

        tf = import_tensorflow(args.threads)
    print(
        f"dualnet zoo vs references (torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads of {os.cpu_count()} CPUs, float32, eval, no_grad; parts {args.parts})"
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dualnet-zoo-bench-") as tmp:
        for name in args.models.split(","):
            rows += bench(torch, tf, CASES[name], args, tmp)
    return finish(rows, args.strict)


if __name__ == "__main__":
    sys.exit(main())

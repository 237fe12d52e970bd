#!/usr/bin/env python3
"""The zoo against its reference implementations: forward latency.

    python benchmarks/zoo_bench.py [--models efficientnet_b0,...] [--batches 1,32]
                                   [--threads 2] [--budget 2.0] [--strict]

For each zoo model written after a reference (torchvision's EfficientNet-B0, ViT-B/16,
ConvNeXt-T, MobileNetV3-Small, MobileNetV2, ResNet-18 and Inception-v3; transformers' GPT-2
small at T = 128 and Whisper encoder, whisper-tiny), the
reference is built with random weights (`tests/reference/harness.randomize`), its
`state_dict()` is written unchanged to a safetensors file and loaded strictly by the module
`dualnet.load(path).torch()` generates. Both run in eval(), under torch.no_grad(), float32, on
the same inputs: they must agree (max |a-b| / (1 + max |b|) <= 1e-5) before anything is
timed. Timing: warm-up calls, then the two called interleaved (alternating order) until a
time budget is spent; ratio = generated / reference of the medians, measured in this run,
target <= 1.02. Batches 1 and 32 (Whisper: 1 and 4, a 30 s spectrogram each).

Prints a table (measurement, value, target, ratio, verdict); exits 0 unless --strict is given
and a target is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import Row, finish, ratio_row
from torch_latency import interleaved

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from reference.harness import (  # noqa: E402 - the tests' reference harness
    errors,
    randomize,
    save_state,
    torchvision_models,
    transformers,
)

RATIO_TARGET = 1.02
AGREE = 1e-5


def whisper_tiny():
    whisper = transformers().models.whisper
    return whisper.modeling_whisper.WhisperEncoder(whisper.WhisperConfig())


@dataclass(frozen=True)
class Case:
    name: str  # models/<name>.dnet
    reference: Callable[[], Any]
    input_shape: tuple[int, ...]  # without the batch axis
    batches: tuple[int, ...] = (1, 32)
    select: Callable[[Any], Any] = staticmethod(lambda out: out)
    vocabulary: int = 0  # token ids in [0, vocabulary) of shape (batch, *input_shape), if set

    def inputs(self, torch: Any, batch: int):
        generator = torch.Generator().manual_seed(batch)
        if self.vocabulary:
            return torch.randint(
                0, self.vocabulary, (batch, *self.input_shape), generator=generator
            )
        return torch.randn((batch, *self.input_shape), generator=generator)


def gpt2_small():
    return transformers().GPT2LMHeadModel(transformers().GPT2Config())


CASES = {
    c.name: c
    for c in [
        Case("efficientnet_b0", lambda: torchvision_models().efficientnet_b0(), (3, 224, 224)),
        Case("vit_b_16", lambda: torchvision_models().vit_b_16(), (3, 224, 224)),
        Case("convnext_tiny", lambda: torchvision_models().convnext_tiny(), (3, 224, 224)),
        Case("gpt2", gpt2_small, (128,), select=lambda out: out.logits, vocabulary=50_257),
        Case("mobilenetv3_small", lambda: torchvision_models().mobilenet_v3_small(), (3, 224, 224)),
        Case("mobilenetv2", lambda: torchvision_models().mobilenet_v2(), (3, 224, 224)),
        Case("resnet18", lambda: torchvision_models().resnet18(), (3, 224, 224)),
        Case(
            "inception_v3",
            lambda: torchvision_models().inception_v3(aux_logits=False, init_weights=True),
            (3, 299, 299),
        ),
        Case(
            "whisper_encoder",
            whisper_tiny,
            (80, 3000),
            batches=(1, 4),
            select=lambda out: out.last_hidden_state,
        ),
    ]
}


def build(torch: Any, case: Case, weights: Path):
    """(generated module, reference), the generated one holding the reference's weights."""
    import dualnet

    reference = randomize(case.reference(), seed=0)
    save_state(reference, weights)
    generated = dualnet.load(str(ROOT / "models" / f"{case.name}.dnet")).torch()
    dualnet.load_weights(generated, weights)
    return generated.eval(), reference.eval()


def bench(torch: Any, case: Case, batches: list[int], budget: float, tmp: str) -> list[Row]:
    generated, reference = build(torch, case, Path(tmp) / f"{case.name}.safetensors")
    rows = []
    for batch in batches or case.batches:
        label = f"{case.name} b{batch}: generated / reference"
        x = case.inputs(torch, batch)
        with torch.no_grad():
            error, _ = errors(generated(x).numpy(), case.select(reference(x)).numpy())
            if error > AGREE:
                rows.append(Row(label, f"outputs differ: {error:.3g}", "-", "-", "ERROR"))
                continue
            gen_t, ref_t = interleaved(
                generated, reference, (x,), warmup=2, max_pairs=200, min_pairs=3, budget_s=budget
            )
        rows.append(ratio_row(label, gen_t, ref_t, RATIO_TARGET))
        print(f"  {rows[-1].measurement}: {rows[-1].value}  ratio {rows[-1].ratio}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(CASES), help="comma-separated zoo models")
    ap.add_argument("--batches", default="", help="batch sizes (default: each model's)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--budget", type=float, default=2.0, help="seconds of timing per row")
    ap.add_argument("--strict", action="store_true", help="exit 1 unless every verdict is ok")
    args = ap.parse_args(argv)
    unknown = [m for m in args.models.split(",") if m not in CASES]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    import torch

    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",") if b]
    print(
        f"dualnet zoo vs references (torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads of {os.cpu_count()} CPUs, float32, eval, no_grad)"
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dualnet-zoo-bench-") as tmp:
        for name in args.models.split(","):
            rows += bench(torch, CASES[name], batches, args.budget, tmp)
    return finish(rows, args.strict)


if __name__ == "__main__":
    sys.exit(main())

"""The zoo's ONNX graphs against `torch.onnx.export` of the reference implementations.

- `ort_rows`: ONNX Runtime latency of dualnet's graph (`dualnet.load(path).onnx(weights=W)`,
  W the reference's state_dict) / the reference's exported graph, target <= 1.00. The
  reference is exported with the dynamo exporter (needs onnxscript, the bench extra), else,
  if that is missing or fails, the legacy TorchScript one; the row names the one used. Batch
  symbolic in both graphs; they must agree (max |a-b| / (1 + max |b|) <= 1e-5) before
  anything is timed; sessions as `onnx_bench.session` (intra-op threads, no spinning).
- `emit_rows`: wall time of emitting the model with its weights into a file: dualnet's
  `compiler.write_onnx` (parse, check, read the weights, emit, write) against
  `torch.onnx.export(dynamo=True)` of the reference, serialised and written (the module
  built beforehand); target >= 10x. Rotating order, medians of `runs` rounds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keras_latency import rotated
from onnx_bench import (
    DYNAMO,
    EXPORTERS,
    LEGACY,
    SPEEDUP_TARGET,
    bound,
    dynamo_missing,
    session,
    torch_export,
)
from report import Row, failure, ratio_row
from zoo_cases import Case, disagreement

ORT_MODELS = ("vit_b_16", "convnext_tiny", "efficientnet_b0", "gpt2")
EMIT_MODELS = ("gpt2",)
RATIO_TARGET = 1.00
EXPORT_BATCH = 2  # the exporters' example batch (1 would be specialised)


def selecting(torch: Any, module: Any, select: Any) -> Any:
    """`module` with its output passed through `select` (a transformers output's logits)."""

    class Selected(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = module

        def forward(self, x):
            return select(self.module(x))

    return Selected().eval()


def exported(torch: Any, module: Any, x: Any) -> tuple[bytes, str]:
    """The reference's graph and the exporter that made it: dynamo, else legacy."""
    names = [LEGACY] if dynamo_missing() else [DYNAMO, LEGACY]
    for name in names:
        try:
            return torch_export(torch, module, (x,), dynamo=name == DYNAMO), name
        except Exception as exc:
            print(f"  {EXPORTERS[name]} failed\n{failure(exc)}")
    raise RuntimeError("no exporter could export the reference")


def ort_rows(
    torch: Any,
    case: Case,
    reference: Any,
    weights: Path,
    batches: list[int],
    threads: int,
    budget: float,
) -> list[Row]:
    import onnxruntime as ort

    import dualnet

    ours = dualnet.load(str(case.path)).onnx(weights=str(weights)).SerializeToString()
    module = selecting(torch, reference, case.select)
    theirs, exporter = exported(torch, module, case.inputs(torch, EXPORT_BATCH))
    sessions = [session(ort, graph, threads) for graph in (ours, theirs)]
    rows = []
    for batch in batches:
        label = f"{case.name} b{batch}: ORT dualnet / {exporter} export"
        x = case.inputs(torch, batch).numpy()
        calls = [bound(s, x) for s in sessions]
        bad = disagreement(label, calls[0](), calls[1]())
        if bad:
            rows.append(bad)
            continue
        ours_t, theirs_t = rotated(calls, 2, 200, 3, budget)
        rows.append(ratio_row(label, ours_t, theirs_t, RATIO_TARGET))
        print(f"  {label}: {rows[-1].value}  ratio {rows[-1].ratio}", flush=True)
    return rows


def emit_rows(
    torch: Any, case: Case, reference: Any, weights: Path, runs: int, tmp: str
) -> list[Row]:
    import dualnet
    from dualnet.compiler import write_onnx

    module = selecting(torch, reference, case.select)
    x = case.inputs(torch, EXPORT_BATCH)
    dynamo = dynamo_missing() is None
    exporter = DYNAMO if dynamo else LEGACY
    out = Path(tmp) / "emitted"
    out.mkdir(exist_ok=True)

    def ours() -> None:
        write_onnx(dualnet.load(str(case.path)).check(), str(out), weights=str(weights))

    def theirs() -> None:
        (out / "reference.onnx").write_bytes(torch_export(torch, module, (x,), dynamo))

    theirs_t, ours_t = rotated([theirs, ours], 0, runs, runs, 0.0)
    label = f"{case.name} emit with weights to a file: {exporter} / dualnet"
    row = ratio_row(label, theirs_t, ours_t, SPEEDUP_TARGET if dynamo else None, True, 1)
    print(f"  {label}: {row.value}  ratio {row.ratio}", flush=True)
    return [row]

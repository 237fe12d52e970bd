#!/usr/bin/env python3
"""Training-step time of dualnet's generated training code against hand-written code.

    python benchmarks/train_bench.py [--models resnet18,bert_tiny] [--parts torch,keras,loop]
                                     [--budget 20] [--loop-batches 100] [--loop-models bert_tiny]
                                     [--threads 2] [--system-allocator] [--strict]

The models (benchmarks/train_cases.py): ResNet-18 (batch 32, 112x112, SGD with momentum) and
BERT-tiny with a classification head (batch 32, T = 128, AdamW), each a .dnet file with a
`train` block. Parts (all by default):

- torch: the generated training file's `train_step(model, optimizer, inputs, targets)` (then
  `float` of its loss) / the usual `zero_grad`, forward, `F.cross_entropy`, `backward`,
  `step`, `loss.item()` on torchvision's `resnet18()` or transformers'
  `BertForSequenceClassification` with `torch.optim.SGD` / `AdamW`; target <= 1.03.
- keras: `train_on_batch` (the step `fit()` runs) on the generated model compiled by the
  generated `compile_for_training` / on a hand-written Keras model (benchmarks/
  handwritten_keras.py) compiled with `keras.optimizers.SGD` / `AdamW` and
  `SparseCategoricalCrossentropy(from_logits=True)`; target <= 1.05. ResNet-18's generated
  model channels-last (like the hand-written one; the target) and channels-first (the
  default `dualnet train` uses; information).
- loop: `dualnet.training.loop.train` (what `dualnet train` runs: data checks, shuffling,
  progress bar, TensorBoard, the epoch's checkpoint, metrics.json) for one epoch of
  --loop-batches batches / a bare loop over the same batches calling the generated step
  through the same engine (`engines.TorchEngine.train`); both from a fresh `load` of the
  file and the same weight file. CPU time of this process (steadier on a shared machine,
  target <= 1.02) and wall time (information). The loop's own cost is mostly fixed per
  epoch (the checkpoint), so the ratio falls with the epoch's length; --loop-models
  (BERT-tiny by default: a ResNet-18 epoch of 100 batches takes minutes).

Both sides of every row run in one process whose C allocator keeps freed memory, as
`dualnet train` sets it up (dualnet/training/allocator.py; --system-allocator leaves glibc's
defaults, under which the PyTorch rows measure mostly how the two models' allocations meet in
glibc's heap: docs/training.md, "Training speed").

Every side runs in training mode (BatchNorm batch statistics, dropout 0.1 in BERT). The two
sides of a row have equal parameter counts (printed) or the row is an ERROR; where they hold
the same weights (ResNet-18: torchvision's random state_dict, loaded by every side) the first
step's losses must agree within 1e-4 (relative) before anything is timed. Timing: one
warm-up step each, then the sides called in alternating (rotating) order until --budget
seconds are spent (at least 3 rounds); ratio = of the medians, measured in this run; the
value column also shows the median of the per-round ratios. One table; exits 0 unless
--strict is given and a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from keras_latency import import_tensorflow, rotated
from report import Row, failure, finish, part_rows, ratio_row
from torch_latency import cpu_snapshot, interleaved, others_cpu_note
from train_cases import BATCH, CASES, MODELS_DIR, TrainCase
from zoo_cases import save_state

PARTS = ("torch", "keras", "loop")
TORCH_TARGET = 1.03
KERAS_TARGET = 1.05
LOOP_TARGET = 1.02
AGREE = 1e-4  # the first step's losses, where both sides hold the same weights
MIN_ROUNDS = 3
VARIANTS = {"channels_last": "generated NHWC", "channels_first": "generated NCHW"}


class Trained:
    """A case's .dnet file loaded and checked, and the weight file its generated models
    start from."""

    def __init__(self, torch: Any, case: TrainCase, workdir: Path):
        import dualnet
        from dualnet.backends.initial import initial_weights
        from dualnet.io.weights import write_state

        self.case = case
        self.path = case.write(workdir)
        self.include = (str(MODELS_DIR),)
        summary = dualnet.frontend.check_file(str(self.path), include_dirs=self.include)
        if not summary.ok:
            raise RuntimeError(f"{self.path.name} does not check: {summary.diagnostics[:3]}")
        self.spec = summary.training
        self.weights = workdir / f"{case.name}.safetensors"
        torch.manual_seed(0)
        self.torch_reference = case.torch_reference()
        if case.shared_weights:
            self.state = save_state(self.torch_reference, self.weights)
        else:
            model = self.program().check(self.spec.model)
            write_state(initial_weights(model, None, 0), self.weights)
            self.state = None
        self.inputs, self.labels = case.batch(torch)

    def program(self) -> Any:
        from dualnet.compiler import load

        return load(str(self.path), include_dirs=self.include)


def same_loss(label: str, ours: float, theirs: float, shared: bool) -> Row | None:
    """An ERROR row where both sides hold the same weights and their first losses differ."""
    print(f"  {label}: first step's loss {ours:.6f} vs {theirs:.6f}", flush=True)
    if not shared or abs(ours - theirs) <= AGREE * max(abs(theirs), 1.0):
        return None
    return Row(label, f"losses differ: {ours:.6g} vs {theirs:.6g}", "-", "-", "ERROR")


def same_size(label: str, ours: int, theirs: int) -> Row | None:
    print(f"  {label}: {ours:,} vs {theirs:,} parameters", flush=True)
    if ours == theirs:
        return None
    return Row(label, f"parameters differ: {ours:,} vs {theirs:,}", "-", "-", "ERROR")


# ------------------------------------------------------------------ PyTorch


def torch_rows(torch: Any, t: Trained, budget: float) -> list[Row]:
    """The generated train step and the hand-written one, alternating."""
    import dualnet
    from dualnet.training.engines import generated

    F = torch.nn.functional
    label = f"{t.case.label}: PyTorch train step, generated / hand-written"
    code = generated(t.program(), t.spec, "torch")
    model = t.program().torch(t.spec.model)
    dualnet.load_weights(model, t.weights)
    optimizer = code["make_optimizer"](model)
    reference = t.torch_reference.train()
    ref_optimizer = t.case.torch_optimizer(torch, reference.parameters())
    inputs = [torch.from_numpy(a) for a in t.inputs]
    labels = torch.from_numpy(t.labels)

    def ours() -> float:
        return float(code["train_step"](model, optimizer, inputs, [labels])["loss"])

    def theirs() -> float:
        ref_optimizer.zero_grad()
        loss = F.cross_entropy(t.case.torch_logits(reference, inputs), labels)
        loss.backward()
        ref_optimizer.step()
        return loss.item()

    counts = [sum(p.numel() for p in m.parameters()) for m in (model, reference)]
    bad = same_size(label, *counts) or same_loss(label, ours(), theirs(), t.case.shared_weights)
    if bad:
        return [bad]
    ours_t, theirs_t = interleaved(ours, theirs, (), 1, 10_000, MIN_ROUNDS, budget)
    row = ratio_row(label, ours_t, theirs_t, TORCH_TARGET)
    print(f"  {label}: {row.value}  ratio {row.ratio}", flush=True)
    return [row]


# ------------------------------------------------------------------ Keras


def keras_rows(t: Trained, budget: float) -> list[Row]:
    """The generated model (images: in both layouts) and the hand-written one, rotating."""
    import handwritten_keras
    import keras

    import dualnet
    from dualnet.training.engines import generated

    code = generated(t.program(), t.spec, "keras")
    hand = t.case.keras_reference()
    if t.state is not None:
        handwritten_keras.load_state(
            hand, {k: v.numpy() for k, v in t.state.items() if not k.endswith("batches_tracked")}
        )
    hand.compile(
        optimizer=t.case.keras_optimizer(keras),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    images = len(t.inputs) == 1 and t.inputs[0].ndim == 4
    layouts = ("channels_last", "channels_first") if images else ("channels_first",)
    models = {}
    for layout in layouts:
        model = t.program().keras(t.spec.model, layout=layout)
        dualnet.load_weights(model, t.weights)
        models[layout] = code["compile_for_training"](model)
    nhwc = [np.ascontiguousarray(t.inputs[0].transpose(0, 2, 3, 1))] if images else t.inputs
    x = {"channels_last": nhwc, "channels_first": t.inputs, "hand-written": nhwc}
    models["hand-written"] = hand

    def step(name: str):
        inputs = x[name][0] if len(x[name]) == 1 else tuple(x[name])
        return lambda: float(models[name].train_on_batch(inputs, t.labels))

    names = list(models)
    calls = [step(n) for n in names]
    first = {n: call() for n, call in zip(names, calls, strict=True)}
    rows = []
    for layout in layouts:
        variant = VARIANTS[layout] if images else "generated"
        label = f"{t.case.label}: Keras train_on_batch, {variant} / hand-written"
        counts = (models[layout].count_params(), hand.count_params())
        bad = same_size(label, *counts) or same_loss(
            label, first[layout], first["hand-written"], t.case.shared_weights
        )
        rows.append((label, layout, bad))
    if any(bad for *_, bad in rows):
        return [bad or Row(label, "not timed", "-", "-", "ERROR") for label, _, bad in rows]
    times = dict(zip(names, rotated(calls, 1, 10_000, MIN_ROUNDS, budget), strict=True))
    out = []
    for label, layout, _ in rows:
        like_for_like = layout == layouts[0]  # channels-first images: information only
        limit = KERAS_TARGET if like_for_like else None
        out.append(ratio_row(label, times[layout], times["hand-written"], limit))
        print(f"  {label}: {out[-1].value}  ratio {out[-1].ratio}", flush=True)
    return out


# ------------------------------------------------------------------ dualnet train's loop


def loop_rows(t: Trained, batches: int, budget: float, workdir: Path) -> list[Row]:
    """One epoch of `loop.train` and of a bare loop over the same batches (the case's batch's
    examples drawn again), alternating; CPU and wall time."""
    from dualnet.training.codegen import roles
    from dualnet.training.data import shuffled_batches
    from dualnet.training.engines import TorchEngine
    from dualnet.training.loop import Options, train

    rng = np.random.default_rng(1)
    order = [rng.integers(0, BATCH, BATCH) for _ in range(batches)]
    named = roles(t.program(), t.spec)
    names = [*named.inputs, *(n for n, _ in named.targets)]
    arrays = [*t.inputs, t.labels]
    data = {n: np.concatenate([a[i] for i in order]) for n, a in zip(names, arrays, strict=True)}
    options = Options(epochs=1, batch_size=BATCH, weights=str(t.weights))
    run_dir = workdir / "run"

    def looped() -> None:
        train(t.program(), t.spec, "torch", str(run_dir), data, None, options)

    def bare() -> None:
        program = t.program()
        engine = TorchEngine(program, roles(program, t.spec), t.spec, str(t.weights))
        for batch in shuffled_batches(data, names, BATCH, options.seed, 0):
            engine.train(batch)

    looped(), bare()  # warm-up: imports, the TensorBoard writer
    shutil.rmtree(run_dir)
    clocks: dict[str, list[list[float]]] = {"wall": [[], []], "cpu": [[], []]}
    start = time.perf_counter()
    for i in range(10_000):
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            wall, cpu = time.perf_counter(), time.process_time()
            (looped, bare)[k]()
            clocks["wall"][k].append(time.perf_counter() - wall)
            clocks["cpu"][k].append(time.process_time() - cpu)
            shutil.rmtree(run_dir, ignore_errors=True)
        if i + 1 >= MIN_ROUNDS and time.perf_counter() - start > budget:
            break
    what = f"{t.case.label}: dualnet train ({batches} batches, PyTorch) / bare loop"
    rows = [
        ratio_row(f"{what}, CPU time", *clocks["cpu"], LOOP_TARGET),
        ratio_row(f"{what}, wall time", *clocks["wall"]),
    ]
    for row in rows:
        print(f"  {row.measurement}: {row.value}  ratio {row.ratio}", flush=True)
    return rows


# ------------------------------------------------------------------ main


def bench(torch: Any, case: TrainCase, args: argparse.Namespace, workdir: Path) -> list[Row]:
    """The rows of every part asked for; a part that fails gives an ERROR row."""
    try:
        t = Trained(torch, case, workdir)
    except Exception as exc:
        print(f"  {case.name}: cannot build\n{failure(exc)}", flush=True)
        return [Row(f"{case.label}: build", "error", "-", "-", "ERROR")]
    parts = {
        "torch": lambda: torch_rows(torch, t, args.budget),
        "keras": lambda: keras_rows(t, args.budget),
        "loop": lambda: loop_rows(t, args.loop_batches, args.budget, workdir),
    }
    loops = args.loop_models.split(",")
    chosen = [part for part in args.parts if part != "loop" or case.name in loops]
    return part_rows(case.label, parts, chosen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(CASES), help="comma-separated models")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts to run")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of timing per part")
    ap.add_argument("--loop-batches", type=int, default=100, help="batches of the loop's epoch")
    ap.add_argument("--loop-models", default="bert_tiny", help="models the loop part runs on")
    ap.add_argument("--threads", type=int, default=2, help="torch and TF threads (2)")
    ap.add_argument(
        "--system-allocator",
        action="store_true",
        help="leave glibc's malloc at its defaults (else freed memory is kept: dualnet train's)",
    )
    ap.add_argument("--strict", action="store_true", help="exit 1 unless every verdict is ok")
    args = ap.parse_args(argv)
    for flag, known in (("models", CASES), ("parts", PARTS), ("loop_models", CASES)):
        unknown = [m for m in getattr(args, flag).split(",") if m not in known]
        if unknown:
            ap.error(f"unknown {flag} {', '.join(unknown)}; known: {', '.join(known)}")
    args.parts = args.parts.split(",")
    from dualnet.training.allocator import keep_freed_memory

    kept = not args.system_allocator and keep_freed_memory()
    import torch

    torch.set_num_threads(args.threads)
    if "keras" in args.parts:
        import_tensorflow(args.threads)
    print(
        f"dualnet training step vs hand-written (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads of {os.cpu_count()} CPUs, float32, training mode; "
        f"parts {args.parts}; {'freed memory kept' if kept else 'the system allocator'})",
        flush=True,
    )
    rows: list[Row] = []
    before = cpu_snapshot()
    with tempfile.TemporaryDirectory(prefix="dualnet-train-bench-") as tmp:
        for name in args.models.split(","):
            rows += bench(torch, CASES[name], args, Path(tmp))
    return finish(rows, args.strict, others_cpu_note(before, cpu_snapshot()))


if __name__ == "__main__":
    sys.exit(main())

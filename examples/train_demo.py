#!/usr/bin/env python3
"""`make train-demo`: one .dnet model and its `train` block (examples/digits.dnet), trained
on the handwritten digits shipped with dualnet, in PyTorch and in Keras.

    python examples/train_demo.py [--epochs 5] [--batch-size 32] [--seed 0] [-o runs/train-demo]

Both frameworks start from the same seeded weights, see the same batches in the same order
and update with the same (PyTorch's) formulas, through the training code dualnet generates
(`dualnet.training.loop.train`, what `dualnet train` runs). Prints each framework's
accuracy and how far the two loss curves lie apart, beside how far PyTorch's own curve moves
when it runs on one thread instead of several (the scale of float32 round-off compounded
over the run), and writes both curves, overlaid, to OUT/curves.png.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from dualnet.compiler import load
from dualnet.frontend import check_file
from dualnet.training.digits import load_digits
from dualnet.training.loop import Options, train

MODEL = Path(__file__).with_name("digits.dnet")
BACKENDS = ("torch", "keras")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/train-demo"))
    args = parser.parse_args()

    train_set, val_set = load_digits(seed=args.seed)
    program, spec = load(str(MODEL)), check_file(str(MODEL)).training
    options = Options(args.epochs, args.batch_size, args.seed, progress=False)
    runs, seconds = {}, {}
    for backend in BACKENDS:
        print(f">> training {spec.model} in {backend} ({args.epochs} epochs)", flush=True)
        began = time.perf_counter()
        runs[backend] = train(
            program, spec, backend, fresh(args.output / backend), train_set, val_set, options
        )
        seconds[backend] = time.perf_counter() - began
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print(f">> for scale: {spec.model} in torch again, on 1 thread (was {threads})", flush=True)
    one_thread = train(
        program, spec, "torch", fresh(args.output / "torch-1-thread"), train_set, None, options
    )
    torch.set_num_threads(threads)

    print(f"\n{'':8}{'train loss':>12}{'val loss':>10}{'val accuracy':>14}{'time':>8}")
    for backend, run in runs.items():
        last = run["epochs"][-1]
        print(
            f"{backend:8}{last['train']['loss']:12.4f}{last['val']['loss']:10.4f}"
            f"{last['val']['accuracy']:14.2%}{seconds[backend]:7.1f}s"
        )
    curves = {
        **{b: runs[b]["batch_loss"] for b in BACKENDS},
        "torch on 1 thread": one_thread["batch_loss"],
    }
    print(f"\nloss curves, {len(curves['torch'])} batches: |a - b| per batch{'max':>8}{'mean':>10}")
    for a, b in (
        ("torch", "keras"),
        ("torch", "torch on 1 thread"),
        ("keras", "torch on 1 thread"),
    ):
        gap = np.abs(np.array(curves[a]) - np.array(curves[b]))
        print(f"  {a + ' vs ' + b:41}{gap.max():10.2e}{gap.mean():10.2e}")
    print(f"wrote {plot(runs, args.output / 'curves.png')}")
    return 0


def fresh(run_dir: Path) -> str:
    """The demo's own run directory, emptied: each run starts from scratch."""
    shutil.rmtree(run_dir, ignore_errors=True)
    return str(run_dir)


def plot(runs: dict, path: Path) -> Path:
    """The two frameworks' loss per batch and validation accuracy per epoch, overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for (backend, run), style in zip(runs.items(), ("-", "--"), strict=True):
        losses = run["batch_loss"]
        loss_ax.plot(range(1, len(losses) + 1), losses, style, lw=1, label=backend)
        epochs = [e["epoch"] for e in run["epochs"]]
        accuracy = [e["val"]["accuracy"] for e in run["epochs"]]
        acc_ax.plot(epochs, accuracy, style, marker="o", label=backend)
    loss_ax.set(title="training loss per batch", xlabel="batch")
    acc_ax.set(title="validation accuracy", xlabel="epoch")
    for ax in (loss_ax, acc_ax):
        ax.legend()
    fig.suptitle("examples/digits.dnet trained in PyTorch and Keras")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    raise SystemExit(main())

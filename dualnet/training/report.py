"""What `dualnet train` shows and records besides checkpoints: a progress bar (rich, when
installed) with the running loss, metrics and examples per second; TensorBoard scalars
(PyTorch's `SummaryWriter` where the `tensorboard` package is installed, else TensorFlow's
`tf.summary` where TensorFlow is); `metrics.json`; and `--plot`'s PNG (matplotlib)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from dualnet.diagnostics import error, option
from dualnet.io.files import atomic_write


class Reporter:
    """One run's progress bar and TensorBoard writer (`RUN_DIR/tensorboard/`)."""

    def __init__(self, run_dir: str, backend: str, show: bool = True):
        self.writer = _writer(Path(run_dir) / "tensorboard", backend)
        self.notes: list[str] = []
        if self.writer is None:
            self.notes.append(
                "no TensorBoard event files: install `tensorboard` "
                "(pip install 'dualnet[train]') or TensorFlow (dualnet[keras])"
            )
        self.progress = _progress() if show else None
        self.task = None

    def __enter__(self) -> Reporter:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.writer is not None:
            self.writer.close()

    def start_epoch(self, epoch: int, epochs: int, batches: int | None) -> None:
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(
                f"epoch {epoch + 1}/{epochs}", total=batches, logs="", speed=""
            )

    def batch(self, averages: dict[str, float], speed: float) -> None:
        """After each batch: the epoch's running averages (the batch losses go to
        metrics.json, not TensorBoard: a summary write per batch costs as much as a small
        model's training step)."""
        if self.progress is not None:
            text = "  ".join(f"{k} {v:.4g}" for k, v in _loss_first(averages))
            self.progress.update(self.task, advance=1, logs=text, speed=f"{speed:,.0f} ex/s")

    def epoch(self, record: dict) -> None:
        for part in ("train", "val"):
            for key, value in record.get(part, {}).items():
                if self.writer is not None:
                    self.writer.scalar(f"{part}/{key}", value, record["epoch"])
        if self.writer is not None:
            self.writer.scalar("lr", record["lr"], record["epoch"])
        line = f"epoch {record['epoch']}: " + "  ".join(
            f"{part} {k} {v:.4g}"
            for part in ("train", "val")
            for k, v in _loss_first(record.get(part, {}))
        )
        line += f"  ({record['examples_per_s']:,.0f} examples/s)"
        (self.progress.console.print if self.progress is not None else _stderr)(line)


class Silent:
    """A Reporter for the ranks after the first of a distributed run: shows and writes
    nothing."""

    notes: list[str] = []

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def start_epoch(self, *args) -> None:
        pass

    def batch(self, *args) -> None:
        pass

    def epoch(self, record: dict) -> None:
        pass


def _loss_first(logs: dict) -> list[tuple[str, float]]:
    """The loss, then the metrics by name: one order whichever framework logged them."""
    return sorted(logs.items(), key=lambda item: (item[0] != "loss", item[0]))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _progress():
    """A rich progress bar on stderr, or None without rich."""
    if importlib.util.find_spec("rich") is None:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[speed]}"),
        TextColumn("{task.fields[logs]}"),
        console=Console(stderr=True),
        transient=True,
    )


class _Scalars:
    """`scalar(tag, value, step)` over PyTorch's or TensorFlow's summary writer."""

    def __init__(self, scalar, close):
        self.scalar, self.close = scalar, close


def _writer(directory: Path, backend: str) -> _Scalars | None:
    if backend == "torch" and importlib.util.find_spec("tensorboard") is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(directory))
        return _Scalars(writer.add_scalar, writer.close)
    if importlib.util.find_spec("tensorflow") is None:
        return None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log lines
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    # tf.summary.scalar is TensorBoard's (it needs that package); tf.summary.write with the
    # scalars plugin's metadata writes the same event without it
    scalars = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    writer = tf.summary.create_file_writer(str(directory))

    def scalar(tag: str, value: float, step: int) -> None:
        with writer.as_default():
            tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=scalars)

    return _Scalars(scalar, writer.close)


def write_metrics(run_dir: str, summary: dict) -> Path:
    """`RUN_DIR/metrics.json`, replaced atomically."""
    path = Path(run_dir) / "metrics.json"
    atomic_write(path, (json.dumps(summary, indent=1) + "\n").encode())
    return path


def require_plotting() -> None:
    """E-EXTRA before the run when `--plot` cannot be honoured."""
    if importlib.util.find_spec("matplotlib") is None:
        raise error(
            "E-EXTRA",
            "--plot needs matplotlib (the Python package `matplotlib`), which is not installed",
            option("--plot"),
            notes=["install it with `pip install 'dualnet[train]'`, or leave --plot out"],
        )


def plot(run_dir: str, summary: dict) -> Path:
    """`RUN_DIR/curves.png`: the loss of every batch, and each epoch's training and
    validation loss and metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = summary["epochs"]
    keys = sorted({k for e in epochs for part in ("train", "val") for k in e.get(part, {})})
    fig, axes = plt.subplots(1, 1 + len(keys), figsize=(5 * (1 + len(keys)), 4), squeeze=False)
    axes = axes[0]
    axes[0].plot(range(1, len(summary["batch_loss"]) + 1), summary["batch_loss"], lw=0.8)
    axes[0].set(title="loss per batch", xlabel="batch")
    for ax, key in zip(axes[1:], keys, strict=True):
        for part in ("train", "val"):
            points = [(e["epoch"], e[part][key]) for e in epochs if key in e.get(part, {})]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=part)
        ax.set(title=key, xlabel="epoch")
        ax.legend()
    fig.suptitle(f"{summary['model']} ({summary['backend']})")
    fig.tight_layout()
    path = Path(run_dir) / "curves.png"
    tmp = path.with_suffix(".png.tmp")
    fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path

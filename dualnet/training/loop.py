"""`dualnet train`'s loop, also the Python entry point `dualnet.training.loop.train`: epochs
of the generated training step in either framework over checked data, validation after each
epoch, a checkpoint after each epoch and on Ctrl-C, `metrics.json` at the end.

    from dualnet.compiler import load
    from dualnet.training.loop import Options, train

    summary = train(load("net.dnet"), spec, "torch", "runs/a", {"x": x, "labels": y},
                    val={"x": xv, "labels": yv}, options=Options(epochs=5, batch_size=64))

`data` is a dict of arrays (shuffled each epoch from the seed) or any re-iterable of batches
(dicts of arrays by name; iterated afresh each epoch, each batch checked).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

from dualnet.backends.initial import initial_weights
from dualnet.compiler import Program
from dualnet.diagnostics import error, option, outside
from dualnet.extras import needs_extras
from dualnet.io.files import temporary_directory
from dualnet.io.weights import write_state
from dualnet.training import checkpoint
from dualnet.training.codegen import roles
from dualnet.training.data import (
    Batch,
    check_arrays,
    checked,
    expected,
    in_order,
    shuffled_batches,
)
from dualnet.training.report import Reporter, Silent, plot, require_plotting, write_metrics
from dualnet.training.spec import TrainSpec


@dataclass(frozen=True)
class Options:
    epochs: int = 1
    batch_size: int = 32
    seed: int = 0  # the initial weights (without `weights`) and the data order
    weights: str | None = None  # a safetensors file to start from
    resume: bool = False  # continue the run directory's last checkpoint
    plot: bool = False  # RUN_DIR/curves.png
    progress: bool = True  # the progress bar
    distributed: int = 1  # processes (torch, launched as torchrun does) or replicas (keras)
    multi_worker: bool = False  # keras: `distributed` worker processes, not replicas


class Interrupted(Exception):
    """Ctrl-C stopped the run after a checkpoint was written."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


@needs_extras
def train(
    program: Program,
    spec: TrainSpec,
    backend: str,
    run_dir: str,
    data: Batch | Iterable[Batch],
    val: Batch | Iterable[Batch] | None = None,
    options: Options = Options(),
) -> dict:
    """Train (module doc); the summary written to `RUN_DIR/metrics.json`. Bad data, a bad
    checkpoint or a non-finite loss: DualnetError, nothing written (a non-finite loss: the
    last good checkpoint kept)."""
    named = roles(program, spec)
    wanted = expected(named)
    names = [w.name for w in wanted]
    if isinstance(data, dict):
        check_arrays(data, wanted, "the training data")
    if isinstance(val, dict):
        check_arrays(val, wanted, "the validation data")
    if options.plot:
        require_plotting()
    found = _last_checkpoint(run_dir, options.resume)
    engine = _engine(program, named, spec, backend, options)
    progress = {"epoch": 0, "batch": 0, "step": 0, "history": [], "batch_loss": []}
    if found is not None:
        progress.update(checkpoint.restore(found, engine, spec))

    def epoch_batches(epoch: int, skip: int):
        if isinstance(data, dict):
            return shuffled_batches(data, names, options.batch_size, options.seed, epoch, skip)
        return (b for i, b in enumerate(checked(data, wanted)) if i >= skip)

    n = len(data[names[0]]) if isinstance(data, dict) else None
    batches = None if n is None else -(-n // options.batch_size)
    lead = engine.rank == 0  # the process that reports, validates and writes
    stop = _CtrlC()
    reporter = Reporter(run_dir, backend, options.progress) if lead else Silent()
    with reporter, stop, contextlib.closing(engine):
        for epoch in range(progress["epoch"], options.epochs):
            reporter.start_epoch(epoch, options.epochs, batches)
            sums, examples, began = {}, 0, time.perf_counter()
            for batch in epoch_batches(epoch, progress["batch"]):
                logs = engine.train(batch)
                size = len(batch[names[0]])
                if not math.isfinite(logs["loss"]):
                    kept = checkpoint.last(run_dir)
                    raise error(
                        "E-VALUE",
                        f"the loss is {logs['loss']} at epoch {epoch + 1}, batch "
                        f"{progress['batch'] + 1}: training stopped",
                        outside("training"),
                        notes=[
                            f"the last good checkpoint is {kept}"
                            if kept
                            else "no checkpoint was written",
                            "a lower learning rate or gradient clipping may help",
                        ],
                    )
                examples += size
                for key, value in logs.items():
                    sums[key] = sums.get(key, 0.0) + value * size
                progress["batch"] += 1
                progress["step"] += 1
                progress["batch_loss"].append(logs["loss"])
                speed = examples / max(time.perf_counter() - began, 1e-9)
                reporter.batch({k: v / examples for k, v in sums.items()}, speed)
                if engine.any_rank(stop.requested):
                    saved = checkpoint.save(run_dir, engine, spec, progress) if lead else None
                    raise Interrupted(str(saved))
            record = {
                "epoch": epoch + 1,
                "train": {k: v / max(examples, 1) for k, v in sums.items()},
                "lr": engine.lr,
                "examples_per_s": examples / max(time.perf_counter() - began, 1e-9),
            }
            if val is not None and lead:
                record["val"] = _evaluate(engine, val, wanted, names, options.batch_size)
            progress["history"].append(record)
            progress.update(epoch=epoch + 1, batch=0)
            if lead:
                checkpoint.save(run_dir, engine, spec, progress)
            reporter.epoch(record)
    summary = {
        "model": spec.model,
        "backend": backend,
        "where": engine.where,
        "epochs": progress["history"],
        "batch_loss": progress["batch_loss"],
        "notes": reporter.notes,
    }
    if not lead:
        return summary
    write_metrics(run_dir, summary)
    if options.plot:
        summary["plot"] = str(plot(run_dir, summary))
    return summary


def _last_checkpoint(run_dir: str, resume: bool):
    """The run directory's last checkpoint when resuming (E-INPUT without one), None for a
    new run (E-INPUT when the directory holds one)."""
    found = checkpoint.last(run_dir)
    if found is None and resume:
        raise error("E-INPUT", f"{run_dir} holds no checkpoint to resume", option("--resume"))
    if found is not None and not resume:
        raise error(
            "E-INPUT",
            f"{run_dir} holds a run already (its last checkpoint: {found.name})",
            option("-o"),
            notes=["continue it with --resume, or train into another directory"],
        )
    return found


def _engine(program: Program, named, spec: TrainSpec, backend: str, options: Options):
    """The framework's engine, from `options.weights` or the seeded initialisation."""
    from dualnet.training.engines import ENGINES, KerasWorkerEngine

    if backend not in ENGINES:
        raise error(
            "E-BACKEND",
            f"dualnet train runs {' or '.join(ENGINES)}, not `{backend}`",
            option("--backend"),
        )
    n = options.distributed
    engine = KerasWorkerEngine if options.multi_worker else ENGINES[backend]
    if options.weights is not None:
        return engine(program, named, spec, options.weights, n)
    with temporary_directory() as tmp:
        start = os.path.join(tmp, "init.safetensors")
        write_state(initial_weights(named.model, None, options.seed, program.max_params), start)
        return engine(program, named, spec, start, n)


def _evaluate(engine, val, wanted, names, batch_size: int) -> dict[str, float]:
    """The validation loss and metrics, averaged over the examples."""
    batches = in_order(val, names, batch_size) if isinstance(val, dict) else checked(val, wanted)
    sums, examples = {}, 0
    for batch in batches:
        size = len(batch[names[0]])
        for key, value in engine.evaluate(batch).items():
            sums[key] = sums.get(key, 0.0) + value * size
        examples += size
    return {k: v / max(examples, 1) for k, v in sums.items()}


class _CtrlC:
    """While active, the first Ctrl-C only asks the loop to stop after the current batch
    (and write a checkpoint); a second one interrupts at once."""

    requested = False

    def __enter__(self):
        self.previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        try:
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: Ctrl-C stays Python's
            self.previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

"""`dualnet train`'s checkpoints: `RUN_DIR/checkpoints/step-<N>/` holds `weights.safetensors`
(the model in dualnet's names, as `dualnet init` writes and every command reads),
`optimizer.safetensors` (the optimiser's state tensors: PyTorch's as `<parameter>.<key>`,
Keras's by variable name, `fc_kernel_exp_avg`) and `state.json` (backend, optimiser, epoch,
batch, history, the optimiser's other state). A checkpoint directory is written whole under
a temporary name and renamed; then `checkpoints/last.json` is replaced atomically to name
it, and older ones are removed: an interrupted write leaves the previous checkpoint valid."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from dualnet.diagnostics import error, whole_file
from dualnet.io.files import atomic_write, make_directory, temporary_directory
from dualnet.io.weights import read_arrays, write_state
from dualnet.training.spec import TrainSpec

LAST = "last.json"


def save(run_dir: str, engine, spec: TrainSpec, progress: dict) -> Path:
    """Write a checkpoint of `engine` (its model and optimiser) with the loop's `progress`
    (epoch, batch, step, history) and point `last.json` at it."""
    root = Path(run_dir) / "checkpoints"
    make_directory(root)
    name = f"step-{progress['step']:08d}"
    tensors, rest = engine.optimizer_state()
    state = {
        "backend": engine.name,
        "model": spec.model,
        "optimizer": asdict(spec.optimizer),
        "accumulate": spec.accumulate,
        **progress,
        "optimizer_state": rest,
    }
    final = root / name
    with temporary_directory(root) as tmp:
        engine.save_weights(os.path.join(tmp, "weights.safetensors"))
        write_state(tensors, os.path.join(tmp, "optimizer.safetensors"))
        Path(tmp, "state.json").write_text(json.dumps(state, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    atomic_write(root / LAST, json.dumps({"checkpoint": name}).encode())
    for old in root.iterdir():
        if old.is_dir() and old.name.startswith("step-") and old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def last(run_dir: str) -> Path | None:
    """The directory of the run's last checkpoint, or None."""
    pointer = Path(run_dir) / "checkpoints" / LAST
    if not pointer.is_file():
        return None
    return pointer.parent / json.loads(pointer.read_text())["checkpoint"]


def restore(directory: Path, engine, spec: TrainSpec) -> dict:
    """Load a checkpoint into `engine` and return its progress; E-WEIGHTS naming the tensor
    when it is another model's (the weights) or another optimiser's (its state)."""
    state = json.loads((directory / "state.json").read_text())
    engine.load_weights(str(directory / "weights.safetensors"))
    file = directory / "optimizer.safetensors"
    tensors = read_arrays(str(file))
    first = next(iter(sorted(tensors)), "(none)")
    ours = asdict(spec.optimizer)
    theirs = state["optimizer"]
    if state["backend"] != engine.name or theirs != _jsonable(ours):
        changed = [k for k in ours if _jsonable(ours[k]) != theirs.get(k)]
        raise error(
            "E-WEIGHTS",
            f"`{first}` in {file} is the state of another optimiser "
            f"({state['backend']} {theirs['name']}; this run: {engine.name} {spec.optimizer.name})",
            whole_file(file),
            notes=[f"differing: {', '.join(changed)}"] if changed else [],
        )
    shapes = engine.expected_state()
    for key, value in tensors.items():
        owner = key if key in shapes else key.rpartition(".")[0]
        # safetensors keeps a 0-d tensor (a step count) as shape [1]
        scalar = value.size == 1 and (owner != key or math.prod(shapes.get(owner, (0,))) == 1)
        if owner not in shapes or (value.shape != shapes[owner] and not scalar):
            raise error(
                "E-WEIGHTS",
                f"`{key}` in {file} ({value.dtype}{list(value.shape)}) is the state of no "
                "parameter of this model",
                whole_file(file),
            )
    engine.load_optimizer_state(tensors, state["optimizer_state"])
    return {k: state[k] for k in ("epoch", "batch", "step", "history", "batch_loss")}


def _jsonable(value):
    return json.loads(json.dumps(value))

"""The generated training files: their text (`training_source`) and writing them beside the
model's file (`write_training`), for either framework."""

from __future__ import annotations

from pathlib import Path

from dualnet.compiler import Program
from dualnet.diagnostics import error, option
from dualnet.io.files import atomic_write, make_directory
from dualnet.training.codegen import TARGETS, roles
from dualnet.training.keras_code import keras_training
from dualnet.training.spec import TrainSpec
from dualnet.training.torch_code import torch_training


def write_training(program: Program, spec: TrainSpec, target: str, out_dir: str) -> Path:
    """Write the training file `out_dir/<file stem>_<target>_train.py` atomically (the model's
    own file is `dualnet compile`'s): its text is `training_source`'s."""
    text = training_source(program, spec, target)
    summary = program.check(spec.model)
    out = Path(out_dir) / f"{Path(summary.file).stem}_{target}_train.py"
    make_directory(out.parent)
    atomic_write(out, text.encode("utf-8"), protect=summary.files)
    return out


def training_source(program: Program, spec: TrainSpec, target: str) -> str:
    """The generated training file of `spec` for `target` ("torch" or "keras")."""
    if target not in TARGETS:
        raise error(
            "E-BACKEND",
            f"training code is generated for {' and '.join(TARGETS)}, not `{target}`",
            option("--target"),
        )
    write = torch_training if target == "torch" else keras_training
    text = write(roles(program, spec), spec)
    compile(text, "<generated training>", "exec")
    return text

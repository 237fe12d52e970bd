"""`dualnet run`: one model, one backend, real inputs (`.npy` files) → outputs (`.npz`).

Each backend object (`dualnet.backends`) runs its model and imports its framework only then.
ONNX runs on ONNX Runtime with the CUDA provider when it is available, else on the CPU;
PyTorch and Keras run the generated model in eval mode (for `parity --train`: PyTorch in
train mode, Keras through its own training step, the one `fit()` takes). Weights come from
a safetensors file or a seeded initialisation, the same for every backend, so runs can be
compared.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualnet.backends import backend
from dualnet.backends.initial import initial_weights
from dualnet.compiler import Program
from dualnet.diagnostics import Diagnostic, DualnetError, error, option, outside
from dualnet.extras import needs_extras
from dualnet.frontend import Summary
from dualnet.io.files import atomic_write, temporary_directory
from dualnet.io.npy import check_array, read_npy
from dualnet.io.weights import write_state
from dualnet.ir.sizes import require_positive_sizes
from dualnet.memory import require_allocatable


def read_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    """`name=file.npy` items as arrays (E-IO / E-INPUT on bad input)."""
    out = {}
    for item in specs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise error("E-INPUT", f"`{item}` is not NAME=FILE.npy", option("--input"))
        if name in out:
            raise error("E-INPUT", f"the input `{name}` is given twice", option("--input"))
        out[name] = read_npy(path)
    return out


def ordered_inputs(summary: Summary, given: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The arrays in signature order, checked against the signature: every input given,
    nothing else, dtypes and fixed sizes as declared, a symbolic size the same everywhere."""
    names = [v.name for v in summary.graph.inputs]
    missing, extra = [n for n in names if n not in given], sorted(set(given) - set(names))
    if missing or extra:
        raise error(
            "E-INPUT",
            f"the model's inputs are {', '.join(names)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(extra)}" if extra else ""),
            option("--input"),
        )
    bound: dict[str, int] = {}
    for value in summary.graph.inputs:
        check_array(f"the input `{value.name}`", given[value.name], value.type, value.span, bound)
    require_positive_sizes(summary.graph, bound, "the --input arrays")
    return [given[n] for n in names]


@dataclass
class Probe:
    """What a run does and records besides its outputs, for `dualnet parity`: training mode
    (batch statistics; Dropout off, its random masks differ per framework), each layer's
    outputs (`layers[path]`: one list of arrays per call), and after the run every tensor of
    the model's state in state_dict names (`state`: running statistics updated in training)."""

    train: bool = False
    layers: dict[str, list] | None = None
    state: dict[str, np.ndarray] | None = None


@needs_extras
def run(
    program: Program,
    model: str | None,
    backend_name: str,
    given: dict[str, np.ndarray],
    weights: str | None = None,
    seed: int = 0,
    probe: Probe | None = None,
    vary: bool = False,
) -> tuple[list[np.ndarray], str]:
    """The outputs, and a line saying where the model ran; without `weights`, from the
    seeded initialisation (`vary`: its constant tensors redrawn, `initial.varied`)."""
    chosen = backend(backend_name, option("--backend"))
    summary = program.check(model)
    inputs = ordered_inputs(summary, given)
    probe = probe or Probe()
    if probe.train and chosen.no_training:
        raise error("E-BACKEND", chosen.no_training, option("--train"))
    require_allocatable(summary.instance, program.max_params)  # before any framework
    chosen.require()
    if weights is not None:
        return chosen.run(program, model, summary, inputs, weights, probe)
    with temporary_directory() as tmp:  # the same seeded tensors in every backend
        file = os.path.join(tmp, "init.safetensors")
        write_state(initial_weights(summary, None, seed, program.max_params, vary), file)
        try:
            return chosen.run(program, model, summary, inputs, file, probe)
        except DualnetError as exc:
            raise backend_bug(exc, backend_name, file, "seeded weights") from None


def backend_bug(exc: DualnetError, backend_name: str, file: str, what: str) -> DualnetError:
    """An E-WEIGHTS error about a weight file dualnet wrote itself (`file`, described as
    `what`) is the backend's failure (E-BACKEND naming it), not the user's weight file's;
    other errors unchanged."""
    if not any(d.code == "E-WEIGHTS" for d in exc.diagnostics):
        return exc
    return DualnetError(
        [
            Diagnostic(
                "E-BACKEND",
                f"the {backend_name} backend cannot take dualnet's own {what}: "
                + d.message.replace(file, f"the {what}"),
                outside(f"the {backend_name} backend"),
                notes=(
                    *(n.replace(file, f"the {what}") for n in d.notes),
                    "dualnet wrote these weights itself: this is a bug in the backend, "
                    "please report it",
                ),
            )
            if d.code == "E-WEIGHTS"
            else d
            for d in exc.diagnostics
        ]
    )


def write_outputs(outputs: list[np.ndarray], path: str | Path, protect, names: list[str]) -> None:
    """The arrays in an .npz file by `names` (the graph's `output_labels`), written
    atomically, never over a file of `protect` (the run's inputs)."""
    buffer = io.BytesIO()
    np.savez(buffer, **dict(zip(names, outputs, strict=True)))
    atomic_write(path, buffer.getvalue(), protect)

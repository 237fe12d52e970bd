"""`dualnet run`: one model, one backend, real inputs (`.npy` files) → outputs (`.npz`).

The backend is imported only here, when it runs. ONNX runs on ONNX Runtime with the CUDA
provider when it is available, else on the CPU; PyTorch and Keras run the generated model
in eval mode (for `parity --train`: PyTorch in train mode, Keras through its own training
step, the one `fit()` takes). Weights come from a safetensors file or a seeded
initialisation, the same for every backend, so runs can be compared.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualnet.api import Summary
from dualnet.compiler import Program, initial_weights
from dualnet.diagnostics import error, option, whole_file
from dualnet.extras import needs_extras
from dualnet.files import atomic_write, io_error, open_regular, temporary_directory
from dualnet.ir.dims import Dim
from dualnet.ir.sizes import require_positive_sizes
from dualnet.weights import write_state

BACKENDS = ("onnx", "torch", "keras")


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


def read_npy(path: str) -> np.ndarray:
    """One `.npy` array: a regular file whose header is read and checked against the file's
    size before the data is read; never a pickle (E-IO / E-INPUT)."""
    from numpy.lib import format as npy

    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    with open_regular(path) as f:
        try:
            if f.read(4) == b"PK\x03\x04":
                raise error("E-INPUT", f"{path} is an .npz archive, not one .npy array",
                            whole_file(path),
                            notes=["save each input as its own .npy file (numpy.save)"])
            f.seek(0)
            version = npy.read_magic(f)
            if version not in readers:
                raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
            shape, _, dtype = readers[version](f)
            if dtype.hasobject:
                raise ValueError("it holds Python objects, which dualnet never unpickles")
            need = math.prod(shape) * dtype.itemsize
            have = os.fstat(f.fileno()).st_size - f.tell()
            if have != need:
                raise ValueError(f"its header promises {dtype}{list(shape)} ({need:,} bytes), "
                                 f"the file holds {have:,} bytes of data")
            f.seek(0)
            return npy.read_array(f, allow_pickle=False)
        except (ValueError, EOFError) as exc:
            raise error("E-INPUT", f"{path} is not a .npy array file: {exc or 'empty'}",
                        whole_file(path)) from None
        except OSError as exc:
            raise io_error("read", path, exc) from None


def ordered_inputs(summary: Summary, given: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The arrays in signature order, checked against the signature: every input given,
    nothing else, dtypes and fixed sizes as declared, a symbolic size the same everywhere."""
    names = [v.name for v in summary.graph.inputs]
    missing, extra = [n for n in names if n not in given], sorted(set(given) - set(names))
    if missing or extra:
        raise error("E-INPUT", f"the model's inputs are {', '.join(names)}"
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + (f"; unknown {', '.join(extra)}" if extra else ""), option("--input"))
    bound: dict[str, int] = {}
    for value in summary.graph.inputs:
        array, t = given[value.name], value.type
        if array.dtype != np.dtype(t.dtype.numpy) or array.ndim != len(t.shape):
            raise error("E-INPUT", f"the input `{value.name}` must be {t}; the file holds "
                        f"{array.dtype}{list(array.shape)}", value.span)
        for axis, (d, n) in enumerate(zip(t.shape, array.shape, strict=True)):
            if isinstance(d, Dim) and d.symbol is not None:
                d = bound.setdefault(d.symbol, n)
            if isinstance(d, int) and d != n:
                raise error("E-INPUT", f"axis {axis} of the input `{value.name}` must be {d} "
                            f"(it is declared {t}); the file has {n}", value.span)
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
def run(program: Program, model: str | None, backend: str, given: dict[str, np.ndarray],
        weights: str | None = None, seed: int = 0,
        probe: Probe | None = None) -> tuple[list[np.ndarray], str]:
    """The outputs, and a line saying where the model ran."""
    summary = program.check(model)
    inputs = ordered_inputs(summary, given)
    probe = probe or Probe()
    if backend == "onnx":
        if probe.train:
            raise error("E-BACKEND", "ONNX Runtime runs inference graphs only: no training "
                        "mode", option("--train"))
        return _run_onnx(summary, weights, seed, inputs, probe, program.max_params)
    with temporary_directory() as tmp:
        file = weights
        if file is None:  # the same seeded tensors as the ONNX model's
            file = os.path.join(tmp, "init.safetensors")
            write_state(initial_weights(summary, None, seed, program.max_params), file)
        if backend == "torch":
            return _run_torch(program.torch(model), file, inputs, probe)
        layouts = None
        if probe.layers is not None:
            from dualnet.backends.keras.emit import output_layouts

            layouts = output_layouts(summary.instance, summary.file)
        return _run_keras(program.keras(model), file, inputs, probe, layouts)


def _run_onnx(summary: Summary, weights, seed, inputs, probe: Probe, max_params):
    import onnxruntime as ort

    from dualnet.compiler import onnx_emitted

    emitted = onnx_emitted(summary, weights, seed, max_params=max_params)
    model, extra = emitted.model, []
    if probe.layers is not None:
        from dualnet.backends.onnx.probe import with_outputs

        model, extra = with_outputs(model, [n for _, names in emitted.calls for n in names])
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else \
        ["CPUExecutionProvider"]
    session = ort.InferenceSession(model.SerializeToString(), providers=providers)
    feed = {v.name: x for v, x in zip(summary.graph.inputs, inputs, strict=True)}
    used = session.get_providers()[0]
    results = session.run(None, feed)
    count = len(results) - len(extra)
    outputs, probed = results[:count], iter(results[count:])
    for path, names in emitted.calls if extra else ():
        probe.layers.setdefault(path, []).append([next(probed) for _ in names])
    return outputs, f"ONNX Runtime {ort.__version__} ({used})"


def _run_torch(module, weights: str, inputs, probe: Probe) -> tuple[list[np.ndarray], str]:
    import torch

    from dualnet.backends.torch.probe import recording
    from dualnet.weights import load_weights

    load_weights(module, weights)
    module.train(probe.train)
    for sub in module.modules() if probe.train else ():
        if isinstance(sub, torch.nn.Dropout):
            sub.p = 0.0
    with torch.no_grad(), recording(module, probe.layers):
        out = module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
    if probe.state is not None:
        probe.state.update({k: v.numpy() for k, v in module.state_dict().items()})
    out = out if isinstance(out, tuple) else (out,)
    return [o.numpy() for o in out], f"PyTorch {torch.__version__} (CPU)"


def _run_keras(model, weights: str, inputs, probe: Probe,
               layouts: dict | None) -> tuple[list[np.ndarray], str]:
    import keras

    from dualnet.backends.keras.probe import recording, train_step
    from dualnet.backends.keras.state import layers_by_path, torch_named
    from dualnet.weights import load_weights

    load_weights(model, weights)
    for _, layer in layers_by_path(model) if probe.train else ():
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    if probe.train:  # the way fit() calls the model
        out = train_step(model, inputs)
    else:
        with recording(model, probe.layers, layouts):
            out = model(*inputs, training=False)
    if probe.state is not None:
        probe.state.update(torch_named(model, lambda variable: variable.numpy()))
    out = out if isinstance(out, tuple | list) else (out,)
    return [keras.ops.convert_to_numpy(o) for o in out], \
        f"Keras {keras.__version__} ({keras.backend.backend()})"


def write_outputs(outputs: list[np.ndarray], path: str | Path, protect=()) -> None:
    """`output` (or `output_0`, `output_1`, ...) arrays in an .npz file, written atomically,
    never over a file of `protect` (the run's inputs)."""
    names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    buffer = io.BytesIO()
    np.savez(buffer, **dict(zip(names, outputs, strict=True)))
    atomic_write(path, buffer.getvalue(), protect)

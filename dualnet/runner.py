"""`dualnet run`: one model, one backend, real inputs (`.npy` files) → outputs (`.npz`).

The backend is imported only here, when it runs. ONNX runs on ONNX Runtime with the CUDA
provider when it is available, else on the CPU; PyTorch and Keras run the generated model
in eval mode. Weights come from a safetensors file or a seeded initialisation, the same for
every backend, so runs can be compared.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

from dualnet.api import Summary
from dualnet.compiler import Program, initial_weights, onnx_model
from dualnet.diagnostics import error
from dualnet.ir.dims import Dim
from dualnet.weights import atomic_write, write_state

BACKENDS = ("onnx", "torch", "keras")


def read_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    """`name=file.npy` items as arrays (E-IO / E-INPUT on bad input)."""
    out = {}
    for item in specs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise error("E-INPUT", f"`{item}` is not NAME=FILE.npy", None)
        if name in out:
            raise error("E-INPUT", f"the input `{name}` is given twice", None)
        try:
            out[name] = np.load(path, allow_pickle=False)
        except OSError as exc:
            raise error("E-IO", f"cannot read {path}: {exc.strerror or exc}", None) from None
        except ValueError as exc:
            raise error("E-INPUT", f"{path} is not a .npy array file ({exc})", None) from None
    return out


def ordered_inputs(summary: Summary, given: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The arrays in signature order, checked against the signature: every input given,
    nothing else, dtypes and fixed sizes as declared, a symbolic size the same everywhere."""
    names = [v.name for v in summary.graph.inputs]
    missing, extra = [n for n in names if n not in given], sorted(set(given) - set(names))
    if missing or extra:
        raise error("E-INPUT", f"the model's inputs are {', '.join(names)}"
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + (f"; unknown {', '.join(extra)}" if extra else ""), None)
    bound: dict[str, int] = {}
    for value in summary.graph.inputs:
        array, t = given[value.name], value.type
        if array.dtype != np.dtype(t.dtype.numpy) or array.ndim != len(t.shape):
            raise error("E-INPUT", f"the input `{value.name}` must be {t}; the file holds "
                        f"{array.dtype}{list(array.shape)}", None)
        for axis, (d, n) in enumerate(zip(t.shape, array.shape, strict=True)):
            if isinstance(d, Dim) and d.symbol is not None:
                d = bound.setdefault(d.symbol, n)
            if isinstance(d, int) and d != n:
                raise error("E-INPUT", f"axis {axis} of the input `{value.name}` must be {d} "
                            f"(it is declared {t}); the file has {n}", None)
    return [given[n] for n in names]


def run(program: Program, model: str | None, backend: str, given: dict[str, np.ndarray],
        weights: str | None = None, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """The outputs, and a line saying where the model ran."""
    summary = program.check(model)
    inputs = ordered_inputs(summary, given)
    if backend == "onnx":
        return _run_onnx(onnx_model(summary, weights, seed), summary, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        file = weights
        if file is None:  # the same seeded tensors as the ONNX model's
            file = os.path.join(tmp, "init.safetensors")
            write_state(initial_weights(summary, None, seed), file)
        if backend == "torch":
            return _run_torch(program.torch(model), file, inputs)
        return _run_keras(program.keras(model), file, inputs)


def _run_onnx(model, summary: Summary, inputs) -> tuple[list[np.ndarray], str]:
    import onnxruntime as ort

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else \
        ["CPUExecutionProvider"]
    session = ort.InferenceSession(model.SerializeToString(), providers=providers)
    feed = {v.name: x for v, x in zip(summary.graph.inputs, inputs, strict=True)}
    used = session.get_providers()[0]
    return session.run(None, feed), f"ONNX Runtime {ort.__version__} ({used})"


def _run_torch(module, weights: str, inputs) -> tuple[list[np.ndarray], str]:
    import torch

    from dualnet.weights import load_weights

    load_weights(module, weights)
    with torch.no_grad():
        out = module.eval()(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
    out = out if isinstance(out, tuple) else (out,)
    return [o.numpy() for o in out], f"PyTorch {torch.__version__} (CPU)"


def _run_keras(model, weights: str, inputs) -> tuple[list[np.ndarray], str]:
    import keras

    from dualnet.weights import load_weights

    load_weights(model, weights)
    out = model(*inputs, training=False)
    out = out if isinstance(out, tuple | list) else (out,)
    return [keras.ops.convert_to_numpy(o) for o in out], \
        f"Keras {keras.__version__} ({keras.backend.backend()})"


def write_outputs(outputs: list[np.ndarray], path: str | Path) -> None:
    """`output` (or `output_0`, `output_1`, ...) arrays in an .npz file, written atomically."""
    names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    buffer = io.BytesIO()
    np.savez(buffer, **dict(zip(names, outputs, strict=True)))
    atomic_write(path, buffer.getvalue())

"""dualnet's public Python API, in one module (`dualnet` re-exports it):

- `check_file(path) -> Summary`: parse, check and infer every shape; no framework imported.
- `load(path) -> Program`: a .dnet file whose models build as PyTorch modules, Keras models
  or ONNX graphs (`Program.torch`, `.keras`, `.onnx`, `.source`).
- `save_weights(obj, path)` / `load_weights(obj, path)`: a built model's tensors to and from
  a safetensors file in dualnet's (PyTorch's) names and layouts, whichever backend built it.
  Loading is strict: a missing, extra, mis-shaped or mis-typed tensor is an E-WEIGHTS error
  naming it, and the object is left unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from dualnet.backends import BACKENDS
from dualnet.compiler import Program, load
from dualnet.diagnostics import error, outside
from dualnet.extras import needs_extras
from dualnet.frontend import Summary, check_file

PathLike = str | os.PathLike

__all__ = ["Program", "Summary", "check_file", "load", "load_weights", "save_weights"]

_SUPPORTED = "a torch.nn.Module or a Keras layer or model (keras.layers.Layer)"


def _backend(obj: object, verb: str, index: int) -> Callable:
    for b in BACKENDS.values():
        if b.owns(obj):
            return b.weights_io()[index]
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    raise error(
        "E-WEIGHTS",
        f"cannot {verb} weights of an object of type {kind}",
        outside(f"the object given to dualnet.{verb}_weights"),
        notes=(f"dualnet {verb}s the weights of {_SUPPORTED}",),
    )


@needs_extras
def save_weights(obj: object, path: PathLike) -> None:
    """Write the parameters and buffers of `obj` to the safetensors file `path` (atomically)."""
    _backend(obj, "save", 0)(obj, path)


@needs_extras
def load_weights(obj: object, path: PathLike) -> None:
    """Copy the tensors of the safetensors file `path` into `obj`. Strict: every tensor of
    the model must be in the file with the same shape and dtype, and nothing else may be;
    otherwise a DualnetError (E-WEIGHTS) names the tensors and `obj` is left unchanged."""
    _backend(obj, "load", 1)(obj, path)

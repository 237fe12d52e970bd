"""Weight files: one framework-agnostic front door for saving and loading safetensors files.

A dualnet weight file is a `.safetensors` file whose tensor names are the model's state_dict
names (`conv1.weight`, `layer2.0.downsample.1.running_var`, ...), the same in every backend.
Pickled checkpoints are never read or written.

- `save_weights(obj, path)` / `load_weights(obj, path)` dispatch on the type of `obj`: a
  `torch.nn.Module` (`dualnet.backends.torch.weights`) or a Keras layer or model
  (`dualnet.backends.keras.state`). Loading is strict: a missing, extra, mis-shaped or
  mis-typed tensor is an E-WEIGHTS error naming it, and the object is left unchanged.
- `write_state(state, path)` writes a `{name: tensor}` mapping (what `dualnet init` draws).
- For backends: `read_tensors(path)` reads a file's tensors without a framework (BatchNorm's
  `num_batches_tracked` entries, not part of a dualnet model, dropped; `ignored` tells them),
  `read_safetensors(path, decode)` with a framework's reader, `mismatches` and
  `mismatch_error` word the E-WEIGHTS error.

Writes are atomic: the bytes go to a temporary file in the target's directory, which then
replaces the target, so a failed write leaves neither a partial file nor a damaged old one.

This module imports no ML framework: a backend is imported only when an object of its type
is handed in (and such an object proves the framework is already imported).
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from dualnet.diagnostics import DualnetError, error

PathLike = str | os.PathLike
IGNORED = "num_batches_tracked"
SHOWN = 4  # problems listed as notes after the first


def state_specs(instance) -> Iterator[tuple[str, Any]]:
    """`(state_dict name, ParamSpec)` for every parameter and buffer of a `ModelInstance`:
    layers depth first in declaration order, each layer's parameters, then its buffers."""
    for layer in instance.layers():
        prefix = f"{layer.path}." if layer.path else ""
        for name, spec in layer.params.items():
            yield prefix + name, spec
        for name, spec in layer.buffers.items():
            yield prefix + name, spec


# ---------------------------------------------------------------- dispatch


def _is_torch_module(obj: object) -> bool:
    torch = sys.modules.get("torch")  # not imported: obj cannot be a torch module
    return torch is not None and isinstance(obj, torch.nn.Module)


def _is_keras_layer(obj: object) -> bool:
    keras = sys.modules.get("keras")  # not imported: obj cannot be a Keras layer
    return keras is not None and isinstance(obj, keras.layers.Layer)


# (predicate, backend module, save function, load function): the extension point.
_BACKENDS: list[tuple[Callable[[object], bool], str, str, str]] = [
    (_is_torch_module, "dualnet.backends.torch.weights", "save_torch", "load_torch"),
    (_is_keras_layer, "dualnet.backends.keras.state", "save_keras", "load_keras"),
]
_SUPPORTED = "a torch.nn.Module or a Keras layer or model (keras.layers.Layer)"


def _backend(obj: object, verb: str, index: int) -> Callable:
    for accepts, module, save, load in _BACKENDS:
        if accepts(obj):
            return getattr(importlib.import_module(module), (save, load)[index])
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    raise error("E-WEIGHTS", f"cannot {verb} weights of an object of type {kind}", None,
                notes=(f"dualnet {verb}s the weights of {_SUPPORTED}",))


def save_weights(obj: object, path: PathLike) -> None:
    """Write the parameters and buffers of `obj` to the safetensors file `path` (atomically)."""
    _backend(obj, "save", 0)(obj, path)


def load_weights(obj: object, path: PathLike) -> None:
    """Copy the tensors of the safetensors file `path` into `obj`. Strict: every tensor of
    the model must be in the file with the same shape and dtype, and nothing else may be;
    otherwise a DualnetError (E-WEIGHTS) names the tensors and `obj` is left unchanged."""
    _backend(obj, "load", 1)(obj, path)


def write_state(state: Mapping[str, Any], path: PathLike) -> None:
    """Write `{name: tensor}` (torch tensors or NumPy arrays) to a safetensors file."""
    if all(type(v).__module__ == "numpy" for v in state.values()):
        import numpy as np
        from safetensors.numpy import save

        atomic_write(path, save({k: np.ascontiguousarray(v) for k, v in state.items()}))
        return
    from dualnet.backends.torch.weights import serialize

    atomic_write(path, serialize(state))


# ---------------------------------------------------------------- reading and checking


class Stored(NamedTuple):
    """One tensor of a safetensors file: dtype (`f32`, `bf16`, `i64`, ...), shape, raw bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytearray


def ignored(name: str) -> bool:
    """BatchNorm's `num_batches_tracked` counter, which is no part of a dualnet model."""
    return name == IGNORED or name.endswith("." + IGNORED)


def read_tensors(path: PathLike) -> dict[str, Stored]:
    """The tensors of a safetensors file, without `num_batches_tracked` entries (E-IO if it
    cannot be read, E-WEIGHTS if it is not a safetensors file). Imports no ML framework."""
    from safetensors import deserialize

    return {name: Stored(t["dtype"].lower(), tuple(t["shape"]), t["data"])
            for name, t in read_safetensors(path, deserialize) if not ignored(name)}


def read_safetensors(path: PathLike, decode: Callable[[bytes], Any]) -> Any:
    """`decode` (a safetensors reader: `deserialize`, a framework's `load`) of the bytes of
    `path`: E-IO if they cannot be read, E-WEIGHTS if they are not a safetensors file."""
    from safetensors import SafetensorError

    data = read_bytes(path)
    try:
        return decode(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise not_safetensors(path, exc) from None


def not_safetensors(path: PathLike, exc: Exception) -> DualnetError:
    return error("E-WEIGHTS", f"{os.fspath(path)} is not a valid safetensors file: {exc}", None,
                 notes=("dualnet reads only .safetensors files, never pickled checkpoints "
                        "(.pt, .pth, .bin)",))


def describe(dtype: str, shape: tuple) -> str:
    """`f32[6, 1, 5, 5]`; a size that is not known shows as `?`."""
    return f"{dtype}[{', '.join('?' if d is None else str(d) for d in shape)}]"


TensorInfo = tuple[str, tuple]  # (dtype, shape), both as tuples


def mismatches(expected: Mapping[str, TensorInfo], found: Mapping[str, TensorInfo],
               file: str) -> list[str]:
    """One sentence per tensor that does not fit: the model's tensors in order (missing,
    mis-shaped, mis-typed), then the file's extra tensors in name order."""
    out = []
    for name, want in expected.items():
        got = found.get(name)
        if got is None:
            out.append(f"`{name}` ({describe(*want)}) is missing from {file}")
        elif got != want:
            out.append(f"`{name}` in {file} is {describe(*got)}; the model expects "
                       f"{describe(*want)}")
    for name in sorted(set(found) - set(expected)):
        out.append(f"{file} has a tensor `{name}` ({describe(*found[name])}) that the model "
                   "does not have")
    return out


def mismatch_error(problems: list[str]) -> DualnetError:
    """E-WEIGHTS with the first problem as message and up to SHOWN more as notes."""
    first, *rest = problems
    notes = rest[:SHOWN]
    if len(rest) > SHOWN:
        notes.append(f"and {len(rest) - SHOWN} more")
    return error("E-WEIGHTS", first, None, notes=notes)


# ---------------------------------------------------------------- files


def make_directory(path: PathLike) -> None:
    """Create an output directory (and its parents) if missing; E-IO when impossible."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise _io_error("create the directory", os.fspath(path), exc) from None


def atomic_write(path: PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and
    `os.replace`; on failure remove the temporary file and raise E-IO (the old file, if
    any, is untouched)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                                   suffix=".tmp")
    except OSError as exc:
        raise _io_error("write", path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, mode)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _io_error("write", path, exc) from None
        raise


def read_bytes(path: PathLike) -> bytes:
    """The content of `path`, or E-IO."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise _io_error("read", os.fspath(path), exc) from None


def _new_file_mode(path: str) -> int:
    """The permission bits for the written file: the old file's, or 0666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _io_error(verb: str, path: str, exc: OSError) -> DualnetError:
    if isinstance(exc, IsADirectoryError) or (verb == "read" and os.path.isdir(path)):
        reason = "it is a directory"
    else:
        reason = exc.strerror or str(exc)
    return error("E-IO", f"cannot {verb} {path}: {reason}", None)

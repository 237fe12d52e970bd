"""Weight files: reading, writing and checking safetensors files, without a framework.

A dualnet weight file is a `.safetensors` file whose tensor names are the model's state_dict
names (`conv1.weight`, `layer2.0.downsample.1.running_var`, ...), the same in every backend.
Pickled checkpoints are never read or written.

- `write_state(state, path)` writes a `{name: array}` mapping; `read_arrays(path)` reads one
  back (E-IO / E-WEIGHTS on bad input).
- For backends: `read_tensors(path)` reads a file's tensors without a framework (BatchNorm's
  `num_batches_tracked` entries, not part of a dualnet model, dropped; `ignored` tells them):
  the header first, checked against the file's size, then the data memory-mapped, so a
  loader compares names, shapes and dtypes before a tensor's bytes are read, and reads one
  tensor at a time. `mismatches` and `mismatch_error` word the E-WEIGHTS error.

Writes are atomic (`dualnet.io.files.atomic_write`): the bytes go to a temporary file in the
target's directory, which then replaces the target, so a failed write leaves neither a
partial file nor a damaged old one.

This module imports no ML framework. Saving and loading a framework's model
(`dualnet.save_weights` / `load_weights`) is each backend's (`Backend.weights_io`).
"""

from __future__ import annotations

import json
import math
import mmap
import os
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from dualnet.diagnostics import DualnetError, error, shorten, whole_file
from dualnet.extras import needs_extras
from dualnet.io.files import atomic_write, io_error, open_regular
from dualnet.ir.graph import state_key

PathLike = str | os.PathLike
IGNORED = "num_batches_tracked"
SHOWN = 4  # problems listed as notes after the first


def state_specs(instance) -> Iterator[tuple[str, Any]]:
    """`(state_dict name, ParamSpec)` for every parameter and buffer of a `ModelInstance`:
    layers depth first in declaration order, each layer's parameters, then its buffers."""
    for layer in instance.layers():
        for name, spec in layer.params.items():
            if name not in layer.tied:
                yield state_key(layer.path, name), spec
        for name, spec in layer.buffers.items():
            yield state_key(layer.path, name), spec


def tied_names(instance) -> dict[str, str]:
    """`{alias: owner}` state_dict names of the tied parameters below a `ModelInstance`
    (`lm_head.weight` → `transformer.wte.weight`)."""
    return {
        state_key(layer.path, name): owner
        for layer in instance.layers()
        for name, owner in layer.tied.items()
    }


@needs_extras
def write_state(state: Mapping[str, Any], path: PathLike, protect=()) -> None:
    """Write `{name: NumPy array}` to a safetensors file, never over a file of `protect` (see
    `dualnet.io.files.check_output`); PyTorch tensors: `backends.torch.weights.write_tensors`."""
    import numpy as np
    from safetensors.numpy import save

    atomic_write(path, save({k: np.ascontiguousarray(v) for k, v in state.items()}), protect)


# ---------------------------------------------------------------- reading and checking


class Stored(NamedTuple):
    """One tensor of a safetensors file: dtype (`f32`, `bf16`, `i64`, ...), shape, raw bytes
    (a read-only view of the memory-mapped file)."""

    dtype: str
    shape: tuple[int, ...]
    data: memoryview


def ignored(name: str) -> bool:
    """BatchNorm's `num_batches_tracked` counter, which is no part of a dualnet model."""
    return name == IGNORED or name.endswith("." + IGNORED)


# The safetensors element types and their sizes in bytes (lower-case names).
ITEM_SIZES = {
    "bool": 1,
    "u8": 1,
    "i8": 1,
    "f8_e5m2": 1,
    "f8_e4m3": 1,
    "i16": 2,
    "u16": 2,
    "f16": 2,
    "bf16": 2,
    "i32": 4,
    "u32": 4,
    "f32": 4,
    "i64": 8,
    "u64": 8,
    "f64": 8,
}
MAX_HEADER = 16 * 2**20  # bytes of JSON header (about 150,000 tensors)


def read_tensors(path: PathLike) -> dict[str, Stored]:
    """The tensors of a safetensors file, without `num_batches_tracked` entries. Only the
    header is read: it is checked against the file's size (every tensor inside the file, the
    tensors tiling the data exactly, as the format requires), and the data is memory-mapped,
    so each tensor's bytes are read when used. E-IO if the file cannot be read (or is not a
    regular file), E-WEIGHTS if it is not a safetensors file. Imports no ML framework."""
    name = os.fspath(path)
    with open_regular(path) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if length < 2 or length > MAX_HEADER or 8 + length > size:
                raise _not_safetensors(
                    name,
                    "the header length does not fit the file"
                    if length >= 0
                    else "the file is too short",
                )
            entries = _entries(f.read(length), size - 8 - length, name)
            data = memoryview(
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size > 8 + length else b""
            )
        except OSError as exc:
            raise io_error("read", name, exc) from None
    base = 8 + length
    return {
        key: Stored(dtype, shape, data[base + start : base + end])
        for key, (dtype, shape, start, end) in entries.items()
        if not ignored(key)
    }


def _entries(header: bytes, data_size: int, name: str) -> dict[str, tuple]:
    """`{tensor: (dtype, shape, start, end)}` of a safetensors header, checked."""
    try:
        table = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _not_safetensors(name, f"the header is not JSON ({type(exc).__name__})") from None
    if not isinstance(table, dict):
        raise _not_safetensors(name, "the header is not a JSON object")
    entries, spans = {}, []
    for key, entry in table.items():
        if key == "__metadata__":
            continue
        try:
            dtype = entry["dtype"].lower()
            shape = tuple(entry["shape"])
            start, end = entry["data_offsets"]
            ok = (
                dtype in ITEM_SIZES
                and all(type(d) is int and d >= 0 for d in shape)
                and type(start) is int
                and type(end) is int
                and 0 <= start <= end
                and end - start == math.prod(shape) * ITEM_SIZES[dtype]
            )
        except (TypeError, KeyError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise _not_safetensors(name, f"the entry of `{shorten(str(key))}` is malformed")
        entries[key] = (dtype, shape, start, end)
        spans.append((start, end))
    position = 0
    for start, end in sorted(spans):
        if start != position:
            raise _not_safetensors(name, "its tensors overlap or leave gaps")
        position = end
    if position != data_size:
        raise _not_safetensors(name, f"its tensors hold {position:,} bytes, the file {data_size:,}")
    return entries


def _not_safetensors(name: str, why: str) -> DualnetError:
    return error(
        "E-WEIGHTS",
        f"{name} is not a valid safetensors file: {why}",
        whole_file(name),
        notes=(
            "dualnet reads only .safetensors files, never pickled checkpoints (.pt, .pth, .bin)",
        ),
    )


def describe(dtype: str, shape: tuple) -> str:
    """`f32[6, 1, 5, 5]`; a size that is not known shows as `?`."""
    return f"{dtype}[{', '.join('?' if d is None else str(d) for d in shape)}]"


TensorInfo = tuple[str, tuple]  # (dtype, shape), both as tuples


def mismatches(
    expected: Mapping[str, TensorInfo], found: Mapping[str, TensorInfo], file: str
) -> list[str]:
    """One sentence per tensor that does not fit: the model's tensors in order (missing,
    mis-shaped, mis-typed), then the file's extra tensors in name order."""
    out = []
    for name, want in expected.items():
        got = found.get(name)
        if got is None:
            out.append(f"`{name}` ({describe(*want)}) is missing from {file}")
        elif got != want:
            out.append(
                f"`{name}` in {file} is {describe(*got)}; the model expects {describe(*want)}"
            )
    for name in sorted(set(found) - set(expected)):
        out.append(
            f"{file} has a tensor `{name}` ({describe(*found[name])}) that the model does not have"
        )
    return out


def without_aliases(stored: dict, tied: Mapping[str, str], file) -> dict:
    """`stored` (`Stored` tensors or arrays by name) without the alias names of tied
    parameters (a transformers state_dict holds `lm_head.weight` beside
    `transformer.wte.weight`): an alias is accepted where the file also holds its owner with
    the same dtype, shape and bytes, and is E-WEIGHTS otherwise."""
    out = dict(stored)
    for alias, owner in tied.items():
        if alias not in out:
            continue
        a, b = out.pop(alias), out.get(owner)
        if b is None or _bytes(a) != _bytes(b):
            why = "is not in the file" if b is None else "differs from it"
            raise error(
                "E-WEIGHTS",
                f"`{alias}` in {file} is tied to `{owner}`, which {why}",
                whole_file(file),
                notes=(
                    "a tied parameter is one tensor: the file holds it once, under "
                    "its owner's name, or under both names with equal values",
                ),
            )
    return out


def _bytes(t) -> tuple:
    """A stored tensor (or NumPy array) as (dtype, shape, bytes), for comparing two."""
    if isinstance(t, Stored):
        return t.dtype, tuple(t.shape), bytes(t.data)
    return str(t.dtype), tuple(t.shape), t.tobytes()


def mismatch_error(problems: list[str], file) -> DualnetError:
    """E-WEIGHTS with the first problem as message and up to SHOWN more as notes, located at
    the weight file (a name for tensors not from a file)."""
    first, *rest = problems
    notes = rest[:SHOWN]
    if len(rest) > SHOWN:
        notes.append(f"and {len(rest) - SHOWN} more")
    return error("E-WEIGHTS", first, whole_file(file), notes=notes)


def read_arrays(path: str) -> dict:
    """A safetensors file's tensors as NumPy arrays (E-IO / E-WEIGHTS on bad input)."""
    import numpy as np

    from dualnet.ir.types import DTYPES

    dtypes = {name: d.numpy for name, d in DTYPES.items() if d.numpy} | {
        "u8": "uint8",
        "i8": "int8",
    }  # (these then fail the model's check by name)
    out = {}
    for name, t in read_tensors(path).items():
        if t.dtype not in dtypes:
            raise error(
                "E-WEIGHTS",
                f"`{name}` in {path} has the dtype {t.dtype}, which "
                "dualnet's ONNX backend does not read",
                whole_file(path),
            )
        out[name] = np.frombuffer(t.data, dtypes[t.dtype]).reshape(t.shape)
    return out

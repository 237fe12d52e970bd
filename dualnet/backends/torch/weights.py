"""Safetensors files for torch modules whose state_dict names are dualnet's.

- `save_torch(module, path)` writes every persistent parameter and buffer (each tensor
  detached, moved to the CPU and copied contiguously, so shared, strided and channels-last
  tensors save correctly) atomically.
- `load_torch(module, path)` is strict: the file must hold exactly the module's tensors with
  the same shapes and dtypes (no conversion). Every tensor is checked before any is copied;
  on a mismatch a DualnetError (E-WEIGHTS) names the first offending tensor and lists a few
  others, and the module is left unchanged.

BatchNorm's `num_batches_tracked` counter is not part of a dualnet model: entries of that
name are ignored in the file (so a torchvision state_dict saved with safetensors loads as
is), never written, and a module's own counter is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from dualnet.backends.torch.init import TORCH_DTYPES
from dualnet.diagnostics import error
from dualnet.weights import PathLike, atomic_write, read_bytes

IGNORED = "num_batches_tracked"
SHOWN = 4  # problems listed as notes after the first
_DTYPE_NAMES = {v: k.value for k, v in TORCH_DTYPES.items()}


def ignored(name: str) -> bool:
    return name == IGNORED or name.endswith("." + IGNORED)


def module_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's persistent parameters and buffers (the live tensors), in state_dict
    order, without `num_batches_tracked`."""
    return {k: v for k, v in module.state_dict(keep_vars=True).items() if not ignored(k)}


def serialize(state: Mapping[str, torch.Tensor]) -> bytes:
    """The safetensors bytes of `state` (deterministic: the same tensors give the same bytes,
    whatever their order, device, strides or sharing)."""
    tensors = {name: t.detach().to("cpu").clone(memory_format=torch.contiguous_format)
               for name, t in state.items() if not ignored(name)}
    return save_safetensors(tensors)


def save_torch(module: torch.nn.Module, path: PathLike) -> None:
    atomic_write(path, serialize(module_state(module)))


def read_torch(path: PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (E-IO if it cannot be read, E-WEIGHTS if it is not
    a safetensors file), without `num_batches_tracked` entries."""
    data = read_bytes(path)
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise error("E-WEIGHTS", f"{os.fspath(path)} is not a valid safetensors file: {exc}",
                    None, notes=("dualnet reads only .safetensors files, never pickled "
                                 "checkpoints (.pt, .pth, .bin)",)) from None
    return {k: v for k, v in tensors.items() if not ignored(k)}


def load_torch(module: torch.nn.Module, path: PathLike) -> None:
    tensors = read_torch(path)
    target = module_state(module)
    problems = mismatches(target, tensors, os.fspath(path))
    if problems:
        first, *rest = problems
        notes = rest[:SHOWN]
        if len(rest) > SHOWN:
            notes.append(f"and {len(rest) - SHOWN} more")
        raise error("E-WEIGHTS", first, None, notes=notes)
    with torch.no_grad():
        for name, live in target.items():
            live.copy_(tensors[name])


def mismatches(target: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor],
               file: str) -> list[str]:
    """One sentence per tensor that does not fit: the module's tensors in order (missing,
    mis-shaped, mis-typed), then the file's extra tensors in name order."""
    out = []
    for name, live in target.items():
        got = tensors.get(name)
        if got is None:
            out.append(f"`{name}` ({_type(live)}) is missing from {file}")
        elif tuple(got.shape) != tuple(live.shape) or got.dtype != live.dtype:
            out.append(f"`{name}` in {file} is {_type(got)}; the model expects {_type(live)}")
    for name in sorted(set(tensors) - set(target)):
        out.append(f"{file} has a tensor `{name}` ({_type(tensors[name])}) that the model "
                   "does not have")
    return out


def _type(t: torch.Tensor) -> str:
    dtype = _DTYPE_NAMES.get(t.dtype, str(t.dtype).removeprefix("torch."))
    return f"{dtype}[{', '.join(str(d) for d in t.shape)}]"

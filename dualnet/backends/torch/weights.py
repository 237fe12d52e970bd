"""Safetensors files for torch modules whose state_dict names are dualnet's.

- `save_torch(module, path)` writes every persistent parameter and buffer (each tensor
  detached, moved to the CPU and copied contiguously, so shared, strided and channels-last
  tensors save correctly) atomically.
- `load_torch(module, path)` is strict: the file must hold exactly the module's tensors with
  the same shapes and dtypes (no conversion). Every tensor is checked (from the file's
  header, before any data is read) before any is copied; on a mismatch a DualnetError
  (E-WEIGHTS) names the first offending tensor and lists a few others, and the module is
  left unchanged. The data is then read one tensor at a time from the memory-mapped file.

A tied tensor (`tie=`: one nn.Parameter under two names) is written once, under its first
name; the other name is accepted on load where it holds the same values (as a transformers
state_dict of GPT-2 holds `lm_head.weight` beside `transformer.wte.weight`).

BatchNorm's `num_batches_tracked` counter is not part of a dualnet model: entries of that
name are ignored in the file (so a torchvision state_dict saved with safetensors loads as
is), never written, and a module's own counter is left alone.

Reading files and wording the E-WEIGHTS errors are `dualnet.io.weights`'s, shared with every
backend; this module adds what needs torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from safetensors.torch import save as save_safetensors

from dualnet.backends.torch.init import TORCH_DTYPES
from dualnet.io.files import atomic_write
from dualnet.io.weights import (
    PathLike,
    Stored,
    TensorInfo,
    ignored,
    mismatch_error,
    mismatches,
    read_tensors,
    without_aliases,
)

_DTYPE_NAMES = {v: k.value for k, v in TORCH_DTYPES.items()}
_STORED_DTYPES = {k.value: v for k, v in TORCH_DTYPES.items()}  # safetensors' names too


def module_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's persistent parameters and buffers (the live tensors), in state_dict
    order, without `num_batches_tracked` and without a tied tensor's later names (`tie=`:
    `lm_head.weight` is `transformer.wte.weight`, held once)."""
    return {k: v for k, v in _state(module).items() if k not in tied(module)}


def tied(module: torch.nn.Module) -> dict[str, str]:
    """`{alias: owner}`: each later state_dict name of a tensor the module holds under an
    earlier one too (one nn.Parameter tied to two layers)."""
    first: dict[int, str] = {}
    out = {}
    for name, t in _state(module).items():
        owner = first.setdefault(id(t), name)
        if owner != name:
            out[name] = owner
    return out


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict(keep_vars=True).items() if not ignored(k)}


def serialize(state: Mapping[str, torch.Tensor]) -> bytes:
    """The safetensors bytes of `state` (deterministic: the same tensors give the same bytes,
    whatever their order, device, strides or sharing)."""
    tensors = {
        name: t.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for name, t in state.items()
        if not ignored(name)
    }
    return save_safetensors(tensors)


def write_tensors(state: Mapping[str, torch.Tensor], path: PathLike, protect=()) -> None:
    """Write `{name: tensor}` to a safetensors file atomically, never over a file of
    `protect` (`dualnet.io.files.check_output`)."""
    atomic_write(path, serialize(state), protect)


def save_torch(module: torch.nn.Module, path: PathLike) -> None:
    write_tensors(module_state(module), path)


def load_torch(module: torch.nn.Module, path: PathLike) -> None:
    stored = without_aliases(read_tensors(path), tied(module), os.fspath(path))
    target = module_state(module)
    problems = mismatches(
        _infos(target), {n: (t.dtype, t.shape) for n, t in stored.items()}, os.fspath(path)
    )
    if problems:
        raise mismatch_error(problems, os.fspath(path))
    with torch.no_grad():
        for name, live in target.items():
            live.copy_(_tensor(stored[name]))


def _tensor(t: Stored) -> torch.Tensor:
    """A stored tensor's bytes as a torch tensor (a copy: the file's mapping is read-only)."""
    dtype = _STORED_DTYPES[t.dtype]
    if not t.data:
        return torch.empty(t.shape, dtype=dtype)
    return torch.frombuffer(bytearray(t.data), dtype=dtype).reshape(t.shape)


def _infos(state: Mapping[str, torch.Tensor]) -> dict[str, TensorInfo]:
    """`(dtype, shape)` of each tensor, the dtype named as dualnet names it (`f32`), or as
    torch does where dualnet has no name for it (`uint8`)."""
    return {
        name: (_DTYPE_NAMES.get(t.dtype, str(t.dtype).removeprefix("torch.")), tuple(t.shape))
        for name, t in state.items()
    }

"""What `dualnet parity` records while a generated PyTorch model runs: the outputs of every
layer and sub-model (forward hooks), by dualnet path."""

from __future__ import annotations

import contextlib
import functools

import torch


@contextlib.contextmanager
def recording(module: torch.nn.Module, records: dict[str, list] | None):
    """While active, each call of a submodule appends its outputs (NumPy copies, taken
    before any later in-place op changes them) to `records[path]`; None records nothing."""
    if records is None:
        yield
        return
    handles = [
        sub.register_forward_hook(functools.partial(_record, records, path))
        for path, sub in module.named_modules()
        if path
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _record(records: dict[str, list], path: str, _module, _args, output) -> None:
    records.setdefault(path, []).append(
        [t.detach().cpu().clone().numpy() for t in _tensors(output)]
    )


def _tensors(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, tuple | list):
        return [t for item in output for t in _tensors(item)]
    return []

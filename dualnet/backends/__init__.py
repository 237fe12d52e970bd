"""The backends: one object per framework (`backend.Backend`), each in its own folder, all
registered here. Nothing here imports a framework."""

from __future__ import annotations

from dualnet.backends.backend import Backend, SourceBackend
from dualnet.backends.keras.backend import KERAS
from dualnet.backends.onnx.backend import ONNX
from dualnet.backends.torch.backend import TORCH
from dualnet.diagnostics import Span, error

BACKENDS: dict[str, Backend] = {b.name: b for b in (TORCH, KERAS, ONNX)}


def backend(name: str, where: Span | None = None, kind: str | None = None) -> Backend:
    """The registered backend `name` (of `kind`, if given), else E-BACKEND at `where`."""
    found = BACKENDS.get(name)
    if found is None or (kind is not None and found.kind != kind):
        names = [n for n, b in BACKENDS.items() if kind is None or b.kind == kind]
        raise error(
            "E-BACKEND",
            f"unknown {'target' if kind else 'backend'} `{name}`",
            where,
            notes=[f"{'targets' if kind else 'backends'}: {', '.join(names)}"],
        )
    return found


__all__ = ["BACKENDS", "Backend", "SourceBackend", "backend"]

"""What a backend hands `dualnet gradcheck` (`Backend.gradient_side`): its model in float64
with a file's weights, as a `GradientSide`.

A side has `tensors` (each float input under its name + INPUT, then the trainable
parameters: float64 arrays by name), `outputs(name, value)` (the outputs, with one tensor
replaced), `gradients()` of a loss Σ output_k · R_k by tensor (None for a backend without
autodiff: it is differenced along the reference's directions against the reference's
gradient), `torch_named(gradients)` (those gradients in PyTorch's names and layouts) and
`aliases(summary)` (PyTorch name → the name its gradient is under there, where they differ).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

INPUT = " (input)"  # the suffix of an input's name among a side's tensors


class GradientSide(Protocol):
    tensors: dict[str, np.ndarray]
    where: str  # how the backend was checked, for people

    def outputs(self, name: str | None = None, value: np.ndarray | None = None) -> list: ...

    def gradients(self) -> dict[str, np.ndarray] | None: ...

    def torch_named(self, gradients: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def aliases(self, summary) -> dict[str, str]: ...


def float64(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The float arrays widened to float64, the others as they are."""
    return {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in arrays.items()}


def as_list(out) -> list:
    """A model's result as a list of outputs."""
    return list(out) if isinstance(out, tuple | list) else [out]

"""Random weights and inputs for a checked model, framework-free: what every backend test
feeds the same model."""

from __future__ import annotations

import numpy as np


def random_weights(summary, rng, scale: float = 0.1) -> dict[str, np.ndarray]:
    weights = {}
    for layer in summary.instance.layers():
        for name, spec in {**layer.params, **layer.buffers}.items():
            value = rng.standard_normal(spec.shape).astype(np.float32) * scale
            if name == "running_var":
                value = np.abs(value) + 1.0
            weights[f"{layer.path}.{name}"] = value.astype(spec.dtype.numpy or "float32")
    return weights


def random_inputs(summary, rng, sizes: int = 5) -> list[np.ndarray]:
    """The entry signature's inputs: symbolic sizes `sizes`, ids 0 or 1, masks mostly true."""
    out = []
    for value in summary.graph.inputs:
        shape = [d if isinstance(d, int) else sizes for d in value.type.shape]
        dtype = value.type.dtype.value
        if dtype in ("i32", "i64"):
            out.append(rng.integers(0, 2, shape).astype(np.int64 if dtype == "i64" else np.int32))
        elif dtype == "bool":
            mask = rng.random(shape) > 0.2
            mask[..., 0] = True
            out.append(mask)
        else:
            out.append(rng.standard_normal(shape).astype(value.type.dtype.numpy))
    return out

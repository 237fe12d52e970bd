"""A model's initial tensors, as NumPy arrays by state_dict name, for every backend: read
from a weight file, or drawn with PyTorch's initialisers from a seed (what `dualnet init`
writes), so that all three backends start from the same numbers."""

from __future__ import annotations

import numpy as np

from dualnet.extras import needs_extras
from dualnet.frontend import Summary
from dualnet.io.weights import read_arrays
from dualnet.memory import require_allocatable


@needs_extras
def initial_weights(
    summary: Summary,
    weights: str | None = None,
    seed: int = 0,
    max_params: int | None = None,
    vary: bool = False,
) -> dict:
    """The model's tensors as NumPy arrays by state_dict name: read from the safetensors file
    `weights`, else drawn with PyTorch's initialisers from `seed` (needs torch), with
    `vary` its constant tensors redrawn (`varied`). A model larger than `max_params`
    (`dualnet.memory`) is refused first."""
    require_allocatable(summary.instance, max_params)
    if weights is not None:
        return read_arrays(weights)
    from dualnet.backends.torch.init import init_state

    arrays = {name: t.numpy() for name, t in init_state(summary.instance, seed).items()}
    return varied(arrays, seed) if vary else arrays


def varied(arrays: dict, seed: int) -> dict:
    """`arrays` with every float tensor that starts constant (zero biases, BatchNorm's
    statistics, norm weights of ones, a constant layer scale) redrawn near its value, for the
    comparisons of seeded models: a term that starts at zero would hide a backend's mistake
    in it (a misplaced bias). Zeros become N(0, 0.5²), a constant c becomes c · U(0.5, 1.5),
    keeping its sign (a variance stays positive)."""
    rng = np.random.default_rng([seed, 7])
    out = {}
    for name in sorted(arrays):
        a = arrays[name]
        c = a.flat[0] if a.size and a.dtype.kind == "f" else None
        if c is not None and np.isfinite(c) and (a == c).all():
            drawn = (
                0.5 * rng.standard_normal(a.shape) if c == 0 else c * rng.uniform(0.5, 1.5, a.shape)
            )
            a = drawn.astype(a.dtype)
        out[name] = a
    return out

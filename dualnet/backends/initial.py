"""A model's initial tensors, as NumPy arrays by state_dict name, for every backend: read
from a weight file, or drawn with PyTorch's initialisers from a seed (what `dualnet init`
writes), so that all three backends start from the same numbers."""

from __future__ import annotations

from dualnet.extras import needs_extras
from dualnet.frontend import Summary
from dualnet.io.weights import read_arrays
from dualnet.memory import require_allocatable


@needs_extras
def initial_weights(
    summary: Summary, weights: str | None = None, seed: int = 0, max_params: int | None = None
) -> dict:
    """The model's tensors as NumPy arrays by state_dict name: read from the safetensors file
    `weights`, else drawn with PyTorch's initialisers from `seed` (needs torch). A model
    larger than `max_params` (`dualnet.memory`) is refused first."""
    require_allocatable(summary.instance, max_params)
    if weights is not None:
        return read_arrays(weights)
    from dualnet.backends.torch.init import init_state

    return {name: t.numpy() for name, t in init_state(summary.instance, seed).items()}

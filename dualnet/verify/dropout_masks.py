"""Shared Dropout masks (`dualnet parity --train-steps N --same-dropout`), pure NumPy.

A call site is one call of a Dropout or StochasticDepth layer in one forward pass: the
layer's dualnet path (its PyTorch module name, the same in the generated Keras model) and
which of its calls it is (a layer may be called more than once). Each step, every site
gets a mask drawn from the seed, the step and the site alone, of the shape the layer draws
its own: Dropout the input's shape, StochasticDepth [N, 1, ...] in row mode and a scalar
in batch mode. A mask holds PyTorch's scaled values, 0 or 1 / (1 − p), so a site computes
x · mask in both frameworks (`dualnet.backends.torch.masks`, `dualnet.backends.keras.masks`
put them in place of the layers' own draws).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Site:
    """One call of a dropout layer: `path`, its `call`-th call in a forward pass (from 0),
    the mask's `shape` in dualnet's axis order, the drop probability `p`."""

    path: str
    call: int
    shape: tuple[int, ...]
    p: float

    @property
    def key(self) -> tuple[str, int]:
        return self.path, self.call


def mask_shape(shape: tuple[int, ...], mode: str | None) -> tuple[int, ...]:
    """The mask of a layer with input `shape`: Dropout's (mode None) is the input's,
    StochasticDepth's [N, 1, ...] ("row") or a scalar ("batch")."""
    if mode is None:
        return tuple(shape)
    return (shape[0], *[1] * (len(shape) - 1)) if mode == "row" else ()


def draw(sites: list[Site], seed: int, step: int, dtype) -> dict[tuple[str, int], np.ndarray]:
    """Each site's mask at `step`: kept with probability 1 − p, and scaled as PyTorch scales
    (1 − p rounded to `dtype`, then the division in `dtype`)."""
    masks = {}
    for site in sites:
        rng = np.random.default_rng([seed, 3, step, site.call, *site.path.encode()])
        kept = np.asarray(rng.random(site.shape) >= site.p, dtype)
        masks[site.key] = np.asarray(kept / np.asarray(1.0 - site.p, dtype), dtype)
    return masks


class Calls:
    """Which site a layer's call is: the calls of `path` taken in turn, over and over (each
    forward pass calls a layer as often as the sites say)."""

    def __init__(self, sites: list[Site]) -> None:
        self.per_pass = Counter(site.path for site in sites)
        self.seen: Counter[str] = Counter()

    def next(self, path: str) -> tuple[str, int]:
        call = self.seen[path] % self.per_pass[path]
        self.seen[path] += 1
        return path, call

"""The handwritten digits `make train-demo` trains on, shipped with dualnet (no download).

`digits.npz` holds scikit-learn's copy (`sklearn/datasets/data/digits.csv.gz`, scikit-learn
1.9.1) of the test set of UCI's "Optical Recognition of Handwritten Digits" (E. Alpaydin,
C. Kaynak, 1998; CC BY 4.0): 1,797 images of 8 × 8 pixels valued 0..16, ten classes.
Importing this module imports no framework.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILE = Path(__file__).with_name("digits.npz")


def load_digits(val_fraction: float = 0.2, seed: int = 0) -> tuple[dict, dict]:
    """(train, val): each {"images": f32[N, 1, 8, 8] in [0, 1], "labels": i64[N]}, split by
    a permutation drawn from `seed` (`val_fraction` of the examples in val)."""
    with np.load(FILE) as data:
        images = (data["images"].astype(np.float32) / 16.0)[:, None]
        labels = data["labels"].astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_val = round(len(labels) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    return (
        {"images": images[train], "labels": labels[train]},
        {"images": images[val], "labels": labels[val]},
    )

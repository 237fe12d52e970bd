"""models/inception_v3.dnet loads torchvision's inception_v3 (aux_logits=False) state_dict
unchanged and computes its outputs in PyTorch, Keras and ONNX Runtime: at the smallest input
it takes (75 x 75), and at the paper's 299 x 299 (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from reference.harness import MODELS, compare_with_reference, randomize, torchvision_models


def compare(size: int) -> None:
    reference = torchvision_models().inception_v3(aux_logits=False, init_weights=True)
    x = np.random.default_rng(0).standard_normal((2, 3, size, size), np.float32)
    compare_with_reference(
        MODELS / "inception_v3.dnet", randomize(reference, seed=0), {"x": x}, hyper={"size": size}
    )


def test_inception_v3_matches_torchvision_at_75():
    compare(75)


@pytest.mark.slow
def test_inception_v3_matches_torchvision_at_299():
    compare(299)

"""models/densenet121.dnet loads torchvision's DenseNet state_dict unchanged (its
`features.denseblock1.denselayer1.norm1.weight` names, made in a loop) and computes its
outputs in PyTorch, Keras and ONNX Runtime: a small configuration of torchvision's DenseNet,
and densenet121 itself at 224 x 224 (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from reference.harness import MODELS, compare_with_reference, randomize, torchvision_models


def compare(reference, size: int, hyper: dict) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, size, size), np.float32)
    compare_with_reference(
        MODELS / "densenet121.dnet", randomize(reference, seed=0), {"x": x}, hyper=hyper
    )


def test_small_densenet_matches_torchvision():
    config = {"growth": 8, "blocks": (2, 3, 2, 2), "init": 16, "classes": 10}
    reference = torchvision_models().DenseNet(
        growth_rate=8, block_config=(2, 3, 2, 2), num_init_features=16, num_classes=10
    )
    compare(reference, 40, config)


@pytest.mark.slow
def test_densenet121_matches_torchvision():
    compare(torchvision_models().densenet121(), 224, {})

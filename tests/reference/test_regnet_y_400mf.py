"""models/regnet_y_400mf.dnet loads torchvision's RegNet state_dict unchanged (its
`trunk_output.block1.block1-0.f.se.fc1.weight` names: quoted `-` names made in a loop) and
computes its outputs in PyTorch, Keras and ONNX Runtime: a small RegNet-Y configuration, and
regnet_y_400mf itself at 224 x 224 (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from reference.harness import MODELS, compare_with_reference, randomize, torchvision_models


def compare(reference, size: int, hyper: dict) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, size, size), np.float32)
    compare_with_reference(
        MODELS / "regnet_y_400mf.dnet", randomize(reference, seed=0), {"x": x}, hyper=hyper
    )


def test_small_regnet_y_matches_torchvision():
    tv = torchvision_models()
    depths, widths = (1, 2, 1, 1), (16, 24, 32, 40)
    params = tv.regnet.BlockParams(depths, widths, [8] * 4, [1.0] * 4, [2] * 4, se_ratio=0.25)
    reference = tv.RegNet(params, num_classes=10)
    compare(reference, 40, {"depths": depths, "widths": widths, "classes": 10})


@pytest.mark.slow
def test_regnet_y_400mf_matches_torchvision():
    compare(torchvision_models().regnet_y_400mf(), 224, {})

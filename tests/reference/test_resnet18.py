"""models/resnet18.dnet loads torchvision's resnet18 state_dict unchanged and computes its
outputs in PyTorch, Keras and ONNX Runtime."""

from __future__ import annotations

import numpy as np

from reference.harness import MODELS, compare_with_reference, randomize, torchvision_models


def test_resnet18_matches_torchvision():
    reference = randomize(torchvision_models().resnet18(), seed=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), np.float32)
    compare_with_reference(MODELS / "resnet18.dnet", reference, {"x": x})

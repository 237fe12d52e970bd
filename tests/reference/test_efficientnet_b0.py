"""models/efficientnet_b0.dnet loads torchvision's efficientnet_b0 state_dict unchanged and
computes its outputs in PyTorch, Keras and ONNX Runtime (eval: stochastic depth is the
identity)."""

from __future__ import annotations

import numpy as np

from reference.harness import MODELS, compare_with_reference, randomize, torchvision_models


def test_efficientnet_b0_matches_torchvision():
    reference = randomize(torchvision_models().efficientnet_b0(), seed=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), np.float32)
    compare_with_reference(MODELS / "efficientnet_b0.dnet", reference, {"x": x})

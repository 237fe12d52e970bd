"""models/mobilenetv3_small.dnet loads torchvision's mobilenet_v3_small state_dict unchanged
and computes its outputs in PyTorch, Keras and ONNX Runtime (its outputs are small: the
relative bound max |a-b| / max |b| matters here)."""

from __future__ import annotations

import numpy as np

from reference.harness import MODELS, compare_with_reference, randomize, torchvision_models


def test_mobilenetv3_small_matches_torchvision():
    reference = randomize(torchvision_models().mobilenet_v3_small(), seed=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), np.float32)
    compare_with_reference(MODELS / "mobilenetv3_small.dnet", reference, {"x": x})

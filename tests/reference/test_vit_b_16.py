"""models/vit_b_16.dnet loads torchvision's VisionTransformer state_dict unchanged
(`class_token`, `encoder.pos_embedding`, the packed `in_proj_weight` of
nn.MultiheadAttention, `encoder.layers.encoder_layer_0...`, `heads.head`) and computes its
outputs in PyTorch, Keras and ONNX Runtime: a small ViT, and vit_b_16 itself at 224 x 224
(slow)."""

from __future__ import annotations

import numpy as np
import pytest

from reference.harness import MODELS, compare_with_reference, randomize, torchvision_models


def compare(reference, size: int, hyper: dict) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, size, size), np.float32)
    compare_with_reference(
        MODELS / "vit_b_16.dnet", randomize(reference, seed=0), {"x": x}, hyper=hyper
    )


def test_small_vit_matches_torchvision():
    config = {"image": 32, "patch": 8, "dim": 16, "depth": 2, "num_heads": 2, "mlp_dim": 32}
    reference = torchvision_models().VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=10,
    )
    compare(reference, 32, {**config, "classes": 10})


@pytest.mark.slow
def test_vit_b_16_matches_torchvision():
    compare(torchvision_models().vit_b_16(), 224, {})

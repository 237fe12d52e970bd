"""models/convnext_tiny.dnet loads torchvision's ConvNeXt state_dict unchanged and computes
its outputs in PyTorch, Keras and ONNX Runtime. The harness perturbs constant tensors by 10 %,
which leaves a layer scale of 1e-6 near 1e-6: every block would be the identity within the
tolerance, so the layer scales are drawn in [0.5, 1.5] here. Width 8 in the suite;
ConvNeXt-T itself (width 96) is slow-marked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dualnet
from reference.harness import MODELS, compare_with_reference, randomize, torchvision_models

MODEL = MODELS / "convnext_tiny.dnet"
PARAMS = 28_589_128  # torchvision's convnext_tiny


def _convnext(width: int, seed: int) -> torch.nn.Module:
    from torchvision.models.convnext import CNBlockConfig

    models = torchvision_models()
    w = width
    settings = [
        CNBlockConfig(w, 2 * w, 3),
        CNBlockConfig(2 * w, 4 * w, 3),
        CNBlockConfig(4 * w, 8 * w, 9),
        CNBlockConfig(8 * w, None, 3),
    ]
    torch.manual_seed(seed)
    model = randomize(models.ConvNeXt(settings, stochastic_depth_prob=0.1), seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.named_parameters():
            if name.endswith("layer_scale"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
    return model


def _check(width: int, batch: int) -> None:
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    compare_with_reference(MODEL, _convnext(width, seed=width), {"x": x}, hyper={"width": width})


def test_state_dict_names_and_count_are_torchvisions():
    reference = torchvision_models().convnext_tiny()
    summary = dualnet.check_file(str(MODEL))
    assert summary.trainable_params == PARAMS == sum(p.numel() for p in reference.parameters())
    module = dualnet.load(str(MODEL)).torch(width=8)
    assert set(module.state_dict()) == set(reference.state_dict())


def test_small_convnext_matches_torchvision():
    _check(width=8, batch=2)


@pytest.mark.slow
def test_convnext_tiny_matches_torchvision():
    _check(width=96, batch=1)

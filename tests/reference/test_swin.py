"""Swin-T weight for weight (issue 13): torchvision's swin_t architecture with random weights
loads its state_dict unchanged (relative_position_index buffers included) into
models/swin_t.dnet in PyTorch, Keras and ONNX, and all three compute its outputs. A narrow
Swin on 64×64 inputs in the suite (padding to whole windows, shifted and unshifted stages);
the full model (224×224) is slow-marked."""

from __future__ import annotations

import numpy as np
import pytest

import dualnet
from reference.harness import MODELS, compare_with_reference, randomize, torchvision_models

MODEL = MODELS / "swin_t.dnet"
PARAMS = 28_288_354  # torchvision's swin_t
SMALL = {"embed": 12, "depths": (2, 2, 2, 2), "heads": (2, 2, 4, 4), "classes": 10, "image": 64}


def _swin(seed: int, embed=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), classes=1000, **_):
    from torchvision.models.swin_transformer import SwinTransformer

    torchvision_models()
    reference = SwinTransformer(
        [4, 4],
        embed,
        list(depths),
        list(heads),
        [7, 7],
        stochastic_depth_prob=0.2,
        num_classes=classes,
    )
    return randomize(reference, seed)


def _check(hyper: dict, batch: int) -> None:
    reference = _swin(seed=1, **hyper)
    size = hyper.get("image", 224)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    compare_with_reference(MODEL, reference, {"x": x}, hyper=hyper)  # asserts the tolerances


def test_state_dict_names_shapes_and_count_are_torchvisions():
    reference = torchvision_models().swin_t()
    names = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    summary = dualnet.check_file(str(MODEL))
    assert summary.trainable_params == PARAMS == sum(p.numel() for p in reference.parameters())
    module = dualnet.load(str(MODEL)).torch()
    ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert ours == names
    index = "features.1.1.attn.relative_position_index"  # computed when checked
    assert np.array_equal(module.state_dict()[index], reference.state_dict()[index])


def test_small_swin_matches_torchvision():
    _check(SMALL, batch=2)


@pytest.mark.slow
def test_swin_t_matches_torchvision():
    _check({}, batch=1)

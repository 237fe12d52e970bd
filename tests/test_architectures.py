"""Well-known architectures written as a user would, each with one generic block model used
in many configurations (issue 11): MobileNetV2 (one convolution block for the stem, every
expansion, every depthwise convolution and the head; a conditional expansion layer),
Inception-v3 (one convolution block for every square and 1xN / Nx1 convolution, its kernel
and padding tuple hyperparameters) and ShuffleNetV2 (one unit for both strides). Each checks
at the reference's published parameter count, every backend's generated model holds exactly
those parameters, and PyTorch, Keras and ONNX Runtime agree on random weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import dualnet
from dualnet.backends import BACKENDS
from dualnet.io.weights import write_state
from dualnet.verify import fuzzing, parity

sys.path.insert(0, str(Path(__file__).parent / "backends"))
from zoo_data import random_weights  # noqa: E402

ARCHITECTURES = Path(__file__).parent / "architectures"
PUBLISHED = {  # torchvision's parameter counts
    "mobilenet_v2": 3_504_872,
    "inception_v3": 23_834_568,  # aux_logits=False
    "shufflenet_v2": 2_278_604,  # x1.0
}
TOLERANCE = 1e-5


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_architecture_counts_and_agrees_across_backends(name, tmp_path):
    path = ARCHITECTURES / f"{name}.dnet"
    program = dualnet.load(str(path))
    summary = program.check()
    assert summary.instance.param_count == PUBLISHED[name]
    module = program.torch()  # builds after comparing every tensor with the checked model
    assert sum(p.numel() for p in module.parameters()) == PUBLISHED[name]
    keras_model = program.keras()
    assert sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights) == PUBLISHED[name]
    weights = tmp_path / "random.safetensors"
    write_state(random_weights(summary, np.random.default_rng(0)), weights)
    case = fuzzing.read_case(path)
    rows, _ = parity.compare(program, None, list(BACKENDS), weights=str(weights), dims=case.dims)
    worst = max(rows, key=lambda r: r.max_rel)
    assert worst.max_rel <= TOLERANCE, worst


def test_generic_blocks_share_one_class(tmp_path):
    """Where the instances of a block differ only in values the class reads at run time,
    they share one generated PyTorch class."""
    for name, block in (
        ("mobilenet_v2", "ConvBNReLU6"),
        ("mobilenet_v2", "InvertedResidual"),
        ("inception_v3", "BasicConv"),
    ):
        source = dualnet.load(str(ARCHITECTURES / f"{name}.dnet")).source("torch")
        assert source.count(f"class {block}") == 1, (name, block)

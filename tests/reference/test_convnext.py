"""ConvNeXt-T weight for weight (issue 13): torchvision's convnext_tiny with random weights
(its layer scales and LayerNorm affine perturbed, so no block is trivially the identity)
loads its state_dict unchanged into models/convnext_tiny.dnet in PyTorch, Keras and ONNX,
and all three compute its outputs. Width 8 in the suite; the full model (width 96) is
slow-marked.

The helpers below are the ones the shared harness (tests/reference/harness.py, branch
issue13-zoo) provides under the same names; this file switches to it once it lands."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import dualnet  # noqa: E402

MODEL = Path(__file__).resolve().parents[2] / "models" / "convnext_tiny.dnet"
PARAMS = 28_589_128  # torchvision's convnext_tiny


@functools.cache
def torchvision_models():
    """torchvision.models, imported beside the CPU torch (its CUDA wheel's two op schemas
    declared first)."""
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    torchvision_models.library = library  # kept alive with the schemas
    import torchvision

    return torchvision.models


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every floating tensor of `module`'s state drawn again (N(0, 0.5²) around its value),
    so that nothing zero- or constant-initialised is trivially equal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.5)
    return module.eval()


def compare_with_reference(dnet_path, reference, inputs, model=None, hyper=None):
    """Max relative error (`max|a-b| / (1 + max|b|)`, and `max|a-b| / max|b|`) of the
    generated PyTorch, Keras and ONNX models against `reference` on `inputs`, the
    reference's state_dict loaded unchanged into each."""
    hyper = hyper or {}
    with torch.no_grad():
        expected = reference(*(torch.from_numpy(x) for x in inputs)).numpy()
    program = dualnet.load(str(dnet_path))
    path = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"reference-{os.getpid()}.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    try:
        module = program.torch(model, **hyper).eval()
        dualnet.load_weights(module, str(path))
        with torch.no_grad():
            got = {"torch": module(*(torch.from_numpy(x) for x in inputs)).numpy()}
        built = program.keras(model, **hyper)
        dualnet.load_weights(built, str(path))
        got["keras"] = np.asarray(built(*inputs, training=False))
        proto = program.onnx(model, weights=str(path), **hyper)
        session = onnxruntime.InferenceSession(proto.SerializeToString())
        names = [i.name for i in session.get_inputs()]
        got["onnx"] = session.run(None, dict(zip(names, inputs, strict=True)))[0]
    finally:
        path.unlink(missing_ok=True)
    scale = np.abs(expected).max()
    return {
        name: (np.abs(y - expected).max() / (1 + scale), np.abs(y - expected).max() / scale)
        for name, y in got.items()
    }


def _convnext(width: int, seed: int) -> torch.nn.Module:
    models = torchvision_models()
    from torchvision.models.convnext import CNBlockConfig

    w = width
    settings = [
        CNBlockConfig(w, 2 * w, 3),
        CNBlockConfig(2 * w, 4 * w, 3),
        CNBlockConfig(4 * w, 8 * w, 9),
        CNBlockConfig(8 * w, None, 3),
    ]
    torch.manual_seed(seed)
    return randomize(models.ConvNeXt(settings, stochastic_depth_prob=0.1), seed)


def _check(width: int, batch: int) -> None:
    reference = _convnext(width, seed=width)
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    errors = compare_with_reference(MODEL, reference, [x], hyper={"width": width})
    for backend, (relative, of_max) in errors.items():
        assert relative <= 1e-5 and of_max <= 1e-4, (backend, relative, of_max)


def test_state_dict_names_and_count_are_torchvisions():
    reference = torchvision_models().convnext_tiny()
    names = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    summary = dualnet.check_file(str(MODEL))
    assert summary.trainable_params == PARAMS == sum(p.numel() for p in reference.parameters())
    module = dualnet.load(str(MODEL)).torch(width=8)
    ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert set(ours) == set(names)


def test_small_convnext_matches_torchvision():
    _check(width=8, batch=2)


@pytest.mark.slow
def test_convnext_tiny_matches_torchvision():
    _check(width=96, batch=1)

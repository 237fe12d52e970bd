"""The reference comparisons' shared helpers (issue 13): torchvision imported beside the CPU
torch, reference weights drawn again so that nothing is trivially equal, and one comparison
of the generated PyTorch, Keras and ONNX models against a reference module whose
state_dict they load unchanged. (The API of branch issue13-zoo's harness, same names.)"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import dualnet  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "models"


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
    so that nothing zero- or constant-initialised is trivially equal; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.5)
    return module.eval()


def compare_with_reference(dnet_path, reference, inputs, model=None, hyper=None, select=None):
    """(`max|a-b| / (1 + max|b|)`, `max|a-b| / max|b|`) of the generated PyTorch, Keras and
    ONNX models against `reference` on `inputs` (NumPy arrays), the reference's state_dict
    loaded unchanged into each; `select(output)` picks the tensor compared from the
    reference's output (default: the output itself)."""
    hyper = hyper or {}
    select = select or (lambda out: out)
    with torch.no_grad():
        expected = select(reference(*(torch.from_numpy(x) for x in inputs))).numpy()
    program = dualnet.load(str(dnet_path))
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "reference.safetensors")
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
        module = program.torch(model, **hyper).eval()
        dualnet.load_weights(module, path)
        with torch.no_grad():
            got = {"torch": module(*(torch.from_numpy(x) for x in inputs))}
        built = program.keras(model, **hyper)
        dualnet.load_weights(built, path)
        got["keras"] = built(*inputs, training=False)
        proto = program.onnx(model, weights=path, **hyper)
    session = onnxruntime.InferenceSession(proto.SerializeToString())
    feed = dict(zip([i.name for i in session.get_inputs()], inputs, strict=True))
    got["onnx"] = session.run(None, feed)[0]
    scale = np.abs(expected).max()
    errors = {}
    for name, y in got.items():
        y = np.asarray(y[0] if isinstance(y, tuple | list) else y)
        diff = np.abs(y - expected).max()
        errors[name] = (diff / (1 + scale), diff / scale)
    return errors

"""GPT-2 (models/gpt2.dnet) against transformers' GPT2LMHeadModel, weight for weight: the
reference's random state_dict, both names of the tied head included, loads unchanged into the
generated PyTorch module (`load_state_dict`), the Keras model and the ONNX graph (a
safetensors file), and all three compute the reference's logits."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import dualnet  # noqa: E402

# torchvision (imported by transformers) needs these op schemas beside the CPU torch
_LIB = torch.library.Library("torchvision", "DEF")
_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

MODEL = os.path.join(os.path.dirname(__file__), "..", "..", "models", "gpt2.dnet")
SMALL = {"vocab": 100, "positions": 32, "dim": 64, "layers": 2, "heads": 4}
FULL = {"vocab": 50257, "positions": 1024, "dim": 768, "layers": 12, "heads": 12}  # defaults


def _config(hyper: dict) -> GPT2Config:
    return GPT2Config(
        vocab_size=hyper["vocab"],
        n_positions=hyper["positions"],
        n_embd=hyper["dim"],
        n_layer=hyper["layers"],
        n_head=hyper["heads"],
        bos_token_id=0,
        eos_token_id=0,
    )


def _error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = float(np.abs(a - b).max())
    return diff / (1 + float(np.abs(b).max())), diff / float(np.abs(b).max())


def _compare(hyper: dict, tmp_path, batch: int, length: int) -> None:
    torch.manual_seed(0)
    reference = GPT2LMHeadModel(_config(hyper)).eval()
    with torch.no_grad():  # nothing trivially equal: biases and LayerNorms moved too
        for p in reference.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = reference.state_dict()
    assert state["lm_head.weight"] is not None  # the alias is in the reference's state_dict
    path = tmp_path / "gpt2.safetensors"
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, path)
    ids = torch.randint(0, hyper["vocab"], (batch, length))
    with torch.no_grad():
        expected = reference(ids).logits.numpy()

    program = dualnet.load(MODEL)
    module = program.torch(**hyper).eval()
    module.load_state_dict(state)  # strict: the same names and shapes, nothing renamed
    assert module.lm_head.weight is module.transformer.wte.weight
    with torch.no_grad():
        outputs = {"torch": module(ids).numpy()}
    keras_model = program.keras(**hyper)
    dualnet.load_weights(keras_model, path)
    outputs["keras"] = np.asarray(keras_model(ids.numpy()))
    session = onnxruntime.InferenceSession(
        program.onnx(weights=str(path), **hyper).SerializeToString()
    )
    outputs["onnx"] = session.run(None, {session.get_inputs()[0].name: ids.numpy()})[0]
    for backend, got in outputs.items():
        relative, to_max = _error(got, expected)
        assert relative <= 1e-5 and to_max <= 1e-4, (backend, relative, to_max)


def test_small_gpt2_matches_transformers(tmp_path):
    _compare(SMALL, tmp_path, batch=2, length=16)


@pytest.mark.slow
def test_gpt2_small_matches_transformers(tmp_path):
    reference = GPT2LMHeadModel(GPT2Config())
    assert sum(p.numel() for p in reference.parameters()) == 124_439_808
    assert dualnet.check_file(MODEL).trainable_params == 124_439_808
    assert _config(FULL).to_dict() | {"bos_token_id": 50256, "eos_token_id": 50256} == (
        GPT2Config().to_dict()
    )
    _compare(FULL, tmp_path, batch=1, length=32)

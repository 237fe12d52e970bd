"""models/gpt2.dnet against transformers' GPT2LMHeadModel, weight for weight: the
reference's state_dict — both names of the tied head included — loads unchanged into the
generated PyTorch module, the Keras model and the ONNX graph, and all three compute its
logits. Small configurations here; GPT-2 small itself is slow-marked."""

from __future__ import annotations

import numpy as np
import pytest

from reference.harness import MODELS, compare_with_reference, randomize, torchvision_models

torchvision_models()  # transformers imports torchvision: its op schemas first
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

import dualnet  # noqa: E402

SMALL = {"vocab": 100, "positions": 32, "dim": 64, "layers": 2, "heads": 4}
FULL = {"vocab": 50257, "positions": 1024, "dim": 768, "layers": 12, "heads": 12}  # defaults


def _reference(hyper: dict) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=hyper["vocab"],
        n_positions=hyper["positions"],
        n_embd=hyper["dim"],
        n_layer=hyper["layers"],
        n_head=hyper["heads"],
        bos_token_id=0,
        eos_token_id=0,
    )
    return randomize(GPT2LMHeadModel(config), seed=0)


def _ids(hyper: dict, batch: int, length: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, hyper["vocab"], (batch, length), np.int64)


def test_small_gpt2_matches_transformers():
    reference = _reference(SMALL)
    compare_with_reference(
        MODELS / "gpt2.dnet",
        reference,
        {"ids": _ids(SMALL, 2, 16)},
        hyper=SMALL,
        select=lambda out: out.logits,
    )


def test_reference_state_dict_loads_into_the_tied_torch_module():
    reference = _reference(SMALL)
    module = dualnet.load(str(MODELS / "gpt2.dnet")).torch(**SMALL)
    module.load_state_dict(reference.state_dict())  # strict: nothing renamed or reshaped
    assert module.lm_head.weight is module.transformer.wte.weight
    assert sum(p.numel() for p in module.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )


@pytest.mark.slow
def test_gpt2_small_matches_transformers():
    reference = _reference(FULL)
    assert sum(p.numel() for p in reference.parameters()) == 124_439_808
    assert dualnet.check_file(str(MODELS / "gpt2.dnet")).trainable_params == 124_439_808
    compare_with_reference(
        MODELS / "gpt2.dnet",
        reference,
        {"ids": _ids(FULL, 1, 32)},
        select=lambda out: out.logits,
    )

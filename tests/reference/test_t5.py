"""The T5 encoder (models/t5_encoder.dnet) against transformers' T5EncoderModel, weight for
weight: the reference's random state_dict — `shared.weight` and its alias
`encoder.embed_tokens.weight`, the relative attention bias of block 0 — loads unchanged into
the generated PyTorch module, Keras model and ONNX graph, and all three compute the
reference's last hidden state, with an attention mask. A narrow encoder in the suite, with
sequences long enough for logarithmic distance buckets; t5-small is slow-marked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dualnet
from reference.harness import MODELS, compare_with_reference, randomize, transformers

MODEL = MODELS / "t5_encoder.dnet"
PARAMS = 35_330_816  # T5EncoderModel(T5Config()): t5-small's encoder, `shared` counted once
SMALL = {"vocab": 100, "dim": 16, "heads": 2, "d_kv": 4, "d_ff": 32, "layers": 3}


def _reference(hyper: dict, seed: int):
    T5Config, T5EncoderModel = transformers().T5Config, transformers().T5EncoderModel

    class BoolMask(T5EncoderModel):
        """T5EncoderModel on a bool mask (transformers subtracts it from 1), giving the last
        hidden state; the same modules, so the same state_dict."""

        def forward(self, ids, mask):
            return super().forward(input_ids=ids, attention_mask=mask.long()).last_hidden_state

    names = {"vocab": "vocab_size", "dim": "d_model", "layers": "num_layers", "heads": "num_heads"}
    config = T5Config(**{names.get(k, k): v for k, v in hyper.items()}, dropout_rate=0.1)
    torch.manual_seed(seed)
    return randomize(BoolMask(config), seed)


def _inputs(vocab: int, batch: int, length: int) -> dict:
    rng = np.random.default_rng(0)
    mask = np.ones((batch, length), dtype=bool)
    mask[1:, length - 5 :] = False  # padding at the end of all but the first row
    return {"ids": rng.integers(0, vocab, (batch, length)), "mask": mask}


def test_state_dict_names_shapes_and_count_are_transformers():
    reference = _reference({}, seed=0)
    names = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert "shared.weight" in names and "encoder.embed_tokens.weight" in names
    summary = dualnet.check_file(str(MODEL))
    assert summary.trainable_params == PARAMS == sum(p.numel() for p in reference.parameters())
    module = dualnet.load(str(MODEL)).torch()
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == names


def test_small_t5_encoder_matches_transformers():
    reference = _reference(SMALL, seed=1)
    compare_with_reference(MODEL, reference, _inputs(SMALL["vocab"], 3, 40), hyper=SMALL)


@pytest.mark.slow
def test_t5_small_encoder_matches_transformers():
    compare_with_reference(MODEL, _reference({}, seed=2), _inputs(32128, 2, 64))

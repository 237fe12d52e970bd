"""models/whisper_encoder.dnet loads the state_dict of transformers' WhisperEncoder unchanged
and computes its `last_hidden_state` in PyTorch, Keras and ONNX Runtime: a small
configuration, and whisper-tiny's (the default; slow)."""

from __future__ import annotations

import numpy as np
import pytest

from dualnet import check_file
from reference.harness import MODELS, compare_with_reference, randomize, transformers

PATH = MODELS / "whisper_encoder.dnet"
SMALL = {
    "num_mel_bins": 16,
    "d_model": 64,
    "encoder_layers": 2,
    "encoder_attention_heads": 4,
    "encoder_ffn_dim": 128,
    "max_source_positions": 24,
}


def encoder(**config):
    whisper = transformers().models.whisper  # declares torchvision's ops before the import
    return whisper.modeling_whisper.WhisperEncoder(whisper.WhisperConfig(**config))


def compare(hyper: dict) -> None:
    reference = randomize(encoder(**hyper), seed=0)
    frames = (2, hyper.get("num_mel_bins", 80), 2 * hyper.get("max_source_positions", 1500))
    x = np.random.default_rng(0).standard_normal(frames, np.float32)
    compare_with_reference(
        PATH,
        reference,
        {"input_features": x},
        hyper=hyper,
        select=lambda out: out.last_hidden_state,
    )


def test_whisper_encoder_matches_transformers_small():
    compare(SMALL)


@pytest.mark.slow
def test_whisper_tiny_encoder_matches_transformers():
    compare({})


def test_whisper_tiny_counts():
    """whisper-tiny's encoder: 7,632,384 trainable parameters and the frozen 1500 x 384
    position table, 8,208,384 in all, as transformers counts them."""
    reference = encoder()
    assert sum(p.numel() for p in reference.parameters() if p.requires_grad) == 7_632_384
    assert sum(p.numel() for p in reference.parameters()) == 8_208_384
    summary = check_file(str(PATH))
    assert summary.trainable_params == 7_632_384
    frozen = summary.instance.child("embed_positions").child("weight")
    assert frozen.output_types[0].shape == (1500, 384)

"""models/llama.dnet against transformers' LlamaForCausalLM, weight for weight: rotary
positions computed in forward (transformers' `rotary_emb.inv_freq` is in no state_dict),
grouped-query attention, SwiGLU, RMSNorm, the head tied to `model.embed_tokens` (the
reference's state_dict holds `lm_head.weight` too). Small configurations here; SmolLM-135M's
is slow-marked."""

from __future__ import annotations

import numpy as np
import pytest

from reference.harness import MODELS, compare_with_reference, randomize, torchvision_models

torchvision_models()  # transformers imports torchvision: its op schemas first
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

import dualnet  # noqa: E402

PATH = MODELS / "llama.dnet"
SMALL = {"vocab": 100, "dim": 64, "hidden": 96, "depth": 2, "heads": 4, "kv_heads": 2}
# SmolLM-135M (HuggingFaceTB/SmolLM-135M's config.json): the .dnet model's defaults
SMOLLM = {"vocab": 49152, "dim": 576, "hidden": 1536, "depth": 30, "heads": 9, "kv_heads": 3}


def _reference(hyper: dict, theta: float = 10000.0, eps: float = 1e-5) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=hyper["vocab"],
        hidden_size=hyper["dim"],
        intermediate_size=hyper["hidden"],
        num_hidden_layers=hyper["depth"],
        num_attention_heads=hyper["heads"],
        num_key_value_heads=hyper["kv_heads"],
        max_position_embeddings=2048,
        rms_norm_eps=eps,
        rope_theta=theta,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
    )
    return randomize(LlamaForCausalLM(config), seed=0)


def _ids(vocab: int, batch: int, length: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, vocab, (batch, length), np.int64)


@pytest.mark.parametrize(
    "hyper",
    [SMALL, {**SMALL, "kv_heads": 4}, {**SMALL, "kv_heads": 1, "theta": 500.0, "eps": 1e-6}],
    ids=["grouped", "one-group-per-head", "multi-query"],
)
def test_small_llama_matches_transformers(hyper):
    sizes = {k: v for k, v in hyper.items() if k not in ("theta", "eps")}
    reference = _reference(sizes, hyper.get("theta", 10000.0), hyper.get("eps", 1e-5))
    state = reference.state_dict()
    assert "lm_head.weight" in state and not any("inv_freq" in k for k in state)
    compare_with_reference(
        PATH,
        reference,
        {"ids": _ids(hyper["vocab"], 2, 12)},
        hyper=hyper,
        select=lambda out: out.logits,
    )


def test_reference_state_dict_loads_into_the_tied_torch_module():
    reference = _reference(SMALL)
    module = dualnet.load(str(PATH)).torch(**SMALL)
    module.load_state_dict(reference.state_dict())  # strict: `model.` names as they are
    assert module.lm_head.weight is module._modules["model"].embed_tokens.weight


@pytest.mark.slow
def test_smollm_135m_matches_transformers():
    reference = _reference(SMOLLM)
    assert sum(p.numel() for p in reference.parameters()) == 134_515_008
    assert dualnet.check_file(str(PATH)).trainable_params == 134_515_008
    compare_with_reference(
        PATH, reference, {"ids": _ids(SMOLLM["vocab"], 1, 32)}, select=lambda out: out.logits
    )

"""The zoo models benchmarks/zoo_bench.py compares with their reference implementations.

Each case: the zoo model (models/<name>.dnet), its reference (torchvision or transformers,
built with random weights by the tests' harness, `tests/reference/harness.randomize`), the
input shape, batch sizes and token vocabulary. `reference_state` writes the reference's
`state_dict()` unchanged to a safetensors file every backend loads; `disagreement` is the
check every comparison passes before anything is timed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import Row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from reference.harness import (  # noqa: E402 - the tests' reference harness
    errors,
    randomize,
    save_state,
    torchvision_models,
    transformers,
)

AGREE = 1e-5  # max |a-b| / (1 + max |b|)


@dataclass(frozen=True)
class Case:
    name: str  # models/<name>.dnet
    reference: Callable[[], Any]
    input_shape: tuple[int, ...]  # without the batch axis
    batches: tuple[int, ...] = (1, 32)
    select: Callable[[Any], Any] = staticmethod(lambda out: out)
    vocabulary: int = 0  # token ids in [0, vocabulary) of shape (batch, *input_shape), if set

    @property
    def path(self) -> Path:
        return ROOT / "models" / f"{self.name}.dnet"

    def inputs(self, torch: Any, batch: int):
        generator = torch.Generator().manual_seed(batch)
        if self.vocabulary:
            return torch.randint(
                0, self.vocabulary, (batch, *self.input_shape), generator=generator
            )
        return torch.randn((batch, *self.input_shape), generator=generator)


def whisper_tiny():
    whisper = transformers().models.whisper
    return whisper.modeling_whisper.WhisperEncoder(whisper.WhisperConfig())


def gpt2_small():
    """GPT-2 small without its key/value cache (the zoo model has none)."""
    return transformers().GPT2LMHeadModel(transformers().GPT2Config(use_cache=False))


CASES = {
    c.name: c
    for c in [
        Case("efficientnet_b0", lambda: torchvision_models().efficientnet_b0(), (3, 224, 224)),
        Case("vit_b_16", lambda: torchvision_models().vit_b_16(), (3, 224, 224)),
        Case("convnext_tiny", lambda: torchvision_models().convnext_tiny(), (3, 224, 224)),
        Case("gpt2", gpt2_small, (128,), select=lambda out: out.logits, vocabulary=50_257),
        Case("mobilenetv3_small", lambda: torchvision_models().mobilenet_v3_small(), (3, 224, 224)),
        Case("mobilenetv2", lambda: torchvision_models().mobilenet_v2(), (3, 224, 224)),
        Case("resnet18", lambda: torchvision_models().resnet18(), (3, 224, 224)),
        Case(
            "inception_v3",
            lambda: torchvision_models().inception_v3(aux_logits=False, init_weights=True),
            (3, 299, 299),
        ),
        Case(
            "whisper_encoder",
            whisper_tiny,
            (80, 3000),
            batches=(1, 4),
            select=lambda out: out.last_hidden_state,
        ),
    ]
}


def reference_state(case: Case, weights: Path) -> Any:
    """The reference with random weights (eval), its state_dict written to `weights`."""
    reference = randomize(case.reference(), seed=0)
    save_state(reference, weights)
    return reference.eval()


def disagreement(label: str, got: Any, want: Any) -> Row | None:
    """An ERROR row unless `got` is `want` within AGREE."""
    error, _ = errors(got, want)
    if error <= AGREE:
        return None
    return Row(label, f"outputs differ: {error:.3g}", "-", "-", "ERROR")

"""The models benchmarks/train_bench.py trains: each a .dnet file with a `train` block, written
into a work directory (importing the zoo's models/*.dnet through the include path), its
hand-written counterparts in PyTorch and Keras, and one batch of inputs and labels.

- `resnet18`: models/resnet18.dnet at 112x112 (its input and the annotated layer4 size
  rewritten), SGD (lr 0.1, momentum 0.9, weight decay 1e-4), cross-entropy on 1000 classes;
  torchvision's `resnet18()` and handwritten_keras.resnet18(size=112). All four hold the
  torchvision reference's random weights (names equal dualnet's).
- `bert_tiny`: models/bert_encoder.dnet's BERT-tiny with dropout 0.1 and a Linear(2) head on
  the pooled output behind a Dropout(0.1), AdamW (lr 1e-4, weight decay 0.01),
  cross-entropy; transformers' `BertForSequenceClassification` (the same configuration,
  attention-probability dropout 0 as the .dnet model has none) and
  handwritten_keras.bert_classifier(). Each side its own random weights (names differ).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch_latency import make_inputs
from zoo_cases import ROOT, torchvision_models, transformers

MODELS_DIR = ROOT / "models"
BATCH = 32
SIZE = 112
CLASSES = {"resnet18": 1000, "bert_tiny": 2}

RESNET_TRAIN = """
train ResNet18 {
    optimizer = SGD(lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss(logits: f32[B, C], labels: i64[B]) -> f32[] {
        return cross_entropy(logits, labels)
    }
}
"""

BERT_SOURCE = """# BERT-tiny (models/bert_encoder.dnet), a classification head on the pooled output.

from "bert_encoder.dnet" import BertEncoder

model BertClassifier(classes: int = 2, dropout: float = 0.1) {
    bert = BertEncoder(dropout=dropout)
    drop = Dropout(dropout)
    classifier = Linear(classes)

    forward(ids: i64[B, T], token_types: i64[B, T], mask: bool[B, T]) -> f32[B, classes] {
        h, pooled = bert(ids, token_types, mask)
        return pooled |> drop |> classifier
    }
}

train BertClassifier {
    optimizer = AdamW(lr=1e-4, weight_decay=0.01)
    loss(logits: f32[B, C], labels: i64[B]) -> f32[] {
        return cross_entropy(logits, labels)
    }
}
"""


def rewritten(text: str, changes: dict[str, str]) -> str:
    """`text` with each key replaced by its value; each key must occur exactly once."""
    for old, new in changes.items():
        if text.count(old) != 1:
            raise ValueError(f"expected one `{old}` in the zoo file, found {text.count(old)}")
        text = text.replace(old, new)
    return text


def resnet_source() -> str:
    zoo = (MODELS_DIR / "resnet18.dnet").read_text()
    side = -(-SIZE // 32)  # layer4's output size: five halvings, rounded up
    changes = {
        "f32[B, 3, 224, 224]": f"f32[B, 3, {SIZE}, {SIZE}]",
        "f32[B, 512, 7, 7]": f"f32[B, 512, {side}, {side}]",
    }
    return rewritten(zoo, changes) + RESNET_TRAIN


def torch_resnet() -> Any:
    return torchvision_models().resnet18()


def torch_bert() -> Any:
    config = transformers().BertConfig(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.0,
        num_labels=2,
    )
    return transformers().BertForSequenceClassification(config)


def keras_resnet() -> Any:
    import handwritten_keras

    return handwritten_keras.resnet18(size=SIZE)


def keras_bert() -> Any:
    import handwritten_keras

    return handwritten_keras.bert_classifier()


def bert_logits(model: Any, inputs: list) -> Any:
    """transformers' call: keyword arguments, the attention mask as integers."""
    ids, token_types, mask = inputs
    return model(input_ids=ids, token_type_ids=token_types, attention_mask=mask.long()).logits


@dataclass(frozen=True)
class TrainCase:
    name: str
    label: str
    source: Callable[[], str]
    torch_reference: Callable[[], Any]
    keras_reference: Callable[[], Any]
    shared_weights: bool  # the references' state_dict loads into the generated models
    torch_logits: Callable[[Any, list], Any]  # (reference, input tensors) -> logits
    torch_optimizer: Callable[[Any, Any], Any]  # (torch, parameters) -> its optimizer
    keras_optimizer: Callable[[Any], Any]  # keras -> the hand-written model's optimizer

    def write(self, workdir: Path) -> Path:
        path = workdir / f"{self.name}_train.dnet"
        path.write_text(self.source())
        return path

    def batch(self, torch: Any, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
        """(inputs, labels) as NumPy arrays, NCHW images or (ids, token types, mask)."""
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, CLASSES[self.name], BATCH)
        if self.name == "resnet18":
            x = rng.standard_normal((BATCH, 3, SIZE, SIZE), dtype=np.float32)
            return [x], labels
        return [t.numpy() for t in make_inputs(torch, "bert_encoder", BATCH, seed)], labels


CASES = {
    c.name: c
    for c in [
        TrainCase(
            "resnet18",
            f"ResNet-18 b{BATCH} {SIZE}x{SIZE}",
            resnet_source,
            torch_resnet,
            keras_resnet,
            True,
            lambda model, inputs: model(*inputs),
            lambda torch, params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4),
            lambda keras: keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-4),
        ),
        TrainCase(
            "bert_tiny",
            f"BERT-tiny b{BATCH} T=128",
            lambda: BERT_SOURCE,
            torch_bert,
            keras_bert,
            False,
            bert_logits,
            lambda torch, params: torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01),
            lambda keras: keras.optimizers.AdamW(1e-4, weight_decay=0.01),
        ),
    ]
}

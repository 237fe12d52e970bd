"""Hand-written, idiomatic Keras 3 ports of models/resnet18.dnet and models/mobilenetv2.dnet,
and of models/convnext_tiny.dnet, models/vit_b_16.dnet, models/gpt2.dnet and a BERT-tiny
classifier on models/bert_encoder.dnet (Keras's own layers: DepthwiseConv2D,
MultiHeadAttention, LayerNormalization, Dense; their weights are Keras's, not loaded).

Functional models, channels-last throughout (input [B, H, W, 3]), written as an experienced
porter writes torchvision's ResNet-18 and MobileNetV2: PyTorch's symmetric padding of a
stride-2 convolution or pooling window is `ZeroPadding2D` followed by a "valid" layer (Keras's
"same" would pad asymmetrically), "same" only where it pads exactly as PyTorch (stride 1,
3x3, padding 1); BatchNormalization(epsilon=1e-5, momentum=0.9). Layers with weights are named
by their PyTorch state_dict prefix (`layer2.0.downsample.0`, `stage3.1.expand.1`, ...), so
`load_state` copies a dualnet weight file's tensors in by name, with plain NumPy transposes.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

BN = {"epsilon": 1e-5, "momentum": 0.9}
RESNET_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # channels, stride of the first block
# MobileNetV2, Table 2 of the paper: expansion t, channels c, repeats n, first stride s.
MOBILENET_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def conv(x, filters: int, kernel: int, stride: int, name: str, depthwise: bool = False):
    """PyTorch's Conv2d(kernel, stride, padding=kernel // 2, bias=False) (depthwise: groups =
    channels), channels-last."""
    pad = kernel // 2
    if pad and stride > 1:
        x = layers.ZeroPadding2D(pad)(x)
    padding = "same" if pad and stride == 1 else "valid"
    if depthwise:
        return layers.DepthwiseConv2D(kernel, stride, padding, use_bias=False, name=name)(x)
    return layers.Conv2D(filters, kernel, stride, padding, use_bias=False, name=name)(x)


def bn(x, name: str):
    return layers.BatchNormalization(**BN, name=name)(x)


# ---------------------------------------------------------------- ResNet-18


def basic_block(x, out: int, stride: int, name: str):
    y = layers.ReLU()(bn(conv(x, out, 3, stride, f"{name}.conv1"), f"{name}.bn1"))
    y = bn(conv(y, out, 3, 1, f"{name}.conv2"), f"{name}.bn2")
    if stride != 1 or x.shape[-1] != out:
        x = bn(conv(x, out, 1, stride, f"{name}.downsample.0"), f"{name}.downsample.1")
    return layers.ReLU()(layers.Add()([y, x]))


def resnet18(classes: int = 1000, size: int = 224) -> keras.Model:
    inputs = keras.Input((size, size, 3))
    x = layers.ReLU()(bn(conv(inputs, 64, 7, 2, "conv1"), "bn1"))
    x = layers.MaxPooling2D(3, 2)(layers.ZeroPadding2D(1)(x))  # x >= 0: zeros never win
    for i, (channels, stride) in enumerate(RESNET_STAGES, 1):
        x = basic_block(x, channels, stride, f"layer{i}.0")
        x = basic_block(x, channels, 1, f"layer{i}.1")
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes, name="fc")(x), name="resnet18")


# ---------------------------------------------------------------- MobileNetV2


def conv_bn(
    x,
    filters: int,
    kernel: int,
    stride: int,
    name: str,
    relu6: bool = True,
    depthwise: bool = False,
):
    """Sequential(Conv2d, BatchNorm[, ReLU6]) named `name`: its layers are name.0, name.1."""
    x = bn(conv(x, filters, kernel, stride, f"{name}.0", depthwise), f"{name}.1")
    return layers.ReLU(6.0)(x) if relu6 else x


def inverted_residual(x, out: int, stride: int, t: int, name: str):
    channels = x.shape[-1]
    y = conv_bn(x, channels * t, 1, 1, f"{name}.expand") if t != 1 else x
    y = conv_bn(y, channels * t, 3, stride, f"{name}.depthwise", depthwise=True)
    y = conv_bn(y, out, 1, 1, f"{name}.project", relu6=False)
    return layers.Add()([x, y]) if stride == 1 and channels == out else y


def mobilenetv2(classes: int = 1000, dropout: float = 0.2, size: int = 224) -> keras.Model:
    inputs = keras.Input((size, size, 3))
    x = conv_bn(inputs, 32, 3, 2, "stem")
    for i, (t, channels, repeats, stride) in enumerate(MOBILENET_STAGES, 1):
        for j in range(repeats):
            x = inverted_residual(x, channels, stride if j == 0 else 1, t, f"stage{i}.{j}")
    x = layers.GlobalAveragePooling2D()(conv_bn(x, 1280, 1, 1, "head"))
    x = layers.Dropout(dropout, name="classifier.0")(x)
    return keras.Model(inputs, layers.Dense(classes, name="classifier.1")(x), name="mobilenetv2")


# ---------------------------------------------------------------- ConvNeXt-T


class LayerScale(layers.Layer):
    """ConvNeXt's learned per-channel scale of a block's branch."""

    def build(self, shape):
        self.gamma = self.add_weight((shape[-1],), keras.initializers.Constant(1e-6))

    def call(self, x):
        return x * self.gamma


def convnext_block(x):
    dim = x.shape[-1]
    y = layers.DepthwiseConv2D(7, padding="same")(x)
    y = layers.Dense(4 * dim, activation="gelu")(layers.LayerNormalization(epsilon=1e-6)(y))
    return x + LayerScale()(layers.Dense(dim)(y))


def convnext_tiny(classes=1000, size=224, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)):
    inputs = keras.Input((size, size, 3))
    x = layers.LayerNormalization(epsilon=1e-6)(layers.Conv2D(dims[0], 4, 4)(inputs))
    for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
        if i:  # downsampling between stages
            x = layers.Conv2D(dim, 2, 2)(layers.LayerNormalization(epsilon=1e-6)(x))
        for _ in range(depth):
            x = convnext_block(x)
    x = layers.LayerNormalization(epsilon=1e-6)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Dense(classes)(x), name="convnext_tiny")


# ---------------------------------------------------------------- ViT-B/16, GPT-2 small


class ClassTokenAndPositions(layers.Layer):
    """ViT's learned class token, put before the patches, and learned position embedding."""

    def build(self, shape):
        self.class_token = self.add_weight((1, 1, shape[-1]), name="class_token")
        self.pos_embedding = self.add_weight((1, shape[1] + 1, shape[-1]), name="pos_embedding")

    def call(self, x):
        token = ops.broadcast_to(self.class_token, (ops.shape(x)[0], 1, x.shape[-1]))
        return ops.concatenate([token, x], axis=1) + self.pos_embedding


class Positions(layers.Layer):
    """GPT-2's learned position embedding (`positions` rows), added to the first T."""

    def __init__(self, positions: int, **kwargs):
        super().__init__(**kwargs)
        self.positions = positions

    def build(self, shape):
        self.table = self.add_weight((self.positions, shape[-1]), name="wpe")

    def call(self, x):
        return x + self.table[: x.shape[1]]


class TiedHead(layers.Layer):
    """Logits against an Embedding's own table (GPT-2's tied LM head)."""

    def __init__(self, embedding: layers.Embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding

    def call(self, x):
        return ops.matmul(x, ops.transpose(self.embedding.embeddings))


def transformer_block(x, heads: int, mlp: int, eps: float, approximate: bool, causal: bool):
    """Pre-LayerNorm attention and MLP, each added to its input."""
    dim = x.shape[-1]
    y = layers.LayerNormalization(epsilon=eps)(x)
    x = x + layers.MultiHeadAttention(heads, dim // heads)(y, y, use_causal_mask=causal)
    y = layers.LayerNormalization(epsilon=eps)(x)
    y = layers.Dense(mlp, activation=lambda v: ops.gelu(v, approximate=approximate))(y)
    return x + layers.Dense(dim)(y)


def vit_b_16(image=224, patch=16, dim=768, depth=12, heads=12, mlp=3072, classes=1000):
    inputs = keras.Input((image, image, 3))
    x = layers.Conv2D(dim, patch, patch)(inputs)
    x = ClassTokenAndPositions()(layers.Reshape(((image // patch) ** 2, dim))(x))
    for _ in range(depth):
        x = transformer_block(x, heads, mlp, 1e-6, approximate=False, causal=False)
    x = layers.LayerNormalization(epsilon=1e-6)(x)[:, 0]
    return keras.Model(inputs, layers.Dense(classes)(x), name="vit_b_16")


def gpt2_small(vocab=50257, positions=1024, dim=768, depth=12, heads=12, tokens=128):
    inputs = keras.Input((tokens,), dtype="int64")
    embedding = layers.Embedding(vocab, dim)
    x = Positions(positions)(embedding(inputs))
    for _ in range(depth):
        x = transformer_block(x, heads, 4 * dim, 1e-5, approximate=True, causal=True)
    x = layers.LayerNormalization(epsilon=1e-5)(x)
    return keras.Model(inputs, TiedHead(embedding)(x), name="gpt2")


def bert_classifier(
    vocab=30522,
    positions=512,
    types=2,
    dim=128,
    depth=2,
    heads=2,
    mlp=512,
    classes=2,
    dropout=0.1,
    tokens=128,
):
    """BERT (post-LayerNorm, eps 1e-12, exact GELU, tanh pooler over the first token; BERT-tiny
    by default) with dropout and a Dense head on the pooled output, as transformers'
    BertForSequenceClassification. Inputs: token ids, token types, and a bool mask (true: the
    key may be attended)."""
    ids = keras.Input((tokens,), dtype="int64")
    token_types = keras.Input((tokens,), dtype="int64")
    mask = keras.Input((tokens,), dtype="bool")
    x = layers.Embedding(vocab, dim)(ids) + layers.Embedding(types, dim)(token_types)
    x = layers.Dropout(dropout)(layers.LayerNormalization(epsilon=1e-12)(Positions(positions)(x)))
    attend = ops.expand_dims(mask, 1)  # [B, 1, T]: the same keys for every query
    for _ in range(depth):
        a = layers.MultiHeadAttention(heads, dim // heads)(x, x, attention_mask=attend)
        x = layers.LayerNormalization(epsilon=1e-12)(x + layers.Dropout(dropout)(a))
        y = layers.Dense(dim)(layers.Dense(mlp, activation="gelu")(x))
        x = layers.LayerNormalization(epsilon=1e-12)(x + layers.Dropout(dropout)(y))
    pooled = layers.Dense(dim, activation="tanh")(x[:, 0])
    logits = layers.Dense(classes)(layers.Dropout(dropout)(pooled))
    return keras.Model([ids, token_types, mask], logits, name="bert_classifier")


# ---------------------------------------------------------------- weights


def keras_weights(layer, params: dict[str, np.ndarray]) -> list[np.ndarray]:
    """`layer`'s get_weights() list from its PyTorch parameters (names without the prefix)."""
    if isinstance(layer, layers.DepthwiseConv2D):  # [C, 1, kh, kw] -> [kh, kw, C, 1]
        return [params["weight"].transpose(2, 3, 0, 1)]
    if isinstance(layer, layers.Conv2D):  # OIHW -> HWIO
        return [params["weight"].transpose(2, 3, 1, 0)]
    if isinstance(layer, layers.Dense):
        return [params["weight"].T, params["bias"]]
    if isinstance(layer, layers.BatchNormalization):
        return [params[k] for k in ("weight", "bias", "running_mean", "running_var")]
    raise TypeError(f"no PyTorch weights for {type(layer).__name__} {layer.name}")


def load_state(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy `state` (PyTorch names and layouts, as in a dualnet weight file) into `model`;
    every tensor must land in a layer, and every layer with weights must get its own."""
    used = 0
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = f"{layer.name}."
        params = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        layer.set_weights([np.ascontiguousarray(w) for w in keras_weights(layer, params)])
        used += len(params)
    if used != len(state):
        raise ValueError(f"{len(state) - used} of {len(state)} tensors matched no layer")

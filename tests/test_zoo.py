"""The model zoo (models/*.dnet): every model checks cleanly, with the parameter count,
buffer count and output types computed here by hand.

Buffers are BatchNorm's running_mean and running_var only (no num_batches_tracked), so a
BatchNorm over C channels holds 2*C trainable parameters and 2*C buffer elements.
The arithmetic below was cross-checked against equivalent hand-written torch.nn modules.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dualnet import check_file

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"

# Files that only provide models to import; they have no entry model of their own.
LIBRARIES = {"blocks.dnet"}


def linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def conv(i: int, o: int, k: int, groups: int = 1, bias: bool = True) -> int:
    return (i // groups) * o * k * k + (o if bias else 0)


def bn(c: int) -> int:  # weight + bias; also the buffer count (running_mean + running_var)
    return 2 * c


# ---------------------------------------------------------------- LeNet-5
# conv1 1*6*25+6 = 156; conv2 6*16*25+16 = 2,416; fc1 400*120+120 = 48,120;
# fc2 120*84+84 = 10,164; fc3 84*10+10 = 850; total 61,706.
LENET5 = conv(1, 6, 5) + conv(6, 16, 5) + linear(400, 120) + linear(120, 84) + linear(84, 10)
assert LENET5 == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706

# ---------------------------------------------------------------- MLP 784-512-256-10
# 784*512+512 = 401,920; 512*256+256 = 131,328; 256*10+10 = 2,570; total 535,818.
MLP = linear(784, 512) + linear(512, 256) + linear(256, 10)
assert MLP == 401_920 + 131_328 + 2_570 == 535_818


# ---------------------------------------------------------------- ResNet-18
def basic_block(cin: int, out: int, stride: int) -> tuple[int, int]:
    params = conv(cin, out, 3, bias=False) + bn(out) + conv(out, out, 3, bias=False) + bn(out)
    bn_channels = 2 * out
    if stride != 1 or cin != out:  # downsample = 1x1 conv + BatchNorm
        params += conv(cin, out, 1, bias=False) + bn(out)
        bn_channels += out
    return params, bn_channels


def resnet18() -> tuple[int, int]:
    params = conv(3, 64, 7, bias=False) + bn(64) + linear(512, 1000)  # 9,408 + 128 + 513,000
    bn_channels = 64
    cin = 64
    for out, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for s in (stride, 1):
            p, c = basic_block(cin, out, s)
            params, bn_channels, cin = params + p, bn_channels + c, out
    return params, 2 * bn_channels


# conv1 9,408 + bn1 128; layer1 2*73,984 = 147,968; layer2 230,144 + 295,424 = 525,568;
# layer3 919,040 + 1,180,672 = 2,099,712; layer4 3,673,088 + 4,720,640 = 8,393,728;
# fc 513,000; total 11,689,512 (torchvision). BN channels 64+256+640+1,280+2,560 = 4,800.
RESNET18, RESNET18_BUFFERS = resnet18()
assert RESNET18 == 9_536 + 147_968 + 525_568 + 2_099_712 + 8_393_728 + 513_000 == 11_689_512
assert RESNET18_BUFFERS == 2 * 4_800 == 9_600


# ---------------------------------------------------------------- MobileNetV2
def inverted_residual(cin: int, out: int, stride: int, t: int) -> tuple[int, int]:
    hidden = cin * t
    params = bn_channels = 0
    if t != 1:  # 1x1 expansion
        params += conv(cin, hidden, 1, bias=False) + bn(hidden)
        bn_channels += hidden
    params += conv(hidden, hidden, 3, groups=hidden, bias=False) + bn(hidden)  # depthwise 11*h
    params += conv(hidden, out, 1, bias=False) + bn(out)  # linear projection
    return params, bn_channels + hidden + out


def mobilenetv2() -> tuple[int, int]:
    params = conv(3, 32, 3, bias=False) + bn(32)  # stem 928
    bn_channels = 32
    cin = 32
    for t, c, n, s in [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]:
        for i in range(n):
            p, b = inverted_residual(cin, c, s if i == 0 else 1, t)
            params, bn_channels, cin = params + p, bn_channels + b, c
    params += conv(320, 1280, 1, bias=False) + bn(1280) + linear(1280, 1000)
    return params, 2 * (bn_channels + 1280)


# stem 928; stages 896, 13,968, 39,696, 183,872, 303,168, 795,264, 473,920;
# head 409,600 + 2,560 = 412,160; classifier 1,281,000; total 3,504,872 (torchvision).
# BN channels: 32 + 48 + 528 + 1,152 + 2,944 + 3,360 + 5,472 + 2,240 + 1,280 = 17,056.
MOBILENETV2, MOBILENETV2_BUFFERS = mobilenetv2()
assert (
    MOBILENETV2
    == (928 + 896 + 13_968 + 39_696 + 183_872 + 303_168 + 795_264 + 473_920 + 412_160 + 1_281_000)
    == 3_504_872
)
assert MOBILENETV2_BUFFERS == 2 * 17_056 == 34_112


# ---------------------------------------------------------------- MobileNetV3-Small
def se(c: int) -> int:  # squeeze-and-excite to max(8, c // 4 rounded to 8): two 1x1 convs
    squeeze = max(8, (c // 4 + 4) // 8 * 8)
    return conv(c, squeeze, 1) + conv(squeeze, c, 1)


def mobilenetv3_small() -> tuple[int, int]:
    params, bn_channels, cin = conv(3, 16, 3, bias=False) + bn(16), 16, 16
    for k, hidden, out, has_se in [
        (3, 16, 16, True),
        (3, 72, 24, False),
        (3, 88, 24, False),
        (5, 96, 40, True),
        (5, 240, 40, True),
        (5, 240, 40, True),
        (5, 120, 48, True),
        (5, 144, 48, True),
        (5, 288, 96, True),
        (5, 576, 96, True),
        (5, 576, 96, True),
    ]:
        if hidden != cin:  # 1x1 expansion
            params += conv(cin, hidden, 1, bias=False) + bn(hidden)
            bn_channels += hidden
        params += conv(hidden, hidden, k, groups=hidden, bias=False) + bn(hidden)
        params += se(hidden) if has_se else 0
        params += conv(hidden, out, 1, bias=False) + bn(out)
        bn_channels, cin = bn_channels + hidden + out, out
    params += conv(96, 576, 1, bias=False) + bn(576) + linear(576, 1024) + linear(1024, 1000)
    return params, 2 * (bn_channels + 576)


# stem 464; bottlenecks 870,096; head conv 55,296 + 1,152; classifier 590,848 + 1,025,000;
# total 2,542,856 (torchvision). BN channels 6,056.
MOBILENETV3_SMALL, MOBILENETV3_SMALL_BUFFERS = mobilenetv3_small()
assert MOBILENETV3_SMALL == 464 + 870_096 + 56_448 + 590_848 + 1_025_000 == 2_542_856
assert MOBILENETV3_SMALL_BUFFERS == 12_112


# ---------------------------------------------------------------- EfficientNet-B0
def mbconv(cin: int, out: int, k: int, t: int) -> tuple[int, int]:
    hidden = cin * t
    params = bn_channels = 0
    if t != 1:  # 1x1 expansion
        params += conv(cin, hidden, 1, bias=False) + bn(hidden)
        bn_channels += hidden
    squeeze = max(1, cin // 4)  # squeeze-and-excite, to a quarter of the input channels
    params += conv(hidden, hidden, k, groups=hidden, bias=False) + bn(hidden)
    params += conv(hidden, squeeze, 1) + conv(squeeze, hidden, 1)
    params += conv(hidden, out, 1, bias=False) + bn(out)
    return params, bn_channels + hidden + out


def efficientnet_b0() -> tuple[int, int]:
    params, bn_channels, cin = conv(3, 32, 3, bias=False) + bn(32), 32, 32
    stages = [(1, 3, 16, 1), (6, 3, 24, 2), (6, 5, 40, 2), (6, 3, 80, 3)]
    stages += [(6, 5, 112, 3), (6, 5, 192, 4), (6, 3, 320, 1)]
    for t, k, c, n in stages:
        for _ in range(n):
            p, b = mbconv(cin, c, k, t)
            params, bn_channels, cin = params + p, bn_channels + b, c
    params += conv(320, 1280, 1, bias=False) + bn(1280) + linear(1280, 1000)
    return params, 2 * (bn_channels + 1280)


# stem 928; blocks 3,594,460; head conv 409,600 + 2,560; classifier 1,281,000;
# total 5,288,548 (torchvision). BN channels 21,008.
EFFICIENTNET_B0, EFFICIENTNET_B0_BUFFERS = efficientnet_b0()
assert EFFICIENTNET_B0 == 928 + 3_594_460 + 412_160 + 1_281_000 == 5_288_548
assert EFFICIENTNET_B0_BUFFERS == 2 * 21_008 == 42_016


# ---------------------------------------------------------------- Inception-v3
def basic_conv(i: int, o: int, kh: int, kw: int) -> tuple[int, int]:
    """BasicConv2d: a convolution without bias and a BatchNorm (params, BN channels)."""
    return i * o * kh * kw + bn(o), o


def convs(*specs: tuple[int, int, int, int]) -> tuple[int, int]:
    parts = [basic_conv(*spec) for spec in specs]
    return sum(p for p, _ in parts), sum(c for _, c in parts)


INCEPTION_D = [(768, 192, 1, 1), (192, 320, 3, 3), (768, 192, 1, 1)]  # InceptionD
INCEPTION_D += [(192, 192, 1, 7), (192, 192, 7, 1), (192, 192, 3, 3)]


def inception_v3() -> tuple[int, int]:
    def a(c: int, pf: int):  # InceptionA
        specs = [(c, 64, 1, 1), (c, 48, 1, 1), (48, 64, 5, 5), (c, 64, 1, 1)]
        return convs(*specs, (64, 96, 3, 3), (96, 96, 3, 3), (c, pf, 1, 1))

    def c_(c7: int):  # InceptionC on 768 channels
        seven = [(c7, c7, 1, 7), (c7, 192, 7, 1), (768, c7, 1, 1), (c7, c7, 7, 1)]
        rest = [(c7, c7, 1, 7), (c7, c7, 7, 1), (c7, 192, 1, 7), (768, 192, 1, 1)]
        return convs((768, 192, 1, 1), (768, c7, 1, 1), *seven, *rest)

    def e(c: int):  # InceptionE
        specs = [(c, 320, 1, 1), (c, 384, 1, 1), (384, 384, 1, 3), (384, 384, 3, 1)]
        specs += [(c, 448, 1, 1), (448, 384, 3, 3), (384, 384, 1, 3), (384, 384, 3, 1)]
        return convs(*specs, (c, 192, 1, 1))

    parts = [
        convs((3, 32, 3, 3), (32, 32, 3, 3), (32, 64, 3, 3), (64, 80, 1, 1), (80, 192, 3, 3)),
        a(192, 32),
        a(256, 64),
        a(288, 64),
        convs((288, 384, 3, 3), (288, 64, 1, 1), (64, 96, 3, 3), (96, 96, 3, 3)),  # InceptionB
        c_(128),
        c_(160),
        c_(160),
        c_(192),
        convs(*INCEPTION_D),
        e(1280),
        e(2048),
    ]
    params = sum(p for p, _ in parts) + linear(2048, 1000)
    return params, 2 * sum(c for _, c in parts)


# stem 172,672 (Conv2d_1a_3x3 .. Conv2d_4a_3x3); fc 2,049,000; total 23,834,568
# (torchvision, aux_logits=False).
INCEPTION_V3, INCEPTION_V3_BUFFERS = inception_v3()
assert INCEPTION_V3 == 23_834_568
assert INCEPTION_V3_BUFFERS == 34_432


# ---------------------------------------------------------------- DenseNet-121


def densenet121(growth=32, blocks=(6, 12, 24, 16), init=64, bn_size=4) -> tuple[int, int]:
    """(trainable parameters, BatchNorm buffer elements) of torchvision's densenet121."""
    params, norms = 3 * init * 7 * 7, [init]  # conv0, norm0
    c = init
    for k, n in enumerate(blocks):
        for _ in range(n):  # norm1, conv1 (1x1), norm2, conv2 (3x3), no biases
            params += c * bn_size * growth + bn_size * growth * growth * 9
            norms += [c, bn_size * growth]
            c += growth
        if k < len(blocks) - 1:  # transition: norm, 1x1 conv halving the channels
            params += c * (c // 2)
            norms.append(c)
            c //= 2
    norms.append(c)  # norm5
    return params + 2 * sum(norms) + linear(c, 1000), 2 * sum(norms)


DENSENET121, DENSENET121_BUFFERS = densenet121()
assert DENSENET121 == 7_978_856


# ---------------------------------------------------------------- RegNetY-400MF


def regnet_y_400mf(depths=(1, 3, 6, 6), widths=(48, 104, 208, 440), group=8) -> tuple[int, int]:
    """(trainable parameters, BatchNorm buffer elements) of torchvision's regnet_y_400mf."""
    params, norms, c = 3 * 32 * 9, [32], 32  # stem conv and its BatchNorm
    for depth, w in zip(depths, widths, strict=True):
        for i in range(depth):
            squeeze = c // 4  # squeeze-and-excite: a quarter of the block's input width
            params += c * w + w * group * 9 + 2 * w * squeeze + squeeze + w + w * w  # a b se c
            norms += [w, w, w]
            if i == 0:  # stride 2: the projection shortcut
                params += c * w
                norms.append(w)
            c = w
    return params + 2 * sum(norms) + linear(c, 1000), 2 * sum(norms)


REGNET_Y_400MF, REGNET_Y_400MF_BUFFERS = regnet_y_400mf()
assert REGNET_Y_400MF == 4_344_144


# ---------------------------------------------------------------- ViT-B/16


def vit_b_16(image=224, patch=16, dim=768, depth=12, mlp_dim=3072) -> int:
    """Trainable parameters of torchvision's vit_b_16."""
    tokens = (image // patch) ** 2 + 1
    embed = 3 * patch * patch * dim + dim + dim + tokens * dim  # conv_proj, class, positions
    attention = linear(dim, 3 * dim) + linear(dim, dim)  # in_proj, out_proj
    layer = 2 * dim + attention + 2 * dim + linear(dim, mlp_dim) + linear(mlp_dim, dim)
    return embed + depth * layer + 2 * dim + linear(dim, 1000)


VIT_B_16 = vit_b_16()
assert VIT_B_16 == 86_567_656


# ---------------------------------------------------------------- BERT-tiny (L=2, H=128, A=2)
# embeddings: word 30,522*128 = 3,906,816; position 512*128 = 65,536; token type 2*128 = 256;
# LayerNorm 256; sum 3,972,864.
# layer: in_proj 3*128*128+384 = 49,536; out_proj 16,512; LN 256; FFN 128*512+512 = 66,048
# and 512*128+128 = 65,664; LN 256; sum 198,272. Pooler 128*128+128 = 16,512.
H = 128
BERT_EMBEDDINGS = 30_522 * H + 512 * H + 2 * H + 2 * H
BERT_LAYER = linear(H, 3 * H) + linear(H, H) + 2 * H + linear(H, 4 * H) + linear(4 * H, H) + 2 * H
BERT = BERT_EMBEDDINGS + 2 * BERT_LAYER + linear(H, H)
assert BERT_EMBEDDINGS == 3_972_864 and BERT_LAYER == 198_272
assert BERT == 3_972_864 + 2 * 198_272 + 16_512 == 4_385_920


# ---------------------------------------------------------------- Whisper encoder (tiny)
# conv1 80*384*3+384 = 92,544; conv2 384*384*3+384 = 442,752; per layer: q, v, out_proj
# 3*147,840, k_proj 147,456 (no bias), fc1 591,360, fc2 590,208, two LayerNorms 1,536:
# 1,774,080; final LayerNorm 768; total 7,632,384 trainable (transformers). The frozen
# 1500 x 384 position table (576,000 more, 8,208,384 in all) is neither trainable nor a buffer.
W = 384
WHISPER_LAYER = 3 * linear(W, W) + linear(W, W, bias=False) + linear(W, 4 * W)
WHISPER_LAYER += linear(4 * W, W) + 2 * 2 * W
WHISPER = (80 * W * 3 + W) + (W * W * 3 + W) + 4 * WHISPER_LAYER + 2 * W
assert WHISPER_LAYER == 1_774_080
assert WHISPER == 92_544 + 442_752 + 4 * 1_774_080 + 768 == 7_632_384


# ---------------------------------------------------------------- LSTM / GRU classifiers
def rnn(gates: int, inputs: int, hidden: int, layers: int, dirs: int) -> int:
    # per layer and direction: weight_ih [g*h, in], weight_hh [g*h, h], bias_ih, bias_hh
    total = 0
    for layer in range(layers):
        i = inputs if layer == 0 else hidden * dirs
        total += dirs * (gates * hidden * (i + hidden) + 2 * gates * hidden)
    return total


# embedding 20,000*128 = 2,560,000; BiLSTM layer 0 2*(1,024*(128+256) + 2,048) = 790,528,
# layer 1 2*(1,024*(512+256) + 2,048) = 1,576,960; fc 512*2+2 = 1,026; total 4,928,514.
LSTM = 20_000 * 128 + rnn(4, 128, 256, 2, 2) + linear(512, 2)
assert LSTM == 2_560_000 + 790_528 + 1_576_960 + 1_026 == 4_928_514

# embedding 10,000*64 = 640,000; GRU layer 0 384*(64+128) + 768 = 74,496,
# layer 1 384*(128+128) + 768 = 99,072; fc 128*4+4 = 516; total 814,084.
GRU = 10_000 * 64 + rnn(3, 64, 128, 2, 1) + linear(128, 4)
assert GRU == 640_000 + 74_496 + 99_072 + 516 == 814_084


# ---------------------------------------------------------------- U-Net (base 32)
def double_conv(cin: int, out: int) -> int:
    return conv(cin, out, 3, bias=False) + bn(out) + conv(out, out, 3, bias=False) + bn(out)


def conv_transpose(cin: int, out: int, k: int) -> int:
    return cin * out * k * k + out


# enc1 9,632; enc2 55,552; enc3 221,696; bottleneck 885,760; up3 131,200; dec3 442,880;
# up2 32,832; dec2 110,848; up1 8,224; dec1 27,776; head 32*2+2 = 66; total 1,926,466.
# BN channels: 2*(32+64+128+256+128+64+32) = 1,408.
UNET = (
    double_conv(1, 32)
    + double_conv(32, 64)
    + double_conv(64, 128)
    + double_conv(128, 256)
    + conv_transpose(256, 128, 2)
    + double_conv(256, 128)
    + conv_transpose(128, 64, 2)
    + double_conv(128, 64)
    + conv_transpose(64, 32, 2)
    + double_conv(64, 32)
    + conv(32, 2, 1)
)
UNET_PARTS = [9_632, 55_552, 221_696, 885_760, 131_200, 442_880, 32_832, 110_848, 8_224]
assert UNET == sum(UNET_PARTS) + 27_776 + 66 == 1_926_466
UNET_BUFFERS = 2 * 1_408

SWIN_T = 28_288_354  # torchvision's swin_t (tests/reference/test_swin.py loads its weights)
SWIN_T_BUFFERS = (2 + 2 + 6 + 2) * 49 * 49  # a relative_position_index per block, 7x7 windows


# ---------------------------------------------------------------- GPT-2 small (tied head)
def gpt2(vocab: int, positions: int, dim: int, layers: int) -> int:
    ln = 2 * dim
    block = ln + linear(dim, 3 * dim) + linear(dim, dim) + ln + linear(dim, 4 * dim)
    block += linear(4 * dim, dim)
    return vocab * dim + positions * dim + layers * block + ln  # lm_head: wte's tensor


# wte 50,257*768 = 38,597,376; wpe 1,024*768 = 786,432; a block 7,087,872 (ln 1,536 twice,
# c_attn 1,771,776, attn.c_proj 590,592, c_fc 2,362,368, mlp.c_proj 2,360,064);
# 12 blocks 85,054,464; ln_f 1,536; the tied lm_head adds nothing: 124,439,808
# (transformers' GPT2LMHeadModel(GPT2Config())).
GPT2 = gpt2(50_257, 1_024, 768, 12)
assert GPT2 == 38_597_376 + 786_432 + 12 * 7_087_872 + 1_536 == 124_439_808


# ---------------------------------------------------------------- T5 encoder (t5-small)
def t5_encoder(vocab: int, dim: int, heads: int, d_kv: int, d_ff: int, layers: int) -> int:
    attention = 4 * dim * heads * d_kv  # q, k, v, o without biases
    block = dim + attention + dim + 2 * dim * d_ff  # RMS norms, wi, wo
    return vocab * dim + layers * block + 32 * heads + dim  # bias table (block 0), final norm


# shared 32,128*512 = 16,449,536 (encoder.embed_tokens is the same tensor); a block
# 3,146,752; 6 blocks 18,880,512; relative_attention_bias 256; final_layer_norm 512:
# 35,330,816 (transformers' T5EncoderModel(T5Config())).
T5_ENCODER = t5_encoder(32_128, 512, 8, 64, 2048, 6)
assert T5_ENCODER == 16_449_536 + 6 * 3_146_752 + 256 + 512 == 35_330_816


# ---------------------------------------------------------------- ConvNeXt-T
def cn_block(c: int) -> int:  # 7x7 depthwise conv, LayerNorm, Linear c→4c→c, layer scale
    return conv(c, c, 7, groups=c) + 2 * c + linear(c, 4 * c) + linear(4 * c, c) + c


# stem conv 3→96 k4 + LayerNorm2d; stages (3, 3, 9, 3) blocks of widths 96..768, each
# stage after the first entered by LayerNorm2d + conv k2; head LayerNorm2d + Linear 768→1000.
CONVNEXT_T = (
    conv(3, 96, 4)
    + 2 * 96
    + sum(n * cn_block(c) for n, c in ((3, 96), (3, 192), (9, 384), (3, 768)))
    + sum(2 * c + conv(c, 2 * c, 2) for c in (96, 192, 384))
    + 2 * 768
    + linear(768, 1000)
)
assert CONVNEXT_T == 28_589_128  # torchvision's convnext_tiny


# ---------------------------------------------------------------- LLaMA-style (SmolLM-135M)
def llama(vocab: int, dim: int, hidden: int, depth: int, heads: int, kv_heads: int) -> int:
    kv = dim // heads * kv_heads
    attention = 2 * linear(dim, dim, bias=False) + 2 * linear(dim, kv, bias=False)
    block = attention + 3 * linear(dim, hidden, bias=False) + 2 * dim  # SwiGLU, 2 RMSNorms
    return vocab * dim + depth * block + dim  # lm_head: embed_tokens' tensor


# embed_tokens 49,152*576 = 28,311,552; a block 3,540,096 (q, o 331,776 each; k, v 110,592
# each; gate, up, down 884,736 each; 2 RMSNorms 1,152); 30 blocks 106,202,880; norm 576;
# the tied lm_head adds nothing: 134,515,008 (SmolLM-135M).
LLAMA = llama(49_152, 576, 1_536, 30, 9, 3)
assert LLAMA == 28_311_552 + 30 * 3_540_096 + 576 == 134_515_008


def _render(s) -> str:
    return "\n".join(f"{d.code}: {d.message} ({d.span})" for d in s.diagnostics)


# file, entry model, trainable params, buffer elements, output types
ZOO = [
    ("lenet5.dnet", "LeNet5", LENET5, 0, ["f32[B, 10]"]),
    ("mlp.dnet", "MLP", MLP, 0, ["f32[B, 10]"]),
    ("resnet18.dnet", "ResNet18", RESNET18, RESNET18_BUFFERS, ["f32[B, 1000]"]),
    ("mobilenetv2.dnet", "MobileNetV2", MOBILENETV2, MOBILENETV2_BUFFERS, ["f32[B, 1000]"]),
    (
        "mobilenetv3_small.dnet",
        "MobileNetV3Small",
        MOBILENETV3_SMALL,
        MOBILENETV3_SMALL_BUFFERS,
        ["f32[B, 1000]"],
    ),
    (
        "efficientnet_b0.dnet",
        "EfficientNetB0",
        EFFICIENTNET_B0,
        EFFICIENTNET_B0_BUFFERS,
        ["f32[B, 1000]"],
    ),
    ("inception_v3.dnet", "InceptionV3", INCEPTION_V3, INCEPTION_V3_BUFFERS, ["f32[B, 1000]"]),
    ("densenet121.dnet", "DenseNet121", DENSENET121, DENSENET121_BUFFERS, ["f32[B, 1000]"]),
    ("vit_b_16.dnet", "ViTB16", VIT_B_16, 0, ["f32[B, 1000]"]),
    (
        "regnet_y_400mf.dnet",
        "RegNetY400MF",
        REGNET_Y_400MF,
        REGNET_Y_400MF_BUFFERS,
        ["f32[B, 1000]"],
    ),
    ("bert_encoder.dnet", "BertEncoder", BERT, 0, ["f32[B, T, 128]", "f32[B, 128]"]),
    ("whisper_encoder.dnet", "WhisperEncoder", WHISPER, 0, ["f32[B, 1500, 384]"]),
    ("lstm_classifier.dnet", "LSTMClassifier", LSTM, 0, ["f32[B, 2]"]),
    ("gru_classifier.dnet", "GRUClassifier", GRU, 0, ["f32[B, 4]"]),
    ("unet.dnet", "UNet", UNET, UNET_BUFFERS, ["f32[B, 2, 64, 64]"]),
    ("swin_t.dnet", "SwinT", SWIN_T, SWIN_T_BUFFERS, ["f32[B, 1000]"]),
    ("t5_encoder.dnet", "T5EncoderModel", T5_ENCODER, 0, ["f32[B, T, 512]"]),
    ("gpt2.dnet", "GPT2LMHeadModel", GPT2, 0, ["f32[B, T, 50257]"]),
    ("convnext_tiny.dnet", "ConvNeXtTiny", CONVNEXT_T, 0, ["f32[B, 1000]"]),
    ("llama.dnet", "LlamaForCausalLM", LLAMA, 0, ["f32[B, T, 49152]"]),
]


@pytest.mark.parametrize(
    ("file", "model", "params", "buffers", "outputs"),
    ZOO,
    ids=[row[0].removesuffix(".dnet") for row in ZOO],
)
def test_zoo_model(file: str, model: str, params: int, buffers: int, outputs: list[str]) -> None:
    s = check_file(str(MODELS / file))
    assert s.diagnostics == [], _render(s)
    assert s.model == model
    assert s.trainable_params == params
    assert s.buffers == buffers
    assert list(s.output_types) == outputs


def test_zoo_table_covers_every_file() -> None:
    files = {p.name for p in MODELS.glob("*.dnet")}
    assert files == {row[0] for row in ZOO} | LIBRARIES


@pytest.mark.parametrize(("file", "model", "params"), [row[:3] for row in ZOO])
def test_zoo_readme_row(file: str, model: str, params: int) -> None:
    """models/README.md lists each model with its parameter count."""
    rows = [
        line
        for line in (MODELS / "README.md").read_text().splitlines()
        if line.startswith(f"| `{file}` |")
    ]
    assert len(rows) == 1, file
    assert f"`{model}`" in rows[0] and f"{params:,}" in rows[0]


@pytest.mark.parametrize(
    "file",
    sorted(p.name for p in MODELS.glob("*.dnet") if p.name not in LIBRARIES),
)
def test_zoo_file_checks_cleanly(file: str) -> None:
    """The API reports no diagnostic, and `dualnet check` exits 0 with nothing on stderr."""
    s = check_file(str(MODELS / file))
    assert s.diagnostics == [], _render(s)
    proc = subprocess.run(
        [sys.executable, "-m", "dualnet", "check", str(MODELS / file)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""

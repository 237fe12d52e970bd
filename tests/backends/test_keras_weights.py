"""Keras layers and weights (dualnet.backends.keras.weights): each built-in layer, run by Keras
with `to_keras` weights (channels-last for spatial layers, dualnet's pads applied explicitly),
equals the op's NumPy reference; `from_keras` inverts `to_keras` bit-exactly."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
from keras_arrays import channels_last, channels_last_back, close, filled, reference  # noqa: E402

from dualnet.backends.common.conv_transpose import transposed_padding  # noqa: E402
from dualnet.backends.keras.weights import (  # noqa: E402
    dilates_kernel,
    flatten_permutation,
    from_keras,
    is_depthwise,
    keras_layer,
    make_layer,
    to_keras,
)
from dualnet.ir.types import DType, TensorType  # noqa: E402
from dualnet.ops import REGISTRY  # noqa: E402
from dualnet.ops.registry import run_rule  # noqa: E402


def run_keras(op: str, cfg: dict, params: dict, *args, **kwargs) -> np.ndarray:
    layer = make_layer(op, cfg)
    layer(*args, **kwargs)  # builds the layer
    layer.set_weights(to_keras(op, cfg, params))
    return keras.ops.convert_to_numpy(layer(*args, **kwargs))


def _randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------- convolutions

CONV = [
    pytest.param("Conv1d", (2, 4, 11), dict(out=6, kernel=3, stride=2, padding=1), id="1d"),
    pytest.param(
        "Conv1d",
        (2, 4, 12),
        dict(out=8, kernel=3, dilation=2, groups=2, bias=False),
        id="1d-groups-dilation-nobias",
    ),
    pytest.param(
        "Conv1d",
        (2, 4, 10),
        dict(out=8, kernel=3, groups=4, padding="same"),
        id="1d-depthwise-mult2",
    ),
    pytest.param("Conv2d", (2, 3, 9, 9), dict(out=6, kernel=3, padding=1), id="2d"),
    pytest.param(
        "Conv2d",
        (2, 3, 9, 8),
        dict(out=5, kernel=(3, 2), stride=(2, 1), padding=(1, 0), bias=False),
        id="2d-rect-nobias",
    ),
    pytest.param(
        "Conv2d",
        (2, 4, 9, 9),
        dict(out=8, kernel=3, groups=2, dilation=2, padding="same"),
        id="2d-groups-dilation",
    ),
    pytest.param(
        "Conv2d",
        (2, 4, 10, 10),
        dict(out=4, kernel=3, groups=4, stride=2, padding="same"),
        id="2d-depthwise-same-s2",
    ),
    pytest.param(
        "Conv2d", (2, 2, 7, 7), dict(out=6, kernel=3, groups=2, bias=False), id="2d-depthwise-mult3"
    ),
    pytest.param(
        "Conv2d",
        (2, 3, 11, 11),
        dict(out=5, kernel=3, stride=2, dilation=2, padding=2),
        id="2d-stride-and-dilation",
    ),
    pytest.param(
        "Conv2d",
        (2, 3, 11, 10),
        dict(out=3, kernel=(3, 2), stride=(2, 1), dilation=(1, 3), groups=3),
        id="2d-depthwise-stride-and-dilation",
    ),
    pytest.param(
        "Conv3d",
        (2, 3, 5, 8, 8),
        dict(out=4, kernel=(2, 3, 3), stride=(1, 2, 2), padding=1),
        id="3d",
    ),
    pytest.param("Conv3d", (1, 4, 4, 5, 5), dict(out=6, kernel=2, groups=2), id="3d-groups"),
    pytest.param(
        "ConvTranspose2d",
        (2, 3, 5, 5),
        dict(out=4, kernel=3, stride=2, padding=1, output_padding=1),
        id="t-outpad",
    ),
    pytest.param(
        "ConvTranspose2d",
        (2, 6, 4, 5),
        dict(
            out=6,
            kernel=(3, 2),
            stride=(2, 3),
            padding=(0, 1),
            output_padding=(1, 2),
            groups=3,
            bias=False,
        ),
        id="t-groups-rect",
    ),
    pytest.param(
        "ConvTranspose2d",
        (2, 3, 5, 6),
        dict(out=4, kernel=3, dilation=2, padding=1),
        id="t-dilation",
    ),
    pytest.param(
        "ConvTranspose2d",
        (2, 3, 4, 4),
        dict(out=2, kernel=3, stride=2, dilation=2, output_padding=1),
        id="t-stride-and-dilation",
    ),
    pytest.param(
        "ConvTranspose2d",
        (2, 2, 5, 4),
        dict(out=4, kernel=2, dilation=3, output_padding=(2, 1), padding=1),
        id="t-outpad-beyond-stride",
    ),
    pytest.param(
        "ConvTranspose1d",
        (2, 4, 6),
        dict(out=6, kernel=4, stride=3, padding=2, dilation=2, output_padding=2, groups=2),
        id="t1d-groups-dilation-outpad-beyond-stride",
    ),
    pytest.param("ConvTranspose1d", (2, 3, 5), dict(out=2, kernel=3, bias=False), id="t1d"),
    pytest.param(
        "ConvTranspose3d",
        (1, 4, 3, 3, 4),
        dict(
            out=6,
            kernel=(3, 2, 3),
            stride=(1, 2, 2),
            padding=(1, 0, 1),
            output_padding=(0, 1, 1),
            groups=2,
        ),
        id="t3d-groups",
    ),
    pytest.param(
        "ConvTranspose3d",
        (1, 2, 3, 3, 3),
        dict(out=2, kernel=2, stride=2, dilation=(1, 2, 1), output_padding=1),
        id="t3d-stride-and-dilation",
    ),
]


@pytest.mark.parametrize(("op", "shape", "config"), CONV)
def test_conv_matches_reference(op, shape, config):
    x = _randn(np.random.default_rng(1), *shape)
    expected, params, cfg = reference(op, {"x": x}, config)
    xl = channels_last(x)
    if op.startswith("ConvTranspose"):  # "valid" (zero rows appended for an output padding
        padding = transposed_padding(cfg)  # beyond the stride), then PyTorch's padding cropped
        y = run_keras(
            op, cfg, params, np.pad(xl, [(0, 0), *((0, r) for r in padding.rows), (0, 0)])
        )
        crop = (slice(a, n - b) for (a, b), n in zip(padding.crops, y.shape[1:], strict=False))
        y = y[(slice(None), *crop)]
    elif keras_layer(op, cfg).kwargs["padding"] == "same":  # Keras pads as dualnet
        y = run_keras(op, cfg, params, xl)
    else:  # dualnet's pads, then a "valid" convolution
        y = run_keras(op, cfg, params, np.pad(xl, [(0, 0), *cfg["pads"], (0, 0)]))
    close(channels_last_back(y), expected)


def test_conv_layer_choice():
    def choice(op, shape, **config):
        x = np.zeros(shape, np.float32)
        cfg = reference(op, {"x": x}, config)[2]
        return keras_layer(op, cfg), cfg

    spec, cfg = choice("Conv2d", (1, 4, 8, 8), out=8, kernel=3, groups=4)
    assert is_depthwise("Conv2d", cfg)
    assert spec.cls == "DepthwiseConv2D" and spec.kwargs["depth_multiplier"] == 2
    spec, _ = choice("Conv3d", (1, 4, 4, 4, 4), out=4, kernel=3, groups=4)
    assert spec.cls == "Conv3D" and spec.kwargs["groups"] == 4  # Keras has no DepthwiseConv3D
    spec, cfg = choice("Conv2d", (1, 3, 11, 11), out=5, kernel=3, stride=2, dilation=2)
    assert dilates_kernel(cfg)
    assert spec.kwargs["kernel_size"] == (5, 5) and spec.kwargs["dilation_rate"] == (1, 1)
    spec, _ = choice("ConvTranspose2d", (1, 2, 4, 4), out=2, kernel=3, stride=2, output_padding=1)
    assert spec.cls == "Conv2DTranspose" and spec.kwargs["output_padding"] == (1, 1)
    assert spec.kwargs["padding"] == "valid" and spec.kwargs["data_format"] == "channels_last"
    spec, _ = choice("ConvTranspose1d", (1, 2, 4), out=2, kernel=3, stride=2, output_padding=1)
    assert spec.cls == "Conv1DTranspose" and spec.kwargs["output_padding"] == (1,)
    spec, _ = choice("ConvTranspose3d", (1, 2, 3, 4, 4), out=2, kernel=3, dilation=2)
    assert spec.cls == "Conv3DTranspose" and spec.kwargs["kernel_size"] == (5, 5, 5)


def test_symbolic_same_padding_uses_keras_same():
    from dualnet.ir.dims import sym

    o = REGISTRY["Conv2d"]
    x = TensorType(DType.f32, (sym("B"), 3, sym("H"), sym("W")))
    _, ctx = run_rule(
        o,
        {"x": x},
        {},
        {},
        None,
        filled(o.construct, dict(out=4, kernel=3, stride=2, padding="same")),
    )
    assert ctx.config["pads"] == (None, None)
    assert keras_layer("Conv2d", ctx.config).kwargs["padding"] == "same"


# ---------------------------------------------------------------- dense and norms

PLAIN = [
    pytest.param("Linear", (2, 5), dict(out=7), id="linear"),
    pytest.param("Linear", (2, 3, 5), dict(out=4, bias=False), id="linear-3d-nobias"),
    pytest.param("BatchNorm", (4, 6), dict(), id="bn-2d"),
    pytest.param("BatchNorm", (2, 6, 5, 5), dict(eps=1e-3, momentum=0.3), id="bn-4d"),
    pytest.param("BatchNorm", (2, 3, 3, 4, 4), dict(), id="bn-5d"),
    pytest.param("LayerNorm", (2, 5, 8), dict(), id="ln-axes1"),
    pytest.param("LayerNorm", (2, 5, 8), dict(axes=2, eps=1e-6), id="ln-axes2"),
    pytest.param("LayerNorm", (2, 3, 4, 5), dict(axes=3), id="ln-axes3"),
    pytest.param("LayerNorm", (2, 5, 8), dict(axes=2, bias=False), id="ln-no-bias"),
    pytest.param("RMSNorm", (2, 5, 8), dict(), id="rms-axes1"),
    pytest.param("RMSNorm", (2, 3, 4, 5), dict(axes=2, eps=1e-6), id="rms-axes2"),
    pytest.param("GroupNorm", (2, 6, 5, 5), dict(groups=3), id="gn-4d"),
    pytest.param("GroupNorm", (2, 6, 7), dict(groups=6, eps=1e-3), id="gn-3d-instance"),
    pytest.param("GroupNorm", (3, 8), dict(groups=2), id="gn-2d"),
]


@pytest.mark.parametrize(("op", "shape", "config"), PLAIN)
def test_layer_matches_reference(op, shape, config):
    x = _randn(np.random.default_rng(2), *shape) * 3 + 1
    expected, params, cfg = reference(op, {"x": x}, config)
    spatial = op in ("BatchNorm", "GroupNorm")  # channel axis 1 → last
    y = run_keras(op, cfg, params, channels_last(x) if spatial else x)
    close(channels_last_back(y) if spatial else y, expected)


def test_batchnorm_momentum_and_eps():
    x = np.zeros((2, 4), np.float32)
    cfg = reference("BatchNorm", {"x": x}, dict(momentum=0.1))[2]
    kwargs = keras_layer("BatchNorm", cfg).kwargs
    assert kwargs["momentum"] == pytest.approx(0.9) and kwargs["epsilon"] == 1e-5


def test_embedding():
    ids = np.random.default_rng(3).integers(0, 11, (2, 5)).astype(np.int64)
    expected, params, cfg = reference("Embedding", {"ids": ids}, dict(vocab=11, dim=4))
    close(run_keras("Embedding", cfg, params, ids), expected, tol=0)


def test_flatten_permutation():
    """Dense after flattening NHWC (H·W·C order) equals Linear after flattening NCHW."""
    rng = np.random.default_rng(4)
    x = _randn(rng, 2, 3, 4, 5)
    flat = x.reshape(2, -1)
    expected, params, cfg = reference("Linear", {"x": flat}, dict(out=7))
    layer = keras.layers.Dense(7)
    layer.build((None, 60))
    layer.set_weights(to_keras("Linear", cfg, params, flattened=(3, 4, 5)))
    y = keras.ops.convert_to_numpy(layer(channels_last(x).reshape(2, -1)))
    close(y, expected)
    perm = flatten_permutation(3, 4, 5)
    assert np.array_equal(channels_last(x).reshape(2, -1), flat[:, perm])
    back = from_keras(
        "Linear", cfg, to_keras("Linear", cfg, params, flattened=(3, 4, 5)), flattened=(3, 4, 5)
    )
    assert all(np.array_equal(back[k], params[k]) for k in params)


# ---------------------------------------------------------------- recurrent

RNN = [
    pytest.param(op, dict(hidden=4, layers=layers, bidirectional=bi), id=f"{op}-{layers}-{bi}")
    for op in ("LSTM", "GRU")
    for layers, bi in ((1, False), (2, True))
]


@pytest.mark.parametrize(("op", "config"), RNN)
def test_rnn_matches_reference(op, config):
    x = _randn(np.random.default_rng(5), 2, 6, 5)
    expected, params, cfg = reference(op, {"x": x}, config)
    weights = to_keras(op, cfg, params)
    dirs = 2 if config["bidirectional"] else 1
    assert len(weights) == 3 * config["layers"] * dirs
    close(run_keras(op, cfg, params, x), expected)


# ---------------------------------------------------------------- attention


def _mha_case(bias: bool, mask: str | None, causal: bool = False, tk: int = 5):
    rng = np.random.default_rng(6)
    q, k, v = _randn(rng, 2, 4, 8), _randn(rng, 2, tk, 8), _randn(rng, 2, tk, 8)
    m = None
    if mask == "keys":
        m = rng.random((2, tk)) > 0.4
        m[:, 0] = True  # every query may attend some key
    elif mask == "full":
        m = rng.random((2, 4, tk)) > 0.4
        m[:, :, 0] = True
    inputs = {"q": q, "k": k, "v": v, "mask": m}
    expected, params, cfg = reference(
        "MultiHeadAttention", inputs, dict(dim=8, heads=2, bias=bias), dict(causal=causal)
    )
    return inputs, expected, params, cfg


def _keras_mask(mask, tq):
    """dualnet's mask ([B, Tk] or [B, Tq, Tk], true = may attend) → Keras's [B, Tq, Tk]."""
    if mask is None or mask.ndim == 3:
        return mask
    return np.broadcast_to(mask[:, None, :], (mask.shape[0], tq, mask.shape[1]))


MHA = [
    pytest.param(True, None, False, 5, id="bias"),
    pytest.param(False, "keys", False, 6, id="nobias-keymask"),
    pytest.param(True, "full", False, 5, id="full-mask"),
    pytest.param(True, None, True, 4, id="causal"),
    pytest.param(True, "keys", True, 6, id="causal-keymask-cross"),
]


@pytest.mark.parametrize(("bias", "mask", "causal", "tk"), MHA)
def test_mha_matches_reference(bias, mask, causal, tk):
    inputs, expected, params, cfg = _mha_case(bias, mask, causal, tk)
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    y = run_keras(
        "MultiHeadAttention",
        cfg,
        params,
        q,
        v,
        key=k,
        attention_mask=_keras_mask(inputs["mask"], q.shape[1]),
        use_causal_mask=causal,
    )
    close(y, expected)
    assert len(to_keras("MultiHeadAttention", cfg, params)) == (8 if bias else 4)


def test_mha_fully_masked_query():
    """A query that may attend no key: dualnet gives it zero attention weights (result =
    out_proj.bias), Keras's MultiHeadAttention a uniform average over all keys. The Keras
    emitter must select `out_proj.bias` (or 0) where no key is allowed, as done here."""
    inputs, _, _, _ = _mha_case(True, "keys")
    inputs["mask"][1] = False
    expected, params, cfg = reference("MultiHeadAttention", inputs, dict(dim=8, heads=2))
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    mask = _keras_mask(inputs["mask"], q.shape[1])
    y = run_keras("MultiHeadAttention", cfg, params, q, v, key=k, attention_mask=mask)
    w, b = params["in_proj_weight"], params["in_proj_bias"]
    uniform = (v[1] @ w[16:].T + b[16:]).mean(0) @ params["out_proj.weight"].T
    close(y[1], np.broadcast_to(uniform + params["out_proj.bias"], y[1].shape))
    fixed = np.where(mask.any(-1)[..., None], y, params["out_proj.bias"])
    close(fixed, expected)


# ---------------------------------------------------------------- round trips

ALL = [
    *CONV,
    *PLAIN,
    pytest.param("Embedding", (2, 5), dict(vocab=11, dim=4), id="embedding"),
    *[pytest.param(p.values[0], (2, 6, 5), p.values[1], id=p.id) for p in RNN],
]


@pytest.mark.parametrize(("op", "shape", "config"), ALL)
def test_round_trip_is_exact(op, shape, config):
    dtype = np.int64 if op == "Embedding" else np.float32
    _, params, cfg = reference(
        op, {("ids" if op == "Embedding" else "x"): np.zeros(shape, dtype)}, config, seed=9
    )
    if op == "LSTM":  # Keras keeps only bias_ih + bias_hh; the inverse gives bias_hh = 0
        weights = to_keras(op, cfg, params)
        assert all(
            np.array_equal(a, b)
            for a, b in zip(weights, to_keras(op, cfg, from_keras(op, cfg, weights)), strict=True)
        )
        params = {k: np.zeros_like(v) if k.startswith("bias_hh") else v for k, v in params.items()}
    back = from_keras(op, cfg, to_keras(op, cfg, params))
    assert back.keys() == params.keys()
    for name, value in params.items():
        assert back[name].dtype == value.dtype and np.array_equal(back[name], value), name


@pytest.mark.parametrize("bias", [True, False])
def test_mha_round_trip_is_exact(bias):
    _, _, params, cfg = _mha_case(bias, None)
    back = from_keras("MultiHeadAttention", cfg, to_keras("MultiHeadAttention", cfg, params))
    assert back.keys() == params.keys()
    assert all(np.array_equal(back[k], params[k]) for k in params)

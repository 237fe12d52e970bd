"""Every row of ../shared/CONVENTIONS.md as its own test: a small .dnet program, the same
weight file in PyTorch and Keras, the same outputs (and for BatchNorm in training, the same
updated statistics) within 1e-4 relative."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch
from keras_harness import TOL, Pair, exact_float32, relative_error
from safetensors.numpy import load_file

import dualnet


def _model(tmp_path, layers: str, signature: str, body: str):
    source = tmp_path / "row.dnet"
    source.write_text(
        f"model Row() {{\n{layers}\n    forward({signature}) {{\n{body}\n    }}\n}}\n"
    )
    return source


def _check(tmp_path, layers, signature, body, sizes=(5,), train=False):
    pair = Pair(_model(tmp_path, layers, signature, body), tmp_path)
    for n in sizes:
        inputs = pair.inputs(n)
        assert pair.worst_output_error(inputs, train) < TOL
    return pair


@pytest.mark.parametrize("size", [8, 9])
def test_same_padding_with_stride_2_is_tensorflows_rule(tmp_path, size):
    """Symbolic H, W: Keras's own "same"; concrete sizes: explicit (odd pixel at the end)."""
    _check(
        tmp_path,
        '    conv = Conv2d(4, kernel=3, stride=2, padding="same")',
        "x: f32[B, 3, H, W]",
        "        return conv(x)",
        sizes=(size,),
    )
    _check(
        tmp_path,
        '    conv = Conv2d(4, kernel=4, stride=2, padding="same")',
        f"x: f32[B, 3, {size}, {size}]",
        "        return conv(x)",
    )


def test_transposed_conv_uses_pytorchs_padding_and_output_padding(tmp_path):
    _check(
        tmp_path,
        "    up = ConvTranspose2d(4, kernel=3, stride=2, padding=1, output_padding=1)",
        "x: f32[B, 3, 7, 6]",
        "        return up(x)",
    )


def test_batchnorm_momentum_updates_the_running_statistics_alike(tmp_path):
    pair = _check(
        tmp_path,
        "    conv = Conv2d(4, kernel=1)\n    bn = BatchNorm(momentum=0.3)",
        "x: f32[B, 3, 6, 6]",
        "        return bn(conv(x))",
        train=True,
    )
    stats = {}
    for name, model in (("torch", pair.torch), ("keras", pair.keras)):
        out = tmp_path / f"{name}.safetensors"
        dualnet.save_weights(model, out)
        stats[name] = load_file(out)
    for key in ("bn.running_mean", "bn.running_var"):
        assert relative_error(stats["keras"][key], stats["torch"][key]) < TOL
        assert relative_error(stats["torch"][key], pair.weights[key]) > 1e-3  # they moved


@pytest.mark.parametrize(
    "layer", ["BatchNorm()", "LayerNorm()", "LayerNorm(eps=0.001)", "GroupNorm(2)"]
)
def test_normalisation_eps_is_dualnets_and_explicit(tmp_path, layer):
    """Inputs with a tiny variance, where eps 1e-5 and Keras's 1e-3 differ visibly."""
    pair = Pair(
        _model(tmp_path, f"    norm = {layer}", "x: f32[B, 4, 5]", "        return norm(x * 0.01)"),
        tmp_path,
    )
    assert "epsilon=" in pair.keras_source
    assert pair.worst_output_error(pair.inputs()) < TOL


@pytest.mark.parametrize("mode", ["none", "tanh"])
def test_gelu_is_exact_unless_tanh(tmp_path, mode):
    _check(
        tmp_path,
        "    fc = Linear(6)",
        "x: f32[B, 4]",
        f'        return gelu(fc(x) * 3.0, approximate="{mode}")',
    )


@pytest.mark.parametrize("count", ["true", "false"])
def test_average_pooling_counts_padding_as_declared(tmp_path, count):
    _check(
        tmp_path,
        "    conv = Conv2d(2, kernel=1)",
        "x: f32[B, 3, 7, 7]",
        f"        return avg_pool2d(conv(x), 3, stride=2, padding=1, count_include_pad={count})",
    )


@pytest.mark.parametrize("layer", ["GRU(6)", "GRU(6, layers=2, bidirectional=true)"])
def test_gru_gate_order_and_reset_after(tmp_path, layer):
    _check(tmp_path, f"    rnn = {layer}", "x: f32[B, T, 4]", "        return rnn(x)")


def test_lstm_gates_and_two_biases(tmp_path):
    _check(
        tmp_path,
        "    rnn = LSTM(6, layers=2, bidirectional=true)",
        "x: f32[B, T, 4]",
        "        y, h, c = rnn(x, state=true)\n        return y, h, c",
    )


@pytest.mark.parametrize(
    "layer",
    [
        "Conv2d(6, kernel=3, padding=1)",
        "Conv2d(6, kernel=3, groups=3, padding=1)",
        "Conv2d(6, kernel=3, groups=6, padding=1)",
        "Conv2d(6, kernel=3, stride=2, dilation=2)",
    ],
)
def test_conv_kernel_layouts(tmp_path, layer):
    channels = 6 if "groups=6" in layer else 3
    _check(
        tmp_path, f"    conv = {layer}", f"x: f32[B, {channels}, 9, 9]", "        return conv(x)"
    )


def test_linear_weight_is_out_by_in(tmp_path):
    _check(tmp_path, "    fc = Linear(5, bias=false)", "x: f32[B, T, 3]", "        return fc(x)")


def test_flatten_after_a_conv_is_channel_major(tmp_path):
    _check(
        tmp_path,
        "    conv = Conv2d(4, kernel=3)\n    fc = Linear(3)",
        "x: f32[B, 2, 6, 5]",
        "        return fc(flatten(relu(conv(x))))",
    )


@pytest.mark.parametrize("call", ["softmax(y, 1)", "softmax(y)", "log_softmax(y, 2)"])
def test_softmax_axis_is_explicit(tmp_path, call):
    """After a conv the tensor is channels-last inside Keras: axis 1 must still be C."""
    _check(
        tmp_path,
        "    conv = Conv2d(4, kernel=1)",
        "x: f32[B, 3, 5, 6]",
        f"        y = conv(x)\n        return {call}",
    )


def test_attention_mask_true_means_may_attend(tmp_path):
    """A batch row with every key masked gets out_proj's bias, in both frameworks."""
    pair = Pair(
        _model(
            tmp_path,
            "    mha = MultiHeadAttention(8, 2)",
            "q: f32[B, T, 8], mask: bool[B, T]",
            "        return mha(q, q, q, mask=mask)",
        ),
        tmp_path,
    )
    q, mask = pair.inputs()
    mask[1] = False
    assert pair.worst_output_error([q, mask]) < TOL
    out = pair.run_keras([q, mask])[0]
    bias = pair.weights["mha.out_proj.bias"]
    assert np.allclose(out[1], np.broadcast_to(bias, out[1].shape), atol=1e-6)


def test_multihead_attention_weights_are_pytorchs_in_proj_and_out_proj(tmp_path):
    pair = _check(
        tmp_path,
        "    mha = MultiHeadAttention(8, 2)",
        "q: f32[B, T, 8]",
        "        return mha(q, q, q, causal=true)",
    )
    assert sorted(k for k in pair.weights) == [
        "mha.in_proj_bias",
        "mha.in_proj_weight",
        "mha.out_proj.bias",
        "mha.out_proj.weight",
    ]


def test_tf32_is_off_for_parity():
    exact_float32()
    assert not torch.backends.cuda.matmul.allow_tf32
    assert not tf.config.experimental.tensor_float_32_execution_enabled()

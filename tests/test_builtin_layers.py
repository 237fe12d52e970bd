"""Issue 13's layers: LayerNorm2d (torchvision's LayerNorm2d, weights [C]), StochasticDepth
(torchvision's StochasticDepth in training, identity in inference, off in training parity
as Dropout is) and the pooling layer forms (MaxPool2d, AvgPool2d: the functions partly
applied, PyTorch modules in the generated code)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import torch  # noqa: E402

import dualnet  # noqa: E402

SOURCE = """
model Net(p: float = 0.5, mode: str = "row") {
    norm = LayerNorm2d(eps=1e-6)
    drop = StochasticDepth(p, mode=mode)
    pool = MaxPool2d(3, stride=2, padding=1)
    steps = Sequential(AvgPool2d(2, ceil_mode=true), LayerNorm2d())
    pool1d = MaxPool1d(2, stride=1)
    forward(x: f32[B, 4, 8, 8]) -> f32[B, 4, 3] {
        return steps(pool(drop(norm(x)))) |> flatten(2) |> pool1d
    }
}
"""


def _program(tmp_path, source: str = SOURCE):
    path = tmp_path / "net.dnet"
    path.write_text(source)
    return dualnet.load(str(path))


def test_layernorm2d_is_torchvision_layernorm2d(tmp_path):
    """The state_dict names and numbers of torchvision's LayerNorm2d: nn.LayerNorm over the
    channels of a permuted NCHW tensor."""
    module = _program(tmp_path).torch(seed=3).eval()
    norm = module.norm
    assert sorted(norm.state_dict()) == ["bias", "weight"]
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 4, 5, 3)
    reference = torch.nn.functional.layer_norm(
        x.permute(0, 2, 3, 1), (4,), norm.weight, norm.bias, 1e-6
    ).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), reference, rtol=1e-6, atol=1e-6)


def test_pooling_layer_forms_are_torch_modules(tmp_path):
    module = _program(tmp_path).torch(seed=0)
    assert isinstance(module.pool, torch.nn.MaxPool2d)
    assert (module.pool.kernel_size, module.pool.stride, module.pool.padding) == (3, 2, 1)
    assert isinstance(module.steps[0], torch.nn.AvgPool2d) and module.steps[0].ceil_mode
    assert isinstance(module.pool1d, torch.nn.MaxPool1d)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_in_torch_drops_rows_or_the_batch(tmp_path, mode):
    torch.manual_seed(0)
    drop = _program(tmp_path, SOURCE.replace('"row"', f'"{mode}"')).torch(seed=0).drop
    x = torch.ones(64, 3, 2)
    assert torch.equal(drop.eval()(x), x)
    y = drop.train()(x)
    values = set(y.unique().tolist())
    assert values <= {0.0, 2.0} and len(values) == (1 if mode == "batch" else 2)
    per_sample = y.flatten(1)
    assert torch.equal(per_sample.min(1).values, per_sample.max(1).values)  # whole samples


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_in_keras_drops_rows_or_the_batch(tmp_path, mode):
    import keras

    drop = _program(tmp_path, SOURCE.replace('"row"', f'"{mode}"')).keras(seed=0).drop
    x = np.ones((64, 3, 2), np.float32)
    assert np.array_equal(keras.ops.convert_to_numpy(drop(x, training=False)), x)
    y = keras.ops.convert_to_numpy(drop(x, training=True))
    per_sample = y.reshape(64, -1)
    assert np.array_equal(per_sample.min(1), per_sample.max(1))
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert len(np.unique(y)) == (1 if mode == "batch" else 2)


def test_training_parity_turns_stochastic_depth_off(tmp_path):
    """As Dropout: the random masks differ per framework, so `parity --train` runs p = 0."""
    from dualnet.verify import parity

    rows, _ = parity.compare(_program(tmp_path), None, ["torch", "keras"], train=True)
    assert rows and all(r.ok for r in rows), rows


def _first_diagnostic(tmp_path, source: str):
    path = tmp_path / "bad.dnet"
    path.write_text(source)
    return dualnet.check_file(str(path)).diagnostics[0]


@pytest.mark.parametrize(
    ("declaration", "code", "text"),
    [
        ("StochasticDepth(1.0)", "E-VALUE", "`p` must be in [0, 1)"),
        ('StochasticDepth(0.1, mode="rows")', "E-TYPE", "expects one of"),
        ("LayerNorm2d(eps=-1.0)", "E-VALUE", "`eps` must be non-negative"),
    ],
)
def test_bad_arguments_are_diagnostics(tmp_path, declaration, code, text):
    found = _first_diagnostic(
        tmp_path,
        f"model M() {{\n    layer = {declaration}\n"
        "    forward(x: f32[B, 4, 2, 2]) -> f32[B, 4, 2, 2] { return layer(x) }\n}\n",
    )
    assert found.code == code and text in found.message and found.span is not None, found


def test_attention_dropout_must_be_a_probability(tmp_path):
    found = _first_diagnostic(
        tmp_path,
        "model M() {\n    mha = MultiHeadAttention(4, 2, dropout=1.5)\n"
        "    forward(x: f32[B, T, 4]) -> f32[B, T, 4] { return mha(x, x, x) }\n}\n",
    )
    assert found.code == "E-VALUE" and "`dropout` must be in [0, 1)" in found.message, found
    assert found.span.line == 2


def test_a_pooling_layer_is_declared_not_created_in_forward(tmp_path):
    found = _first_diagnostic(
        tmp_path,
        "model M() {\n"
        "    forward(x: f32[B, 4, 2, 2]) -> f32[B, 4, 1, 1] { return MaxPool2d(2)(x) }\n}\n",
    )
    assert found.code == "E-MODEL" and "layer MaxPool2d" in found.message, found

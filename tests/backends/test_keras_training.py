"""Keras as Keras users train the generated models: `fit()`, `train_on_batch` and `evaluate`
run BatchNorm and Dropout in the right mode (the generated `call` takes `training` and passes
it on), also under mixed precision; multi-input models take their inputs as one tuple, as
`fit()` passes them; Keras layers carry the .dnet names (valid TensorFlow scope names); and
`TFLiteConverter.from_keras_model` converts the models."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from keras_harness import exact_float32, relative_error, run_tflite

import dualnet
from dualnet.backends.keras.names import dualnet_name
from dualnet.backends.keras.state import leaves, torch_named

ROOT = Path(__file__).resolve().parents[2]

NET = """
model Block(out: int) {
    conv = Conv2d(out, kernel=3, padding=1)
    bn = BatchNorm()
    forward(x: f32[B, C, H, W]) -> f32[B, out, H, W] { return relu(bn(conv(x))) }
}

model Net(classes: int = 4, p: float = 0.5) {
    _stem = Block(8)
    body = Sequential(Conv2d(8, kernel=1), BatchNorm(), relu, Block(6))
    drop = Dropout(p)
    fc = Linear(classes)
    forward(x: f32[B, 3, 8, 8]) -> f32[B, classes] {
        x = x |> _stem |> body
        return fc(drop(global_avg_pool(x)))
    }
}

model Drop(p: float = 0.5) {
    drop = Dropout(p)
    forward(x: f32[B, N]) -> f32[B, N] { return drop(x) }
}

model Attend(p: float = 0.5) {
    mha = MultiHeadAttention(8, 2, dropout=p)
    forward(x: f32[B, T, 8], keep: bool[B, T]) -> f32[B, T, 8] {
        return mha(x, x, x) + mha(x, x, x, mask=keep)
    }
}

model Pairwise() {
    fc = Linear(4)
    bn = BatchNorm()
    forward(a: f32[B, 6], b: f32[B, 6]) -> f32[B, 4] { return bn(fc(a) * b[:, :4]) }
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    path = tmp_path_factory.mktemp("training") / "net.dnet"
    path.write_text(NET)
    exact_float32()
    return dualnet.load(str(path))


def _batch(seed: int = 0, n: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


def _statistics(model) -> dict[str, np.ndarray]:
    return {k: v for k, v in torch_named(model, lambda w: w.numpy()).items() if "running" in k}


def _torch_train_forward(module, *inputs) -> dict[str, np.ndarray]:
    """PyTorch's running statistics after one training-mode forward pass."""
    module.train()
    with torch.no_grad():
        module(*(torch.from_numpy(x) for x in inputs))
    return {k: v.numpy() for k, v in module.state_dict().items() if "running" in k}


@pytest.mark.parametrize("how", ["fit", "train_on_batch"])
def test_one_training_step_moves_batchnorm_statistics_as_pytorch(program, how):
    """BatchNorm in a sub-model, a Sequential and a sub-model inside it: after one step of
    `fit()` (or `train_on_batch`) the running statistics are PyTorch's after one
    training-mode forward pass of the same batch from the same weights."""
    x, y = _batch(), np.zeros((8, 4), np.float32)
    want = _torch_train_forward(program.torch("Net", seed=1), x)
    model = program.keras("Net", seed=1)
    before = _statistics(model)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    if how == "fit":
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    else:
        model.train_on_batch(x, y)
    got = _statistics(model)
    assert set(got) == set(want) and len(got) == 6  # three BatchNorms
    for name in want:
        assert relative_error(got[name], want[name]) < 1e-5, name
        assert not np.allclose(got[name], before[name]), name


def test_evaluate_and_predict_use_the_running_statistics(program):
    """Inference mode: the statistics stay, Dropout is off, the outputs are PyTorch's in
    eval mode."""
    x, y = _batch(1), np.zeros((8, 4), np.float32)
    module = program.torch("Net", seed=2).eval()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    model = program.keras("Net", seed=2)
    before = _statistics(model)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.evaluate(x, y, batch_size=8, verbose=0)
    got = model.predict(x, batch_size=8, verbose=0)
    assert relative_error(got, want) < 1e-5
    after = _statistics(model)
    assert all(np.array_equal(after[k], before[k]) for k in before)


def test_dropout_drops_in_fit_and_not_in_evaluate(program):
    """Loss mean(drop(x)²) against zeros: a training step scales the kept half by 2, so its
    loss is about twice evaluate's, which is mean(x²) exactly."""
    x = np.random.default_rng(3).standard_normal((8, 4096)).astype(np.float32)
    y = np.zeros_like(x)
    model = program.keras("Drop")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    evaluated = model.evaluate(x, y, batch_size=8, verbose=0)
    trained = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history["loss"][0]
    assert evaluated == pytest.approx(float(np.mean(x.astype(np.float64) ** 2)), rel=1e-5)
    assert 1.8 < trained / evaluated < 2.2


def test_attention_dropout_drops_weights_in_training_only(program):
    """MultiHeadAttention(dropout=p) drops attention weights in training mode, in PyTorch
    and in Keras, with and without a mask; in inference mode both compute the same."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6, 8)).astype(np.float32)
    keep = rng.random((4, 6)) < 0.8
    module = program.torch("Attend", seed=4)
    model = program.keras("Attend", seed=4)
    with torch.no_grad():
        want = module.eval()(torch.from_numpy(x), torch.from_numpy(keep)).numpy()
        trained = [module.train()(torch.from_numpy(x), torch.from_numpy(keep)) for _ in range(2)]
    assert relative_error(model(x, keep, training=False), want) < 1e-5
    assert not torch.allclose(trained[0], trained[1])
    assert relative_error(trained[0].numpy(), want) > 1e-2
    dropped = [np.asarray(model(x, keep, training=True)) for _ in range(2)]
    assert not np.allclose(dropped[0], dropped[1])
    assert relative_error(dropped[0], want) > 1e-2


def test_fit_passes_several_inputs_as_one_tuple(program):
    """`fit()`, `evaluate` and `predict` pass a model's inputs as one tuple; direct calls
    pass them one by one: both give PyTorch's numbers."""
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal((8, 6)).astype(np.float32) for _ in range(2))
    module = program.torch("Pairwise", seed=3).eval()
    with torch.no_grad():
        want = module(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    model = program.keras("Pairwise", seed=3)
    assert relative_error(model(a, b), want) < 1e-5
    assert relative_error(model.predict((a, b), verbose=0), want) < 1e-5
    statistics = _torch_train_forward(program.torch("Pairwise", seed=3), a, b)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit((a, b), np.zeros((8, 4), np.float32), batch_size=8, verbose=0)
    got = _statistics(model)
    assert all(relative_error(got[k], statistics[k]) < 1e-5 for k in statistics)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_batchnorm_trains_under_mixed_precision(program, policy):
    """Layers compute in bfloat16 / float16, BatchNorm's statistics in float32: they match
    PyTorch's float32 ones to the low precision's accuracy."""
    x, y = _batch(5), np.zeros((8, 4), np.float32)
    want = _torch_train_forward(program.torch("Net", seed=4), x)
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = program.keras("Net", seed=4)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        assert model.fc.compute_dtype == policy.removeprefix("mixed_")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    got = _statistics(model)
    for name in want:
        assert got[name].dtype == np.float32
        assert relative_error(got[name], want[name]) < 2e-2, name


def test_keras_names_are_the_state_dict_names(program, tmp_path):
    """Every weight's Keras path is its state_dict prefix (Sequential steps by position); a
    name TensorFlow's scopes refuse (`_stem`) is `._stem`; the names survive a .keras file."""
    for model in (
        dualnet.load(str(ROOT / "models" / "resnet18.dnet")).keras(),
        program.keras("Net"),
    ):
        root = model.name + "/"
        for prefix, layer in leaves(model):
            path = layer.path.removeprefix(root).split("/")
            assert ".".join(dualnet_name(p) for p in path) + "." == prefix
    model = program.keras("Net", seed=5)
    assert type(model.get_layer("._stem")).__name__ == "Block"
    model.save(tmp_path / "net.keras")
    loaded = keras.models.load_model(tmp_path / "net.keras")
    assert [layer.name for layer in loaded.layers] == ["._stem", "body", "drop", "fc"]
    assert [s.name for s in loaded.body.layers] == ["0", "1", "2", "3"]
    x = _batch(6)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("name", ["lenet5", "Net"])
def test_tflite_converts_the_keras_model_itself(program, name):
    """`TFLiteConverter.from_keras_model` reads the input shape Keras records at the
    model's build (a single-input model's)."""
    if name == "Net":
        model, module, x = program.keras("Net", seed=6), program.torch("Net", seed=6), _batch(7)
    else:
        lenet = dualnet.load(str(ROOT / "models" / "lenet5.dnet"))
        model, module = lenet.keras(seed=6), lenet.torch(seed=6)
        x = np.random.default_rng(7).standard_normal((2, 1, 28, 28)).astype(np.float32)
    flat = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    with torch.no_grad():
        want = module.eval()(torch.from_numpy(x)).numpy()
    assert relative_error(run_tflite(flat, x), want) < 1e-4

"""The Keras backend end to end, on the zoo: the same weight file gives PyTorch's outputs and
gradients; BatchNorm trains alike; the source is clean, deterministic and importable; the
models save as .keras, export as SavedModels and convert to TFLite."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from generated_source import assert_matches_golden, assert_ruff_clean, compile_elsewhere
from keras_harness import TOL, Pair, relative_error, run_tflite
from safetensors.numpy import load_file

import dualnet
from dualnet.backends.keras.lowering import KERAS_DTYPES
from dualnet.backends.keras.state import torch_named
from dualnet.compiler import compile_file
from dualnet.diagnostics import DualnetError
from dualnet.io.weights import write_state

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
ZOO = [
    "lenet5",
    "mlp",
    "resnet18",
    "mobilenetv2",
    "bert_encoder",
    "lstm_classifier",
    "gru_classifier",
    "unet",
]
CNNS = ["lenet5", "resnet18", "mobilenetv2", "unet"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Each zoo model in both frameworks from one weight file (built once per module)."""
    cache: dict[str, Pair] = {}

    def get(name: str) -> Pair:
        if name not in cache:
            cache[name] = Pair(MODELS / f"{name}.dnet", tmp_path_factory.mktemp(name))
        return cache[name]

    return get


@pytest.mark.parametrize("name", ZOO)
def test_zoo_outputs_match_pytorch(pairs, name):
    pair = pairs(name)
    assert pair.worst_output_error(pair.inputs(sizes=3)) < TOL


def _torch_gradients(pair: Pair, inputs, weights):
    net = pair.torch.eval()
    tensors = [torch.from_numpy(x).requires_grad_(x.dtype == np.float32) for x in inputs]
    out = net(*tensors)
    out = out if isinstance(out, tuple) else (out,)
    loss = sum((o * torch.from_numpy(w)).sum() for o, w in zip(out, weights, strict=True))
    loss.backward()
    params = {n: p.grad.numpy() for n, p in net.named_parameters()}
    return [t.grad.numpy() for t in tensors if t.requires_grad], params


def _keras_gradients(pair: Pair, inputs, weights):
    model = pair.keras
    tensors = [tf.constant(x) for x in inputs]
    watched = [t for t, x in zip(tensors, inputs, strict=True) if x.dtype == np.float32]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        out = model(*tensors, training=False)
        out = out if isinstance(out, tuple | list) else (out,)
        loss = sum(tf.reduce_sum(o * w) for o, w in zip(out, weights, strict=True))
    variables = model.trainable_variables
    grads = tape.gradient(loss, [*watched, *variables])
    by_variable = {id(v): g for v, g in zip(variables, grads[len(watched) :], strict=True)}

    def value_of(variable):
        g = by_variable.get(id(variable))
        if g is None:
            return np.zeros(variable.shape, variable.dtype)
        return np.asarray(tf.convert_to_tensor(g))  # Embedding gradients are IndexedSlices

    return [np.asarray(g) for g in grads[: len(watched)]], torch_named(model, value_of)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_gradients_match_pytorch(pairs, name):
    """d(loss)/d(inputs) and d(loss)/d(every parameter), loss = Σ outputs · fixed weights
    (eval mode: dropout off, BatchNorm on its running statistics)."""
    pair = pairs(name)
    inputs = pair.inputs(sizes=2)
    weights = [pair.rng.standard_normal(o.shape).astype(np.float32) for o in pair.run_torch(inputs)]
    torch_inputs, torch_params = _torch_gradients(pair, inputs, weights)
    keras_inputs, keras_params = _keras_gradients(pair, inputs, weights)
    for k, t in zip(keras_inputs, torch_inputs, strict=True):
        assert relative_error(k, t) < TOL
    assert set(torch_params) <= set(keras_params)
    worst = {}
    for param, grad in torch_params.items():
        # Keras has one LSTM bias, b_ih + b_hh: both PyTorch biases get its gradient
        keras_name = param.replace("bias_hh", "bias_ih") if "lstm" in param else param
        worst[param] = relative_error(keras_params[keras_name], grad)
    assert max(worst.values()) < TOL, max(worst, key=worst.get)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "unet"])
def test_batchnorm_training_step_matches(tmp_path, name):
    """In training mode the outputs use batch statistics and the running statistics move by
    PyTorch's momentum rule: after one step both frameworks hold the same statistics."""
    hyper = {"dropout": 0.0} if name == "mobilenetv2" else {}  # no random masks
    pair = Pair(MODELS / f"{name}.dnet", tmp_path, **hyper)
    inputs = pair.inputs(sizes=4)
    got = pair.run_keras(inputs, train=True)
    want = pair.run_torch(inputs, train=True)
    assert max(relative_error(g, w) for g, w in zip(got, want, strict=True)) < TOL
    files = {}
    for framework, model in (("torch", pair.torch), ("keras", pair.keras)):
        files[framework] = load_file(dualnet_save(model, tmp_path / f"{framework}.st"))
    running = [k for k in files["torch"] if "running_" in k]
    assert running
    for key in running:
        assert relative_error(files["keras"][key], files["torch"][key]) < TOL, key
        assert not np.array_equal(files["torch"][key], pair.weights[key])


def dualnet_save(model, path: Path) -> Path:
    dualnet.save_weights(model, path)
    return path


def test_weight_file_round_trip_is_exact(pairs, tmp_path):
    for name in ("resnet18", "lstm_classifier", "bert_encoder"):
        pair = pairs(name)
        again = dualnet_save(pair.keras, tmp_path / f"{name}.safetensors")
        assert again.read_bytes() == pair.file.read_bytes(), name


@pytest.mark.parametrize("name", ["lenet5", "unet", "lstm_classifier", "bert_encoder"])
def test_keras_file_saves_and_loads(pairs, tmp_path, name):
    pair = pairs(name)
    inputs = pair.inputs(sizes=3)
    before = pair.run_keras(inputs)
    path = tmp_path / f"{name}.keras"
    pair.keras.save(path)
    loaded = keras.models.load_model(path)
    after = loaded(*(tf.constant(x) for x in inputs), training=False)
    after = after if isinstance(after, tuple | list) else (after,)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(b, np.asarray(a))


def _export(pair: Pair, tmp_path: Path, name: str) -> Path:
    """A SavedModel whose `serve` signature is the model's: symbolic sizes None, dualnet's
    dtypes (token ids stay int64)."""
    signature = [
        tf.TensorSpec(
            [d if isinstance(d, int) else None for d in v.type.shape], KERAS_DTYPES[v.type.dtype]
        )
        for v in pair.summary.graph.inputs
    ]
    directory = tmp_path / f"{name}_savedmodel"
    pair.keras.export(str(directory), input_signature=signature, verbose=False)
    return directory


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "lstm_classifier"])
def test_savedmodel_export_serves_the_same_outputs(pairs, tmp_path, name):
    pair = pairs(name)
    served = tf.saved_model.load(str(_export(pair, tmp_path, name)))
    inputs = pair.inputs(sizes=3)
    got = served.serve(*(tf.constant(x) for x in inputs))
    assert relative_error(np.asarray(got), pair.run_keras(inputs)[0]) < 1e-6


@pytest.mark.parametrize("name", CNNS)
def test_tflite_conversion_of_the_cnn_zoo(pairs, tmp_path, name):
    pair = pairs(name)
    directory = _export(pair, tmp_path, name)
    flat = tf.lite.TFLiteConverter.from_saved_model(str(directory)).convert()
    (x,) = pair.inputs(sizes=1)
    assert relative_error(run_tflite(flat, x), pair.run_torch([x])[0]) < TOL


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("keras_gen")
    return {name: compile_file(str(MODELS / f"{name}.dnet"), "keras", str(out)) for name in ZOO}


def test_sources_are_ruff_clean_and_deterministic(generated, tmp_path):
    assert_ruff_clean(list(generated.values()))
    again = compile_elsewhere(MODELS / "resnet18.dnet", "keras", tmp_path / "other", "7")
    assert again.read_bytes() == generated["resnet18"].read_bytes()


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "bert_encoder"])
def test_generated_source_matches_golden(generated, name):
    assert_matches_golden(generated[name].read_text(), f"{name}_keras")


def test_the_generated_file_imports_like_hand_written_code(generated):
    spec = importlib.util.spec_from_file_location("resnet18_keras", generated["resnet18"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.ResNet18(classes=10)
    assert net(np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 10)
    assert isinstance(net, keras.Model) and net.get_config()["classes"] == 10


# The transposes a generated model runs: one into channels-last where the images come in,
# one back before a flatten or an image output; none between blocks.
TRANSPOSES = {
    "channels_first": {
        "lenet5": 2,
        "mlp": 0,
        "resnet18": 1,
        "mobilenetv2": 1,
        "bert_encoder": 0,
        "lstm_classifier": 0,
        "gru_classifier": 0,
        "unet": 2,
    },
    "channels_last": {"lenet5": 1, "resnet18": 0, "mobilenetv2": 0, "unet": 0},
}


@pytest.mark.parametrize("layout", sorted(TRANSPOSES))
def test_transposes_are_the_fewest(layout):
    for name, expected in TRANSPOSES[layout].items():
        source = dualnet.load(str(MODELS / f"{name}.dnet")).source("keras", layout=layout)
        assert source.count("ops.transpose(") == expected, name


@pytest.mark.parametrize("name", ["resnet18", "unet"])
def test_channels_last_interface(pairs, tmp_path, name):
    """`layout="channels_last"`: images in and out as [B, H, W, C], the same numbers."""
    pair = pairs(name)
    native = dualnet.load(str(MODELS / f"{name}.dnet")).keras(layout="channels_last")
    dualnet.load_weights(native, pair.file)
    (x,) = pair.inputs(sizes=2)
    got = np.asarray(native(np.transpose(x, (0, 2, 3, 1)), training=False))
    want = pair.run_torch([x])[0]
    if want.ndim == 4:
        want = np.transpose(want, (0, 2, 3, 1))
    assert relative_error(got, want) < TOL


def test_classes_are_generic_in_their_hyperparameters(tmp_path):
    program = dualnet.load(str(MODELS / "bert_encoder.dnet"))
    hyper = {"hidden": 64, "heads": 4, "intermediate": 96, "layers": 3}
    pair = Pair(MODELS / "bert_encoder.dnet", tmp_path, **hyper)
    assert pair.worst_output_error(pair.inputs(sizes=4)) < TOL
    namespace: dict = {}
    exec(compile(program.source("keras"), "bert_keras.py", "exec"), namespace)
    net = namespace["BertEncoder"](**hyper)
    ids = np.zeros((2, 6), np.int64)
    h, pooled = net(ids, ids, np.ones((2, 6), bool))
    assert h.shape == (2, 6, 64) and pooled.shape == (2, 64)


def test_a_weight_file_for_another_model_is_refused(pairs, tmp_path):
    pair = pairs("lenet5")
    other = pairs("mlp").file
    with pytest.raises(DualnetError) as info:
        dualnet.load_weights(pair.keras, other)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E-WEIGHTS" and "conv1.weight" in diagnostic.message


def test_a_keras_layout_kernel_is_refused_by_name(pairs, tmp_path):
    pair = pairs("lenet5")
    weights = dict(pair.weights)
    weights["conv1.weight"] = np.ascontiguousarray(weights["conv1.weight"].transpose(2, 3, 1, 0))
    bad = tmp_path / "hwio.safetensors"
    write_state(weights, bad)
    before = [np.array(v.numpy()) for v in pair.keras.weights]
    with pytest.raises(DualnetError) as info:
        dualnet.load_weights(pair.keras, bad)
    assert "conv1.weight" in str(info.value)
    assert all(
        np.array_equal(a, b.numpy()) for a, b in zip(before, pair.keras.weights, strict=True)
    )


def test_compile_keras_command(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dualnet",
            "compile",
            str(MODELS / "unet.dnet"),
            "--target",
            "keras",
            "--layout",
            "channels_last",
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "unet_keras.py").read_text()
    assert "Image inputs and outputs are channels-last" in text and "import torch" not in text


def test_a_stride_hyperparameter_picks_the_padding_per_instance(tmp_path):
    """One class for stride 1 (Keras's "same") and stride 2 (PyTorch's symmetric pads),
    as a layer called on an expression and as a Sequential step."""
    source = tmp_path / "strided.dnet"
    source.write_text(
        "model Block(out: int, stride: int = 1) {\n"
        "    conv = Conv2d(out, kernel=3, stride=stride, padding=1)\n"
        "    seq = Sequential(Conv2d(out, kernel=3, stride=stride, padding=1, groups=out))\n"
        "    forward(x: f32[B, C, H, W]) { return seq(conv(relu(x))) }\n"
        "}\n"
        "model Net() {\n"
        "    blocks = Sequential(Block(4), Block(4, stride=2), Block(4))\n"
        "    forward(x: f32[B, 3, 10, 10]) { return blocks(x) }\n"
        "}\n"
    )
    pair = Pair(source, tmp_path)
    assert '"same" if stride == 1 else "valid"' in pair.keras_source
    assert pair.worst_output_error(pair.inputs(sizes=2)) < TOL


def test_names_never_shadow_keras_or_python(tmp_path):
    """Layers named like Keras attributes (`name`, `weights`, `call`), a hyperparameter
    named `dtype`, an argument named `mask` (Keras fills `mask` in itself): the model builds,
    keeps dualnet's weight names and computes what PyTorch computes."""
    source = tmp_path / "names.dnet"
    source.write_text(
        "model Tricky(dtype: int = 4) {\n"
        "    name = Linear(dtype)\n"
        "    weights = Linear(3)\n"
        "    call = Linear(3)\n"
        "    forward(mask: f32[B, 4], training: f32[B, 4]) -> f32[B, 3] {\n"
        "        return weights(relu(name(mask))) + call(training)\n"
        "    }\n"
        "}\n"
    )
    pair = Pair(source, tmp_path)
    assert pair.worst_output_error(pair.inputs()) < TOL
    assert isinstance(pair.keras.name, str) and pair.keras.name_.units == 4
    again = dualnet_save(pair.keras, tmp_path / "again.safetensors")
    assert again.read_bytes() == pair.file.read_bytes()


@pytest.mark.parametrize("dtype", ["f16", "f64"])
def test_a_model_declared_in_another_float_type_computes_in_it(tmp_path, dtype):
    """Keras computes in float32 unless told: a parameterless float16 or float64 model runs
    under its own dtype policy, so the results keep dualnet's dtype and PyTorch's digits."""
    source = tmp_path / "typed.dnet"
    source.write_text(
        "model Typed() {\n"
        f"    forward(x: {dtype}[B, 4], y: {dtype}[B, 4]) {{\n"
        "        return softmax(gelu(x) * y + 0.5, 1)\n"
        "    }\n"
        "}\n"
    )
    pair = Pair(source, tmp_path)
    inputs = pair.inputs()
    got, want = pair.run_keras(inputs)[0], pair.run_torch(inputs)[0]
    assert got.dtype == want.dtype == {"f16": np.float16, "f64": np.float64}[dtype]
    # (f64: far below float32 rounding; TensorFlow's f64 gelu is good to about 5e-9)
    assert relative_error(got, want) < (2e-3 if dtype == "f16" else 1e-8)

"""Weight files for Keras models (dualnet.backends.keras.state), through `dualnet.load_weights` /
`save_weights`. The generated Keras code is not needed: hand-built models with its structure
(generated classes holding children named as the .dnet layers, keras.Sequential with Permute
steps, the leaf layers `make_layer` makes, a stand-in for the generated RNN helper) load files
written from the registry's parameters or by PyTorch, compute what the NumPy references and
PyTorch compute, save the same bytes back, and refuse files that do not fit.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import torch  # noqa: E402
from keras_arrays import channels_last, channels_last_back, close, reference  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from safetensors.torch import save_file as save_torch_file  # noqa: E402

import dualnet  # noqa: E402
from dualnet.backends.common.conv_transpose import transposed_padding  # noqa: E402
from dualnet.backends.keras.state import BIASES, SHAPES, leaves  # noqa: E402
from dualnet.backends.keras.weights import RNNS, dilates_kernel, make_layer  # noqa: E402
from dualnet.backends.torch.weights import save_torch  # noqa: E402
from dualnet.diagnostics import DualnetError  # noqa: E402
from dualnet.io.weights import write_state  # noqa: E402


class Recurrent(keras.layers.Layer):
    """A stand-in for the generated RNN helper, with its contract: `dualnet_op`, `hidden`,
    `num_layers`, `bidirectional`, and `get_weights()` = `to_keras`'s list."""

    def __init__(
        self,
        op: str,
        hidden: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self.dualnet_op, self.hidden = op, hidden
        self.num_layers, self.bidirectional = num_layers, bidirectional
        self.stack = make_layer(
            op, {"hidden": hidden, "layers": num_layers, "bidirectional": bidirectional}
        )

    def call(self, x):
        return self.stack(x)


def numpy(y) -> np.ndarray:
    return keras.ops.convert_to_numpy(y)


def load_error(model, path) -> DualnetError:
    """The error of loading `path`, checking that the model is left as it was."""
    before = snapshot(model)
    with pytest.raises(DualnetError) as info:
        dualnet.load_weights(model, path)
    assert snapshot(model) == before
    return info.value


def snapshot(model) -> list:
    """Every leaf's weights, built state, dualnet attributes and build function."""
    return [
        (
            prefix,
            layer.built,
            [w.tobytes() for w in layer.get_weights()],
            sorted(k for k in vars(layer) if k.startswith("dualnet")),
            vars(layer)["build"],
        )
        for prefix, layer in leaves(model)
    ]


def message(err: DualnetError) -> str:
    [d] = err.diagnostics
    assert d.code == "E-WEIGHTS" and d.span is not None and not d.span.line  # a whole file
    return d.message


# ---------------------------------------------------------------- each leaf

LEAVES = [
    pytest.param("Linear", {"x": (2, 5)}, dict(out=7), id="linear"),
    pytest.param("Linear", {"x": (2, 3, 5)}, dict(out=4, bias=False), id="linear-nobias"),
    pytest.param(
        "Conv1d", {"x": (2, 4, 11)}, dict(out=6, kernel=3, stride=2, padding=1), id="conv1d"
    ),
    pytest.param(
        "Conv2d",
        {"x": (2, 4, 9, 9)},
        dict(out=8, kernel=3, groups=2, dilation=2, padding=2),
        id="conv2d-grouped-dilated",
    ),
    pytest.param(
        "Conv2d",
        {"x": (2, 3, 11, 11)},
        dict(out=5, kernel=3, stride=2, dilation=2, padding=2),
        id="conv2d-zero-dilated",
    ),
    pytest.param(
        "Conv3d",
        {"x": (1, 2, 4, 5, 5)},
        dict(out=4, kernel=(2, 3, 3), padding=1, bias=False),
        id="conv3d",
    ),
    pytest.param(
        "Conv1d", {"x": (2, 4, 10)}, dict(out=8, kernel=3, groups=4, padding=1), id="depthwise1d"
    ),
    pytest.param(
        "Conv2d",
        {"x": (2, 3, 11, 10)},
        dict(out=6, kernel=(3, 2), stride=(2, 1), dilation=(1, 3), groups=3),
        id="depthwise2d-zero-dilated",
    ),
    pytest.param(
        "ConvTranspose2d",
        {"x": (2, 6, 4, 5)},
        dict(
            out=6,
            kernel=(3, 2),
            stride=(2, 3),
            padding=(0, 1),
            output_padding=(1, 2),
            groups=3,
            bias=False,
        ),
        id="transposed-grouped",
    ),
    pytest.param(
        "ConvTranspose2d",
        {"x": (2, 3, 4, 4)},
        dict(out=2, kernel=3, stride=2, dilation=2, output_padding=1),
        id="transposed-zero-dilated",
    ),
    pytest.param(
        "ConvTranspose2d",
        {"x": (1, 2, 4, 4)},  # 2 ≥ stride 2: rows, not taps
        dict(out=2, kernel=3, stride=2, dilation=3, output_padding=2),
        id="transposed-outpad-beyond-stride",
    ),
    pytest.param(
        "ConvTranspose2d",
        {"x": (2, 2, 3, 4)},
        dict(out=3, kernel=1, dilation=3, output_padding=(2, 1), padding=(1, 0)),
        id="transposed-one-tap-outpad-beyond-stride",
    ),
    pytest.param(
        "ConvTranspose1d",
        {"x": (2, 4, 6)},
        dict(out=6, kernel=4, stride=3, padding=2, output_padding=2, groups=2),
        id="transposed1d-grouped",
    ),
    pytest.param(
        "ConvTranspose1d",
        {"x": (2, 2, 5)},
        dict(out=3, kernel=2, dilation=3, output_padding=2, padding=1),
        id="transposed1d-zero-dilated-outpad-beyond-stride",
    ),
    pytest.param(
        "ConvTranspose3d",
        {"x": (1, 4, 3, 3, 4)},
        dict(out=6, kernel=(3, 2, 3), stride=(1, 2, 2), padding=(1, 0, 1), groups=2),
        id="transposed3d-grouped",
    ),
    pytest.param(
        "ConvTranspose3d",
        {"x": (1, 2, 3, 3, 3)},
        dict(out=2, kernel=2, stride=2, dilation=(1, 2, 1), output_padding=1, bias=False),
        id="transposed3d-zero-dilated",
    ),
    pytest.param("BatchNorm", {"x": (2, 6, 5, 5)}, dict(eps=1e-3, momentum=0.3), id="batchnorm"),
    pytest.param("LayerNorm", {"x": (2, 5, 8)}, dict(axes=2), id="layernorm"),
    pytest.param("LayerNorm", {"x": (2, 5, 8)}, dict(bias=False), id="layernorm-no-bias"),
    pytest.param("RMSNorm", {"x": (2, 5, 8)}, dict(axes=2), id="rmsnorm"),
    pytest.param("GroupNorm", {"x": (2, 6, 5, 5)}, dict(groups=3), id="groupnorm"),
    pytest.param("Embedding", {"ids": (2, 5)}, dict(vocab=11, dim=4), id="embedding"),
    pytest.param(
        "MultiHeadAttention",
        {"q": (2, 4, 8), "k": (2, 5, 8), "v": (2, 5, 8)},
        dict(dim=8, heads=2),
        id="mha",
    ),
    pytest.param(
        "MultiHeadAttention",
        {"q": (2, 4, 8), "k": (2, 4, 8), "v": (2, 4, 8)},
        dict(dim=8, heads=4, bias=False),
        id="mha-nobias",
    ),
    pytest.param("LSTM", {"x": (2, 6, 5)}, dict(hidden=4), id="lstm"),
    pytest.param(
        "LSTM",
        {"x": (2, 6, 5)},
        dict(hidden=4, layers=2, bidirectional=True),
        id="lstm-2-bidirectional",
    ),
    pytest.param(
        "GRU",
        {"x": (2, 6, 5)},
        dict(hidden=3, layers=2, bidirectional=True),
        id="gru-2-bidirectional",
    ),
]


def inputs_of(shapes: dict, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: rng.integers(0, 11, shape)
        if name == "ids"
        else rng.standard_normal(shape).astype(np.float32)
        for name, shape in shapes.items()
    }


def keras_leaf(op: str, cfg: dict):
    if op in RNNS:
        return Recurrent(op, cfg["hidden"], cfg["layers"], cfg["bidirectional"])
    return make_layer(op, cfg)


def run(op: str, layer, cfg: dict, inputs: dict) -> np.ndarray:
    """The leaf as the emitter applies it: channels-last, dualnet's pads first unless Keras's
    "same" does them (a transposed conv: PyTorch's padding cropped from its output)."""
    if op.startswith("ConvTranspose"):  # output padding beyond the stride: zero rows appended
        padding = transposed_padding(cfg)
        x = np.pad(channels_last(inputs["x"]), [(0, 0), *((0, r) for r in padding.rows), (0, 0)])
        y = numpy(layer(x))
        crop = (slice(a, n - b) for (a, b), n in zip(padding.crops, y.shape[1:], strict=False))
        return channels_last_back(y[(slice(None), *crop)])
    if op.startswith("Conv"):
        x = channels_last(inputs["x"])
        if layer.get_config()["padding"] == "valid":
            x = np.pad(x, [(0, 0), *cfg["pads"], (0, 0)])
        return channels_last_back(numpy(layer(x)))
    if op in ("BatchNorm", "GroupNorm"):
        return channels_last_back(numpy(layer(channels_last(inputs["x"]))))
    if op == "MultiHeadAttention":
        return numpy(layer(inputs["q"], inputs["v"], key=inputs["k"]))
    return numpy(layer(inputs.get("x", inputs.get("ids"))))


def torch_geometry_is_keras(op: str, cfg: dict) -> bool:
    """Whether the Keras layer alone tells the PyTorch weight shape (no zero-dilated kernel,
    no grouped transposed kernel)."""
    if not op.startswith("Conv"):
        return True
    transposed = op.startswith("ConvTranspose")
    return not dilates_kernel(cfg, transposed) and not (transposed and cfg["groups"] > 1)


@pytest.mark.parametrize("built", [False, True], ids=["unbuilt", "built"])
@pytest.mark.parametrize(("op", "shapes", "config"), LEAVES)
def test_leaf_loads_computes_and_saves_back(tmp_path, op, shapes, config, built):
    """A file of the registry's parameters loads into the leaf (strict: the registry's names
    and shapes), which then equals the NumPy reference; saving gives the file's bytes."""
    inputs = inputs_of(shapes)
    expected, params, cfg = reference(op, inputs, config)
    path = tmp_path / "w.safetensors"
    write_state(params, path)
    layer = keras_leaf(op, cfg)
    if built:  # by a call, with Keras's initial weights; saving them gives the registry's names
        run(op, layer, cfg, inputs)
        dualnet.save_weights(layer, tmp_path / "initial.safetensors")
        initial = load_file(tmp_path / "initial.safetensors")
        assert sorted(initial) == sorted(params)
        if torch_geometry_is_keras(op, cfg):
            assert {k: v.shape for k, v in initial.items()} == {
                k: v.shape for k, v in params.items()
            }
    dualnet.load_weights(layer, path)
    close(run(op, layer, cfg, inputs), expected)
    dualnet.save_weights(layer, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()


def test_zero_dilated_kernel_is_read_from_the_file(tmp_path):
    """Keras holds a stride-2, dilation-2 conv as a 5×5 kernel of dilation 1; the file's 3×3
    kernel gives the dilation, recorded for saving."""
    inputs = inputs_of({"x": (1, 3, 11, 11)})
    _, params, cfg = reference("Conv2d", inputs, dict(out=5, kernel=3, stride=2, dilation=2))
    write_state(params, tmp_path / "w.safetensors")
    layer = make_layer("Conv2d", cfg)
    dualnet.load_weights(layer, tmp_path / "w.safetensors")
    assert layer.kernel_size == (5, 5) and layer.dilation_rate == (1, 1)
    kernel = layer.get_weights()[0]
    assert np.array_equal(kernel[::2, ::2], params["weight"].transpose(2, 3, 1, 0))
    assert not kernel[1::2].any() and not kernel[:, 1::2].any()
    assert getattr(layer, SHAPES) == {"weight": (5, 3, 3, 3), "bias": (5,)}


def test_lstm_biases(tmp_path):
    """Keras keeps bias_ih + bias_hh; the loaded pair is written back while the Keras bias is
    their sum, else bias_hh stays and bias_ih takes the rest; never loaded: bias_hh = 0."""
    inputs = inputs_of({"x": (2, 3, 5)})
    _, params, cfg = reference("LSTM", inputs, dict(hidden=2))
    write_state(params, tmp_path / "w.safetensors")
    layer = keras_leaf("LSTM", cfg)
    dualnet.load_weights(layer, tmp_path / "w.safetensors")
    assert set(getattr(layer, BIASES)) == {"bias_ih_l0", "bias_hh_l0"}
    kernel, recurrent, bias = layer.get_weights()
    layer.set_weights([kernel, recurrent, bias + 1])
    dualnet.save_weights(layer, tmp_path / "trained.safetensors")
    saved = load_file(tmp_path / "trained.safetensors")
    assert np.array_equal(saved["bias_hh_l0"], params["bias_hh_l0"])
    assert np.array_equal(saved["bias_ih_l0"], bias + 1 - params["bias_hh_l0"])

    fresh = keras_leaf("LSTM", cfg)
    fresh(inputs["x"])
    dualnet.save_weights(fresh, tmp_path / "fresh.safetensors")
    saved = load_file(tmp_path / "fresh.safetensors")
    assert not saved["bias_hh_l0"].any()
    assert np.array_equal(saved["bias_ih_l0"], fresh.get_weights()[2])


# ---------------------------------------------------------------- whole models against PyTorch


class Block(keras.layers.Layer):
    """A generated class of a .dnet model used as a child: conv → BatchNorm → ReLU."""

    def __init__(self, cout: int):
        super().__init__()
        self.cout = cout  # a hyperparameter, not a layer
        self.conv = keras.layers.Conv2D(cout, 3, padding="same", use_bias=False, name="conv")
        self.bn = keras.layers.BatchNormalization(epsilon=1e-5, name="bn")
        self.act = keras.layers.ReLU(name="act")

    def call(self, x):
        return self.act(self.bn(self.conv(x)))


class Net(keras.Model):
    """Children in declaration order: stem, layer1 (a Sequential of Blocks), drop, head (a
    Sequential whose first step is an inserted Permute), name (a reserved name: `name_`), each
    a Keras layer named as the .dnet layer (the attributes' names do not matter)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = keras.layers.Conv2D(8, 3, strides=2, name="stem")
        self.layer1 = keras.Sequential([Block(8), Block(12)], name="layer1")
        self.drop = keras.layers.Dropout(0.5, name="drop")
        self.head = keras.Sequential(
            [
                keras.layers.Permute((3, 1, 2)),
                keras.layers.Flatten(),
                keras.layers.Dense(16),
                keras.layers.ReLU(),
                keras.layers.Dense(16),
            ],
            name="head",
        )
        self.name_ = keras.layers.Dense(classes, name="name")

    def call(self, x):
        x = self.stem(keras.ops.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)]))
        return self.name_(self.head(self.drop(self.layer1(x))))


class Encoder(keras.Model):
    """Embedding → 2-layer bidirectional LSTM → LayerNorm → self-attention → Dense."""

    def __init__(self):
        super().__init__()
        self.embed = keras.layers.Embedding(20, 8, name="embed")
        self.rnn = Recurrent("LSTM", 4, num_layers=2, bidirectional=True, name="rnn")
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm")
        self.attn = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attn")
        self.out = keras.layers.Dense(5, name="out")

    def call(self, ids):
        h = self.norm(self.rnn(self.embed(ids)))
        return self.out(self.attn(h, h))


def torch_net(classes: int = 10):
    nn = torch.nn

    class TorchBlock(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(cout)

    class TorchNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, 2, 1)
            self.layer1 = nn.Sequential(TorchBlock(8, 8), TorchBlock(8, 12))
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(192, 16), nn.ReLU(), nn.Linear(16, 16)
            )
            self.name = nn.Linear(16, classes)

        def forward(self, x):
            x = self.stem(x)
            for block in self.layer1:
                x = torch.relu(block.bn(block.conv(x)))
            return self.name(self.head(x))

    torch.manual_seed(0)
    model = TorchNet().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean):
                    t.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model


def torch_encoder():
    nn = torch.nn

    class TorchEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.rnn = nn.LSTM(8, 4, num_layers=2, bidirectional=True, batch_first=True)
            self.norm = nn.LayerNorm(8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.out = nn.Linear(8, 5)

        def forward(self, ids):
            h = self.norm(self.rnn(self.embed(ids))[0])
            return self.out(self.attn(h, h, h, need_weights=False)[0])

    torch.manual_seed(1)
    model = TorchEncoder().eval()
    with torch.no_grad():
        for t in (
            model.norm.weight,
            model.norm.bias,
            model.attn.in_proj_bias,
            model.attn.out_proj.bias,
        ):
            t.uniform_(-1, 1)
    return model


@pytest.mark.parametrize("build", ["unbuilt", "built"])
def test_cnn_computes_what_pytorch_computes(tmp_path, build):
    model = torch_net()
    path = tmp_path / "net.safetensors"
    save_torch(model, path)
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    net = Net()
    if build == "built":
        net(channels_last(x))
    dualnet.load_weights(net, path)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    close(numpy(net(channels_last(x))), expected)
    dualnet.save_weights(net, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()


def test_sequence_model_computes_what_pytorch_computes(tmp_path):
    model = torch_encoder()
    path = tmp_path / "encoder.safetensors"
    save_torch(model, path)
    ids = np.random.default_rng(3).integers(0, 20, (2, 6))
    encoder = Encoder()
    dualnet.load_weights(encoder, path)
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)).numpy()
    close(numpy(encoder(ids)), expected)
    dualnet.save_weights(encoder, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()


# ---------------------------------------------------------------- strict loading (E-WEIGHTS)


class Small(keras.Model):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = keras.layers.Conv2D(4, 3, name="conv1")
        self.bn = keras.layers.BatchNormalization(name="bn")
        self.fc = keras.layers.Dense(classes, name="fc")

    def call(self, x):
        return self.fc(keras.ops.mean(self.bn(self.conv1(x)), axis=(1, 2)))


def small_state(classes: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    shapes = {
        "conv1.weight": (4, 3, 3, 3),
        "conv1.bias": (4,),
        "bn.weight": (4,),
        "bn.bias": (4,),
        "bn.running_mean": (4,),
        "bn.running_var": (4,),
        "fc.weight": (classes, 4),
        "fc.bias": (classes,),
    }
    return {k: rng.uniform(0.5, 1.5, s).astype(np.float32) for k, s in shapes.items()}


def small(built: bool) -> Small:
    model = Small()
    if built:
        model(np.zeros((1, 6, 6, 3), np.float32))
    return model


@pytest.fixture(params=[False, True], ids=["unbuilt", "built"])
def built(request):
    return request.param


def test_missing_tensor(tmp_path, built):
    state = small_state()
    del state["fc.bias"]
    save_file(state, tmp_path / "w.safetensors")
    err = load_error(small(built), tmp_path / "w.safetensors")
    assert message(err) == f"`fc.bias` (f32[10]) is missing from {tmp_path / 'w.safetensors'}"


def test_missing_size_giving_tensor_of_an_unbuilt_layer(tmp_path):
    state = small_state()
    del state["fc.weight"]
    save_file(state, tmp_path / "w.safetensors")
    assert message(load_error(small(False), tmp_path / "w.safetensors")).startswith(
        "`fc.weight` (f32[10, ?]) is missing from "
    )


def test_extra_tensor(tmp_path, built):
    save_file(
        {**small_state(), "fc2.weight": np.zeros((2, 2), np.float32)}, tmp_path / "w.safetensors"
    )
    err = load_error(small(built), tmp_path / "w.safetensors")
    assert message(err).endswith(
        "has a tensor `fc2.weight` (f32[2, 2]) that the model does not have"
    )


def test_file_of_other_hyperparameters(tmp_path, monkeypatch, built):
    monkeypatch.chdir(tmp_path)
    save_file(small_state(classes=5), "small_5classes.safetensors")
    [d] = load_error(small(built), "small_5classes.safetensors").diagnostics
    assert d.message == (
        "`fc.weight` in small_5classes.safetensors is f32[5, 4]; the model expects f32[10, 4]"
    )
    assert d.notes == (
        "`fc.bias` in small_5classes.safetensors is f32[5]; the model expects f32[10]",
    )


def test_wrong_dtype(tmp_path, built):
    state = small_state()
    state["conv1.bias"] = state["conv1.bias"].astype(np.float64)
    save_file(state, tmp_path / "w.safetensors")
    assert message(load_error(small(built), tmp_path / "w.safetensors")).endswith(
        "is f64[4]; the model expects f32[4]"
    )


def test_bfloat16_is_a_wrong_dtype_too(tmp_path):
    """NumPy has no bfloat16: the file's dtypes are read from its header, never converted."""
    state = {k: torch.from_numpy(v) for k, v in small_state().items()}
    state["bn.weight"] = state["bn.weight"].bfloat16()
    save_torch_file(state, tmp_path / "w.safetensors")
    assert message(load_error(small(True), tmp_path / "w.safetensors")).endswith(
        "is bf16[4]; the model expects f32[4]"
    )


def test_keras_layout_kernel(tmp_path, built):
    """A Keras-layout (HWIO) kernel under `conv1.weight` is a mis-shaped tensor."""
    state = small_state()
    state["conv1.weight"] = np.ascontiguousarray(state["conv1.weight"].transpose(2, 3, 1, 0))
    save_file(state, tmp_path / "w.safetensors")
    assert message(load_error(small(built), tmp_path / "w.safetensors")).endswith(
        "is f32[3, 3, 3, 4]; the model expects f32[4, 3, 3, 3]"
    )


def test_many_problems_are_listed_with_a_count(tmp_path, built):
    save_file({"x": np.zeros(1, np.float32)}, tmp_path / "w.safetensors")
    [d] = load_error(small(built), tmp_path / "w.safetensors").diagnostics
    in_channels = 3 if built else "?"  # unbuilt, only the file could tell
    assert d.message.startswith(f"`conv1.weight` (f32[4, {in_channels}, 3, 3]) is missing from ")
    assert len(d.notes) == 5 and d.notes[-1] == "and 4 more"


def test_num_batches_tracked_is_ignored(tmp_path):
    state = {**small_state(), "bn.num_batches_tracked": np.array(7, np.int64)}
    save_file(state, tmp_path / "w.safetensors")
    model = small(False)
    dualnet.load_weights(model, tmp_path / "w.safetensors")
    model(np.zeros((1, 6, 6, 3), np.float32))
    dualnet.save_weights(model, tmp_path / "again.safetensors")
    assert sorted(load_file(tmp_path / "again.safetensors")) == sorted(small_state())


def test_not_a_safetensors_file(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"\x80\x02}q\x00.")  # a pickle: never unpickled
    [d] = load_error(small(True), tmp_path / "w.pt").diagnostics
    assert d.code == "E-WEIGHTS" and "is not a valid safetensors file" in d.message
    assert "never pickled checkpoints" in d.notes[0]


def test_layer_other_than_the_generated_one(tmp_path):
    """A Conv2D whose groups are its input channels (the generator writes DepthwiseConv2D)
    holds another kernel layout: refused before anything changes."""
    layer = keras.layers.Conv2D(4, 3, groups=2)
    layer.build((None, 5, 5, 2))
    write_state(
        {"weight": np.ones((4, 1, 3, 3), np.float32), "bias": np.ones(4, np.float32)},
        tmp_path / "w.safetensors",
    )
    err = load_error(layer, tmp_path / "w.safetensors")
    assert message(err).startswith(
        f"the Keras layer `{layer.name}` (Conv2D) holds weights of "
        "shapes [(3, 3, 1, 4), (4,)], where the file's tensors give"
    )


# ---------------------------------------------------------------- saving


def test_unbuilt_layers_cannot_be_saved(tmp_path):
    model = small(False)
    with pytest.raises(DualnetError) as info:
        dualnet.save_weights(model, tmp_path / "w.safetensors")
    assert message(info.value) == (
        "cannot save the weights of unbuilt layers: `conv1` (Conv2D), "
        "`bn` (BatchNormalization), `fc` (Dense)"
    )
    write_state(small_state(), tmp_path / "w.safetensors")
    write_state(
        small_state(classes=10) | {"bn.bias": np.full(4, 3.0, np.float32)},
        tmp_path / "b.safetensors",
    )
    dualnet.load_weights(model, tmp_path / "w.safetensors")
    dualnet.load_weights(model, tmp_path / "b.safetensors")  # again, before the first call
    with pytest.raises(DualnetError) as info:  # BatchNorm gets its weights at the first call
        dualnet.save_weights(model, tmp_path / "out.safetensors")
    assert message(info.value) == (
        "cannot save the weights of unbuilt layers: `bn` (BatchNormalization)"
    )
    assert not (tmp_path / "out.safetensors").exists()
    original = keras.layers.BatchNormalization().get_config()
    model(np.zeros((1, 6, 6, 3), np.float32))
    assert model.bn.get_config() | {"name": original["name"]} == original  # initializers back
    dualnet.save_weights(model, tmp_path / "out.safetensors")
    assert (tmp_path / "out.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_kernel_changed_between_dilated_taps_cannot_be_saved(tmp_path):
    inputs = inputs_of({"x": (1, 3, 11, 11)})
    _, params, cfg = reference("Conv2d", inputs, dict(out=5, kernel=3, stride=2, dilation=2))
    write_state(params, tmp_path / "w.safetensors")
    layer = make_layer("Conv2d", cfg)
    dualnet.load_weights(layer, tmp_path / "w.safetensors")
    kernel, bias = layer.get_weights()
    kernel[1, 1, 0, 0] = 0.5
    layer.set_weights([kernel, bias])
    with pytest.raises(DualnetError) as info:
        dualnet.save_weights(layer, tmp_path / "again.safetensors")
    assert message(info.value) == (
        f"cannot save `{layer.name}` (Conv2D): its Keras kernel has "
        "non-zero values where `weight` has no entries"
    )
    assert not (tmp_path / "again.safetensors").exists()

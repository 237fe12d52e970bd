"""Parameter and Buffer (issue 13): rules and diagnostics, state_dict names equal to the
declared names in PyTorch, Keras and ONNX, frozen parameters, seeded draws equal to
torch.nn.init's, and Keras weight files that round-trip."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

import dualnet  # noqa: E402
from dualnet import cli  # noqa: E402
from dualnet.backends.torch.init import init_state  # noqa: E402
from dualnet.io.weights import write_state  # noqa: E402

SOURCE = """
model Block(c: int) {
    conv = Conv2d(c, 3, padding=1)
    layer_scale = Parameter([c, 1, 1], init="constant", value=1e-6)
    forward(x: f32[B, c, H, W]) -> f32[B, c, H, W] { return x + layer_scale * conv(x) }
}
model Net(dim: int = 6) {
    class_token = Parameter([1, 1, dim])
    pos = Parameter([1, 5, dim], init="normal", std=0.02)
    frozen = Parameter([dim], init="trunc_normal", std=0.02, trainable=false)
    index = Buffer([4], dtype="i64")
    blocks = Block(3)
    head = Linear(dim)
    forward(x: f32[B, 3, 2, 2]) -> f32[B, 5, dim] {
        tokens = permute(flatten(blocks(x), 2), (0, 2, 1))
        h = concat([expand(class_token, [B, -1, -1]), head(tokens)], 1)
        return h + pos + frozen + cast(sum(index, 0), "f32")
    }
}
"""
NAMES = [
    "class_token",
    "pos",
    "frozen",
    "index",
    "blocks.conv.weight",
    "blocks.conv.bias",
    "blocks.layer_scale",
    "head.weight",
    "head.bias",
]


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    path = tmp_path_factory.mktemp("free") / "net.dnet"
    path.write_text(SOURCE)
    return dualnet.load(str(path))


@pytest.fixture(scope="module")
def weights(program, tmp_path_factory):
    """A seeded weight file with a non-zero index buffer and class token."""
    state = {k: v.numpy() for k, v in init_state(program.check().instance, 3).items()}
    state["index"] = np.array([1, 2, 3, 4], np.int64)
    state["class_token"] = np.full((1, 1, 6), 0.25, np.float32)
    path = tmp_path_factory.mktemp("weights") / "w.safetensors"
    write_state(state, path)
    return path


def test_counts_and_weight_file_names(program):
    summary = program.check()
    assert summary.trainable_params == 6 + 30 + 84 + 3 + 24  # frozen and index not counted
    specs = {p.path: p for p in summary.instance.layers()}
    assert not specs["frozen"].params[""].trainable
    assert specs["index"].buffers[""].dtype.value == "i64"
    assert list(init_state(summary.instance, 0)) == NAMES


def test_torch_module_has_the_declared_names(program):
    module = program.torch()
    assert sorted(module.state_dict()) == sorted(NAMES)  # PyTorch lists a module's own first
    assert isinstance(module.class_token, torch.nn.Parameter)
    assert not module.frozen.requires_grad
    assert dict(module.named_buffers())["index"].dtype == torch.int64
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert trainable == program.check().trainable_params
    assert torch.all(module.blocks.layer_scale == 1e-6)


def test_three_backends_agree_on_a_loaded_file(program, weights):
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2)).astype(np.float32)
    module = program.torch()
    dualnet.load_weights(module, weights)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    keras_model = program.keras()
    dualnet.load_weights(keras_model, weights)
    np.testing.assert_allclose(np.asarray(keras_model(x)), expected, rtol=1e-5, atol=1e-6)
    proto = program.onnx(weights=str(weights))
    session = onnxruntime.InferenceSession(proto.SerializeToString())
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert expected[0, 0, 0] == pytest.approx(
        0.25 + load_file(weights)["pos"][0, 0, 0] + load_file(weights)["frozen"][0] + 10,
        rel=1e-5,
    )


def test_keras_weight_file_round_trips(program, weights, tmp_path):
    model = program.keras()
    dualnet.load_weights(model, weights)
    again = tmp_path / "again.safetensors"
    dualnet.save_weights(model, again)
    before, after = load_file(weights), load_file(again)
    assert sorted(after) == sorted(before)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    frozen = [w for w in model.non_trainable_weights if "frozen" in w.path]
    assert frozen and all("frozen" not in w.path for w in model.trainable_weights)


def test_onnx_initializers_are_the_declared_names(program, weights):
    names = {i.name for i in program.onnx(weights=str(weights)).graph.initializer}
    assert set(NAMES) <= names


@pytest.mark.parametrize(
    "init, draw",
    [
        ('init="normal", mean=0.5, std=0.02', lambda t, g: t.normal_(0.5, 0.02, generator=g)),
        ('init="uniform", a=-0.3, b=0.1', lambda t, g: t.uniform_(-0.3, 0.1, generator=g)),
        (
            'init="trunc_normal", std=0.5, a=-0.4, b=0.6',
            lambda t, g: torch.nn.init.trunc_normal_(t, std=0.5, a=-0.4, b=0.6, generator=g),
        ),
        ('init="constant", value=0.125', lambda t, g: t.fill_(0.125)),
    ],
)
def test_seeded_draws_are_torch_nn_init(tmp_path, init, draw):
    path = tmp_path / "p.dnet"
    path.write_text(
        f"model P() {{\n    p = Parameter([64, 3], {init})\n"
        "    forward(x: f32[64, 3]) -> f32[64, 3] { return x * p }\n}\n"
    )
    state = init_state(dualnet.check_file(str(path)).instance, 7)
    expected = draw(torch.empty(64, 3), torch.Generator().manual_seed(7))
    assert torch.equal(state["p"], expected)


@pytest.mark.parametrize(
    "declaration, code, text",
    [
        ("p = Parameter([N, 4])", "E-SHAPE", "symbolic dimension"),
        ("p = Parameter([3, 0])", "E-VALUE", "empty size"),
        ('p = Parameter([4], dtype="i32")', "E-DTYPE", "trainable Parameter must be a float"),
        ('p = Parameter([4], init="normal", std=0)', "E-VALUE", "`std` must be positive"),
        ('p = Parameter([4], init="uniform", a=1, b=1)', "E-VALUE", "a < b"),
        ('p = Buffer([4], init="normal")', "E-TYPE", "expects one of"),
        ('p = Buffer([4], dtype="i64", init="ones", trainable=false)', "E-ARGS", "trainable"),
        ("p = Sequential(Parameter([4]))", "E-MODEL", "step of a Sequential"),
        ("p = Buffer(arange(N))", "E-SHAPE", "known at compile time"),
        ("p = Buffer(arange(2000000))", "E-LIMIT", "elements"),
        ('p = Buffer(arange(4), init="ones")', "E-ARGS", "no `init=`"),
        ("q = Parameter([4])\n    p = Buffer(q * 2.0)", "E-MODEL", "built-in functions"),
    ],
)
def test_bad_declarations_are_diagnostics(tmp_path, declaration, code, text):
    path = tmp_path / "bad.dnet"
    path.write_text(
        f"model M() {{\n    {declaration}\n"
        "    forward(x: f32[N, 4]) -> f32[N, 4] { return x }\n}\n"
    )
    summary = dualnet.check_file(str(path))
    assert not summary.ok
    found = [d for d in summary.diagnostics if d.code == code]
    assert found and text in found[0].message and found[0].span is not None, summary.diagnostics


def test_calling_a_parameter_is_a_diagnostic(tmp_path):
    path = tmp_path / "call.dnet"
    path.write_text(
        "model M() {\n    p = Parameter([4])\n"
        "    forward(x: f32[N, 4]) -> f32[N, 4] { return p(x) }\n}\n"
    )
    summary = dualnet.check_file(str(path))
    assert not summary.ok and summary.diagnostics[0].code == "E-TYPE"


def test_errors_reach_the_cli_as_exit_1(tmp_path, capsys):
    path = tmp_path / "bad.dnet"
    path.write_text(
        "model M() {\n    p = Parameter([N])\n"
        "    forward(x: f32[N]) -> f32[N] { return x + p }\n}\n"
    )
    assert cli.main(["check", str(path)]) == 1
    assert "E-SHAPE" in capsys.readouterr().err


SWIN_INDEX = """
const W = 3
model Rel(heads: int = 2) {
    table = Parameter([(2 * W - 1) * (2 * W - 1), heads], init="normal", std=0.02)
    index = Buffer(flatten(
        ((arange(W * W) // W)[:, none] - (arange(W * W) // W)[none, :] + W - 1) * (2 * W - 1)
        + (arange(W * W) % W)[:, none] - (arange(W * W) % W)[none, :] + W - 1, 0))
    forward(x: f32[B, heads, 9, 9]) -> f32[B, heads, 9, 9] {
        return x + permute(reshape(table[index], [9, 9, heads]), (2, 0, 1))
    }
}
"""


def _swin_index(w: int) -> np.ndarray:
    """torchvision's relative_position_index (swin_transformer.py), in NumPy."""
    coords = np.stack(np.meshgrid(np.arange(w), np.arange(w), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (w - 1)
    return (rel[:, :, 0] * (2 * w - 1) + rel[:, :, 1]).reshape(-1)


def test_a_buffer_computed_at_compile_time(tmp_path):
    path = tmp_path / "rel.dnet"
    path.write_text(SWIN_INDEX)
    summary = dualnet.check_file(str(path))
    assert summary.ok, summary.diagnostics
    spec = summary.instance.child("index").buffers[""]
    assert spec.shape == (81,) and str(spec.dtype) == "i64"
    state = init_state(summary.instance, 0)  # what `dualnet init` writes
    assert np.array_equal(state["index"].numpy(), _swin_index(3))
    module = dualnet.load(str(path)).torch()
    assert np.array_equal(module.state_dict()["index"].numpy(), _swin_index(3))
    keras_model = dualnet.load(str(path)).keras()
    held = {w.path.split("/")[0]: w for w in keras_model.weights if "index" in w.path}
    assert np.array_equal(np.asarray(next(iter(held.values()))), _swin_index(3))

"""Names (issue 13): quoted names (`` `block1-0` ``, `` `model` ``) keep their spelling as
state_dict names in PyTorch, Keras's weight file and ONNX's initializers; keywords, bad
quoted names and a layer sharing a hyperparameter's name are one clear diagnostic each."""

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
from dualnet.backends.torch.init import init_state  # noqa: E402
from dualnet.diagnostics import DualnetError  # noqa: E402
from dualnet.io.weights import write_state  # noqa: E402
from dualnet.syntax.parser import parse  # noqa: E402

SOURCE = """
model Stage(`in`: int) {
    `block1-0` = Linear(`in`)
    `-x` = Parameter([`in`], init="normal", std=0.5)
    `class` = Buffer([`in`], init="ones")
    forward(x: f32[B, 4]) -> f32[B, `in`] {
        `a-b` = `block1-0`(x)
        return `a-b` * `class` + `-x`
    }
}
model Net() {
    `model` = Stage(3)
    `0` = Linear(2)
    forward(x: f32[B, 4]) -> f32[B, 2] { return `0`(`model`(x)) }
}
"""
NAMES = [
    "model.block1-0.weight",
    "model.block1-0.bias",
    "model.-x",
    "model.class",
    "0.weight",
    "0.bias",
]


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    path = tmp_path_factory.mktemp("names") / "net.dnet"
    path.write_text(SOURCE)
    return dualnet.load(str(path))


@pytest.fixture(scope="module")
def weights(program, tmp_path_factory):
    state = {k: v.numpy() for k, v in init_state(program.check().instance, 5).items()}
    state["model.class"] = np.array([1.0, 2.0, 3.0], np.float32)
    path = tmp_path_factory.mktemp("weights") / "w.safetensors"
    write_state(state, path)
    return path


def test_backticks_are_not_part_of_the_name():
    module = parse("model `model`(`in`: int) {\n    `x` = Linear(`in`)\n}\n", "m.dnet")
    model = module.decls[0]
    assert (model.name.id, model.hypers[0].name, model.members[0].name.id) == ("model", "in", "x")
    assert model.members[0].name.span.end_column - model.members[0].name.span.column == 3


def agree_with_their_names(program, weights, names: list[str], tmp_path, **hyper) -> None:
    """The PyTorch module with `weights` has exactly the state_dict `names`; Keras loads
    them, computes the same and saves the same names; ONNX has them as initializers and
    computes the same."""
    module = program.torch(**hyper)
    assert sorted(module.state_dict()) == sorted(names)
    dualnet.load_weights(module, weights)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    keras_model = program.keras(**hyper)
    dualnet.load_weights(keras_model, weights)
    np.testing.assert_allclose(np.asarray(keras_model(x)), expected, rtol=1e-5, atol=1e-6)
    again = tmp_path / "again.safetensors"
    dualnet.save_weights(keras_model, again)
    assert sorted(load_file(again)) == sorted(names)
    proto = program.onnx(weights=str(weights), **hyper)
    assert set(names) <= {i.name for i in proto.graph.initializer}
    session = onnxruntime.InferenceSession(proto.SerializeToString())
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_every_backend_keeps_the_quoted_names(program, weights, tmp_path):
    assert [name for name, _ in init_state(program.check().instance, 0).items()] == NAMES
    assert isinstance(program.torch().get_parameter("model.-x"), torch.nn.Parameter)
    agree_with_their_names(program, weights, NAMES, tmp_path)


@pytest.mark.parametrize(
    "line, message, note",
    [
        ("model = Linear(4)", "`model` is a keyword, not a name", "`` `model`(x) ``"),
        ("`a.b` = Linear(4)", "'.' in a quoted name", "a `.` separates children"),
        ("`a b` = Linear(4)", "' ' in a quoted name", "letters, digits, `_` and `-`"),
        ("`` = Linear(4)", "empty quoted name", "letters, digits"),
        ("`abc = Linear(4)", "unterminated quoted name", "backtick"),
    ],
)
def test_bad_names_are_one_syntax_error(line, message, note):
    with pytest.raises(DualnetError) as exc:
        parse(f"model Net() {{\n    {line}\n}}\n", "n.dnet")
    (diag,) = exc.value.diagnostics
    assert (diag.code, diag.message) == ("E-SYNTAX", message)
    assert any(note in n for n in diag.notes), diag.notes


def test_a_layer_named_like_a_hyperparameter_is_one_error(tmp_path):
    path = tmp_path / "h.dnet"
    path.write_text(
        "model Block(heads: int = 2, dropout: float = 0.1) {\n"
        "    heads = Linear(4 * heads)\n    dropout = Dropout(dropout)\n"
        "    forward(x: f32[B, 4]) { return dropout(heads(x)) * heads }\n}\n"
    )
    with pytest.raises(DualnetError) as exc:
        dualnet.load(str(path)).check()
    diags = exc.value.diagnostics
    assert [(d.code, d.span.line) for d in diags] == [("E-REDEFINED", 2), ("E-REDEFINED", 3)]
    assert "hyperparameter of Block" in diags[0].message
    assert any("num_heads" in n for n in diags[0].notes)


NAMED = """
model Gate(d: int) {
    fc = Linear(d)
    forward(x: f32[B, d], g: f32[B, d]) -> f32[B, d] { return fc(x) * sigmoid(g) }
}
model Net(n: int = 3) {
    layers = Sequential({f"encoder_layer_{i}": Gate(4) for i in range(n)})
    trunk = Sequential({f"block1-{i}": Linear(4) for i in range(2)})
    head = Sequential({"fc": Linear(2), "act": relu})
    forward(x: f32[B, 4]) -> f32[B, 2] {
        h = trunk(x)
        for layer in layers { h = layer(h, x) }
        return head(layers["encoder_layer_0"](h, h))
    }
}
"""


@pytest.mark.parametrize("n", [3, 1])
def test_named_children_keep_their_names_in_every_backend(n, tmp_path):
    path = tmp_path / "named.dnet"
    path.write_text(NAMED)
    program = dualnet.load(str(path))
    names = sorted(
        [f"layers.encoder_layer_{i}.fc.{p}" for i in range(n) for p in ("weight", "bias")]
        + [f"trunk.block1-{i}.{p}" for i in range(2) for p in ("weight", "bias")]
        + ["head.fc.weight", "head.fc.bias"]
    )
    weights = tmp_path / "w.safetensors"
    dualnet.save_weights(program.torch(n=n), weights)
    agree_with_their_names(program, weights, names, tmp_path, n=n)


@pytest.mark.parametrize(
    "decl, code, message",
    [
        ('Sequential({"a": Linear(2), "a": relu})', "E-REDEFINED", "named `a`"),
        ('Sequential({f"x{i % 1}": Linear(2) for i in range(2)})', "E-REDEFINED", "`x0`"),
        ('Sequential({"a b": Linear(2)})', "E-VALUE", "found `a b`"),
        ("Sequential({1: Linear(2)})", "E-VALUE", "found int"),
        ('Sequential({f"x{1.5}": Linear(2)})', "E-TYPE", "integer or a string"),
        ('Linear({"a": relu})', "E-SYNTAX", "only allowed as the argument of Sequential"),
    ],
)
def test_bad_child_names_are_diagnostics(decl, code, message, tmp_path):
    path = tmp_path / "bad.dnet"
    path.write_text(
        f"model Net() {{\n    s = {decl}\n    forward(x: f32[B, 2]) {{ return relu(x) }}\n}}\n"
    )
    with pytest.raises(DualnetError) as exc:
        dualnet.load(str(path)).check()
    (diag,) = exc.value.diagnostics
    assert diag.code == code and message in diag.message, diag


@pytest.mark.parametrize(
    "text, message", [('f"a b{i}"', "f-string's text"), ('f"a{i"', "unmatched brace")]
)
def test_bad_f_strings_are_syntax_errors(text, message):
    with pytest.raises(DualnetError) as exc:
        parse(f"model Net() {{\n    s = Sequential({{{text}: relu for i in range(2)}})\n}}\n", "f")
    (diag,) = exc.value.diagnostics
    assert diag.code == "E-SYNTAX" and message in diag.message


@pytest.mark.parametrize(
    "index, code, message",
    [('"fc2"', "E-NAME", "no child named `fc2`"), ('f"fc"', "E-TYPE", "literal name")],
)
def test_reading_a_child_by_name_needs_a_literal_of_a_child(index, code, message, tmp_path):
    path = tmp_path / "bad.dnet"
    path.write_text(
        'model Net() {\n    s = Sequential({"fc": Linear(2)})\n'
        f"    forward(x: f32[B, 2]) {{ return s[{index}](x) }}\n}}\n"
    )
    with pytest.raises(DualnetError) as exc:
        dualnet.load(str(path)).check()
    (diag,) = exc.value.diagnostics
    assert diag.code == code and message in diag.message, diag

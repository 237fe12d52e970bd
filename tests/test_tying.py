"""Reaching into children and weight tying (issue 13): `transformer.wte(ids)`,
`transformer.wte.weight` and a child's Parameter in forward; `tie=` keeps one tensor — one
nn.Parameter in PyTorch, one variable in Keras, one ONNX initializer, once in the weight
file — and a file that also holds the alias name (as a transformers state_dict does) loads
when the two are equal, else E-WEIGHTS."""

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

SOURCE = """
model Inner(vocab: int, dim: int) {
    wte = Embedding(vocab, dim)
    gain = Parameter([dim], init="ones")
    forward(ids: i64[B, T]) -> f32[B, T, dim] { return wte(ids) * gain }
}
model Net(vocab: int = 11, dim: int = 6) {
    transformer = Inner(vocab, dim)
    lm_head = Linear(vocab, bias=false, tie=transformer.wte)
    forward(ids: i64[B, T]) -> (f32[B, T, vocab], f32[B, T, vocab]) {
        x = transformer(ids)
        y = transformer.wte(ids) * transformer.gain
        return lm_head(x), y @ transpose(transformer.wte.weight, 0, 1)
    }
}
"""
NAMES = ["transformer.wte.weight", "transformer.gain"]


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    path = tmp_path_factory.mktemp("tied") / "net.dnet"
    path.write_text(SOURCE)
    return dualnet.load(str(path))


@pytest.fixture(scope="module")
def state(program):
    return {k: v.numpy() for k, v in init_state(program.check().instance, 5).items()}


def _ids():
    return np.random.default_rng(1).integers(0, 11, (2, 4)).astype(np.int64)


def test_one_tensor_counted_once(program, state):
    summary = program.check()
    assert summary.trainable_params == 11 * 6 + 6  # the head adds nothing
    assert list(state) == NAMES
    lm_head = summary.instance.children["lm_head"]
    assert lm_head.tied == {"weight": "transformer.wte.weight"}


def test_torch_ties_one_parameter(program, tmp_path):
    module = program.torch()
    assert module.lm_head.weight is module.transformer.wte.weight
    assert sum(p.numel() for p in module.parameters()) == program.check().trainable_params
    dualnet.save_weights(module, tmp_path / "w.safetensors")
    assert sorted(load_file(tmp_path / "w.safetensors")) == sorted(NAMES)


def _with_alias(state, tmp_path, change: float = 0.0):
    path = tmp_path / "alias.safetensors"
    write_state({**state, "lm_head.weight": state["transformer.wte.weight"] + change}, path)
    return path


def test_alias_loads_in_every_backend(program, state, tmp_path):
    path = _with_alias(state, tmp_path)
    ids = _ids()
    module = program.torch()
    dualnet.load_weights(module, path)
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.from_numpy(ids))]
    wte = state["transformer.wte.weight"]
    np.testing.assert_allclose(expected[0], wte[ids] @ wte.T, rtol=1e-5, atol=1e-6)
    keras_model = program.keras()
    dualnet.load_weights(keras_model, path)
    assert len(keras_model.weights) == 2  # the embedding and the gain: one variable each
    for got, want in zip(keras_model(ids), expected, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    proto = program.onnx(weights=str(path))
    assert sorted(
        i.name for i in proto.graph.initializer if i.name in [*NAMES, "lm_head.weight"]
    ) == sorted(NAMES)
    session = onnxruntime.InferenceSession(proto.SerializeToString())
    for got, want in zip(
        session.run(None, {session.get_inputs()[0].name: ids}), expected, strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_differing_alias_is_refused(program, state, tmp_path):
    path = _with_alias(state, tmp_path, change=1.0)
    for load in (
        lambda: dualnet.load_weights(program.torch(), path),
        lambda: dualnet.load_weights(program.keras(), path),
        lambda: program.onnx(weights=str(path)),
    ):
        with pytest.raises(DualnetError) as info:
            load()
        (d,) = info.value.diagnostics
        assert d.code == "E-WEIGHTS" and "tied to `transformer.wte.weight`" in d.message


def test_keras_training_moves_the_one_variable(program, state, tmp_path):
    import keras

    path = tmp_path / "w.safetensors"
    write_state(state, path)
    model = program.keras()
    dualnet.load_weights(model, path)
    ids = _ids()
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.ops.sum(model(ids)[0])
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None for g in grads)


MODEL = """
model Inner() {{
    wte = Embedding(10, 4)
    proj = Linear(4)
    conv = Conv1d(4, 1)
    forward(ids: i64[B, T]) -> f32[B, T, 4] {{
        return permute(conv(permute(proj(wte(ids)), (0, 2, 1))), (0, 2, 1))
    }}
}}
model M() {{
    inner = Inner()
    {decl}
    forward(ids: i64[B, T]) -> f32[B, T, 10] {{
        {body}
    }}
}}
"""


@pytest.mark.parametrize(
    "decl, body, code, text",
    [
        ("head = Linear(10)", "x = inner(ids)\n return head(x + inner.wte(ids))", None, None),
        (
            "head = Linear(10)",
            "x = inner.wte(ids)\n return head(x + inner(ids))",
            "E-MODEL",
            "read before `inner` is called",
        ),
        (
            "head = Linear(10)",
            "y = inner.wte.weight\n return head(inner(ids))",
            "E-MODEL",
            "read before `inner` is called",
        ),
        (
            "head = Linear(10, tie=inner.wte)",
            "return head(inner(ids))",
            "E-VALUE",
            "bias=false",
        ),
        (
            "head = Linear(10, bias=false, tie=inner.proj)",
            "return head(inner(ids))",
            "E-SHAPE",
            "tied to is [4, 4]",
        ),
        (
            "emb = Embedding(10, 4)\n    head = Linear(10, bias=false, tie=emb)",
            "y = head(inner(ids))\n return y + head(emb(ids))",
            "E-MODEL",
            "needs `emb` called before",
        ),
        (
            "head = Conv1d(10, 1, tie=inner.wte)",
            "return head(inner(ids))",
            "E-ARGS",
            "takes no `tie`",
        ),
        (
            "head = Sequential(Linear(10, bias=false, tie=inner.wte))",
            "return head(inner(ids))",
            "E-MODEL",
            "not a step of a Sequential",
        ),
        (
            "head = Linear(10, bias=false, tie=missing)",
            "return head(inner(ids))",
            "E-TYPE",
            "declared above",
        ),
        (
            "head = Linear(10)",
            "x = inner(ids)\n return head(x) + inner.nothing",
            "E-TYPE",
            "has no layer `nothing`",
        ),
        (
            "head = Linear(10)",
            "x = inner(ids)\n return head(x + inner.conv.weight[0, 0, 0])",
            "E-TYPE",
            "cannot be read",
        ),
    ],
)
def test_rules_and_diagnostics(tmp_path, decl, body, code, text):
    path = tmp_path / "m.dnet"
    path.write_text(MODEL.format(decl=decl, body=body.replace("\n", "\n       ")))
    summary = dualnet.check_file(str(path))
    if code is None:
        assert summary.ok, summary.diagnostics
        return
    found = [d for d in summary.diagnostics if d.code == code]
    assert found and text in found[0].message and found[0].span is not None, summary.diagnostics

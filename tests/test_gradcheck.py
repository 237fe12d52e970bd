"""`dualnet gradcheck`: finite differences against each backend's autodiff, gradients across
backends, and the float64 ONNX model it differences."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import dualnet
from dualnet import cli
from dualnet.backends import BACKENDS as ALL_BACKENDS
from dualnet.backends.initial import initial_weights
from dualnet.backends.onnx.emit import emit_onnx
from dualnet.backends.onnx.float64 import evaluator, float64_model, widened
from dualnet.backends.onnx.model import onnx_model
from dualnet.verify import gradcheck
from dualnet.verify.parity import random_inputs

MODELS = Path(__file__).resolve().parents[1] / "models"
BACKENDS = list(ALL_BACKENDS)


@pytest.mark.parametrize(
    "name", ["lenet5", "mlp", "bert_encoder", "gru_classifier", "lstm_classifier"]
)
def test_the_zoo_passes_in_all_three_backends(name):
    checks, agreements, where = gradcheck.gradcheck(
        dualnet.load(str(MODELS / f"{name}.dnet")), None, BACKENDS, dims={"T": 5}
    )
    assert len(where) == 3 and {c.backend for c in checks} == set(BACKENDS)
    assert all(c.ok for c in checks), max(checks, key=lambda c: c.error)
    assert agreements and all(a.ok for a in agreements), max(agreements, key=lambda a: a.error)


def test_an_integer_output_carries_no_gradient(tmp_path):
    """A model with an i64 output beside a float one: every backend's loss leaves it out
    (Keras multiplied it by the float64 loss weights and failed)."""
    path = tmp_path / "two.dnet"
    path.write_text(
        "model Two() {\n    fc = Linear(4)\n"
        "    forward(x: f32[B, 4], ids: i64[B, 3]) -> (f32[B, 4], i64[B, 3]) {\n"
        "        return fc(x), cumsum(ids, 1)\n    }\n}\n"
    )
    checks, agreements, _ = gradcheck.gradcheck(dualnet.load(str(path)), None, BACKENDS)
    assert {c.backend for c in checks} == set(BACKENDS) and all(c.ok for c in checks)
    assert agreements and all(a.ok for a in agreements)


def test_a_gradient_zero_in_exact_arithmetic_agrees_across_backends(tmp_path):
    """A one-head attention bias, added to every score, has a zero gradient (softmax cancels
    it): each framework's is rounding noise, compared with the rounding floor, not with
    itself (it was "error 3", a MISMATCH). A real difference of that tensor still counts."""
    path = tmp_path / "bias.dnet"
    path.write_text(
        "model Attend() {\n    fc = Linear(8)\n    bias = Parameter([1, 1, 1])\n"
        "    forward(x: f32[B, 5, 8]) -> f32[B, 1, 5, 8] {\n"
        "        q = fc(x)[:, none]\n"
        "        return scaled_dot_product_attention(q, q, q, bias=bias)\n    }\n}\n"
    )
    checks, agreements, _ = gradcheck.gradcheck(dualnet.load(str(path)), None, ["torch", "keras"])
    assert all(c.ok for c in checks)
    bias = [a for a in agreements if a.tensor == "bias"]
    assert bias and all(a.ok for a in agreements)
    noise, real = np.array([1e-16]), np.array([1e-4])
    floor = gradcheck._rounding_floor({"fc.weight": np.array([380.0])})
    assert gradcheck._relative(noise, np.array([6e-17]), floor) <= gradcheck.GRADIENT_TOLERANCE
    assert gradcheck._relative(real, np.array([0.0]), floor) > gradcheck.GRADIENT_TOLERANCE


def test_a_wrong_gradient_fails_with_exit_1(monkeypatch, capsys):
    """A relu whose backward is twice the true one: PyTorch's autodiff no longer matches its
    finite differences, ONNX's (checked against PyTorch's gradient) nor Keras's gradient."""

    class Relu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2 * grad * (x > 0)

    monkeypatch.setattr(torch.nn.functional, "relu", lambda x, inplace=False: Relu.apply(x))
    code = cli.main(["gradcheck", str(MODELS / "mlp.dnet")])
    out = capsys.readouterr().out
    assert code == 1
    verdicts = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert "FAIL" in verdicts["torch"] and "FAIL" in verdicts["onnx"]
    assert "ok" in verdicts["keras"] and "MISMATCH" in verdicts["torch vs keras"]


def test_the_command_prints_both_tables_and_restores_keras(capsys):
    import keras

    assert (
        cli.main(
            [
                "gradcheck",
                str(MODELS / "gru_classifier.dnet"),
                "--dims",
                "T=4",
                "--backends",
                "torch,keras",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "finite differences in float64" in out and "torch vs keras" in out
    assert keras.config.floatx() == "float32" and keras.config.dtype_policy().name == "float32"


def test_torch_and_onnx_alone_compare_no_gradients_across_backends(capsys):
    assert cli.main(["gradcheck", str(MODELS / "mlp.dnet"), "--backends", "torch,onnx"]) == 0
    assert "no gradients compared across backends" in capsys.readouterr().out


def test_bad_options_are_diagnostics(capsys):
    for options in (["--eps", "0"], ["--dims", "B=0"]):
        assert cli.main(["gradcheck", str(MODELS / "mlp.dnet"), *options]) == 1
        assert "error[E-INPUT]" in capsys.readouterr().err


GELU64 = """
model Gelu64() {
    forward(x: f64[B, 8]) -> f64[B, 8] { return gelu(x) }
}
"""


def test_emitter_float32_fallback_is_optional(tmp_path):
    path = tmp_path / "gelu64.dnet"
    path.write_text(GELU64)
    summary = dualnet.load(str(path)).check()
    ops = [
        {n.op_type for n in emit_onnx(summary, {}, float32_fallback=f).model.graph.node}
        for f in (True, False)
    ]
    assert "Cast" in ops[0] and "Cast" not in ops[1] and "Erf" in ops[1]


def test_the_float64_onnx_model_is_float64_throughout_and_matches_onnx_runtime():
    program = dualnet.load(str(MODELS / "bert_encoder.dnet"))
    summary = program.check()
    state = initial_weights(summary, None, 0)
    inputs = random_inputs(summary, {"B": 2, "T": 6}, 0)
    model = float64_model(widened(program.check()), state)
    graph = model.graph
    floats = {
        t.type.tensor_type.elem_type for t in [*graph.input, *graph.output, *graph.value_info]
    }
    floats |= {t.data_type for t in graph.initializer}
    assert floats <= {11, 7, 9}  # DOUBLE, INT64, BOOL
    got = evaluator(model).run(
        None, {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in inputs.items()}
    )
    session = ort.InferenceSession(
        onnx_model(summary).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    for a, b in zip(got, session.run(None, inputs), strict=True):
        assert a.dtype == np.float64 and np.max(np.abs(a - b)) / (1 + np.max(np.abs(b))) < 1e-5


def test_the_reference_erf_keeps_float64():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["y"])],
        "erf",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [3])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [3])],
    )
    x = np.array([0.1, 0.5, 2.0])
    (y,) = evaluator(helper.make_model(graph)).run(None, {"x": x})
    assert y.dtype == np.float64
    assert np.array_equal(y, [math.erf(v) for v in x])


def _one_node(node, dtype):
    from onnx import TensorProto, helper

    t = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}[dtype]
    graph = helper.make_graph(
        [node],
        "one",
        [helper.make_tensor_value_info(n, t, None) for n in node.input],
        [helper.make_tensor_value_info("y", t, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


@pytest.mark.parametrize("rank", [1, 2])
def test_the_fast_maxpool_and_convtranspose_match_onnx_runtime(rank):
    """The evaluator's own MaxPool and ConvTranspose (onnx.reference's loop in Python; its
    MaxPool also misreads asymmetric pads at stride 1, its ConvTranspose fails on groups)."""
    from onnx import helper

    rng = np.random.default_rng(rank)
    cases = [
        (
            "MaxPool",
            {"x": rng.standard_normal((2, 3, *[9] * rank))},
            {
                "kernel_shape": [k] * rank,
                "strides": [s] * rank,
                "dilations": [d] * rank,
                "pads": [p] * rank + [q] * rank,
            },
        )
        for k in (2, 3)
        for s in (1, 2)
        for d in (1, 2)
        for p, q in ((0, 0), (1, 0))
    ]
    cases += [
        (
            "ConvTranspose",
            {
                "x": rng.standard_normal((2, 4, *[5] * rank)),
                "w": rng.standard_normal((4, 3, *[k] * rank)),
                "b": rng.standard_normal(3 * g),
            },
            {
                "strides": [s] * rank,
                "dilations": [d] * rank,
                "group": g,
                "output_padding": [s - 1] * rank,
                "pads": [p] * rank + [0] * rank,
            },
        )
        for k in (1, 2, 3)
        for s in (1, 2)
        for d in (1, 2)
        for g in (1, 2)
        for p in (0, 1)
    ]
    for op, feed, attrs in cases:
        node = helper.make_node(op, list(feed), ["y"], **attrs)
        (got,) = evaluator(_one_node(node, np.float64)).run(None, feed)
        (want,) = ort.InferenceSession(
            _one_node(node, np.float32).SerializeToString(), providers=["CPUExecutionProvider"]
        ).run(None, {k: v.astype(np.float32) for k, v in feed.items()})
        assert got.shape == want.shape, (op, attrs)
        assert np.max(np.abs(got - want)) < 1e-5 * (1 + np.max(np.abs(want))), (op, attrs)


def test_a_backend_refusing_its_float64_weights_is_its_bug(monkeypatch, capsys):
    """E-WEIGHTS about the float64 file gradcheck wrote itself becomes E-BACKEND naming the
    backend; the temporary path is never shown."""
    from dualnet.io.weights import mismatch_error

    def refusing(self, program, model, file, state, inputs, loss):
        raise mismatch_error([f"{file} has no tensor `fc1.weight`"], file)

    monkeypatch.setattr(type(ALL_BACKENDS["keras"]), "gradient_side", refusing)
    code = cli.main(["gradcheck", str(MODELS / "mlp.dnet"), "--backends", "torch,keras"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error[E-BACKEND]: the keras backend cannot take"), err
    assert "E-WEIGHTS" not in err and "float64.safetensors" not in err
    assert "the float64 weights has no tensor `fc1.weight`" in err

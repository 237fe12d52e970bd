"""Linear, Embedding, Dropout, Identity: rules, PyTorch's parameters and initialisers, and
references against ONNX Gemm / MatMul / Gather / Dropout and PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from opkit import B, T, close, fails, infer, onnx_node, randn, run_ref, shapes, tt

RNG = np.random.default_rng(8)


def test_linear_rules_and_params():
    out, ctx = infer("Linear", {"x": tt("f32", B, 400)}, config={"out": 120})
    assert str(out[0]) == "f32[B, 120]" and ctx.config["in_features"] == 400
    state = torch.nn.Linear(400, 120).state_dict()
    assert {k: s.shape for k, s in ctx.params.items()} == {
        k: tuple(v.shape) for k, v in state.items()
    }
    w, b = ctx.params["weight"].init, ctx.params["bias"].init
    assert w.scheme == "kaiming_uniform" and dict(w.args) == {"a": math.sqrt(5), "fan_in": 400}
    assert b.scheme == "uniform" and dict(b.args)["bound"] == pytest.approx(1 / 20)
    assert 0.95 / 20 < state["weight"].abs().max() <= 1 / 20  # PyTorch's draw: same bound
    assert shapes("Linear", {"x": tt("f64", B, T, 64)}, config={"out": 10}) == ["f64[B, T, 10]"]
    _, ctx = infer("Linear", {"x": tt("f32", B, 4)}, config={"out": 3, "bias": False})
    assert list(ctx.params) == ["weight"]
    _, ctx = infer("Linear", {"x": tt("f32", B, 4)}, config={"out": 3, "init": "zeros"})
    assert ctx.params["weight"].init.scheme == "zeros"
    fails("Linear", {"x": tt("f32", B, T)}, "E-SHAPE", config={"out": 3})
    fails("Linear", {"x": tt("f32")}, "E-SHAPE", config={"out": 3})
    fails("Linear", {"x": tt("f32", B, 4)}, "E-VALUE", config={"out": 0})


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_onnx_and_torch(bias):
    x = randn(RNG, 5, 7)
    (y,), params, _ = run_ref("Linear", {"x": x}, config={"out": 3, "bias": bias}, rng=RNG)
    inputs = [x, params["weight"]] + ([params["bias"]] if bias else [])
    close(y, onnx_node("Gemm", inputs, transB=1)[0])
    expected = torch.nn.functional.linear(
        torch.from_numpy(x),
        torch.from_numpy(params["weight"]),
        torch.from_numpy(params["bias"]) if bias else None,
    )
    close(y, expected.numpy())
    x3 = randn(RNG, 2, 4, 7)
    (y,), _, _ = run_ref("Linear", {"x": x3}, config={"out": 3, "bias": bias}, params=params)
    expected = onnx_node("MatMul", [x3, params["weight"].T.copy()])[0]
    close(y, expected + params["bias"] if bias else expected)


def test_embedding():
    out, ctx = infer("Embedding", {"ids": tt("i64", B, T)}, config={"vocab": 100, "dim": 8})
    assert str(out[0]) == "f32[B, T, 8]"
    assert ctx.params["weight"].shape == (100, 8)
    assert ctx.params["weight"].init.scheme == "normal"  # PyTorch: N(0, 1)
    assert dict(ctx.params["weight"].init.args) == {"std": 1.0}
    fails("Embedding", {"ids": tt("i64", B)}, "E-VALUE", config={"vocab": 0, "dim": 8})
    ids = RNG.integers(0, 10, size=(3, 4)).astype(np.int64)
    (y,), params, _ = run_ref("Embedding", {"ids": ids}, config={"vocab": 10, "dim": 5}, rng=RNG)
    close(y, onnx_node("Gather", [params["weight"], ids], axis=0)[0])
    close(
        y,
        torch.nn.functional.embedding(
            torch.from_numpy(ids), torch.from_numpy(params["weight"])
        ).numpy(),
    )
    ids32 = ids.astype(np.int32)
    (y32,), _, _ = run_ref(
        "Embedding", {"ids": ids32}, config={"vocab": 10, "dim": 5}, params=params
    )
    close(y32, y)


def test_dropout_and_identity():
    x = randn(RNG, 3, 4)
    assert shapes("Dropout", {"x": tt("f32", B, T)}, config={"p": 0.1}) == ["f32[B, T]"]
    fails("Dropout", {"x": tt("f32", B)}, "E-VALUE", config={"p": 1.0})
    fails("Dropout", {"x": tt("f32", B)}, "E-VALUE", config={"p": -0.1})
    (y,), _, _ = run_ref("Dropout", {"x": x}, config={"p": 0.3})
    close(y, onnx_node("Dropout", [x, np.array(0.3, np.float32)])[0])  # inference: identity
    assert shapes("Identity", {"x": tt("i64", B, 3)}) == ["i64[B, 3]"]
    (y,), _, _ = run_ref("Identity", {"x": x})
    close(y, onnx_node("Identity", [x])[0])

"""Reductions, arg-reductions, cumsum and softmax: rules and references against ONNX (and
PyTorch for cumsum)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opkit import B, T, close, fails, infer, onnx_node, randn, run_ref, shapes, tt

from dualnet.ops import REGISTRY

RNG = np.random.default_rng(3)
ONNX = {"mean": "ReduceMean", "sum": "ReduceSum", "max": "ReduceMax", "min": "ReduceMin"}


@pytest.mark.parametrize("op", list(ONNX))
def test_reduce_rules(op):
    x = tt("f32", B, T, 64)
    assert shapes(op, {"x": x}, axis=1) == ["f32[B, 64]"]
    assert shapes(op, {"x": x}, axis=-1, keepdims=True) == ["f32[B, T, 1]"]
    out, ctx = infer(op, {"x": x}, axis=(2, -3))
    assert str(out[0]) == "f32[T]" and ctx.attrs["axis"] == (0, 2)
    assert shapes(op, {"x": x}, axis=(0, 1, 2)) == ["f32[]"]
    fails(op, {"x": x}, "E-VALUE", axis=3)
    fails(op, {"x": x}, "E-VALUE", axis=(1, -2))
    fails(op, {"x": tt("f32")}, "E-SHAPE", axis=0)
    assert REGISTRY[op].differentiable == ("x",)


def test_reduce_dtypes():
    assert shapes("sum", {"x": tt("i32", B, 3)}, axis=1) == ["i32[B]"]  # ONNX keeps the dtype
    assert REGISTRY["mean"].signature.params[0].dtypes == "float"


@pytest.mark.parametrize("op", list(ONNX))
@pytest.mark.parametrize(
    "axis,keepdims", [(1, False), ((0, 2), True), (-1, False), ((0, 1, 2), False)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduce_matches_onnx(op, axis, keepdims, dtype):
    x = randn(RNG, 3, 4, 5, dtype=dtype)
    (y,), _, ctx = run_ref(op, {"x": x}, axis=axis, keepdims=keepdims)
    axes = np.array(ctx.attrs["axis"], dtype=np.int64)
    close(y, onnx_node(ONNX[op], [x, axes], keepdims=int(keepdims))[0])


def test_sum_of_integers_matches_onnx():
    x = RNG.integers(-50, 50, size=(3, 4)).astype(np.int32)
    (y,), _, _ = run_ref("sum", {"x": x}, axis=0)
    expected = onnx_node("ReduceSum", [x, np.array([0])], keepdims=0)[0]
    assert y.dtype == np.int32 and np.array_equal(y, expected)


@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_arg_rules_and_onnx(op):
    assert shapes(op, {"x": tt("f32", B, T, 10)}, axis=-1) == ["i64[B, T]"]
    assert shapes(op, {"x": tt("f32", B, T, 10)}, axis=1, keepdims=True) == ["i64[B, 1, 10]"]
    fails(op, {"x": tt("f32", B, 10)}, "E-VALUE", axis=2)
    assert REGISTRY[op].differentiable == ()
    x = RNG.integers(0, 4, size=(3, 5, 6)).astype(np.float32)  # many ties: first one wins
    onnx_op = "ArgMax" if op == "argmax" else "ArgMin"
    for axis in (0, 1, -1):
        for keepdims in (False, True):
            (y,), _, ctx = run_ref(op, {"x": x}, axis=axis, keepdims=keepdims)
            expected = onnx_node(
                onnx_op, [x], axis=ctx.attrs["axis"], keepdims=int(keepdims), select_last_index=0
            )[0]
            assert y.dtype == np.int64 and np.array_equal(y, expected)


@pytest.mark.parametrize("op,onnx_op", [("softmax", "Softmax"), ("log_softmax", "LogSoftmax")])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_matches_onnx(op, onnx_op, axis):
    out, ctx = infer(op, {"x": tt("f32", B, T, 7)}, axis=axis)
    assert str(out[0]) == "f32[B, T, 7]" and ctx.attrs["axis"] == axis % 3
    x = (randn(RNG, 3, 4, 7) * 10).astype(np.float32)
    (y,), _, ctx = run_ref(op, {"x": x}, axis=axis)
    close(y, onnx_node(onnx_op, [x], axis=ctx.attrs["axis"])[0])
    x64 = x.astype(np.float64) + 500.0  # large inputs: the max-shift keeps it finite
    (y,), _, _ = run_ref(op, {"x": x64}, axis=axis)
    close(y, onnx_node(onnx_op, [x64], axis=axis)[0])


def test_softmax_default_axis_and_failure():
    _, ctx = infer("softmax", {"x": tt("f32", B, 5)})
    assert ctx.attrs["axis"] == 1
    fails("softmax", {"x": tt("f32", B, 5)}, "E-VALUE", axis=2)


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_and_min_over_an_empty_axis_are_refused(op):
    """No value to return (PyTorch and NumPy raise; ONNX's -inf/+inf is not dualnet's)."""
    fails(op, {"x": tt("f32", 2, 0, 4)}, "E-SHAPE", match="axis of size 0", axis=1)
    infer("sum", {"x": tt("f32", 2, 0, 4)}, axis=1)  # a sum over nothing is 0


def test_cumsum_rules():
    assert shapes("cumsum", {"x": tt("i32", B, 4)}, axis=-1) == ["i32[B, 4]"]
    _, ctx = infer("cumsum", {"x": tt("f32", B, 3, 4)}, axis=-2)
    assert ctx.attrs["axis"] == 1
    fails("cumsum", {"x": tt("f32", 3)}, "E-VALUE", axis=1)
    fails("cumsum", {"x": tt("f32")}, "E-SHAPE", axis=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("axis", [0, -1])
def test_cumsum_matches_torch_and_onnx(dtype, axis):
    """The result keeps x's dtype (PyTorch's own cumsum of an i32 is i64)."""
    x = (RNG.standard_normal((3, 5)) * 10).astype(dtype)
    (y,), _, _ = run_ref("cumsum", {"x": x}, axis=axis)
    assert y.dtype == dtype
    close(y, torch.cumsum(torch.from_numpy(x), dim=axis, dtype=torch.from_numpy(x).dtype).numpy())
    close(y, onnx_node("CumSum", [x, np.array(axis, dtype=np.int64)])[0])

"""zeros, ones, full and their _like forms: rules, and references against PyTorch and ONNX
ConstantOfShape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from opkit import B, T, close, fails, infer, onnx_node, run_ref, shapes, tt

from dualnet.ir.types import DType
from dualnet.ops import REGISTRY

TORCH = {DType.f32: torch.float32, DType.f64: torch.float64, DType.i32: torch.int32}
TORCH |= {DType.i64: torch.int64, DType.bool: torch.bool}


def test_rules():
    assert shapes("zeros", {}, shape=(B, T)) == ["f32[B, T]"]
    assert shapes("ones", {}, shape=(3,), dtype=DType.i32) == ["i32[3]"]
    assert shapes("full", {}, shape=(2,), value=3) == ["i64[2]"]  # torch.full's dtypes
    assert shapes("full", {}, shape=(2,), value=0.5) == ["f32[2]"]
    assert shapes("full", {}, shape=(2,), value=True) == ["bool[2]"]
    _, ctx = infer("full", {}, shape=(2,), value=3, dtype=DType.f64)
    assert ctx.attrs["value"] == 3.0 and isinstance(ctx.attrs["value"], float)
    x = tt("i32", B, 4)
    assert shapes("zeros_like", {"x": x}) == ["i32[B, 4]"]
    assert shapes("ones_like", {"x": x}, dtype=DType.f32) == ["f32[B, 4]"]
    assert shapes("full_like", {"x": x}, value=-2) == ["i32[B, 4]"]
    for op in ("zeros", "ones", "full", "zeros_like", "ones_like", "full_like"):
        assert REGISTRY[op].differentiable == ()


def test_bad_values_are_refused():
    """A value the dtype cannot hold is refused (PyTorch would round or wrap it)."""
    fails("full", {}, "E-VALUE", match="not an integer", shape=(2,), value=0.5, dtype=DType.i64)
    fails("full", {}, "E-VALUE", match="does not fit", shape=(2,), value=2**40, dtype=DType.i32)
    fails("full", {}, "E-VALUE", match="bool", shape=(2,), value=2, dtype=DType.bool)
    fails("full", {}, "E-TYPE", shape=(2,), value="a")
    fails("full_like", {"x": tt("i64", 3)}, "E-VALUE", value=1.5)
    fails("zeros", {}, "E-VALUE", match="position 1", shape=(2, -1))


@pytest.mark.parametrize("dtype", [DType.f32, DType.f64, DType.i32, DType.i64, DType.bool])
def test_matches_torch_and_onnx(dtype):
    shape = (2, 3)
    for op, value in (("zeros", 0), ("ones", 1), ("full", 1)):
        extra = {"value": value} if op == "full" else {}
        (y,), _, _ = run_ref(op, {}, shape=shape, dtype=dtype, **extra)
        torch_fn = getattr(torch, op)
        expected = torch_fn(shape, *extra.values(), dtype=TORCH[dtype]).numpy()
        assert y.dtype == expected.dtype
        close(y, expected, atol=0)
        tensor = helper.make_tensor("value", dtype.onnx, [1], [value])
        close(y, onnx_node("ConstantOfShape", [np.array(shape)], value=tensor)[0], atol=0)
        x = np.arange(6, dtype=np.float32).reshape(shape)
        (like,), _, _ = run_ref(f"{op}_like", {"x": x}, dtype=dtype, **extra)
        torch_like = getattr(torch, f"{op}_like")(torch.from_numpy(x), *extra.values())
        close(like, torch_like.to(TORCH[dtype]).numpy(), atol=0)


def test_like_keeps_the_dtype_of_x():
    x = np.arange(4, dtype=np.int32)
    (y,), _, _ = run_ref("full_like", {"x": x}, value=7)
    expected = torch.full_like(torch.from_numpy(x), 7).numpy()
    assert y.dtype == expected.dtype == np.int32
    close(y, expected, atol=0)

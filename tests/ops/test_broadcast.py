"""expand and broadcast_to: rules, and references against PyTorch and ONNX Expand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opkit import B, H, T, close, fails, infer, onnx_node, randn, run_ref, shapes, tt

from dualnet.ops import REGISTRY

RNG = np.random.default_rng(13)
OPS = ("expand", "broadcast_to")


@pytest.mark.parametrize("op", OPS)
def test_rules(op):
    x = tt("f32", B, 1, T)
    assert shapes(op, {"x": x}, shape=(-1, 4, -1)) == ["f32[B, 4, T]"]
    assert shapes(op, {"x": x}, shape=(H, B, 3, T)) == ["f32[H, B, 3, T]"]
    _, ctx = infer(op, {"x": tt("i64", 3, 1)}, shape=(2, -1, 5))
    assert ctx.attrs["shape"] == (2, 3, 5)  # -1 resolved
    assert REGISTRY[op].differentiable == ("x",)


@pytest.mark.parametrize("op", OPS)
def test_bad_shapes_are_refused(op):
    x = tt("f32", B, 3)
    fails(op, {"x": x}, "E-VALUE", match="at least 2", shape=(3,))
    fails(op, {"x": x}, "E-SHAPE", match="axis 1 has size 3", shape=(B, 4))
    fails(op, {"x": x}, "E-SHAPE", match="not provably T", shape=(T, 3))
    fails(op, {"x": x}, "E-VALUE", match="position 0", shape=(-1, B, 3))  # a new axis's -1
    fails(op, {"x": x}, "E-VALUE", shape=(0, B, 3))


@pytest.mark.parametrize("shape", [(2, -1, 4), (3, 4), (5, 3, 4), (-1, -1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_matches_torch_and_onnx(shape, dtype):
    x = randn(RNG, 3, 1).astype(dtype)
    t = torch.from_numpy(x)
    for op in OPS:
        (y,), _, ctx = run_ref(op, {"x": x}, shape=shape)
        assert y.dtype == dtype
        close(y, t.expand(*shape).numpy() if op == "expand" else torch.broadcast_to(t, shape))
        close(y, onnx_node("Expand", [x, np.array(ctx.attrs["shape"], dtype=np.int64)])[0])

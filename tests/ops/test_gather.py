"""take, the op behind `x[index]` with an integer tensor: rule, reference against PyTorch's
advanced indexing and ONNX Gather, and how `x[...]` reaches it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opkit import B, T, close, fails, onnx_node, randn, run_ref, shapes, tt

from dualnet.ops import REGISTRY

RNG = np.random.default_rng(17)


def test_rules():
    table = tt("f32", 169, 4)
    assert shapes("take", {"x": table, "index": tt("i64", 49, 49)}) == ["f32[49, 49, 4]"]
    assert shapes("take", {"x": tt("f32", B, T, 8), "index": tt("i32", 3)}, axis=1) == [
        "f32[B, 3, 8]"
    ]
    assert shapes("take", {"x": table, "index": tt("i64")}) == ["f32[4]"]
    fails("take", {"x": tt("f32"), "index": tt("i64", 2)}, "E-SHAPE")
    fails("take", {"x": table, "index": tt("i64", 2)}, "E-VALUE", axis=2)
    assert REGISTRY["take"].differentiable == ("x",)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_matches_torch_and_onnx(axis, dtype, index_dtype):
    """Negative indices count from the end, in PyTorch and ONNX alike."""
    x = (randn(RNG, 5, 4, 6) * 10).astype(dtype)
    index = np.array([[3, -1], [0, -4]], dtype=index_dtype)
    (y,), _, _ = run_ref("take", {"x": x, "index": index}, axis=axis)
    assert y.dtype == dtype
    t = torch.from_numpy(x)
    expected = t[(slice(None),) * (axis % 3) + (torch.from_numpy(index),)]
    close(y, expected.numpy(), atol=0)
    close(y, onnx_node("Gather", [x, index], axis=axis)[0], atol=0)


def _codes(summary):
    return [d.code for d in summary.diagnostics]


def test_indexing_with_a_tensor(check_source):
    s = check_source("""
        model M() {
            forward(table: f32[169, 4], ids: i64[49, 49], x: f32[B, T, 8], j: i32[3]) {
                return table[ids], x[:, j], x[:, :, j]
            }
        }
    """)
    assert s.ok and s.output_types == ["f32[49, 49, 4]", "f32[B, 3, 8]", "f32[B, T, 3]"]


def test_bad_tensor_indices_are_refused(check_source):
    s = check_source("""
        model M() {
            forward(x: f32[B, 8], f: f32[3], i: i64[3]) { return x[f] }
        }
    """)
    assert _codes(s) == ["E-DTYPE"]
    s = check_source("""
        model M() {
            forward(x: f32[B, 8], i: i64[3]) { return x[0, i] }
        }
    """)
    assert _codes(s) == ["E-TYPE"] and "after whole-axis slices" in s.diagnostics[0].message


# ---------------------------------------------------------------- gather


def test_gather_rules():
    x = tt("f32", B, T, 8)
    assert shapes("gather", {"x": x, "index": tt("i64", B, T, 8)}, axis=-1) == ["f32[B, T, 8]"]
    assert shapes("gather", {"x": x, "index": tt("i32", B, 3, 8)}, axis=1) == ["f32[B, 3, 8]"]
    fails("gather", {"x": x, "index": tt("i64", B, T)}, "E-SHAPE", match="rank 3", axis=1)
    err = fails("gather", {"x": x, "index": tt("i64", B, T, 4)}, "E-SHAPE", axis=1)
    assert err.diagnostics[0].label == "dimension 2: 4 vs 8"
    fails("gather", {"x": x, "index": tt("i64", B, T, 8)}, "E-VALUE", axis=3)
    assert REGISTRY["gather"].differentiable == ("x",)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_gather_matches_torch_and_onnx(axis, dtype, index_dtype):
    x = (randn(RNG, 3, 4, 5) * 10).astype(dtype)
    shape = list(x.shape)
    shape[axis] = 6  # more picks than the axis has
    index = RNG.integers(0, x.shape[axis], shape).astype(index_dtype)
    (y,), _, ctx = run_ref("gather", {"x": x, "index": index}, axis=axis)
    assert y.dtype == dtype and y.shape == index.shape
    expected = torch.gather(torch.from_numpy(x), axis, torch.from_numpy(index))
    close(y, expected.numpy(), atol=0)
    onnx_axis = ctx.attrs["axis"]  # normalised (onnx.reference misreads a negative axis)
    close(y, onnx_node("GatherElements", [x, index], axis=onnx_axis)[0], atol=0)

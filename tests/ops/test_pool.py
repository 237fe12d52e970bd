"""Pooling: rules, and references against ONNX MaxPool / AveragePool / GlobalAveragePool and
PyTorch (count_include_pad, ceil_mode, 3-d pooling, adaptive bins)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from opkit import B, C, H, W, close, fails, infer, onnx_node, randn, run_ref, shapes, tt

from dualnet.ops import REGISTRY

RNG = np.random.default_rng(2)


def _onnx_pads(pads):
    return [p[0] for p in pads] + [p[1] for p in pads]


# ---------------------------------------------------------------- rules


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_window_rules(op):
    assert shapes(op, {"x": tt("f32", B, 6, 28, 28)}, kernel=2) == ["f32[B, 6, 14, 14]"]
    assert shapes(op, {"x": tt("f32", B, 64, 112, 112)}, kernel=3, stride=2, padding=1) == [
        "f32[B, 64, 56, 56]"
    ]
    assert shapes(op, {"x": tt("f32", B, C, H, W)}, kernel=2) == ["f32[B, C, H // 2, W // 2]"]
    assert shapes(op, {"x": tt("f32", B, C, H, W)}, kernel=3, stride=1, padding=1) == [
        "f32[B, C, H, W]"
    ]
    out, ctx = infer(op, {"x": tt("f32", B, C, 7, 8)}, kernel=(2, 3), stride=(2, 1), padding="same")
    assert str(out[0]) == "f32[B, C, 4, 8]"
    assert ctx.attrs["pads"] == ((0, 1), (1, 1)) and ctx.attrs["kernel"] == (2, 3)
    fails(op, {"x": tt("f32", B, C, 8, 8)}, "E-VALUE", kernel=3, padding=2)
    fails(op, {"x": tt("f32", B, C, 2, 2)}, "E-SHAPE", kernel=3)
    fails(op, {"x": tt("f32", B, C, 8)}, "E-SHAPE", kernel=2)
    fails(op, {"x": tt("f32", B, C, 8, 8)}, "E-VALUE", kernel=(2, 2, 2))
    fails(op, {"x": tt("f32", B, C, 8, 8)}, "E-VALUE", kernel=0)


@pytest.mark.parametrize("op", ["max_pool1d", "avg_pool1d"])
def test_window_rules_1d(op):
    assert shapes(op, {"x": tt("f32", B, C, 10)}, kernel=3, stride=2) == ["f32[B, C, 4]"]
    assert shapes(op, {"x": tt("f32", B, C, H)}, kernel=2) == ["f32[B, C, H // 2]"]


def test_global_and_adaptive_rules():
    assert shapes("global_avg_pool", {"x": tt("f32", B, 512, 7, 7)}) == ["f32[B, 512]"]
    assert shapes("global_avg_pool", {"x": tt("f32", B, C, H)}) == ["f32[B, C]"]
    fails("global_avg_pool", {"x": tt("f32", B, C)}, "E-SHAPE")
    x = tt("f32", B, C, H, W)
    assert shapes("adaptive_avg_pool2d", {"x": x}, size=1) == ["f32[B, C, 1, 1]"]
    assert shapes("adaptive_avg_pool2d", {"x": x}, size=(H, 1)) == ["f32[B, C, H, 1]"]
    out, ctx = infer("adaptive_avg_pool2d", {"x": tt("f32", B, C, 10, 7)}, size=(3, 7))
    assert str(out[0]) == "f32[B, C, 3, 7]"
    assert ctx.attrs["bins"][0] == ((0, 4), (3, 7), (6, 10))
    fails("adaptive_avg_pool2d", {"x": x}, "E-SHAPE", size=(7, 7))
    fails("adaptive_avg_pool2d", {"x": tt("f32", B, C, 8, 8)}, "E-VALUE", size=(0, 2))
    fails("adaptive_avg_pool2d", {"x": tt("f32", B, C, 8, 8)}, "E-VALUE", size=(1, 2, 3))
    fails("adaptive_avg_pool2d", {"x": tt("f32", B, C, 8)}, "E-SHAPE", size=2)


# ---------------------------------------------------------------- max pooling


CASES_2D = [
    dict(kernel=2),
    dict(kernel=3, stride=2, padding=1),
    dict(kernel=(2, 3), stride=(1, 2), padding=(1, 0)),
    dict(kernel=3, stride=2, padding="same"),
    dict(kernel=2, stride=1, padding="same"),
]


@pytest.mark.parametrize("kw", CASES_2D)
def test_max_pool2d_matches_onnx(kw):
    x = randn(RNG, 2, 3, 8, 9)
    (y,), _, ctx = run_ref("max_pool2d", {"x": x}, **kw)
    a = ctx.attrs
    onnx_attrs = dict(
        kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=_onnx_pads(a["pads"])
    )
    close(y, onnx_node("MaxPool", [x], runtime="ort", **onnx_attrs)[0])
    # onnx.reference (1.23) misreads asymmetric pads when every stride is 1: skip it there
    if all(p[0] == p[1] for p in a["pads"]) or max(a["stride"]) > 1:
        close(y, onnx_node("MaxPool", [x], **onnx_attrs)[0])


def test_max_pool1d_matches_onnx():
    x = randn(RNG, 2, 3, 11)
    (y,), _, ctx = run_ref("max_pool1d", {"x": x}, kernel=3, stride=2, padding=1)
    close(y, onnx_node("MaxPool", [x], kernel_shape=[3], strides=[2], pads=[1, 1])[0])


def test_max_pool_same_on_symbolic_size_resolves_from_data():
    _, ctx = infer("max_pool2d", {"x": tt("f32", B, C, H, W)}, kernel=3, stride=2, padding="same")
    assert ctx.attrs["pads"] == (None, None)
    x = randn(RNG, 1, 2, 8, 7)
    (y,) = REGISTRY["max_pool2d"].reference({"x": x}, ctx.attrs, {})
    expected = onnx_node(
        "MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"
    )[0]
    close(y, expected)


# ---------------------------------------------------------------- average pooling


@pytest.mark.parametrize("kw", CASES_2D)
@pytest.mark.parametrize("include", [True, False])
def test_avg_pool2d_matches_onnx(kw, include):
    x = randn(RNG, 2, 3, 8, 9, dtype=np.float64)
    (y,), _, ctx = run_ref("avg_pool2d", {"x": x}, count_include_pad=include, **kw)
    a = ctx.attrs
    expected = onnx_node(
        "AveragePool",
        [x],
        kernel_shape=list(a["kernel"]),
        strides=list(a["stride"]),
        pads=_onnx_pads(a["pads"]),
        count_include_pad=int(include),
    )[0]
    close(y, expected)


@pytest.mark.parametrize("include", [True, False])
def test_avg_pool_matches_torch(include):
    x = randn(RNG, 2, 3, 9, 8)
    (y,), _, _ = run_ref(
        "avg_pool2d", {"x": x}, kernel=3, stride=2, padding=1, count_include_pad=include
    )
    expected = F.avg_pool2d(torch.from_numpy(x), 3, 2, 1, count_include_pad=include)
    close(y, expected.numpy())
    x1 = randn(RNG, 2, 3, 10)
    (y,), _, _ = run_ref(
        "avg_pool1d", {"x": x1}, kernel=4, stride=3, padding=2, count_include_pad=include
    )
    expected = F.avg_pool1d(torch.from_numpy(x1), 4, 3, 2, count_include_pad=include)
    close(y, expected.numpy())


def test_avg_pool_default_counts_padding():
    x = np.ones((1, 1, 3, 3), dtype=np.float32)
    (y,), _, _ = run_ref("avg_pool2d", {"x": x}, kernel=3, stride=1, padding=1)
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9)  # corner: 4 real ones out of 9
    (y,), _, _ = run_ref(
        "avg_pool2d", {"x": x}, kernel=3, stride=1, padding=1, count_include_pad=False
    )
    assert y[0, 0, 0, 0] == pytest.approx(1.0)


def test_global_avg_pool_matches_onnx():
    for shape in ((2, 3, 5, 4), (2, 3, 6), (1, 2, 3, 4, 5)):
        x = randn(RNG, *shape)
        (y,), _, _ = run_ref("global_avg_pool", {"x": x})
        close(y, onnx_node("GlobalAveragePool", [x])[0].reshape(shape[:2]))


@pytest.mark.parametrize(
    "size,out",
    [((10, 7), (3, 4)), ((7, 7), (7, 7)), ((5, 9), (1, 2)), ((3, 4), (5, 6)), ((8, 6), 2)],
)
def test_adaptive_avg_pool2d_matches_torch(size, out):
    x = randn(RNG, 2, 3, *size)
    (y,), _, _ = run_ref("adaptive_avg_pool2d", {"x": x}, size=out)
    close(y, F.adaptive_avg_pool2d(torch.from_numpy(x), out).numpy())


def test_adaptive_avg_pool2d_matches_onnx_where_it_is_a_pooling():
    x = randn(RNG, 2, 3, 8, 6)
    (y,), _, _ = run_ref("adaptive_avg_pool2d", {"x": x}, size=(4, 2))  # even bins: 2x3
    close(y, onnx_node("AveragePool", [x], kernel_shape=[2, 3], strides=[2, 3])[0])
    (y,), _, _ = run_ref("adaptive_avg_pool2d", {"x": x}, size=1)
    close(y, onnx_node("GlobalAveragePool", [x])[0])


def test_adaptive_on_symbolic_size_reference():
    _, ctx = infer("adaptive_avg_pool2d", {"x": tt("f32", B, C, H, W)}, size=(H, 1))
    x = randn(RNG, 2, 3, 5, 4)
    (y,) = REGISTRY["adaptive_avg_pool2d"].reference({"x": x}, ctx.attrs, {})
    close(y, x.mean(axis=3, keepdims=True))


# ---------------------------------------------------------------- ceil_mode, 3-d pooling


def test_ceil_mode_rules():
    x = {"x": tt("f32", B, C, H, W)}
    # stride <= kernel - padding: ceil((n + 2p - k) / s) + 1 windows
    assert shapes("max_pool2d", x, kernel=2, ceil_mode=True) == [
        "f32[B, C, (H + 1) // 2, (W + 1) // 2]"
    ]
    out, ctx = infer("avg_pool2d", x, kernel=3, stride=2, padding=1, ceil_mode=True)
    assert str(out[0]) == "f32[B, C, H // 2 + 1, W // 2 + 1]"
    assert ctx.attrs["pads"] == ((1, 2), (1, 2))
    # stride > kernel - padding: the last window must start inside the input or left padding
    out, ctx = infer("max_pool1d", {"x": tt("f32", B, C, H)}, kernel=2, stride=3, padding=1)
    assert str(out[0]) == "f32[B, C, H // 3 + 1]"
    out, ctx = infer(
        "max_pool1d", {"x": tt("f32", B, C, H)}, kernel=2, stride=3, padding=1, ceil_mode=True
    )
    assert str(out[0]) == "f32[B, C, H // 3 + 1]" and ctx.attrs["pads"] == ((1, 1),)
    assert shapes("max_pool1d", {"x": tt("f32", B, C, 7)}, kernel=3, stride=2, ceil_mode=True) == [
        "f32[B, C, 3]"
    ]
    assert shapes("max_pool1d", {"x": tt("f32", B, C, 8)}, kernel=3, stride=2, ceil_mode=True) == [
        "f32[B, C, 4]"
    ]
    fails("max_pool2d", x, "E-VALUE", kernel=3, stride=2, padding="same", ceil_mode=True)
    fails("avg_pool2d", {"x": tt("f32", B, C, 2, 2)}, "E-SHAPE", kernel=3, ceil_mode=True)


def _torch_pool(op, x, kw):
    args = dict(kw)
    kernel, stride, padding = args.pop("kernel"), args.pop("stride"), args.pop("padding", 0)
    return getattr(F, op)(torch.from_numpy(x), kernel, stride, padding, **args).numpy()


CEIL_CASES = [  # (input spatial sizes, kernel, stride, padding)
    ((7, 9), 3, 2, 1),
    ((8, 5), 2, 3, 1),
    ((6, 11), (3, 2), (2, 3), (1, 0)),
    ((5,), 4, 3, 2),
    ((10,), 3, 2, 0),
    ((4, 5, 7), 3, 2, 1),
    ((5, 6, 3), 2, 3, 0),
]


@pytest.mark.parametrize("spatial,kernel,stride,padding", CEIL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg_include", "avg_exclude"])
def test_ceil_mode_matches_torch_and_onnx_runtime(spatial, kernel, stride, padding, kind):
    x = randn(RNG, 2, 3, *spatial)
    op = f"{kind[:3]}_pool{len(spatial)}d"
    kw = dict(kernel=kernel, stride=stride, padding=padding, ceil_mode=True)
    if kind != "max":
        kw["count_include_pad"] = kind == "avg_include"
    (y,), _, ctx = run_ref(op, {"x": x}, **kw)
    close(y, _torch_pool(op, x, kw))
    a = ctx.attrs
    onnx_attrs = dict(
        kernel_shape=list(a["kernel"]),
        strides=list(a["stride"]),
        pads=[p for p, _ in a["pads"]] * 2,
        ceil_mode=1,
    )
    if kind != "max":
        onnx_attrs["count_include_pad"] = int(kw["count_include_pad"])
    onnx_op = "MaxPool" if kind == "max" else "AveragePool"
    close(y, onnx_node(onnx_op, [x], runtime="ort", **onnx_attrs)[0])


def test_ceil_mode_adds_a_partial_window_on_odd_sizes():
    x = np.arange(5, dtype=np.float32).reshape(1, 1, 5)
    (y,), _, _ = run_ref("avg_pool1d", {"x": x}, kernel=2, ceil_mode=True)
    np.testing.assert_array_equal(y[0, 0], [0.5, 2.5, 4.0])  # the last window holds 1 element
    (y,), _, _ = run_ref("max_pool1d", {"x": -x}, kernel=2, ceil_mode=True)
    np.testing.assert_array_equal(y[0, 0], [0.0, -2.0, -4.0])


@pytest.mark.parametrize("op", ["max_pool3d", "avg_pool3d"])
def test_3d_pooling_matches_torch(op):
    x = randn(RNG, 2, 3, 5, 6, 7)
    assert shapes(op, {"x": tt("f32", B, C, 5, 6, 7)}, kernel=2) == ["f32[B, C, 2, 3, 3]"]
    fails(op, {"x": tt("f32", B, C, 5, 6)}, "E-SHAPE", kernel=2)
    for kw in (
        dict(kernel=2, stride=2),
        dict(kernel=(3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1)),
    ):
        (y,), _, _ = run_ref(op, {"x": x}, **kw)
        close(y, _torch_pool(op, x, kw))
    (y,), _, _ = run_ref(op, {"x": x}, kernel=3, stride=2, padding="same")
    window = dict(kernel_shape=[3] * 3, strides=[2] * 3, auto_pad="SAME_UPPER")
    if op == "max_pool3d":
        close(y, onnx_node("MaxPool", [x], **window)[0])
    else:
        close(y, onnx_node("AveragePool", [x], count_include_pad=1, **window)[0])


def test_adaptive_avg_pool3d_rules_and_torch():
    x = tt("f32", B, C, 4, H, W)
    assert shapes("adaptive_avg_pool3d", {"x": x}, size=1) == ["f32[B, C, 1, 1, 1]"]
    assert shapes("adaptive_avg_pool3d", {"x": x}, size=(2, H, 1)) == ["f32[B, C, 2, H, 1]"]
    fails("adaptive_avg_pool3d", {"x": x}, "E-SHAPE", size=(2, 3, 1))
    fails("adaptive_avg_pool3d", {"x": x}, "E-VALUE", size=(2, 3))
    fails("adaptive_avg_pool3d", {"x": tt("f32", B, C, 8, 8)}, "E-SHAPE", size=2)
    for size, out in (((5, 7, 4), (3, 2, 4)), ((6, 3, 9), (4, 1, 2)), ((3, 4, 5), 2)):
        v = randn(RNG, 2, 3, *size)
        (y,), _, _ = run_ref("adaptive_avg_pool3d", {"x": v}, size=out)
        close(y, F.adaptive_avg_pool3d(torch.from_numpy(v), out).numpy())

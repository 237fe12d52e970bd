"""Shape ops: rules (concrete and symbolic) and references against ONNX (and PyTorch for
bilinear upsampling)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from opkit import (
    B,
    C,
    H,
    T,
    W,
    close,
    fails,
    infer,
    onnx_graph,
    onnx_node,
    randn,
    run_ref,
    shapes,
    tt,
)

from dualnet.diagnostics import DualnetError
from dualnet.ir.dims import sym
from dualnet.ops import REGISTRY
from dualnet.ops.shape import substitute_attrs

RNG = np.random.default_rng(1)
X4 = randn(RNG, 2, 3, 4, 5)


# ---------------------------------------------------------------- flatten


def test_flatten_rules():
    assert shapes("flatten", {"x": tt("f32", B, 16, 5, 5)}) == ["f32[B, 400]"]
    assert shapes("flatten", {"x": tt("f32", B, C, H, W)}) == ["f32[B, C * H * W]"]
    assert shapes("flatten", {"x": tt("f32", B, 16, 5, 5)}, start=2) == ["f32[B, 16, 25]"]
    assert shapes("flatten", {"x": tt("f32", B, 16, 5, 5)}, start=-1) == ["f32[B, 16, 5, 5]"]
    fails("flatten", {"x": tt("f32", B, 16)}, "E-VALUE", start=2)


def test_flatten_matches_onnx():
    (y,), _, _ = run_ref("flatten", {"x": X4})
    close(y, onnx_node("Flatten", [X4], axis=1)[0])
    (y,), _, _ = run_ref("flatten", {"x": X4}, start=2)
    close(y, onnx_node("Reshape", [X4, np.array([2, 3, 20])])[0])


# ---------------------------------------------------------------- reshape


def test_reshape_rules():
    x = tt("f32", B, 3, 4, 5)
    assert shapes("reshape", {"x": x}, dims=(B, -1)) == ["f32[B, 60]"]
    assert shapes("reshape", {"x": x}, dims=(-1, 5)) == ["f32[12 * B, 5]"]
    assert shapes("reshape", {"x": x}, dims=(B, 12, 5)) == ["f32[B, 12, 5]"]
    out, ctx = infer("reshape", {"x": tt("f32", B, T, 64)}, dims=(B, T, 4, -1))
    assert str(out[0]) == "f32[B, T, 4, 16]" and ctx.attrs["dims"] == (B, T, 4, 16)
    assert shapes("reshape", {"x": tt("f32", B, 2 * T)}, dims=(B, T, 2)) == ["f32[B, T, 2]"]
    assert shapes("reshape", {"x": tt("f32", B, T, 2)}, dims=(B, -1)) == ["f32[B, 2 * T]"]
    assert shapes("reshape", {"x": tt("f32", B, T, 8)}, dims=(-1, T, 8)) == ["f32[B, T, 8]"]
    assert shapes("reshape", {"x": tt("f32")}, dims=(1, 1)) == ["f32[1, 1]"]


def test_reshape_failures():
    fails("reshape", {"x": tt("f32", 3, 4)}, "E-SHAPE", dims=(5, -1))
    fails("reshape", {"x": tt("f32", 3, 4)}, "E-SHAPE", dims=(5, 2))
    fails("reshape", {"x": tt("f32", 3, 4)}, "E-VALUE", dims=(-1, -1))
    fails("reshape", {"x": tt("f32", 3, 4)}, "E-VALUE", dims=(0, 12))
    # E is symbolic: splitting it in two halves is not provably exact
    fails(
        "reshape", {"x": tt("f32", B, T, sym("E"))}, "E-SHAPE", match="provably", dims=(B, T, 2, -1)
    )
    fails("reshape", {"x": tt("f32", B, T)}, "E-SHAPE", dims=(B, H))


def test_reshape_matches_onnx():
    for dims in ((2, -1), (-1, 5), (6, 4, 5), (120,)):
        (y,), _, _ = run_ref("reshape", {"x": X4}, dims=dims)
        close(y, onnx_node("Reshape", [X4, np.array(dims, dtype=np.int64)])[0])


def test_reshape_reference_with_one_symbolic_size():
    _, ctx = infer("reshape", {"x": tt("f32", B, 3, 4, 5)}, dims=(B, -1))
    (y,) = REGISTRY["reshape"].reference({"x": X4}, ctx.attrs, {})
    assert y.shape == (2, 60)


# ---------------------------------------------------------------- permute, transpose


def test_permute_and_transpose_rules():
    x = tt("f32", B, C, H, W)
    assert shapes("permute", {"x": x}, axes=(0, 2, 3, 1)) == ["f32[B, H, W, C]"]
    out, ctx = infer("permute", {"x": x}, axes=(0, -2, -1, 1))
    assert ctx.attrs["axes"] == (0, 2, 3, 1)
    fails("permute", {"x": x}, "E-VALUE", axes=(0, 1, 1, 2))
    fails("permute", {"x": x}, "E-VALUE", axes=(0, 1, 2))
    fails("permute", {"x": x}, "E-VALUE", axes=(0, 1, 2, 4))
    out, ctx = infer("transpose", {"x": x}, a=1, b=-1)
    assert str(out[0]) == "f32[B, W, H, C]" and ctx.attrs["perm"] == (0, 3, 2, 1)
    fails("transpose", {"x": x}, "E-VALUE", a=4, b=0)


def test_permute_and_transpose_match_onnx():
    (y,), _, _ = run_ref("permute", {"x": X4}, axes=(0, -2, -1, 1))
    close(y, onnx_node("Transpose", [X4], perm=[0, 2, 3, 1])[0])
    (y,), _, ctx = run_ref("transpose", {"x": X4}, a=-1, b=1)
    close(y, onnx_node("Transpose", [X4], perm=[0, 3, 2, 1])[0])
    close(y, onnx_node("Transpose", [X4], perm=list(ctx.attrs["perm"]))[0])


# ---------------------------------------------------------------- concat, split


def test_concat_rules():
    a, b = tt("f32", B, 32, H, W), tt("f32", B, 64, H, W)
    assert shapes("concat", {"xs": [a, b]}, axis=1) == ["f32[B, 96, H, W]"]
    assert shapes("concat", {"xs": [tt("f32", B, T, 4)] * 2}, axis=1) == ["f32[B, 2 * T, 4]"]
    assert shapes("concat", {"xs": [a, b, a]}, axis=-3) == ["f32[B, 128, H, W]"]
    fails("concat", {"xs": [a, tt("f64", B, 64, H, W)]}, "E-DTYPE", axis=1)
    fails("concat", {"xs": [a, tt("f32", B, 64, H, 3)]}, "E-SHAPE", axis=1)
    fails("concat", {"xs": [a, tt("f32", B, 64, H)]}, "E-SHAPE", axis=1)
    fails("concat", {"xs": [a, b]}, "E-VALUE", axis=4)


def test_concat_matches_onnx():
    xs = [randn(RNG, 2, k, 3) for k in (1, 4, 2)]
    (y,), _, _ = run_ref("concat", {"xs": xs}, axis=-2)
    close(y, onnx_node("Concat", xs, axis=1)[0])


def test_split_rules():
    out, ctx = infer("split", {"x": tt("f32", B, 6, 4)}, n=3, axis=1)
    assert [str(t) for t in out] == ["f32[B, 2, 4]"] * 3 and ctx.attrs["sizes"] == (2, 2, 2)
    assert shapes("split", {"x": tt("f32", B, 2 * T)}, n=2, axis=-1) == ["f32[B, T]"] * 2
    fails("split", {"x": tt("f32", B, 5)}, "E-SHAPE", n=2, axis=1)
    fails("split", {"x": tt("f32", B, T)}, "E-SHAPE", match="provably", n=2, axis=1)
    fails("split", {"x": tt("f32", B, 4)}, "E-VALUE", n=0, axis=1)


def test_split_matches_onnx():
    x = randn(RNG, 2, 6, 4)
    ys, _, _ = run_ref("split", {"x": x}, n=3, axis=1)
    expected = onnx_node("Split", [x], n_outputs=3, axis=1, num_outputs=3)
    for y, e in zip(ys, expected, strict=True):
        close(y, e)
    expected = onnx_node("Split", [x, np.array([2, 2, 2])], n_outputs=3, axis=1, opset=13)
    for y, e in zip(ys, expected, strict=True):
        close(y, e)


# ---------------------------------------------------------------- (un)squeeze


def test_squeeze_unsqueeze_rules():
    x = tt("f32", B, 1, T)
    assert shapes("unsqueeze", {"x": x}, axis=0) == ["f32[1, B, 1, T]"]
    assert shapes("unsqueeze", {"x": x}, axis=-1) == ["f32[B, 1, T, 1]"]
    assert shapes("unsqueeze", {"x": x}, axis=3) == ["f32[B, 1, T, 1]"]
    fails("unsqueeze", {"x": x}, "E-VALUE", axis=4)
    assert shapes("squeeze", {"x": x}, axis=1) == ["f32[B, T]"]
    assert shapes("squeeze", {"x": x}, axis=-2) == ["f32[B, T]"]
    fails("squeeze", {"x": x}, "E-SHAPE", axis=2)  # T is not known to be 1
    fails("squeeze", {"x": tt("f32", 3, 4)}, "E-SHAPE", axis=0)


def test_squeeze_unsqueeze_match_onnx():
    x = randn(RNG, 2, 1, 3)
    (y,), _, _ = run_ref("unsqueeze", {"x": x}, axis=-1)
    close(y, onnx_node("Unsqueeze", [x, np.array([-1])])[0])
    (y,), _, _ = run_ref("squeeze", {"x": x}, axis=-2)
    close(y, onnx_node("Squeeze", [x, np.array([1])])[0])


# ---------------------------------------------------------------- pad


def test_pad_rules():
    out, ctx = infer("pad", {"x": tt("f32", B, C, H, W)}, pads=(1, 2, 3, 4))
    assert str(out[0]) == "f32[B, C, H + 3, W + 7]"
    assert ctx.attrs["pads"] == ((0, 0), (0, 0), (1, 2), (3, 4))
    assert shapes("pad", {"x": tt("f32", 2, 3)}, pads=(1, 1, 0, 2)) == ["f32[4, 5]"]
    fails("pad", {"x": tt("f32", 2, 3)}, "E-VALUE", pads=(1, 2, 3))
    fails("pad", {"x": tt("f32", 2, 3)}, "E-VALUE", pads=(1, 1, 1, 1, 1, 1))
    fails("pad", {"x": tt("f32", 2, 3)}, "E-VALUE", pads=(-1, 1))
    fails("pad", {"x": tt("i64", 2, 3)}, "E-VALUE", pads=(1, 1), value=0.5)


def test_pad_matches_onnx():
    x = randn(RNG, 2, 3, 4)
    (y,), _, ctx = run_ref("pad", {"x": x}, pads=(1, 2, 0, 3), value=1.5)
    assert y.shape == (2, 6, 7)
    onnx_pads = np.array([0, 1, 0, 0, 2, 3])  # all begins, then all ends
    close(y, onnx_node("Pad", [x, onnx_pads, np.array(1.5, np.float32)])[0])


# ---------------------------------------------------------------- upsample


def test_upsample_rules():
    x = tt("f32", B, C, H, W)
    assert shapes("upsample", {"x": x}, scale=2) == ["f32[B, C, 2 * H, 2 * W]"]
    assert shapes("upsample", {"x": x}, scale=(1, 3), mode="bilinear") == ["f32[B, C, H, 3 * W]"]
    assert shapes("upsample", {"x": tt("f32", B, C, T)}, scale=2) == ["f32[B, C, 2 * T]"]
    fails("upsample", {"x": tt("f32", B, C, T)}, "E-SHAPE", scale=2, mode="bilinear")
    fails("upsample", {"x": x}, "E-VALUE", scale=0)
    fails("upsample", {"x": x}, "E-VALUE", scale=(2, 2, 2))


@pytest.mark.parametrize("scale", [2, 3, (2, 3)])
def test_upsample_nearest_matches_onnx(scale):
    x = randn(RNG, 2, 3, 4, 5)
    (y,), _, ctx = run_ref("upsample", {"x": x}, scale=scale)
    scales = np.array([1, 1, *ctx.attrs["scale"]], dtype=np.float32)
    close(
        y,
        onnx_node(
            "Resize",
            [x, None, scales],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )[0],
    )
    # ONNX's default nearest (half_pixel, round_prefer_floor) agrees for integer scales
    close(y, onnx_node("Resize", [x, None, scales], mode="nearest")[0])


@pytest.mark.parametrize("scale", [2, 3, (2, 4)])
def test_upsample_bilinear_matches_onnx_and_torch(scale):
    import torch

    x = randn(RNG, 2, 3, 4, 5)
    (y,), _, ctx = run_ref("upsample", {"x": x}, scale=scale, mode="bilinear")
    scales = np.array([1, 1, *ctx.attrs["scale"]], dtype=np.float32)
    close(
        y,
        onnx_node(
            "Resize", [x, None, scales], mode="linear", coordinate_transformation_mode="half_pixel"
        )[0],
    )
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(x),
        scale_factor=tuple(float(s) for s in ctx.attrs["scale"]),
        mode="bilinear",
        align_corners=False,
    )
    close(y, expected.numpy())


def test_upsample_nearest_1d_matches_torch():
    import torch

    x = randn(RNG, 2, 3, 5)
    (y,), _, _ = run_ref("upsample", {"x": x}, scale=3)
    close(y, torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=3.0).numpy())


# ---------------------------------------------------------------- getitem


def test_getitem_rules():
    x = tt("f32", B, T, 64)
    out, ctx = infer("getitem", {"x": x}, items=(slice(None), -1))
    assert str(out[0]) == "f32[B, 64]"
    assert ctx.attrs["items"] == (("slice", 0, B, 1), ("index", T - 1), ("slice", 0, 64, 1))
    out, ctx = infer("getitem", {"x": x}, items=(slice(None), slice(1, -1)))
    assert str(out[0]) == "f32[B, T - 2, 64]"
    assert ctx.attrs["items"][1] == ("slice", 1, T - 1, 1)
    assert shapes("getitem", {"x": x}, items=(slice(None), slice(None, None, 2))) == [
        "f32[B, (T + 1) // 2, 64]"
    ]
    assert shapes("getitem", {"x": x}, items=(slice(None), slice(-3, -1))) == ["f32[B, 2, 64]"]
    assert shapes("getitem", {"x": x}, items=(0,)) == ["f32[T, 64]"]
    out, ctx = infer("getitem", {"x": x}, items=(slice(None), 0, slice(-70, 100, 3)))
    assert str(out[0]) == "f32[B, 22]" and ctx.attrs["items"][2] == ("slice", 0, 64, 3)
    with pytest.raises(DualnetError, match=r"empty axis \(size 0\) in f32\[0\]"):
        infer("getitem", {"x": tt("f32", 4, 10)}, items=(-1, slice(7, 2)))  # no empty axes


def test_getitem_new_axes():
    """`none` inserts an axis of size 1 (NumPy's None, PyTorch's x[None]) and takes no axis
    of x: x[:, -1, none] of [B, T, 64] is [B, 1, 64]."""
    x = tt("f32", B, T, 64)
    out, ctx = infer("getitem", {"x": x}, items=(None,))
    assert str(out[0]) == "f32[1, B, T, 64]" and ctx.attrs["items"][0] == ("new",)
    out, ctx = infer("getitem", {"x": x}, items=(slice(None), -1, None))
    assert str(out[0]) == "f32[B, 1, 64]"
    assert ctx.attrs["items"] == (
        ("slice", 0, B, 1),
        ("index", T - 1),
        ("new",),
        ("slice", 0, 64, 1),
    )
    assert shapes("getitem", {"x": x}, items=(None, slice(None), None, 0, 1, None)) == [
        "f32[1, B, 1, 1]"
    ]
    fails("getitem", {"x": x}, "E-SHAPE", match="4 indices", items=(0, None, 0, 0, 0))
    y = np.arange(24.0).reshape(2, 3, 4)
    items = (slice(None), None, 1, slice(1, 3), None)
    (got,), _, _ = run_ref("getitem", {"x": y}, items=items)
    np.testing.assert_array_equal(got, y[:, None, 1, 1:3, None])


def test_getitem_symbolic_indices_and_bounds():
    x = tt("f32", B, T, 64)
    out, ctx = infer("getitem", {"x": x}, items=(slice(None), T - 1))
    assert str(out[0]) == "f32[B, 64]" and ctx.attrs["items"][1] == ("index", T - 1)
    out, ctx = infer("getitem", {"x": x}, items=(slice(None), slice(None, T // 2)))
    assert str(out[0]) == "f32[B, T // 2, 64]"
    assert shapes("getitem", {"x": x}, items=(slice(None), slice(T // 2, -1))) == [
        "f32[B, T - T // 2 - 1, 64]"
    ]
    out, _ = infer("getitem", {"x": x}, items=(slice(None), slice(1, T - 1, 2)))
    assert out[0].shape == (B, (T - 1) // 2, 64)
    fails("getitem", {"x": x}, "E-VALUE", items=(slice(None, None, T),))


def test_getitem_failures():
    x = tt("f32", 4, 10)
    fails("getitem", {"x": x}, "E-VALUE", items=(4,))
    fails("getitem", {"x": x}, "E-VALUE", items=(-5,))
    fails("getitem", {"x": x}, "E-VALUE", items=(slice(None, None, -1),))
    fails("getitem", {"x": x}, "E-VALUE", items=(slice(None, None, 0),))
    fails("getitem", {"x": x}, "E-VALUE", items=("a",))
    fails("getitem", {"x": x}, "E-SHAPE", items=(0, 0, 0))


ITEMS = [
    (slice(None), -1),
    (slice(None), slice(1, -1)),
    (1, slice(None, None, 2), slice(-4, None)),
    (slice(-100, 100, 3), 0, slice(2, 3), slice(None, -1, 2)),
    (slice(1, 3),),
    (-2, -1, -3, 4),
]


@pytest.mark.parametrize("items", ITEMS)
def test_getitem_matches_numpy_and_onnx(items):
    (y,), _, ctx = run_ref("getitem", {"x": X4}, items=items)
    close(y, X4[items])  # Python's own indexing semantics
    # ONNX: Slice every axis by the normalised bounds, then Squeeze the indexed axes.
    norm = ctx.attrs["items"]
    starts = [e[1] for e in norm]
    ends = [e[1] + 1 if e[0] == "index" else e[2] for e in norm]
    steps = [1 if e[0] == "index" else e[3] for e in norm]
    squeezed = [i for i, e in enumerate(norm) if e[0] == "index"]
    consts = {
        "starts": starts,
        "ends": ends,
        "axes": list(range(4)),
        "steps": steps,
        "sq": squeezed or [0],
    }
    nodes = [helper.make_node("Constant", [], [k], value_ints=v) for k, v in consts.items()]
    nodes.append(helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"]))
    nodes.append(
        helper.make_node("Squeeze", ["s", "sq"], ["y"])
        if squeezed
        else helper.make_node("Identity", ["s"], ["y"])
    )
    close(y, onnx_graph(nodes, {"x": X4}, ["y"])[0])


def test_getitem_index_matches_onnx_gather():
    (y,), _, _ = run_ref("getitem", {"x": X4}, items=(slice(None), -1))
    close(y, onnx_node("Gather", [X4, np.array(-1)], axis=1)[0])


def test_getitem_symbolic_attrs_substitute():
    _, ctx = infer("getitem", {"x": tt("f32", B, T, 5)}, items=(slice(None), slice(1, -1)))
    attrs = substitute_attrs(ctx.attrs, {"B": 2, "T": 4})
    x = randn(RNG, 2, 4, 5)
    (y,) = REGISTRY["getitem"].reference({"x": x}, attrs, {})
    close(y, x[:, 1:-1])


# ---------------------------------------------------------------- arange


def test_arange():
    assert shapes("arange", {}, n=T) == ["i64[T]"]
    assert shapes("arange", {}, n=5) == ["i64[5]"]
    fails("arange", {}, "E-VALUE", n=-1)
    assert REGISTRY["arange"].differentiable == ()
    (y,), _, _ = run_ref("arange", {}, n=7)
    expected = onnx_node("Range", [np.array(0), np.array(7), np.array(1)])[0]
    assert y.dtype == np.int64 and np.array_equal(y, expected)


# ---------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_BOUND = st.one_of(st.none(), st.integers(-9, 9))
_ITEM = st.one_of(
    st.integers(-4, 3), st.builds(slice, _BOUND, _BOUND, st.one_of(st.none(), st.integers(1, 4)))
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_ITEM, min_size=0, max_size=4))
def test_getitem_property_matches_numpy(items):
    items = tuple(items)
    try:
        expected = X4[items]
    except IndexError:  # NumPy refuses: so does the rule
        fails("getitem", {"x": tt("f32", *X4.shape)}, "E-VALUE", items=items)
        return
    if 0 in expected.shape:  # an empty slice: dualnet tensors have no zero-sized axes
        fails("getitem", {"x": tt("f32", *X4.shape)}, "E-SHAPE", items=items)
        return
    (y,), _, ctx = run_ref("getitem", {"x": X4}, items=items)  # the rule's shape is checked
    close(y, expected)
    for entry, d in zip(ctx.attrs["items"], X4.shape, strict=True):  # normalised bounds
        if entry[0] == "index":
            assert 0 <= entry[1] < d
        else:
            assert 0 <= entry[1] <= entry[2] <= d and entry[3] >= 1


@settings(max_examples=100, deadline=None)
@given(
    st.permutations([2, 3, 4, 5]).flatmap(lambda dims: st.tuples(st.just(dims), st.integers(0, 3)))
)
def test_reshape_property_matches_numpy(case):
    dims, hole = case
    dims = list(dims)
    dims[hole] = -1
    (y,), _, ctx = run_ref("reshape", {"x": X4}, dims=tuple(dims))
    close(y, X4.reshape(dims))
    assert -1 not in ctx.attrs["dims"]


# ---------------------------------------------------------------- stack, roll


def test_stack_rules():
    a = tt("f32", B, 3, H)
    assert shapes("stack", {"xs": [a, a, a]}) == ["f32[3, B, 3, H]"]
    assert shapes("stack", {"xs": [a, a]}, axis=-1) == ["f32[B, 3, H, 2]"]
    assert shapes("stack", {"xs": [a]}, axis=2) == ["f32[B, 3, 1, H]"]
    err = fails("stack", {"xs": [a, tt("f32", B, 3, W)]}, "E-SHAPE", match="same shape")
    assert "tensor 1 is [B, 3, W]" in err.diagnostics[0].label
    fails("stack", {"xs": [a, tt("f32", B, 3)]}, "E-SHAPE")
    fails("stack", {"xs": [a, tt("f64", B, 3, H)]}, "E-DTYPE")
    fails("stack", {"xs": [a]}, "E-VALUE", axis=5)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_stack_matches_torch_and_onnx(axis, dtype):
    import torch

    xs = [randn(RNG, 2, 3).astype(dtype) for _ in range(3)]
    (y,), _, _ = run_ref("stack", {"xs": xs}, axis=axis)
    assert y.dtype == dtype
    close(y, torch.stack([torch.from_numpy(x) for x in xs], dim=axis).numpy())
    parts = [onnx_node("Unsqueeze", [x, np.array([axis % 3])])[0] for x in xs]
    close(y, onnx_node("Concat", parts, axis=axis)[0])


def test_roll_rules():
    x = tt("f32", B, H, W, 4)
    _, ctx = infer("roll", {"x": x}, shift=(-3, 3), axis=(1, -2))
    assert ctx.attrs["shift"] == (-3, 3) and ctx.attrs["axis"] == (1, 2)
    _, ctx = infer("roll", {"x": x}, shift=9, axis=-1)
    assert ctx.attrs["shift"] == (9,) and ctx.attrs["axis"] == (3,)
    assert shapes("roll", {"x": x}, shift=1, axis=0) == ["f32[B, H, W, 4]"]
    fails("roll", {"x": x}, "E-VALUE", match="one shift per axis", shift=(1, 2), axis=1)
    fails("roll", {"x": x}, "E-VALUE", shift=(), axis=())
    fails("roll", {"x": x}, "E-VALUE", shift=1, axis=4)
    fails("roll", {"x": tt("f32")}, "E-SHAPE", shift=1, axis=0)


@pytest.mark.parametrize(
    "shift,axis",
    [(2, 1), (-1, 0), (11, -1), ((-2, -2), (1, 2)), ((1, 4, -7), (0, 0, 2)), (0, 1), (-5, 2)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_roll_matches_torch(shift, axis, dtype):
    """Negative shifts, shifts beyond the size (mod size), several axes, an axis twice."""
    import torch

    x = randn(RNG, 3, 4, 5).astype(dtype)
    (y,), _, _ = run_ref("roll", {"x": x}, shift=shift, axis=axis)
    assert y.dtype == dtype
    close(y, torch.roll(torch.from_numpy(x), shift, axis).numpy())


# ---------------------------------------------------------------- chunk


def test_chunk_rules():
    """torch.chunk: parts of ceil(size / chunks), the last smaller, maybe fewer parts."""
    x = tt("f32", B, 5, 6)
    assert shapes("chunk", {"x": x}, chunks=3, axis=-1) == ["f32[B, 5, 2]"] * 3
    assert shapes("chunk", {"x": x}, chunks=4, axis=1) == ["f32[B, 2, 6]"] * 2 + ["f32[B, 1, 6]"]
    assert shapes("chunk", {"x": x}, chunks=9, axis=1) == ["f32[B, 1, 6]"] * 5
    _, ctx = infer("chunk", {"x": tt("f32", 2 * T, 3)}, chunks=2)
    assert ctx.attrs["sizes"] == (T, T) and ctx.attrs["axis"] == 0
    err = fails("chunk", {"x": x}, "E-SHAPE", match="not provably divisible", chunks=2)
    assert err.diagnostics[0].notes
    fails("chunk", {"x": x}, "E-VALUE", chunks=0, axis=1)
    fails("chunk", {"x": x}, "E-VALUE", chunks=2, axis=3)
    fails("chunk", {"x": tt("f32")}, "E-SHAPE", chunks=2)


@pytest.mark.parametrize("size,chunks", [(6, 3), (5, 4), (7, 3), (3, 5), (4, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_chunk_matches_torch_and_onnx(size, chunks, dtype):
    import torch

    x = (randn(RNG, 2, size) * 10).astype(dtype)
    parts, _, ctx = run_ref("chunk", {"x": x}, chunks=chunks, axis=1)
    expected = torch.from_numpy(x).chunk(chunks, dim=1)
    assert len(parts) == len(expected)
    for y, e in zip(parts, expected, strict=True):
        assert y.dtype == dtype
        close(y, e.numpy(), atol=0)
    sizes = np.array(ctx.attrs["sizes"], dtype=np.int64)
    for y, e in zip(parts, onnx_node("Split", [x, sizes], len(parts), axis=1), strict=True):
        close(y, e, atol=0)

"""Element-wise ops: rules (broadcasting, dtypes) and references against the ONNX operators
of the same meaning (and PyTorch where ONNX has no single operator)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto
from opkit import B, H, T, close, fails, infer, onnx_node, run_ref, shapes, tt

from dualnet.ops import REGISTRY

RNG = np.random.default_rng(9)


def _x(dtype=np.float32, positive=False, shape=(3, 4, 5)):
    x = RNG.standard_normal(shape) * 3
    x[0, 0, :3] = [0.0, 25.0, -25.0]  # zero and large magnitudes (softplus's threshold)
    return (np.abs(x) + 0.1 if positive else x).astype(dtype)


# name: (ONNX op, ONNX attributes, our attributes, positive inputs only)
UNARY = {
    "relu": ("Relu", {}, {}, False),
    "gelu": ("Gelu", {}, {}, False),
    "sigmoid": ("Sigmoid", {}, {}, False),
    "tanh": ("Tanh", {}, {}, False),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.01}, {}, False),
    "elu": ("Elu", {"alpha": 1.0}, {}, False),
    "softplus": ("Softplus", {}, {}, False),
    "exp": ("Exp", {}, {}, False),
    "log": ("Log", {}, {}, True),
    "sqrt": ("Sqrt", {}, {}, True),
    "abs": ("Abs", {}, {}, False),
    "neg": ("Neg", {}, {}, False),
    "floor": ("Floor", {}, {}, False),
    "sin": ("Sin", {}, {}, False),
    "cos": ("Cos", {}, {}, False),
    "erf": ("Erf", {}, {}, False),
    "hardsigmoid": ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, {}, False),
    "hardswish": ("HardSwish", {}, {}, False),
    "mish": ("Mish", {}, {}, False),
}


@pytest.mark.parametrize("name", list(UNARY))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unary_matches_onnx(name, dtype):
    onnx_op, onnx_attrs, attrs, positive = UNARY[name]
    x = _x(dtype, positive)
    if name == "exp":
        x = np.clip(x, -20, 20).astype(dtype)
    (y,), _, _ = run_ref(name, {"x": x}, **attrs)
    assert y.dtype == dtype
    if name in ("gelu", "erf") and dtype == np.float64:
        # onnx.reference evaluates Erf in float32 even for doubles: compare at float32's
        # precision there, and at double precision against PyTorch
        close(y, getattr(torch.nn.functional, name, torch.erf)(torch.from_numpy(x)).numpy())
        close(y, onnx_node(onnx_op, [x], opset=20)[0], atol=1e-7)
        return
    close(y, onnx_node(onnx_op, [x], opset=20, **onnx_attrs)[0])


def test_unary_attributes_match_onnx_and_torch():
    x = _x()
    (y,), _, _ = run_ref("gelu", {"x": x}, approximate="tanh")
    close(y, onnx_node("Gelu", [x], opset=20, approximate="tanh")[0])
    close(y, torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy())
    (y,), _, _ = run_ref("leaky_relu", {"x": x}, slope=0.2)
    close(y, onnx_node("LeakyRelu", [x], alpha=0.2)[0])
    (y,), _, _ = run_ref("elu", {"x": x}, alpha=0.5)
    close(y, onnx_node("Elu", [x], alpha=0.5)[0])
    (y,), _, _ = run_ref("softplus", {"x": x}, beta=2.0, threshold=10.0)
    close(y, torch.nn.functional.softplus(torch.from_numpy(x), beta=2.0, threshold=10.0).numpy())


@pytest.mark.parametrize("name", ["relu6", "hardsigmoid", "hardswish", "mish", "erf"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pytorch_activations_match_pytorch(name, dtype):
    """PyTorch's formulas exactly: hardsigmoid is relu6(x + 3) / 6 (ONNX's HardSigmoid has
    other defaults), and the kinks at -3, 0, 3 and 6 are in the input."""
    x = np.concatenate([_x(dtype).ravel(), np.array([-3, 0, 3, 6, -2.5, 2.5], dtype)])
    (y,), _, _ = run_ref(name, {"x": x})
    assert y.dtype == dtype
    fn = getattr(torch.nn.functional, name, None) or getattr(torch, name)
    close(y, fn(torch.from_numpy(x)).numpy())


def test_silu_rsqrt_round():
    x = _x()
    (y,), _, _ = run_ref("silu", {"x": x})
    close(y, onnx_node("Swish", [x], opset=24)[0])
    close(y, torch.nn.functional.silu(torch.from_numpy(x)).numpy())
    xp = _x(positive=True)
    (y,), _, _ = run_ref("rsqrt", {"x": xp})
    close(y, onnx_node("Reciprocal", [onnx_node("Sqrt", [xp])[0]])[0])
    halves = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, 0.6, -0.6], dtype=np.float32)
    (y,), _, _ = run_ref("round", {"x": halves})
    close(y, onnx_node("Round", [halves])[0])  # half to even
    close(y, torch.round(torch.from_numpy(halves)).numpy())


def test_unary_rules():
    assert shapes("relu", {"x": tt("f32", B, T)}) == ["f32[B, T]"]
    assert REGISTRY["round"].differentiable == REGISTRY["floor"].differentiable == ()
    assert REGISTRY["relu"].differentiable == ("x",)


# ---------------------------------------------------------------- binary


BINARY = {
    "add": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",
    "pow": "Pow",
    "lt": "Less",
    "le": "LessOrEqual",
    "gt": "Greater",
    "ge": "GreaterOrEqual",
    "eq": "Equal",
}


@pytest.mark.parametrize("name", [*BINARY, "ne"])
@pytest.mark.parametrize("shapes_", [((3, 4), (3, 4)), ((2, 1, 4), (3, 1)), ((4,), ())])
def test_binary_matches_onnx(name, shapes_):
    sa, sb = shapes_
    a = RNG.integers(-3, 4, size=sa).astype(np.float32)  # small ints: equalities happen
    b = RNG.integers(-3, 4, size=sb).astype(np.float32)
    if name == "pow":
        a = np.abs(a) + 0.5
    if name == "div":
        b = np.where(b == 0, 1.5, b).astype(np.float32)
    left, right = REGISTRY[name].signature.names()
    (y,), _, _ = run_ref(name, {left: a, right: b})
    if name == "ne":
        expected = onnx_node("Not", [onnx_node("Equal", [a, b])[0]])[0]
    else:
        expected = onnx_node(BINARY[name], [a, b])[0]
    assert y.dtype == expected.dtype
    close(y, expected)


def test_integer_arithmetic_matches_onnx():
    a = RNG.integers(-50, 50, size=(3, 4)).astype(np.int64)
    b = RNG.integers(1, 50, size=(4,)).astype(np.int64)
    for name in ("add", "sub", "mul"):
        (y,), _, _ = run_ref(name, {"a": a, "b": b})
        assert y.dtype == np.int64
        assert np.array_equal(y, onnx_node(BINARY[name], [a, b])[0])


def test_binary_rules():
    assert shapes("add", {"a": tt("f32", B, 1, H), "b": tt("f32", 3, 1)}) == ["f32[B, 3, H]"]
    assert shapes("lt", {"a": tt("f32", B, T), "b": tt("f32")}) == ["bool[B, T]"]
    assert shapes("mul", {"a": tt("i64", B, T), "b": tt("i64", 1, T)}) == ["i64[B, T]"]
    fails("add", {"a": tt("f32", B, 3), "b": tt("f32", B, 4)}, "E-SHAPE")
    fails("add", {"a": tt("f32", B, T), "b": tt("f32", B, H)}, "E-SHAPE")
    fails("add", {"a": tt("f32", 3), "b": tt("f64", 3)}, "E-DTYPE")
    fails("div", {"a": tt("i64", 3), "b": tt("i64", 3)}, "E-DTYPE")
    fails("add", {"a": tt("bool", 3), "b": tt("bool", 3)}, "E-DTYPE")
    assert REGISTRY["lt"].differentiable == ()
    assert REGISTRY["add"].differentiable == ("a", "b")


# ---------------------------------------------------------------- matmul, where, clamp, cast


@pytest.mark.parametrize(
    "sa,sb",
    [
        ((3, 4), (4, 5)),
        ((2, 3, 4), (4, 5)),
        ((4,), (4, 5)),
        ((3, 4), (4,)),
        ((4,), (4,)),
        ((2, 1, 3, 4), (5, 4, 2)),
    ],
)
def test_matmul_matches_onnx(sa, sb):
    a = RNG.standard_normal(sa).astype(np.float32)
    b = RNG.standard_normal(sb).astype(np.float32)
    out, _ = infer("matmul", {"a": tt("f32", *sa), "b": tt("f32", *sb)})
    (y,), _, _ = run_ref("matmul", {"a": a, "b": b})
    assert tuple(out[0].shape) == y.shape
    close(y, onnx_node("MatMul", [a, b])[0])


def test_matmul_rules():
    assert shapes("matmul", {"a": tt("f32", B, T, 64), "b": tt("f32", 64, 10)}) == ["f32[B, T, 10]"]
    assert shapes("matmul", {"a": tt("f32", B, 4, T, 16), "b": tt("f32", B, 4, 16, T)}) == [
        "f32[B, 4, T, T]"
    ]
    fails("matmul", {"a": tt("f32", B, 3), "b": tt("f32", 4, 5)}, "E-SHAPE")
    fails("matmul", {"a": tt("f32"), "b": tt("f32", 4, 5)}, "E-SHAPE")
    fails("matmul", {"a": tt("f32", 2, 3), "b": tt("f64", 3, 5)}, "E-DTYPE")


def test_where_clamp_cast_stop_gradient():
    cond = RNG.random((3, 1)) < 0.5
    a, b = RNG.standard_normal((3, 4)).astype(np.float32), RNG.standard_normal(4).astype(np.float32)
    (y,), _, _ = run_ref("where", {"cond": cond, "a": a, "b": b})
    close(y, onnx_node("Where", [cond, a, b])[0])
    assert shapes("where", {"cond": tt("bool", B, 1), "a": tt("f32", B, 4), "b": tt("f32", 4)}) == [
        "f32[B, 4]"
    ]
    fails("where", {"cond": tt("bool", B), "a": tt("f32", B), "b": tt("i64", B)}, "E-DTYPE")

    x = RNG.standard_normal((3, 4)).astype(np.float32) * 5
    (y,), _, _ = run_ref("clamp", {"x": x}, lo=0.0, hi=6.0)
    close(y, onnx_node("Clip", [x, np.float32(0.0), np.float32(6.0)])[0])
    (y,), _, _ = run_ref("clamp", {"x": x}, lo=-1.0)
    close(y, onnx_node("Clip", [x, np.float32(-1.0)])[0])
    (y,), _, _ = run_ref("clamp", {"x": x}, hi=1.0)
    close(y, onnx_node("Clip", [x, None, np.float32(1.0)])[0])
    fails("clamp", {"x": tt("f32", B)}, "E-VALUE", lo=2.0, hi=1.0)

    from dualnet.ir.types import DType

    xs = (RNG.standard_normal((3, 4)) * 5).astype(np.float32)
    for dtype, proto in (
        (DType.i64, TensorProto.INT64),
        (DType.i32, TensorProto.INT32),
        (DType.f64, TensorProto.DOUBLE),
        (DType.bool, TensorProto.BOOL),
    ):
        assert shapes("cast", {"x": tt("f32", B, 4)}, dtype=dtype) == [f"{dtype}[B, 4]"]
        (y,), _, _ = run_ref("cast", {"x": xs}, dtype=dtype)
        expected = onnx_node("Cast", [xs], to=proto)[0]
        assert y.dtype == expected.dtype and np.array_equal(y, expected)

    (y,), _, _ = run_ref("stop_gradient", {"x": x})
    close(y, x)
    assert REGISTRY["stop_gradient"].differentiable == ()


def _divisions(dtype):
    """Every sign of dividend and divisor, exact multiples and zero dividends included."""
    a = np.array([7, -7, 7, -7, 6, -6, 0, 0, 5, -1], dtype=np.float64)
    b = np.array([3, 3, -3, -3, 3, -3, 3, -3, 7, 4], dtype=np.float64)
    if np.dtype(dtype).kind == "f":
        a, b = a + 0.25 * np.sign(a), b * 0.75
    return a.astype(dtype), b.astype(dtype)


def test_floordiv_and_mod_rules():
    for op in ("floordiv", "mod"):
        assert shapes(op, {"a": tt("i32", B, 1), "b": tt("i32", 4)}) == ["i32[B, 4]"]
        assert shapes(op, {"a": tt("f64", 3), "b": tt("f64")}) == ["f64[3]"]
        fails(op, {"a": tt("bool", 3), "b": tt("bool", 3)}, "E-DTYPE")
        fails(op, {"a": tt("i64", 3), "b": tt("f32", 3)}, "E-DTYPE")
        assert REGISTRY[op].differentiable == ()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_floordiv_and_mod_match_torch(dtype):
    """PyTorch's floor semantics: the remainder has the divisor's sign; a float quotient is
    floor(a / b)."""
    a, b = _divisions(dtype)
    (q,), _, _ = run_ref("floordiv", {"a": a, "b": b})
    (r,), _, _ = run_ref("mod", {"a": a, "b": b})
    assert q.dtype == r.dtype == dtype
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    close(q, (torch.floor(ta / tb) if a.dtype.kind == "f" else ta // tb).numpy(), atol=0)
    close(r, torch.remainder(ta, tb).numpy(), atol=0)
    close(q * b + r, a)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_mod_matches_onnx(dtype):
    a, b = _divisions(dtype)
    (r,), _, _ = run_ref("mod", {"a": a, "b": b})
    close(r, onnx_node("Mod", [a, b])[0], atol=0)


def test_float_floordiv_is_floor_of_the_quotient():
    """1 // 0.1 is 10 (floor of the rounded quotient, as TensorFlow and ONNX's Floor(Div)
    compute it), where PyTorch's fmod-based `//` gives 9."""
    a, b = np.array([1.0]), np.array([0.1])
    (q,), _, _ = run_ref("floordiv", {"a": a, "b": b})
    assert q[0] == 10.0 and (torch.from_numpy(a) // torch.from_numpy(b)).item() == 9.0

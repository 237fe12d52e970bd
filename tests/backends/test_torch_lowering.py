"""The PyTorch lowering table: for every registry op, the generated expression, executed with
torch (and the runtime helpers it names), equals the op's NumPy reference; layers are built
from their constructor expression, loaded with the reference's parameters by dualnet's names,
and run in eval mode."""

from __future__ import annotations

import copy
import io
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dualnet.backends.torch import runtime
from dualnet.backends.torch.lowering import (
    TORCH_FUNCTIONS,
    TORCH_LAYERS,
    LayerLowering,
    TorchCall,
    helpers_needed,
    lower_function,
)
from dualnet.backends.torch.runtime import HELPERS
from dualnet.ir.dims import Dim, sym
from dualnet.ir.types import DType, TensorType
from dualnet.ops import REGISTRY
from dualnet.ops.registry import REQUIRED, run_rule
from dualnet.ops.shape import substitute_attrs

RNG = np.random.default_rng(11)
B, T, H, W = sym("B"), sym("T"), sym("H"), sym("W")

_DTYPES = {np.dtype(np.float16): DType.f16, np.dtype(np.float32): DType.f32,
           np.dtype(np.float64): DType.f64, np.dtype(np.int32): DType.i32,
           np.dtype(np.int64): DType.i64, np.dtype(np.bool_): DType.bool}


def fmt(value) -> str:
    """A simple emitter's formatter: symbolic sizes are names bound in the exec namespace."""
    if isinstance(value, Dim):
        text = str(value)
        return f"({text})" if " " in text else text
    if isinstance(value, tuple):
        inner = ", ".join(fmt(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def _fill(signature, given: dict) -> dict:
    out = {p.name: given.get(p.name, p.default) for p in signature.params if not p.is_tensor}
    missing = [k for k, v in out.items() if v is REQUIRED]
    assert not missing and set(given) <= set(out), (missing, given)
    return out


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def positive(*shape, dtype=np.float32):
    return (RNG.random(shape) + 0.1).astype(dtype)


# ---------------------------------------------------------------- the harness


class Case:
    """One op applied to arrays (a Python number stands for an inlined constant), optionally
    with symbolic input types (`types`) whose symbols `env` binds."""

    def __init__(self, op, inputs, config=None, types=None, env=None, tol=1e-5,
                 param_scale=1.0, **attrs):
        self.op, self.inputs, self.config, self.attrs = op, inputs, config or {}, attrs
        self.types, self.env, self.tol = types or {}, env or {}, tol
        self.param_scale = param_scale


def _array_dtype(inputs) -> np.dtype:
    for v in inputs.values():
        if isinstance(v, np.ndarray) and v.dtype != np.bool_:
            return v.dtype
    return np.dtype(np.float32)


def lower_and_run(case: Case, hide_in_types: bool = False):
    """Returns (generated sources, torch results, reference results)."""
    op = REGISTRY[case.op]
    default = _array_dtype(case.inputs)
    arrays, types, sources = {}, {}, {}
    ns = {"torch": torch, "nn": nn, "F": F, **case.env}
    for p in (p for p in op.signature.params if p.is_tensor):
        v = case.inputs.get(p.name)
        if v is None:
            arrays[p.name], types[p.name], sources[p.name] = None, None, None
        elif isinstance(v, list):
            arrays[p.name] = v
            types[p.name] = [TensorType(_DTYPES[a.dtype], a.shape) for a in v]
            sources[p.name] = [f"{p.name}_{i}" for i in range(len(v))]
            ns.update({f"{p.name}_{i}": torch.from_numpy(a) for i, a in enumerate(v)})
        elif isinstance(v, np.ndarray):
            arrays[p.name] = v
            types[p.name] = TensorType(_DTYPES[v.dtype], v.shape)
            sources[p.name] = p.name
            ns[p.name] = torch.from_numpy(v)
        else:  # an inlined scalar constant
            arrays[p.name] = np.asarray(v, dtype=default)
            types[p.name] = TensorType(_DTYPES[np.dtype(default)], ())
            sources[p.name] = repr(v)
    for name, t in case.types.items():  # symbolic types must describe the arrays
        concrete = tuple(substitute_attrs(t.shape, case.env))
        assert concrete == arrays[name].shape, (name, t, arrays[name].shape)
        types[name] = t
    config = _fill(op.construct, case.config) if op.is_layer else {}
    out_types, ctx = run_rule(op, types, _fill(op.signature, case.attrs), {}, None, config)
    merged = {**ctx.config, **ctx.attrs}
    call = TorchCall(sources, merged if op.is_layer else dict(ctx.attrs),
                     {} if hide_in_types else types, out_types, fmt)
    params = {}
    construct = ""
    if op.is_layer:
        row = TORCH_LAYERS[case.op]
        construct = row.construct(dict(ctx.config), fmt)
        src = row.call("module", call)
    else:
        src = lower_function(case.op, call)
    for name in helpers_needed(construct + "\n" + src):
        exec(HELPERS[name], ns)
    if op.is_layer:
        module = eval(construct, ns)
        expected_keys = sorted({**ctx.params, **ctx.buffers})
        assert sorted(module.state_dict()) == expected_keys, construct
        for name, spec in {**ctx.params, **ctx.buffers}.items():
            v = RNG.standard_normal(spec.shape) * case.param_scale
            params[name] = (np.abs(v) + 0.5 if "var" in name else v).astype(np.float32)
        module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
        ns["module"] = module.eval()
    with torch.no_grad():
        result = eval(src, ns)
    results = list(result) if isinstance(result, tuple) else [result]
    if case.env:
        merged = substitute_attrs(merged, case.env)
    expected = op.reference(arrays, merged, params)
    assert len(results) == len(expected) == len(out_types), src
    return (construct, src), results, expected


def check(case: Case, hide_in_types: bool = False):
    sources, results, expected = lower_and_run(case, hide_in_types)
    for r, e in zip(results, expected, strict=True):
        e = np.asarray(e)
        assert isinstance(r, torch.Tensor), (sources, type(r))
        actual = r.detach().numpy()
        assert actual.dtype == e.dtype, (sources, actual.dtype, e.dtype)
        assert actual.shape == e.shape, (sources, actual.shape, e.shape)
        if e.dtype.kind in "biu":
            np.testing.assert_array_equal(actual, e, err_msg=str(sources))
        else:
            tol = case.tol if e.dtype != np.float64 else 1e-10
            np.testing.assert_allclose(actual, e, rtol=tol, atol=tol, err_msg=str(sources))
    return sources


# ---------------------------------------------------------------- the cases

ENV = {"B": 2, "T": 5, "H": 9, "W": 8}


def _halves():
    return np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.4, -2.6, 3.0], dtype=np.float32)


def _ties():
    return np.array([[1, 3, 3, 0], [2, 2, 1, 2], [0, -1, -1, 5]], dtype=np.int32)


def _attention_mask(shape, p=0.7):
    m = RNG.random(shape) < p
    m[..., 0] = True
    return m


def _mask_with_empty_row(shape, row):
    m = _attention_mask(shape)
    m[row] = False
    return m


def _cases() -> list:
    c = []
    add = c.append
    x4 = randn(2, 3, 4, 5)
    # element-wise
    for name in ("relu", "sigmoid", "tanh", "silu", "exp", "abs", "neg", "floor",
                 "stop_gradient"):
        add(Case(name, {"x": x4}))
    for name in ("log", "sqrt", "rsqrt"):
        add(Case(name, {"x": positive(3, 4)}))
    add(Case("round", {"x": _halves()}))
    add(Case("abs", {"x": np.array([-3, 0, 4], dtype=np.int64)}))
    add(Case("neg", {"x": 2.5}))
    add(Case("exp", {"x": 1.5}))
    for approximate in ("none", "tanh"):
        add(Case("gelu", {"x": x4}, approximate=approximate))
        add(Case("gelu", {"x": randn(4, 6, dtype=np.float64)}, approximate=approximate))
    add(Case("leaky_relu", {"x": x4}))
    add(Case("leaky_relu", {"x": x4}, slope=0.2))
    add(Case("elu", {"x": x4}))
    add(Case("elu", {"x": x4}, alpha=0.5))
    add(Case("softplus", {"x": x4 * 10}))
    add(Case("softplus", {"x": x4 * 4}, beta=2.0, threshold=5.0))
    for name in ("add", "sub", "mul", "div"):
        add(Case(name, {"a": randn(2, 3, 4), "b": randn(3, 1)}))
        add(Case(name, {"a": 2.0, "b": randn(3, 4)}))
    add(Case("add", {"a": 2.0, "b": 3.0}))
    add(Case("add", {"a": np.arange(6, dtype=np.int32), "b": 3}))
    add(Case("mul", {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": -2}))
    add(Case("sub", {"a": randn(3), "b": -1.5}))
    add(Case("pow", {"x": positive(3, 4), "p": randn(4)}))
    add(Case("pow", {"x": -2.0, "p": np.array([1.0, 2.0, 3.0], dtype=np.float32)}))
    add(Case("pow", {"x": positive(5, dtype=np.float64), "p": 0.5}))
    grid = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]], dtype=np.float32)
    for name in ("lt", "le", "gt", "ge", "eq", "ne"):
        add(Case(name, {"a": grid, "b": np.array([1.0, 1.0, 0.0], dtype=np.float32)}))
        add(Case(name, {"a": 1.0, "b": grid}))
    add(Case("eq", {"a": np.array([1, 2, 3], dtype=np.int64), "b": 2}))
    add(Case("matmul", {"a": randn(3, 4), "b": randn(4, 5)}))
    add(Case("matmul", {"a": randn(2, 3, 4), "b": randn(4, 5)}))
    add(Case("matmul", {"a": randn(4), "b": randn(2, 4, 3)}))
    add(Case("matmul", {"a": randn(3, 4, dtype=np.float64), "b": randn(4, dtype=np.float64)}))
    add(Case("where", {"cond": RNG.random((3, 4)) < 0.5, "a": randn(3, 4), "b": randn(4)}))
    add(Case("where", {"cond": RNG.random((3, 4)) < 0.5, "a": randn(3, 4), "b": 0.0}))
    add(Case("where", {"cond": RNG.random((3, 4)) < 0.5, "a": 1.0, "b": -1.0}))
    add(Case("clamp", {"x": x4}, lo=-0.5, hi=0.5))
    add(Case("clamp", {"x": x4}, lo=0.0))
    add(Case("clamp", {"x": x4}, hi=0.25))
    add(Case("clamp", {"x": x4}))
    add(Case("clamp", {"x": np.arange(-5, 6, dtype=np.int32)}, lo=-1.5, hi=2.5))
    add(Case("clamp", {"x": np.arange(-5, 6, dtype=np.int64)}, lo=1.5))
    for dtype in ("f16", "f64", "i32", "i64", "bool"):
        add(Case("cast", {"x": x4 * 3}, dtype=DType(dtype)))
    add(Case("cast", {"x": np.array([0, 2, -3], dtype=np.int32)}, dtype=DType.f32))
    # reductions
    add(Case("mean", {"x": x4}, axis=(1, 2), keepdims=True))
    add(Case("mean", {"x": x4}, axis=-1))
    add(Case("sum", {"x": x4}, axis=0))
    add(Case("sum", {"x": np.arange(24, dtype=np.int32).reshape(2, 3, 4)}, axis=(0, 2)))
    add(Case("sum", {"x": np.arange(24, dtype=np.int64).reshape(2, 3, 4)}, axis=1,
             keepdims=True))
    add(Case("max", {"x": x4}, axis=(0, 3)))
    add(Case("min", {"x": _ties()}, axis=1, keepdims=True))
    add(Case("argmax", {"x": _ties()}, axis=1))
    add(Case("argmin", {"x": _ties()}, axis=0, keepdims=True))
    add(Case("argmax", {"x": x4}, axis=-1))
    add(Case("softmax", {"x": x4}))
    add(Case("softmax", {"x": x4}, axis=1))
    add(Case("log_softmax", {"x": x4 * 5}))
    add(Case("log_softmax", {"x": x4 * 5}, axis=0))
    # shape ops
    add(Case("flatten", {"x": x4}))
    add(Case("flatten", {"x": x4}, start=0))
    add(Case("flatten", {"x": x4}, start=-2))
    add(Case("reshape", {"x": x4}, dims=(2, -1, 5)))
    add(Case("reshape", {"x": x4}, dims=(6, 20)))
    add(Case("reshape", {"x": randn(2, 5, 12)}, types={"x": TensorType(DType.f32, (B, T, 12))},
             env=ENV, dims=(B, T, 3, 4)))
    add(Case("reshape", {"x": randn(2, 5, 12)}, types={"x": TensorType(DType.f32, (B, T, 12))},
             env=ENV, dims=(B * T, 12)))
    add(Case("permute", {"x": x4}, axes=(0, 2, 3, 1)))
    add(Case("permute", {"x": x4}, axes=(-1, 0, 1, 2)))
    add(Case("transpose", {"x": x4}, a=1, b=-1))
    add(Case("concat", {"xs": [randn(2, 3), randn(2, 1), randn(2, 4)]}, axis=1))
    add(Case("concat", {"xs": [randn(2, 3), randn(1, 3)]}, axis=-2))
    add(Case("split", {"x": randn(2, 6, 4)}, n=3, axis=1))
    add(Case("split", {"x": randn(2, 6, 4)}, n=2, axis=-1))
    add(Case("split", {"x": randn(2, 6, 4)}, n=1, axis=0))
    add(Case("unsqueeze", {"x": randn(2, 3)}, axis=-1))
    add(Case("unsqueeze", {"x": randn(2, 3)}, axis=0))
    add(Case("squeeze", {"x": randn(2, 1, 3)}, axis=1))
    add(Case("pad", {"x": x4}, pads=(1, 2)))
    add(Case("pad", {"x": x4}, pads=(1, 2, 0, 3), value=1.5))
    add(Case("pad", {"x": x4}, pads=(1, 0, 0, 0, 2, 1)))
    add(Case("pad", {"x": x4}, pads=(0, 0)))
    add(Case("pad", {"x": np.arange(6, dtype=np.int64).reshape(2, 3)}, pads=(1, 1, 0, 2),
             value=7.0))
    add(Case("pad", {"x": RNG.random((2, 3)) < 0.5}, pads=(1, 1), value=1.0))
    add(Case("upsample", {"x": randn(2, 3, 4, 5)}, scale=2))
    add(Case("upsample", {"x": randn(2, 3, 4, 5)}, scale=(2, 3)))
    add(Case("upsample", {"x": randn(1, 2, 3, 3)}, scale=41))
    add(Case("upsample", {"x": randn(2, 3, 7)}, scale=3))
    add(Case("upsample", {"x": randn(1, 2, 2, 3, 2)}, scale=(1, 2, 4)))
    add(Case("upsample", {"x": randn(2, 3, 4, 5)}, scale=2, mode="bilinear"))
    add(Case("upsample", {"x": randn(2, 3, 4, 5)}, scale=(3, 2), mode="bilinear"))
    add(Case("upsample", {"x": randn(1, 1, 3, 4, dtype=np.float64)}, scale=5, mode="bilinear"))
    add(Case("getitem", {"x": x4}, items=(slice(None), slice(1, 3), 0)))
    add(Case("getitem", {"x": x4}, items=(-1, slice(-3, None), slice(None, None, 2))))
    add(Case("getitem", {"x": x4}, items=(slice(None), slice(None, -1), slice(1, -1, 2), -2)))
    add(Case("getitem", {"x": x4}, items=(slice(None), slice(2, 1))))
    add(Case("getitem", {"x": x4}, items=(slice(None),)))
    add(Case("getitem", {"x": randn(7)}, items=3))
    add(Case("getitem", {"x": randn(2, 9, 8)}, types={"x": TensorType(DType.f32, (B, H, W))},
             env=ENV, items=(slice(None), slice(1, -1), -1)))
    add(Case("getitem", {"x": randn(2, 9, 8)}, types={"x": TensorType(DType.f32, (B, H, W))},
             env=ENV, items=(slice(None), slice(None, H // 2), slice(1, None, 3))))
    add(Case("arange", {}, n=5))
    add(Case("arange", {}, n=0))
    add(Case("arange", {}, env=ENV, n=H - 2))
    # pooling
    xi = randn(2, 3, 8, 8)
    xo = randn(2, 3, 7, 9)
    xs = randn(2, 3, 9, 8)  # [B, 3, H, W] in ENV
    for name in ("max_pool2d", "avg_pool2d"):
        add(Case(name, {"x": xi}, kernel=2))
        add(Case(name, {"x": xo}, kernel=3, stride=2, padding=1))
        add(Case(name, {"x": xo}, kernel=(3, 2), stride=(1, 2), padding=(1, 0)))
        for x in (xi, xo):  # "same", stride 2, on even and odd sizes
            add(Case(name, {"x": x}, kernel=3, stride=2, padding="same"))
            add(Case(name, {"x": x}, kernel=2, stride=2, padding="same"))
        add(Case(name, {"x": xs}, types={"x": TensorType(DType.f32, (B, 3, H, W))}, env=ENV,
                 kernel=3, stride=2, padding="same"))
    for include in (True, False):
        add(Case("avg_pool2d", {"x": xo}, kernel=3, stride=2, padding=1,
                 count_include_pad=include))
        add(Case("avg_pool2d", {"x": xi}, kernel=3, stride=2, padding="same",
                 count_include_pad=include))
        add(Case("avg_pool2d", {"x": xo}, kernel=4, stride=3, padding="same",
                 count_include_pad=include))
        add(Case("avg_pool2d", {"x": xs}, types={"x": TensorType(DType.f32, (B, 3, H, W))},
                 env=ENV, kernel=3, stride=2, padding="same", count_include_pad=include))
        add(Case("avg_pool1d", {"x": randn(2, 3, 11)}, kernel=4, stride=2, padding="same",
                 count_include_pad=include))
        add(Case("avg_pool1d", {"x": randn(2, 3, 10)}, kernel=3, padding=1,
                 count_include_pad=include))
    add(Case("max_pool1d", {"x": randn(2, 3, 10)}, kernel=3))
    add(Case("max_pool1d", {"x": randn(2, 3, 11)}, kernel=4, stride=2, padding="same"))
    add(Case("max_pool1d", {"x": randn(2, 3, 11)}, kernel=3, stride=1, padding="same"))
    add(Case("max_pool2d", {"x": randn(2, 3, 8, 8, dtype=np.float64)}, kernel=3, stride=2,
             padding="same"))
    add(Case("global_avg_pool", {"x": x4}))
    add(Case("global_avg_pool", {"x": randn(2, 3, 7)}))
    add(Case("global_avg_pool", {"x": randn(2, 3, 4, 5, 6, dtype=np.float64)}))
    add(Case("adaptive_avg_pool2d", {"x": randn(2, 3, 7, 5)}, size=(3, 2)))
    add(Case("adaptive_avg_pool2d", {"x": randn(2, 3, 7, 5)}, size=1))
    add(Case("adaptive_avg_pool2d", {"x": randn(2, 3, 6, 6)}, size=4))
    add(Case("adaptive_avg_pool2d", {"x": randn(2, 3, 9, 8)},
             types={"x": TensorType(DType.f32, (B, 3, H, W))}, env=ENV, size=(H, 1)))
    # attention
    q, k, v = randn(2, 3, 5, 8), randn(2, 3, 6, 8), randn(2, 3, 6, 4)
    sdpa = "scaled_dot_product_attention"
    for causal in (False, True):
        add(Case(sdpa, {"q": q, "k": k, "v": v}, causal=causal))
        add(Case(sdpa, {"q": q, "k": k, "v": v, "mask": _attention_mask((2, 1, 1, 6))},
                 causal=causal))
        add(Case(sdpa, {"q": q, "k": k, "v": v, "mask": _attention_mask((5, 6))},
                 causal=causal))
        add(Case(sdpa, {"q": q, "k": k, "v": v,
                        "mask": _mask_with_empty_row((2, 3, 5, 6), (1, 2, 3))}, causal=causal))
    add(Case(sdpa, {"q": q, "k": k, "v": v, "mask": _mask_with_empty_row((2, 1, 1, 6), 1)}))
    add(Case(sdpa, {"q": randn(4, 7, dtype=np.float64), "k": randn(4, 7, dtype=np.float64),
                    "v": randn(4, 7, dtype=np.float64)}))
    add(Case(sdpa, {"q": randn(3, 5, 8), "k": randn(1, 6, 8), "v": randn(1, 6, 8)}))
    add(Case(sdpa, {"q": randn(1, 5, 8), "k": randn(3, 6, 8), "v": randn(3, 6, 8),
                    "mask": _mask_with_empty_row((3, 5, 6), (2, 4))}, causal=True))
    return c


def _layer_cases() -> list:
    c = []
    add = c.append
    x = randn(2, 3, 8, 8)
    xo = randn(2, 3, 7, 9)
    xs = randn(2, 3, 9, 8)  # [B, 3, H, W] in ENV
    add(Case("Conv2d", {"x": x}, {"out": 4, "kernel": 3}))
    add(Case("Conv2d", {"x": x}, {"out": 6, "kernel": 3, "padding": 1, "groups": 3,
                                  "bias": False}))
    add(Case("Conv2d", {"x": xo}, {"out": 4, "kernel": (3, 2), "stride": (2, 1),
                                   "padding": (1, 0), "dilation": (1, 2)}))
    for inp in (x, xo):  # "same", stride 2, on even and odd sizes
        add(Case("Conv2d", {"x": inp}, {"out": 4, "kernel": 3, "stride": 2, "padding": "same"}))
        add(Case("Conv2d", {"x": inp}, {"out": 4, "kernel": 4, "stride": 2, "padding": "same"}))
    add(Case("Conv2d", {"x": xo}, {"out": 4, "kernel": 3, "padding": "same"}))
    add(Case("Conv2d", {"x": xo}, {"out": 4, "kernel": 4, "padding": "same"}))
    add(Case("Conv2d", {"x": xo}, {"out": 4, "kernel": 3, "padding": "same", "dilation": 2}))
    add(Case("Conv2d", {"x": xs}, {"out": 4, "kernel": 3, "stride": 2, "padding": "same",
                                   "dilation": 2},
             types={"x": TensorType(DType.f32, (B, 3, H, W))}, env=ENV))
    add(Case("Conv2d", {"x": xs}, {"out": 4, "kernel": 3, "stride": 2, "padding": "same"},
             types={"x": TensorType(DType.f32, (B, 3, H, W))}, env=ENV))
    add(Case("Conv1d", {"x": randn(2, 4, 11)}, {"out": 2, "kernel": 4, "stride": 3,
                                                "padding": "same"}))
    add(Case("Conv1d", {"x": randn(2, 4, 11)}, {"out": 4, "kernel": 3, "groups": 2}))
    add(Case("Conv3d", {"x": randn(1, 2, 5, 6, 4)}, {"out": 3, "kernel": (3, 2, 2),
                                                     "stride": 2, "padding": "same"}))
    add(Case("Conv3d", {"x": randn(1, 2, 5, 6, 4)}, {"out": 3, "kernel": 3, "padding": 1,
                                                     "bias": False}))
    add(Case("ConvTranspose2d", {"x": randn(2, 4, 5, 6)}, {"out": 3, "kernel": 3}))
    add(Case("ConvTranspose2d", {"x": randn(2, 4, 5, 6)},
             {"out": 6, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1,
              "groups": 2}))
    add(Case("ConvTranspose2d", {"x": randn(2, 4, 5, 6)},
             {"out": 2, "kernel": (2, 3), "stride": (2, 3), "dilation": 2, "bias": False}))
    add(Case("Linear", {"x": randn(2, 5, 7)}, {"out": 3}))
    add(Case("Linear", {"x": randn(4, 7)}, {"out": 3, "bias": False}))
    add(Case("Embedding", {"ids": RNG.integers(0, 10, (2, 5))}, {"vocab": 10, "dim": 4}))
    add(Case("Embedding", {"ids": RNG.integers(0, 10, (3,)).astype(np.int32)},
             {"vocab": 10, "dim": 4}))
    add(Case("Dropout", {"x": x}, {"p": 0.3}))
    add(Case("Identity", {"x": x}))
    for shape in ((4, 3), (4, 3, 5), (2, 3, 4, 5), (2, 3, 2, 3, 2)):
        add(Case("BatchNorm", {"x": randn(*shape)}, {"eps": 1e-3, "momentum": 0.2}))
    add(Case("BatchNorm", {"x": x}))
    add(Case("LayerNorm", {"x": randn(2, 5, 6)}))
    add(Case("LayerNorm", {"x": randn(2, 5, 6)}, {"axes": 2, "eps": 1e-6}))
    add(Case("GroupNorm", {"x": randn(2, 6, 4, 3)}, {"groups": 3}))
    add(Case("GroupNorm", {"x": randn(2, 4, 5)}, {"groups": 2, "eps": 1e-3}))
    for kind in ("LSTM", "GRU"):
        add(Case(kind, {"x": randn(2, 5, 3)}, {"hidden": 4}, param_scale=0.5))
        add(Case(kind, {"x": randn(2, 5, 3)}, {"hidden": 4}, param_scale=0.5, state=True))
        add(Case(kind, {"x": randn(2, 5, 3)}, {"hidden": 4, "layers": 2, "bidirectional": True},
                 param_scale=0.5, state=True))
        add(Case(kind, {"x": randn(3, 4, 2)}, {"hidden": 3, "layers": 2, "bidirectional": True},
                 param_scale=0.5))
    dim, heads = 12, 3
    q, kv = randn(2, 4, dim), randn(2, 5, dim)
    mha = "MultiHeadAttention"
    cfg = {"dim": dim, "heads": heads}
    for bias in (True, False):
        bcfg = {**cfg, "bias": bias}
        add(Case(mha, {"q": q, "k": kv, "v": kv}, bcfg, param_scale=0.3))
        add(Case(mha, {"q": q, "k": kv, "v": kv}, bcfg, param_scale=0.3, causal=True))
        for causal in (False, True):
            add(Case(mha, {"q": q, "k": kv, "v": kv, "mask": _attention_mask((2, 5))}, bcfg,
                     param_scale=0.3, causal=causal))
            add(Case(mha, {"q": q, "k": kv, "v": kv, "mask": _attention_mask((2, 4, 5))}, bcfg,
                     param_scale=0.3, causal=causal))
        # fully masked: one query row (3-D mask), one whole batch item (2-D mask)
        add(Case(mha, {"q": q, "k": kv, "v": kv,
                       "mask": _mask_with_empty_row((2, 4, 5), (1, 2))}, bcfg, param_scale=0.3))
        add(Case(mha, {"q": q, "k": kv, "v": kv, "mask": _mask_with_empty_row((2, 5), 0)},
                 bcfg, param_scale=0.3, causal=True))
    h = randn(3, 6, 8)
    add(Case(mha, {"q": h, "k": h, "v": h, "mask": _attention_mask((3, 6))},
             {"dim": 8, "heads": 2}, param_scale=0.3))
    return c


CASES = _cases()
LAYER_CASES = _layer_cases()


def _case_id(case: Case) -> str:
    return case.op


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_function_matches_reference(case):
    check(case)


def _one_tensor(case: Case) -> bool:
    tensors = [p.name for p in REGISTRY[case.op].signature.params if p.is_tensor]
    return tensors == ["x"] and isinstance(case.inputs["x"], np.ndarray) and not case.env


@pytest.mark.parametrize("case", [c for c in CASES if _one_tensor(c)], ids=_case_id)
def test_function_without_input_types(case):
    """The emitter lowers a function child of a Sequential (`_Function(lambda x: ...)`)
    knowing only the result types."""
    check(case, hide_in_types=True)


@pytest.mark.parametrize("case", LAYER_CASES, ids=_case_id)
def test_layer_matches_reference(case):
    check(case)


# ---------------------------------------------------------------- the table


def test_table_covers_every_op_once():
    assert not set(TORCH_FUNCTIONS) & set(TORCH_LAYERS)
    assert set(TORCH_FUNCTIONS) | set(TORCH_LAYERS) == set(REGISTRY)
    for name, op in REGISTRY.items():
        assert (name in TORCH_LAYERS) == op.is_layer, name
        row = op.lowerings["torch"]
        assert row is (TORCH_LAYERS[name] if op.is_layer else TORCH_FUNCTIONS[name])
        assert isinstance(row, LayerLowering) == op.is_layer


def test_every_op_has_a_case():
    assert {case.op for case in CASES + LAYER_CASES} == set(REGISTRY)


def test_lower_function_refuses_layers():
    with pytest.raises(KeyError, match="TORCH_LAYERS"):
        lower_function("Conv2d", None)


def test_checking_never_imports_torch():
    code = ("import sys, dualnet.backends.torch.lowering, dualnet.backends.torch.runtime; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- generated source


def _source(op, inputs, config=None, **attrs):
    return lower_and_run(Case(op, inputs, config, **attrs))[0]


def test_readable_sources():
    x = randn(2, 3, 8, 8)
    assert _source("Conv2d", {"x": randn(1, 3, 16, 16)},
                   {"out": 64, "kernel": 7, "stride": 2, "padding": 3, "bias": False}) == \
        ("nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)", "module(x)")
    assert _source("Conv2d", {"x": x}, {"out": 4, "kernel": 3, "stride": 2,
                                        "padding": "same"}) == \
        ("nn.Conv2d(3, 4, kernel_size=3, stride=2)", "module(F.pad(x, (0, 1, 0, 1)))")
    assert _source("Conv2d", {"x": x}, {"out": 4, "kernel": 3, "padding": "same"})[0] == \
        "nn.Conv2d(3, 4, kernel_size=3, padding='same')"
    assert _source("BatchNorm", {"x": x})[0] == \
        "_bn(nn.BatchNorm2d(3, eps=1e-05, momentum=0.1))"
    assert _source("LSTM", {"x": randn(2, 5, 3)}, {"hidden": 4, "layers": 2,
                                                   "bidirectional": True}, state=True) == \
        ("nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)",
         "_unpack_lstm(module(x))")
    assert _source("MultiHeadAttention", {"q": randn(2, 4, 8), "k": randn(2, 4, 8),
                                          "v": randn(2, 4, 8)}, {"dim": 8, "heads": 2}) == \
        ("nn.MultiheadAttention(8, 2, batch_first=True)",
         "module(q, k, v, need_weights=False)[0]")
    assert _source("max_pool2d", {"x": x}, kernel=3, stride=2, padding=1)[1] == \
        "F.max_pool2d(x, kernel_size=3, stride=2, padding=1)"
    assert _source("max_pool2d", {"x": x}, kernel=2)[1] == "F.max_pool2d(x, kernel_size=2)"
    assert _source("avg_pool2d", {"x": x}, kernel=3, padding=1, count_include_pad=False)[1] \
        == "F.avg_pool2d(x, kernel_size=3, padding=1, count_include_pad=False)"
    assert _source("pad", {"x": x}, pads=(1, 2, 3, 4))[1] == "F.pad(x, (3, 4, 1, 2))"
    assert _source("sum", {"x": x}, axis=(2, 3), keepdims=True)[1] == \
        "x.sum(dim=(2, 3), keepdim=True)"
    assert _source("softmax", {"x": x})[1] == "F.softmax(x, dim=-1)"
    assert _source("getitem", {"x": x}, items=(slice(None), slice(1, 2), -1))[1] == \
        "x[:, 1:2, 7]"
    assert _source("pow", {"x": -2.0, "p": np.ones(3, np.float32)})[1] == "(-2.0) ** p"
    assert _source("add", {"a": 2.0, "b": 3.0})[1] == \
        "torch.tensor(2.0, dtype=torch.float32) + 3.0"
    assert _source("gelu", {"x": x}, approximate="tanh")[1] == "F.gelu(x, approximate='tanh')"
    assert _source("leaky_relu", {"x": x})[1] == "F.leaky_relu(x)"
    assert _source("upsample", {"x": x}, scale=2)[1] == "F.interpolate(x, scale_factor=2)"
    assert _source("split", {"x": x}, n=3, axis=1)[1] == "x.chunk(3, dim=1)"


def test_bracketed_and_device_aware_sources():
    t = TensorType(DType.f32, (2, 3))

    def call(inputs, **attrs):
        return TorchCall(inputs, attrs, {k: t for k in inputs}, [t], fmt)

    assert lower_function("sum", call({"x": "a + b"}, axis=(1,), keepdims=False)) == \
        "(a + b).sum(dim=1)"
    assert lower_function("sub", call({"a": "x", "b": "y - z"})) == "x - (y - z)"
    assert lower_function("neg", call({"x": "-y"})) == "-(-y)"
    assert lower_function("arange", TorchCall({}, {"n": 4, "_device": "x.device"}, {}, [t],
                                              fmt)) == "torch.arange(4, device=x.device)"
    assert lower_function("exp", call({"x": "1.0"}, _device="x.device")) == \
        "torch.exp(torch.tensor(1.0, dtype=torch.float32, device=x.device))"


def test_conv_call_needs_the_layer_config():
    t = TensorType(DType.f32, (2, 3, 8, 8))
    with pytest.raises(KeyError, match="layer.attrs"):
        TORCH_LAYERS["Conv2d"].call("self.conv", TorchCall({"x": "x"}, {}, {"x": t}, [t], fmt))


def test_cast_to_bfloat16():
    x = randn(3, 4)
    _, ctx = run_rule(REGISTRY["cast"], {"x": TensorType(DType.f32, (3, 4))},
                      {"dtype": DType.bf16}, {}, None)
    src = lower_function("cast", TorchCall({"x": "x"}, ctx.attrs, {}, [], fmt))
    y = eval(src, {"torch": torch, "x": torch.from_numpy(x)})
    assert y.dtype == torch.bfloat16
    np.testing.assert_allclose(y.float().numpy(), x, rtol=1e-2)


# ---------------------------------------------------------------- runtime helpers


def test_helpers_needed_follows_dependencies():
    assert helpers_needed("y = _avg_pool(x, (3,), (2,), None)") == ["_pad_same", "_avg_pool"]
    assert helpers_needed("self.bn = _bn(nn.BatchNorm2d(3))") == \
        ["_bn", "_skip_num_batches_tracked"]
    assert helpers_needed("self._bn(x) + my_pad_same(x) + _bn2(x)") == []
    assert helpers_needed("F.relu(x)") == []


def test_helpers_are_clean_python(tmp_path):
    header = "import torch\nimport torch.nn.functional as F\n"
    source = header + "\n\n" + "\n\n".join(HELPERS.values())
    compile(source, "helpers", "exec")
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    path = tmp_path / "helpers.py"
    path.write_text(source)
    result = subprocess.run([ruff, "check", "--isolated", "--line-length", "100",
                             "--select", "E,F,W,B", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert runtime.__doc__


def _bn_module():
    """A BatchNorm built as a generated file builds it (helpers in an importable module, so
    that whole models pickle)."""
    name = "dualnet_generated_bn_test"
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__dict__.update(torch=torch, nn=nn, F=F)
        for helper in ("_bn", "_skip_num_batches_tracked"):
            exec(HELPERS[helper], module.__dict__)
        sys.modules[name] = module
    return eval("_bn(nn.BatchNorm2d(3, eps=1e-05, momentum=0.1))", module.__dict__)


def test_batchnorm_without_batch_counter_loads_trains_copies_and_pickles():
    bn = _bn_module()
    assert sorted(bn.state_dict()) == ["bias", "running_mean", "running_var", "weight"]
    plain = {k: torch.randn(3).abs() + 0.5 for k in bn.state_dict()}
    bn.load_state_dict(plain)  # strict, no num_batches_tracked
    torch_style = {**plain, "num_batches_tracked": torch.tensor(7)}
    bn.load_state_dict(torch_style)  # a PyTorch checkpoint's counter is ignored
    assert torch.equal(bn.running_var, plain["running_var"])
    bn.train()
    bn(torch.randn(4, 3, 2, 2))  # training updates the running statistics
    assert not torch.equal(bn.running_var, plain["running_var"])
    bn.reset_parameters()
    twin = copy.deepcopy(bn)
    twin.load_state_dict(plain)
    buffer = io.BytesIO()
    torch.save(bn, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    loaded.load_state_dict(plain)
    assert sorted(loaded.state_dict()) == sorted(plain)
    parent = nn.Sequential(_bn_module(), nn.ReLU())
    parent.load_state_dict({f"0.{k}": v for k, v in plain.items()})


def test_fully_masked_attention_has_finite_gradients():
    ns = {"torch": torch, "nn": nn, "F": F}
    for name in ("_attention", "_mha", "_mha_keys"):
        exec(HELPERS[name], ns)
    q = torch.randn(1, 2, 3, 4, requires_grad=True)
    mask = torch.ones(1, 2, 3, 5, dtype=torch.bool)
    mask[0, 1, 2] = False
    k = torch.randn(1, 2, 5, 4, requires_grad=True)
    y = ns["_attention"](q, k, torch.randn(1, 2, 5, 4), mask)
    y.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    assert (y[0, 1, 2] == 0).all()
    attention = nn.MultiheadAttention(8, 2, batch_first=True)
    nn.init.normal_(attention.out_proj.bias)
    x = torch.randn(2, 3, 8, requires_grad=True)
    keys = torch.tensor([[True, True, False], [False, False, False]])
    for helper in ("_mha", "_mha_keys"):  # the general path and the key-padding fast path
        x.grad = None
        out = ns[helper](attention, x, x, x, keys)
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
        assert torch.allclose(out[1], attention.out_proj.bias.expand(3, 8))
    assert torch.allclose(ns["_mha"](attention, x, x, x, keys),
                          ns["_mha_keys"](attention, x, x, x, keys), atol=1e-6)

"""Shared helpers for the op-registry tests: run a shape rule with the signature's defaults,
run a NumPy reference on attributes normalised by the rule, and run one ONNX node with
ONNX's own reference evaluator (the tie-breaker of LANGUAGE.md §8)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from dualnet.diagnostics import DualnetError
from dualnet.ir.dims import sym
from dualnet.ir.types import DType, TensorType
from dualnet.ops import REGISTRY
from dualnet.ops.registry import REQUIRED, run_rule

B, T, H, W, C = sym("B"), sym("T"), sym("H"), sym("W"), sym("C")

_NP = {
    np.dtype(np.float16): DType.f16,
    np.dtype(np.float32): DType.f32,
    np.dtype(np.float64): DType.f64,
    np.dtype(np.int32): DType.i32,
    np.dtype(np.int64): DType.i64,
    np.dtype(np.bool_): DType.bool,
}


def tt(dtype: str, *shape) -> TensorType:
    """TensorType from a dtype name and sizes: tt("f32", B, 3, 32, 32)."""
    return TensorType(DType(dtype), tuple(shape))


def type_of(value):
    if value is None:
        return None
    if isinstance(value, list):
        return [type_of(v) for v in value]
    return TensorType(_NP[value.dtype], tuple(value.shape))


def _defaults(signature, given: dict) -> dict:
    out = {}
    for p in signature.params:
        if p.is_tensor:
            continue
        if p.name in given:
            out[p.name] = given[p.name]
        elif p.default is not REQUIRED:
            out[p.name] = p.default
        else:
            raise TypeError(f"missing required argument {p.name}")
    extra = set(given) - {p.name for p in signature.params}
    if extra:
        raise TypeError(f"unknown arguments {extra}")
    return out


def infer(name: str, inputs: dict, config: dict | None = None, **attrs):
    """Run `name`'s rule on TensorTypes with defaults filled in; returns (outputs, ctx)."""
    op = REGISTRY[name]
    tensors = {p.name: inputs.get(p.name) for p in op.signature.params if p.is_tensor}
    full_attrs = _defaults(op.signature, attrs)
    full_config = _defaults(op.construct, config or {}) if op.is_layer else {}
    return run_rule(op, tensors, full_attrs, {}, None, full_config)


def shapes(name: str, inputs: dict, config: dict | None = None, **attrs):
    """The result types of a rule as strings, e.g. ["f32[B, 6, 14, 14]"]."""
    outputs, _ = infer(name, inputs, config, **attrs)
    return [str(t) for t in outputs]


def fails(
    name: str,
    inputs: dict,
    code: str,
    config: dict | None = None,
    match: str | None = None,
    **attrs,
) -> DualnetError:
    with pytest.raises(DualnetError) as info:
        infer(name, inputs, config, **attrs)
    assert info.value.diagnostics[0].code == code, info.value.diagnostics[0]
    if match is not None:
        assert match in info.value.diagnostics[0].message, info.value.diagnostics[0].message
    return info.value


def random_params(ctx, rng, dtype=np.float32, scale: float = 1.0) -> dict:
    """Random values for every parameter and buffer the rule declared (variances positive)."""
    out = {}
    for name, spec in {**ctx.params, **ctx.buffers}.items():
        v = rng.standard_normal(spec.shape) * scale
        if "var" in name:
            v = np.abs(v) + 0.5
        out[name] = v.astype(dtype)
    return out


def run_ref(
    name: str,
    inputs: dict,
    config: dict | None = None,
    params: dict | None = None,
    rng=None,
    param_scale: float = 1.0,
    **attrs,
):
    """Normalise attributes with the rule (on the arrays' concrete types), then run the NumPy
    reference. Returns (outputs, params, ctx)."""
    outputs, ctx = infer(name, {k: type_of(v) for k, v in inputs.items()}, config, **attrs)
    op = REGISTRY[name]
    if params is None:
        params = random_params(ctx, rng or np.random.default_rng(0), scale=param_scale)
    merged = {**ctx.config, **ctx.attrs}
    full_inputs = {p.name: inputs.get(p.name) for p in op.signature.params if p.is_tensor}
    results = op.reference(full_inputs, merged, params)
    assert len(results) == len(outputs)
    for r, t in zip(results, outputs, strict=True):  # the rule and the reference agree
        assert tuple(r.shape) == tuple(t.shape), (r.shape, t)
        assert _NP[np.asarray(r).dtype] == t.dtype, (r.dtype, t)
    return results, params, ctx


_ONNX_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.bool_): TensorProto.BOOL,
}


def onnx_node(
    op_type: str,
    inputs: list,
    n_outputs: int = 1,
    opset: int = 21,
    runtime: str = "reference",
    **attrs,
):
    """Run one ONNX node with onnx.reference (or onnxruntime: runtime="ort"). `inputs` lists
    arrays (None = omitted input)."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    outs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(n, _ONNX_TYPES[np.asarray(v).dtype], list(np.shape(v)))
        for n, v in zip(names, inputs, strict=True)
        if v is not None
    ]
    elem = TensorProto.UNDEFINED
    if runtime == "ort":  # onnxruntime needs the output element type (that of input 0 here)
        elem = _ONNX_TYPES[np.asarray(inputs[0]).dtype]
    graph_outputs = [helper.make_tensor_value_info(o, elem, None) for o in outs]
    graph = helper.make_graph([node], "one", graph_inputs, graph_outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    feeds = {n: np.asarray(v) for n, v in zip(names, inputs, strict=True) if v is not None}
    if runtime == "ort":
        import onnxruntime

        session = onnxruntime.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return session.run(None, feeds)
    return ReferenceEvaluator(model).run(None, feeds)


def onnx_graph(nodes, inputs: dict, outputs: list[str], opset: int = 21):
    """Run a small ONNX graph (a list of helper.make_node) on named arrays."""
    graph_inputs = [
        helper.make_tensor_value_info(n, _ONNX_TYPES[v.dtype], list(v.shape))
        for n, v in inputs.items()
    ]
    graph_outputs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs]
    graph = helper.make_graph(nodes, "g", graph_inputs, graph_outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    return ReferenceEvaluator(model).run(None, inputs)


def close(actual, expected, rtol: float = 1e-5, atol: float | None = None) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if atol is None:
        atol = 1e-6 if actual.dtype in (np.float32, np.float16) else 1e-12
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def randn(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)

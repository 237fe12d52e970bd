"""ONNX's own node test cases (`onnx.backend.test.case.node`) as .dnet programs.

Every single-node case whose operator has a dualnet counterpart is translated into a one-model
.dnet program that expresses exactly that node, then run through the PyTorch, Keras and ONNX
backends and compared with ONNX's expected outputs (`test_onnx_conformance.py`).

Translation rules:
- The node's inputs are the forward arguments `x0, x1, ...` (by input position), with the
  case's concrete shapes. Inputs that dualnet takes as compile-time values (Reshape's shape,
  Clip's bounds, Pad's pads, Split's sizes, (Un)Squeeze's and the reductions' axes, Resize's
  scales, Slice's bounds) are written into the program; weight inputs of layer counterparts
  (Conv's W and B, BatchNormalization's statistics, LSTM's W, R and B, Gather's data table for
  Embedding, Gemm's B and C where it is a Linear layer) become the layer's weights under its
  state_dict names.
- A case whose attributes, inputs, outputs or dtypes dualnet cannot express is *not matched*:
  the mapper raises `Unmatched` with the reason, which the coverage table reports. That is
  not a failure.
- LayerNormalization's optional Mean and InvStdDev outputs are not compared: dualnet's
  LayerNorm returns Y only. Every other requested output must be produced.
- ONNX ops without a dualnet counterpart (Max/Min/Mean over several tensors, Tile, ...) and
  the multi-node "expanded" cases are not listed.

A matched case that fails, or needs a looser tolerance, is listed in `KNOWN_FAILURES` or
`LOOSENED` below with the reason.
"""

from __future__ import annotations

import functools
import math
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dualnet.backends import BACKENDS as ALL_BACKENDS

BACKENDS = tuple(ALL_BACKENDS)
RTOL, ATOL = 1e-3, 1e-7  # ONNX's defaults for its node tests

# (case, backend): why the case fails there. The test expects each failure (strict xfail),
# so a fix shows up as an unexpected pass: then remove the entry.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

# case: (rtol, atol, why ONNX's tolerance is loosened).
LOOSENED: dict[str, tuple[float, float, str]] = {
    name: (
        2e-3,
        ATOL,
        "float16: PyTorch's CPU attention kernel rounds its intermediates to "
        "f16, ONNX's reference keeps float32 ones; they differ by up to 2 f16 "
        "ulps (relative 1.4e-3 > 1e-3)",
    )
    for name in ("test_attention_4d_fp16", "test_attention_4d_causal_fp16")
}

DTYPES = {
    np.dtype(np.float16): "f16",
    np.dtype(np.float32): "f32",
    np.dtype(np.float64): "f64",
    np.dtype(np.int32): "i32",
    np.dtype(np.int64): "i64",
    np.dtype(np.bool_): "bool",
}
ONNX_TYPES = {1: "f32", 6: "i32", 7: "i64", 9: "bool", 10: "f16", 11: "f64"}  # TensorProto


class Unmatched(Exception):
    """The case needs something dualnet cannot express (a reason, not a failure)."""


def require(condition: bool, reason: str) -> None:
    if not condition:
        raise Unmatched(reason)


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Node:
    """One case's node: attributes, input arrays by position (None where omitted) and
    output names ('' where not requested)."""

    op: str
    opset: int
    attrs: dict
    inputs: tuple
    outputs: tuple[str, ...]

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def const(self, i: int, default=None):
        """Input `i` as a compile-time value (a list, or a number for a 0-d input)."""
        return self.inputs[i].tolist() if self.has(i) else default

    def rank(self, i: int = 0) -> int:
        return self.inputs[i].ndim

    def only_outputs(self, count: int) -> None:
        extra = [name for name in self.outputs[count:] if name]
        require(not extra, f"output not produced: {', '.join(extra)}")


@dataclass(frozen=True)
class Spec:
    """A node as .dnet: result expressions over x0, x1, ..., the statements before them,
    layer declarations, and the layers' weights by state_dict name."""

    results: tuple[str, ...]
    lines: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    weights: dict = field(default_factory=dict)
    partial: bool = False  # True: the node's outputs after `results` are not compared


@dataclass
class Case:
    """One ONNX case: inputs, expected outputs and, when matched, its .dnet spec."""

    name: str
    op: str
    inputs: tuple  # np.ndarray | None by node input position
    expected: list[np.ndarray]
    spec: Spec | None = None
    reason: str = ""  # why it is not matched

    @property
    def args(self) -> list[int]:
        """The node inputs the program takes as forward arguments, in order."""
        text = "\n".join((*self.spec.lines, *self.spec.results))
        return sorted({int(i) for i in re.findall(r"\bx(\d+)\b", text)})

    def source(self) -> str:
        signature = ", ".join(f"x{i}: {tensor_type(self.inputs[i])}" for i in self.args)
        body = [*self.spec.lines, "return " + ", ".join(self.spec.results)]
        return "\n".join(
            [
                "model Case() {",
                *(f"    {d}" for d in self.spec.layers),
                f"    forward({signature}) {{",
                *(f"        {s}" for s in body),
                "    }",
                "}",
                "",
            ]
        )


def tensor_type(x: np.ndarray) -> str:
    require(x.dtype in DTYPES, f"no dualnet dtype: {x.dtype}")
    require(0 not in x.shape, "a zero-sized axis (dualnet tensors have none)")
    return f"{DTYPES[x.dtype]}[{', '.join(str(d) for d in x.shape)}]"


def _array(value):
    """An input or output as an array; sequences and optionals stay as they are."""
    if value is None or isinstance(value, np.ndarray | list):
        return value
    if type(value).__name__ == "TensorProto":
        from onnx import numpy_helper

        return numpy_helper.to_array(value)
    return np.asarray(value)


def _node(case) -> Node:
    from onnx import helper

    node = case.model.graph.node[0]
    inputs, _ = case.data_sets[0]
    values = iter(inputs)
    arrays = tuple(_array(next(values)) if name else None for name in node.input)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    opset = next(o.version for o in case.model.opset_import if o.domain in ("", "ai.onnx"))
    return Node(node.op_type, opset, attrs, arrays, tuple(node.output))


def _translate(case) -> Case:
    op = case.model.graph.node[0].op_type
    node = _node(case)
    expected = [_array(y) for y in case.data_sets[0][1]]
    out = Case(case.name, op, node.inputs, expected)
    try:
        require(len(case.data_sets) == 1, "several data sets")
        require(
            all(isinstance(x, np.ndarray) for x in (*node.inputs, *expected) if x is not None),
            "sequence or optional values",
        )
        for y in expected:
            tensor_type(y)
        out.spec = MAPPERS[op](node)
        for i in out.args:
            tensor_type(node.inputs[i])
        if out.spec.partial:
            out.expected = expected[: len(out.spec.results)]
    except Unmatched as exc:
        out.spec, out.reason = None, str(exc)
    return out


@functools.cache
def all_cases() -> tuple[Case, ...]:
    """Every single-node ONNX case of an op in MAPPERS, matched or not."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        found = collect_testcases()
    single = [c for c in found if len(c.model.graph.node) == 1]
    return tuple(_translate(c) for c in single if c.model.graph.node[0].op_type in MAPPERS)


def matched_cases() -> list[Case]:
    return [c for c in all_cases() if c.spec is not None]


# ---------------------------------------------------------------- running


def run_case(case: Case) -> dict[str, list[np.ndarray] | Exception]:
    """Each backend's outputs for the case (or the exception it raised)."""
    import dualnet
    from dualnet.io.weights import write_state

    inputs = [case.inputs[i] for i in case.args]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{case.name}.dnet"
        path.write_text(case.source())
        weights = None
        if case.spec.weights:
            weights = str(Path(tmp) / "weights.safetensors")
            write_state(case.spec.weights, weights)
        program = dualnet.load(str(path))
        results = {}
        for backend in BACKENDS:
            try:
                results[backend] = RUNNERS[backend](program, weights, inputs)
            except Exception as exc:  # reported by the test for this backend
                results[backend] = exc
        return results


def _outputs(out) -> list:
    return list(out) if isinstance(out, tuple | list) else [out]


def _run_torch(program, weights, inputs):
    import torch

    import dualnet

    module = program.torch().eval()
    if weights:
        dualnet.load_weights(module, weights)
    with torch.no_grad():
        out = module(*(torch.from_numpy(np.array(x)) for x in inputs))
    return [o.numpy() for o in _outputs(out)]


def _run_keras(program, weights, inputs):
    import tensorflow as tf

    import dualnet

    model = program.keras()
    if weights:
        dualnet.load_weights(model, weights)
    out = model(*(tf.constant(x) for x in inputs), training=False)
    return [np.asarray(o) for o in _outputs(out)]


def _run_onnx(program, weights, inputs):
    import onnxruntime as ort

    session = ort.InferenceSession(
        program.onnx(weights=weights).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs, strict=True)))


RUNNERS = {"torch": _run_torch, "keras": _run_keras, "onnx": _run_onnx}


def compare(case: Case, got: list[np.ndarray]) -> None:
    """Raise AssertionError unless `got` equals ONNX's expected outputs: same count, dtypes
    and shapes, values within ONNX's tolerance (or the case's LOOSENED one)."""
    rtol, atol, _ = LOOSENED.get(case.name, (RTOL, ATOL, ""))
    assert len(got) == len(case.expected), f"{len(got)} outputs, expected {len(case.expected)}"
    for i, (g, want) in enumerate(zip(got, case.expected, strict=True)):
        g = np.asarray(g)
        assert g.dtype == want.dtype, f"output {i}: dtype {g.dtype}, expected {want.dtype}"
        assert g.shape == want.shape, f"output {i}: shape {g.shape}, expected {want.shape}"
        if want.dtype.kind == "f":
            np.testing.assert_allclose(g, want, rtol=rtol, atol=atol, err_msg=f"output {i}")
        else:
            np.testing.assert_array_equal(g, want, err_msg=f"output {i}")


# ---------------------------------------------------------------- writing .dnet


def num(value) -> str:
    """A number, bool or (nested) list as .dnet text."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(num(v) for v in value) + "]"
    if isinstance(value, int | np.integer):
        return str(int(value))
    require(math.isfinite(value), f"non-finite value {value}")
    return repr(float(value))


def ints(values) -> str:
    """A tuple of ints as .dnet text (an int when there is one)."""
    values = [int(v) for v in values]
    return str(values[0]) if len(values) == 1 else "(" + ", ".join(map(str, values)) + ")"


def axis(value: int, rank: int) -> int:
    require(-rank <= value < rank, f"axis {value} out of range")
    return value % rank


def layer(
    declaration: str,
    results: str | tuple[str, ...],
    weights: dict,
    lines: tuple[str, ...] = (),
    partial: bool = False,
) -> Spec:
    """A spec that declares `layer = declaration` with `weights` and returns `results`."""
    return Spec(
        (results,) if isinstance(results, str) else results,
        lines,
        (f"layer = {declaration}",),
        {f"layer.{k}": np.asarray(v) for k, v in weights.items()},
        partial,
    )


# ---------------------------------------------------------------- element-wise

_UNARY = {
    "Relu": "relu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Exp": "exp",
    "Log": "log",
    "Sqrt": "sqrt",
    "Abs": "abs",
    "Neg": "neg",
    "Floor": "floor",
    "Round": "round",
    "Softplus": "softplus",
}
_BINARY = {
    "Add": "+",
    "Sub": "-",
    "Mul": "*",
    "Div": "/",
    "Equal": "==",
    "Less": "<",
    "LessOrEqual": "<=",
    "Greater": ">",
    "GreaterOrEqual": ">=",
    "Pow": "**",
}
_FLOAT_ONLY = ("Div", "Pow")  # dualnet's `/` and `**` (pow) take floating-point operands


def _unary(fn: str) -> Callable[[Node], Spec]:
    return lambda n: Spec((f"{fn}(x0)",))


def _binary(op: str) -> Callable[[Node], Spec]:
    def mapper(n: Node) -> Spec:
        require(n.inputs[0].dtype == n.inputs[1].dtype, "operands of different dtypes")
        require(
            op not in _FLOAT_ONLY or n.inputs[0].dtype.kind == "f",
            "integer operands (dualnet's `/` and `**` are floating-point)",
        )
        return Spec((f"x0 {_BINARY[op]} x1",))

    return mapper


def _sum(n: Node) -> Spec:
    require(len(n.inputs) > 1, "one input (an identity)")
    return Spec((" + ".join(f"x{i}" for i in range(len(n.inputs))),))


def _elu(n: Node) -> Spec:
    return Spec((f"elu(x0, alpha={num(n.attr('alpha', 1.0))})",))


def _leaky_relu(n: Node) -> Spec:
    return Spec((f"leaky_relu(x0, slope={num(n.attr('alpha', 0.01))})",))


def _gelu(n: Node) -> Spec:
    return Spec((f'gelu(x0, approximate="{n.attr("approximate", "none")}")',))


def _swish(n: Node) -> Spec:
    require(n.attr("alpha", 1.0) == 1.0, "alpha ≠ 1 (silu is x·sigmoid(x))")
    return Spec(("silu(x0)",))


def _clip(n: Node) -> Spec:
    lo, hi = n.const(1), n.const(2)
    require(
        lo is None or hi is None or lo <= hi,
        "min > max (dualnet's clamp rejects lo > hi at compile time)",
    )
    bounds = "".join(f", {k}={num(v)}" for k, v in (("lo", lo), ("hi", hi)) if v is not None)
    return Spec((f"clamp(x0{bounds})",))


def _where(n: Node) -> Spec:
    return Spec(("where(x0, x1, x2)",))


def _cast(n: Node) -> Spec:
    to = n.attr("to")
    require(to in ONNX_TYPES, f"cast to ONNX type {to}")
    return Spec((f'cast(x0, "{ONNX_TYPES[to]}")',))


# ---------------------------------------------------------------- matrix products


def _matmul(n: Node) -> Spec:
    return Spec(("x0 @ x1",))


def _gemm(n: Node) -> Spec:
    """A Linear layer (weight B or Bᵀ, bias C) where Gemm is one; else matmul arithmetic."""
    if _is_linear(n):
        b, out = n.inputs[1], n.inputs[1].shape[0 if n.attr("transB", 0) else 1]
        weights = {"weight": b if n.attr("transB", 0) else b.T}
        if n.has(2):
            weights["bias"] = np.broadcast_to(n.inputs[2].reshape(-1), (out,))
        return layer(f"Linear({out}, bias={num(n.has(2))})", "layer(x0)", weights)
    a = "transpose(x0, 0, 1)" if n.attr("transA", 0) else "x0"
    b = "transpose(x1, 0, 1)" if n.attr("transB", 0) else "x1"
    alpha, beta = n.attr("alpha", 1.0), n.attr("beta", 1.0)
    y = f"{a} @ {b}" if alpha == 1.0 else f"({a} @ {b}) * {num(alpha)}"
    if n.has(2):
        y += " + x2" if beta == 1.0 else f" + x2 * {num(beta)}"
    return Spec((y,))


def _is_linear(n: Node) -> bool:
    """x Wᵀ + b: A not transposed, alpha = beta = 1, C absent or one row (or a scalar)."""
    c = n.inputs[2] if n.has(2) else None
    row = c is None or c.size == 1 or c.size == c.shape[-1]
    return (
        not n.attr("transA", 0)
        and n.attr("alpha", 1.0) == 1.0
        and n.attr("beta", 1.0) == 1.0
        and row
    )


# ---------------------------------------------------------------- softmax and reductions


def _softmax(fn: str) -> Callable[[Node], Spec]:
    def mapper(n: Node) -> Spec:
        require(n.opset >= 13, "opset < 13 (softmax over a flattened 2-d view)")
        return Spec((f"{fn}(x0, axis={n.attr('axis', -1)})",))

    return mapper


def _reduce(fn: str) -> Callable[[Node], Spec]:
    def mapper(n: Node) -> Spec:
        axes = n.const(1, n.attr("axes")) or []
        if not axes:
            require(not n.attr("noop_with_empty_axes", 0), "noop_with_empty_axes (identity)")
            axes = range(n.rank())
        require(n.inputs[0].dtype != np.bool_, "bool input")
        require(fn != "mean" or n.inputs[0].dtype.kind == "f", "integer mean")
        require(
            fn not in ("max", "min") or all(n.inputs[0].shape[a] for a in axes),
            "max/min over an empty axis (dualnet rejects it, E-SHAPE, as PyTorch does)",
        )
        keep = num(bool(n.attr("keepdims", 1)))
        return Spec((f"{fn}(x0, axis={ints(axes)}, keepdims={keep})",))

    return mapper


def _arg(fn: str) -> Callable[[Node], Spec]:
    def mapper(n: Node) -> Spec:
        require(not n.attr("select_last_index", 0), "select_last_index (dualnet picks the first)")
        keep = num(bool(n.attr("keepdims", 1)))
        return Spec((f"{fn}(x0, axis={n.attr('axis', 0)}, keepdims={keep})",))

    return mapper


# ---------------------------------------------------------------- shape ops


def _concat(n: Node) -> Spec:
    xs = ", ".join(f"x{i}" for i in range(len(n.inputs)))
    return Spec((f"concat([{xs}], axis={n.attr('axis')})",))


def _split(n: Node) -> Spec:
    count = sum(1 for name in n.outputs if name)
    require(count == len(n.outputs), "unrequested outputs")
    size = n.inputs[0].shape[axis(n.attr("axis", 0), n.rank())]
    sizes = n.const(1, n.attr("split")) or [size // count] * count
    require(len(set(sizes)) == 1 and size % count == 0, "unequal parts (split makes equal ones)")
    names = [f"y{i}" for i in range(count)]
    return Spec(tuple(names), (f"{', '.join(names)} = split(x0, {count}, {n.attr('axis', 0)})",))


def _flatten(n: Node) -> Spec:
    shape = n.inputs[0].shape
    start = n.attr("axis", 1)
    start += n.rank() if start < 0 else 0
    if start == 1:
        return Spec(("flatten(x0)",))
    outer, inner = math.prod(shape[:start]), math.prod(shape[start:])
    return Spec((f"reshape(x0, [{outer}, {inner}])",))


def _reshape(n: Node) -> Spec:
    dims = n.const(1)
    require(not (n.attr("allowzero", 0) and 0 in dims), "allowzero with a 0 size")
    dims = [n.inputs[0].shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return Spec((f"reshape(x0, {num(dims)})",))


def _transpose(n: Node) -> Spec:
    perm = n.attr("perm", list(range(n.rank()))[::-1])
    return Spec((f"permute(x0, {num(list(perm))})",))


def _squeeze(n: Node) -> Spec:
    shape = n.inputs[0].shape
    axes = n.const(1, n.attr("axes")) or [i for i, d in enumerate(shape) if d == 1]
    y = "x0"
    for a in sorted((axis(a, len(shape)) for a in axes), reverse=True):
        y = f"squeeze({y}, {a})"
    return Spec((y,))


def _unsqueeze(n: Node) -> Spec:
    axes = n.const(1, n.attr("axes"))
    rank = n.rank() + len(axes)
    y = "x0"
    for a in sorted(axis(a, rank) for a in axes):
        y = f"unsqueeze({y}, {a})"
    return Spec((y,))


def _pad(n: Node) -> Spec:
    require(n.attr("mode", "constant") == "constant", f"mode: {n.attr('mode')}")
    rank, pads = n.rank(), n.const(1, n.attr("pads"))
    axes = [axis(a, rank) for a in n.const(3, list(range(rank)))]
    require(min(pads) >= 0, "negative pads")
    pairs = [[0, 0] for _ in range(rank)]
    for i, a in enumerate(axes):
        pairs[a] = [pads[i], pads[i + len(axes)]]
    value = n.const(2, 0.0)
    return Spec((f"pad(x0, {num(sum(pairs, []))}, value={num(float(value))})",))


def _resize(n: Node) -> Spec:
    """Resize (or Upsample) by integer factors on the spatial axes, with the sampling of
    dualnet's upsample: nearest = x[i // s], bilinear = half-pixel (align_corners=False)."""
    x, mode = n.inputs[0], n.attr("mode", "nearest")
    require(n.op == "Upsample" or n.opset >= 11, "opset < 11 (scales as input 1)")
    require(mode in ("nearest", "linear"), f"mode: {mode}")
    scales = _resize_scales(n)
    require(all(s == 1 for s in scales[:2]), "resizes the batch or channel axis")
    require(
        all(float(s).is_integer() and s >= 1 for s in scales[2:]),
        "non-integer scales (upsample takes integer factors)",
    )
    for name in ("antialias", "exclude_outside"):
        require(not n.attr(name, 0), name)
    require(n.attr("keep_aspect_ratio_policy", "stretch") == "stretch", "keep_aspect_ratio_policy")
    coords = n.attr(
        "coordinate_transformation_mode", "asymmetric" if n.op == "Upsample" else "half_pixel"
    )
    rounding = n.attr("nearest_mode", "floor" if n.op == "Upsample" else "round_prefer_floor")
    factors = ints(s for s in scales[2:])
    if mode == "nearest":
        require(
            (coords, rounding) in _NEAREST_AS_FLOOR,
            f"nearest sampling other than x[i // s]: {coords}/{rounding}",
        )
        return Spec((f"upsample(x0, {factors})",))
    require(
        coords == "half_pixel" and x.ndim == 4,
        f"linear other than half-pixel 4-d (bilinear): {coords}, rank {x.ndim}",
    )
    return Spec((f'upsample(x0, {factors}, mode="bilinear")',))


# With integer factors these pick x[i // s]: half-pixel rounding lands strictly inside.
_NEAREST_AS_FLOOR = {
    ("asymmetric", "floor"),
    ("half_pixel", "round_prefer_floor"),
    ("half_pixel", "round_prefer_ceil"),
}


def _resize_scales(n: Node) -> list[float]:
    """Per-axis scales of Resize (from scales or sizes, over `axes`) or Upsample."""
    shape = n.inputs[0].shape
    if n.op == "Upsample":
        return list(n.const(1, n.attr("scales")))
    axes = [axis(a, len(shape)) for a in n.attr("axes", range(len(shape)))]
    scales = [1.0] * len(shape)
    given = n.const(2) or [s / shape[a] for s, a in zip(n.const(3), axes, strict=True)]
    for a, s in zip(axes, given, strict=True):
        scales[a] = s
    return scales


def _range(n: Node) -> Spec:
    start, _, delta = (n.const(i) for i in range(3))
    require(
        n.inputs[0].dtype == np.int64 and start == 0 and delta == 1,
        "not an i64 range from 0 by 1 (arange(n))",
    )
    return Spec((f"arange({n.const(1)})",))


def _slice(n: Node) -> Spec:
    """Constant starts/ends/axes/steps as x[a:b:s, ...] (getitem; positive steps)."""
    rank = n.rank()
    starts, ends = n.const(1), n.const(2)
    axes = [axis(a, rank) for a in n.const(3, list(range(len(starts))))]
    steps = n.const(4, [1] * len(starts))
    require(min(steps) > 0, "negative steps (getitem takes positive ones)")
    items = [":"] * rank
    for a, start, end, step in zip(axes, starts, ends, steps, strict=True):
        items[a] = f"{start}:{end}" + (f":{step}" if step != 1 else "")
    return Spec((f"x0[{', '.join(items)}]",))


def _gather(n: Node) -> Spec:
    """Gather along axis 0 = an Embedding whose table is the data input (rows flattened)."""
    data, ids = n.inputs
    require(axis(n.attr("axis", 0), data.ndim) == 0, "axis ≠ 0 (Embedding gathers rows)")
    require(data.dtype == np.float32, "a table that is not f32 (Embedding's is)")
    require(ids.min() >= 0, "negative indices (Embedding ids are 0..vocab-1)")
    table = data.reshape(len(data), -1)
    call = (
        "layer(x1)"
        if data.ndim == 2
        else f"reshape(layer(x1), {num([*ids.shape, *data.shape[1:]])})"
    )
    return layer(f"Embedding({table.shape[0]}, {table.shape[1]})", call, {"weight": table})


def _identity(n: Node) -> Spec:
    return layer("Identity()", "layer(x0)", {})


def _dropout(n: Node) -> Spec:
    n.only_outputs(1)
    require(not n.const(2, False), "training mode (a random mask)")
    p = n.const(1, n.attr("ratio", 0.5))
    return layer(f"Dropout({num(float(p))})", "layer(x0)", {})


# ---------------------------------------------------------------- windows


def _window(n: Node, kernel: list[int]) -> dict:
    """strides, dilations and .dnet padding of Conv/pooling, from pads or auto_pad. dualnet's
    padding is symmetric, or "same" (TensorFlow's rule = ONNX SAME_UPPER)."""
    spatial = n.inputs[0].shape[2:]
    strides = n.attr("strides", [1] * len(kernel))
    dilations = n.attr("dilations", [1] * len(kernel))
    same = [
        _same(x, k, s, d) for x, k, s, d in zip(spatial, kernel, strides, dilations, strict=True)
    ]
    auto = n.attr("auto_pad", "NOTSET")
    if auto == "SAME_UPPER":
        pairs = same
    elif auto == "SAME_LOWER":
        pairs = [(a, b) for b, a in same]
    elif auto == "VALID":
        pairs = [(0, 0)] * len(kernel)
    else:
        pads = n.attr("pads", [0] * 2 * len(kernel))
        pairs = list(zip(pads[: len(kernel)], pads[len(kernel) :], strict=True))
    if all(b == a for b, a in pairs):
        padding = ints(b for b, _ in pairs)
    else:
        require(pairs == same, "asymmetric pads other than SAME_UPPER's")
        padding = '"same"'
    return {"strides": strides, "dilations": dilations, "padding": padding, "pairs": pairs}


def _same(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def _conv(n: Node) -> Spec:
    w = n.inputs[1]
    dims = w.ndim - 2
    require(dims in (1, 2, 3), f"{dims}-d convolution")
    win = _window(n, list(w.shape[2:]))
    decl = (
        f"Conv{dims}d({w.shape[0]}, kernel={ints(w.shape[2:])}, "
        f"stride={ints(win['strides'])}, padding={win['padding']}, "
        f"dilation={ints(win['dilations'])}, groups={n.attr('group', 1)}, "
        f"bias={num(n.has(2))})"
    )
    return layer(decl, "layer(x0)", _conv_weights(n))


def _conv_weights(n: Node) -> dict:
    return {"weight": n.inputs[1], **({"bias": n.inputs[2]} if n.has(2) else {})}


def _conv_transpose(n: Node) -> Spec:
    x, w = n.inputs[:2]
    require(w.ndim == 4, f"{w.ndim - 2}-d transposed convolution")
    require(n.attr("auto_pad", "NOTSET") == "NOTSET", "auto_pad (crops one side only)")
    kernel, group = list(w.shape[2:]), n.attr("group", 1)
    strides = n.attr("strides", [1, 1])
    dilations = n.attr("dilations", [1, 1])
    pads = n.attr("pads", [0] * 4)
    require(pads[:2] == pads[2:], "asymmetric pads")
    extra = n.attr("output_padding", [0, 0])
    if n.attr("output_shape"):  # as output_padding: rows added at the end
        natural = [
            (i - 1) * s + (k - 1) * d + 1 - 2 * p
            for i, s, k, d, p in zip(x.shape[2:], strides, kernel, dilations, pads[:2], strict=True)
        ]
        extra = [o - m for o, m in zip(n.attr("output_shape"), natural, strict=True)]
        require(
            all(0 <= e < max(s, d) for e, s, d in zip(extra, strides, dilations, strict=True)),
            f"output_shape {n.attr('output_shape')} beyond output_padding",
        )
    decl = (
        f"ConvTranspose2d({w.shape[1] * group}, kernel={ints(kernel)}, "
        f"stride={ints(strides)}, padding={ints(pads[:2])}, "
        f"output_padding={ints(extra)}, dilation={ints(dilations)}, groups={group}, "
        f"bias={num(n.has(2))})"
    )
    return layer(decl, "layer(x0)", _conv_weights(n))


def _pool(kind: str) -> Callable[[Node], Spec]:
    def mapper(n: Node) -> Spec:
        n.only_outputs(1)
        kernel = n.attr("kernel_shape")
        require(len(kernel) in (1, 2), f"{len(kernel)}-d pooling")
        require(not n.attr("ceil_mode", 0), "ceil_mode")
        win = _window(n, kernel)
        require(set(win["dilations"]) == {1}, "dilations")
        require(
            all(2 * max(p) <= k for p, k in zip(win["pairs"], kernel, strict=True)),
            "pads over half the kernel (PyTorch's limit, kept by dualnet)",
        )
        args = f"{ints(kernel)}, stride={ints(win['strides'])}, padding={win['padding']}"
        if kind == "avg":
            args += f", count_include_pad={num(bool(n.attr('count_include_pad', 0)))}"
        return Spec((f"{kind}_pool{len(kernel)}d(x0, {args})",))

    return mapper


def _global_avg_pool(n: Node) -> Spec:
    shape = [*n.inputs[0].shape[:2], *([1] * (n.rank() - 2))]
    return Spec((f"reshape(global_avg_pool(x0), {num(shape)})",))


def _global_max_pool(n: Node) -> Spec:
    return Spec((f"max(x0, axis={ints(range(2, n.rank()))}, keepdims=true)",))


# ---------------------------------------------------------------- normalisation


def _batch_norm(n: Node) -> Spec:
    n.only_outputs(1)
    require(not n.attr("training_mode", 0), "training_mode (batch statistics as outputs)")
    names = ("weight", "bias", "running_mean", "running_var")
    weights = {k: n.inputs[i] for i, k in enumerate(names, 1)}
    return layer(f"BatchNorm(eps={num(n.attr('epsilon', 1e-5))})", "layer(x0)", weights)


def _layer_norm(n: Node) -> Spec:
    """Y only: dualnet's LayerNorm does not return Mean and InvStdDev (not compared)."""
    x = n.inputs[0]
    count = x.ndim - axis(n.attr("axis", -1), x.ndim)
    bias = n.inputs[2] if n.has(2) else np.zeros_like(n.inputs[1])
    return layer(
        f"LayerNorm(eps={num(n.attr('epsilon', 1e-5))}, axes={count})",
        "layer(x0)",
        {"weight": n.inputs[1], "bias": bias},
        partial=True,
    )


def _instance_norm(n: Node) -> Spec:
    """InstanceNormalization = GroupNorm with one group per channel."""
    decl = f"GroupNorm({n.inputs[0].shape[1]}, eps={num(n.attr('epsilon', 1e-5))})"
    return layer(decl, "layer(x0)", {"weight": n.inputs[1], "bias": n.inputs[2]})


def _group_norm(n: Node) -> Spec:
    require(n.opset >= 21, "opset < 21 (one scale per group, not per channel)")
    decl = f"GroupNorm({n.attr('num_groups')}, eps={num(n.attr('epsilon', 1e-5))})"
    return layer(decl, "layer(x0)", {"weight": n.inputs[1], "bias": n.inputs[2]})


# ---------------------------------------------------------------- recurrent

# ONNX gate blocks in PyTorch's order: LSTM iofc → ifgo, GRU zrh → rzn.
_GATES = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2]}


def _recurrent(n: Node) -> Spec:
    """LSTM/GRU with default activations and a zero initial state, as dualnet's batch-first
    layer (ONNX layout 0 is time-major: permuted in and out)."""
    hidden, dirs = n.attr("hidden_size"), 2 if n.attr("direction") == "bidirectional" else 1
    require(n.attr("direction", "forward") in ("forward", "bidirectional"), "direction reverse")
    require(
        n.op == "LSTM" or n.attr("linear_before_reset", 0),
        "linear_before_reset=0 (dualnet's GRU is PyTorch's: reset after the matmul)",
    )
    for name in ("activations", "clip", "input_forget"):
        require(not n.attr(name), name)
    require(not any(n.has(i) for i in range(4, 8)), "sequence_lens, initial state or peepholes")
    batch_first = bool(n.attr("layout", 0))
    x = n.inputs[0]
    b, t = x.shape[:2] if batch_first else x.shape[1::-1]
    states = "y, h, c" if n.op == "LSTM" else "y, h"
    seq = "x0" if batch_first else "permute(x0, [1, 0, 2])"
    y = f"reshape(y, [{b}, {t}, {dirs}, {hidden}])"
    per_output = {
        0: y if batch_first else f"permute({y}, [1, 2, 0, 3])",
        1: "permute(h, [1, 0, 2])" if batch_first else "h",
        2: "permute(c, [1, 0, 2])" if batch_first else "c",
    }
    results = tuple(per_output[i] for i, name in enumerate(n.outputs) if name)
    decl = f"{n.op}({hidden}, bidirectional={num(dirs == 2)})"
    return layer(
        decl, results, _recurrent_weights(n, dirs), (f"{states} = layer({seq}, state=true)",)
    )


def _recurrent_weights(n: Node, dirs: int) -> dict:
    gates, order = len(_GATES[n.op]), _GATES[n.op]
    w, r = n.inputs[1], n.inputs[2]
    rows = w.shape[1]
    b = n.inputs[3] if n.has(3) else np.zeros((dirs, 2 * rows), w.dtype)

    def reorder(m):
        return np.concatenate([np.split(m, gates)[g] for g in order])

    weights = {}
    for d in range(dirs):
        suffix = "_l0_reverse" if d else "_l0"
        weights |= {
            f"weight_ih{suffix}": reorder(w[d]),
            f"weight_hh{suffix}": reorder(r[d]),
            f"bias_ih{suffix}": reorder(b[d, :rows]),
            f"bias_hh{suffix}": reorder(b[d, rows:]),
        }
    return weights


# ---------------------------------------------------------------- attention


def _attention(n: Node) -> Spec:
    """ONNX Attention = scaled_dot_product_attention when the heads match, the scale is
    1/√d, and the mask (if any) is boolean; 3-d inputs are split into heads around it."""
    q, k, v = n.inputs[:3]
    n.only_outputs(1)
    for name in ("scale", "softcap", "qk_matmul_output_mode", "softmax_precision"):
        require(not n.attr(name), name)
    for name in ("left_window_size", "right_window_size"):
        require(n.attr(name, -1) == -1, name)
    require(not any(n.has(i) for i in range(4, 7)), "past key/value or nonpad_kv_seqlen")
    require(
        not n.has(3) or n.inputs[3].dtype == np.bool_,
        "additive (float) mask (dualnet masks are bool)",
    )
    mask = ", mask=x3" if n.has(3) else ""
    causal = ", causal=true" if n.attr("is_causal", 0) else ""
    if q.ndim == 4:
        require(q.shape[1] == k.shape[1], "grouped-query heads")
        return Spec((f"scaled_dot_product_attention(x0, x1, x2{mask}{causal})",))
    heads = n.attr("q_num_heads")
    require(heads == n.attr("kv_num_heads"), "grouped-query heads")
    lines = tuple(
        f"{name} = permute(reshape(x{i}, [{t.shape[0]}, {t.shape[1]}, {heads}, "
        f"{t.shape[2] // heads}]), [0, 2, 1, 3])"
        for i, (name, t) in enumerate(zip("qkv", (q, k, v), strict=True))
    )
    lines += (f"a = scaled_dot_product_attention(q, k, v{mask}{causal})",)
    return Spec(
        (f"reshape(permute(a, [0, 2, 1, 3]), [{q.shape[0]}, {q.shape[1]}, {v.shape[2]}])",), lines
    )


# ---------------------------------------------------------------- the mapping


MAPPERS: dict[str, Callable[[Node], Spec]] = {
    **{op: _unary(fn) for op, fn in _UNARY.items()},
    **{op: _binary(op) for op in _BINARY},
    "Sum": _sum,
    "Elu": _elu,
    "LeakyRelu": _leaky_relu,
    "Gelu": _gelu,
    "Swish": _swish,
    "Clip": _clip,
    "Where": _where,
    "Cast": _cast,
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Softmax": _softmax("softmax"),
    "LogSoftmax": _softmax("log_softmax"),
    "ReduceMean": _reduce("mean"),
    "ReduceSum": _reduce("sum"),
    "ReduceMax": _reduce("max"),
    "ReduceMin": _reduce("min"),
    "ArgMax": _arg("argmax"),
    "ArgMin": _arg("argmin"),
    "Concat": _concat,
    "Split": _split,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Pad": _pad,
    "Resize": _resize,
    "Upsample": _resize,
    "Range": _range,
    "Slice": _slice,
    "Gather": _gather,
    "Identity": _identity,
    "Dropout": _dropout,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": _global_avg_pool,
    "GlobalMaxPool": _global_max_pool,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "InstanceNormalization": _instance_norm,
    "GroupNormalization": _group_norm,
    "LSTM": _recurrent,
    "GRU": _recurrent,
    "Attention": _attention,
}


# ---------------------------------------------------------------- the coverage table


def _reasons(cases: list[Case]) -> str:
    """Why cases were not matched: 'reason (count)', details after ':' merged per reason."""
    grouped: dict[str, list[str]] = {}
    for case in cases:
        key, _, detail = case.reason.partition(": ")
        grouped.setdefault(key, []).append(detail)
    parts = []
    for key, details in grouped.items():
        shown = sorted({d for text in details for d in text.split(", ") if d})
        parts.append(f"{key}{': ' + ', '.join(shown) if shown else ''} ({len(details)})")
    return "; ".join(parts)


def coverage_table(passing: dict[str, set[str]]) -> str:
    """Per op: ONNX cases, matched, passing per backend; then the cases used and the
    reasons for the rest. `passing`: backend → names of the cases that pass there."""
    cases = all_cases()
    ops = sorted({c.op for c in cases})
    head = f"{'op':<22}{'cases':>6}{'matched':>8}" + "".join(f"{b:>7}" for b in BACKENDS)
    lines = [
        f"ONNX node conformance: {len(cases)} single-node cases of {len(ops)} ops with a "
        f"dualnet counterpart",
        head,
        "-" * len(head),
    ]
    for op in ops:
        mine = [c for c in cases if c.op == op]
        used = [c for c in mine if c.spec is not None]
        counts = "".join(f"{sum(c.name in passing[b] for c in used):>7}" for b in BACKENDS)
        lines.append(f"{op:<22}{len(mine):>6}{len(used):>8}{counts}")
        if used:
            lines.append("    used: " + ", ".join(c.name.removeprefix("test_") for c in used))
        if len(used) < len(mine):
            lines.append("    not matched: " + _reasons([c for c in mine if c.spec is None]))
    matched = [c for c in cases if c.spec is not None]
    totals = "".join(f"{len(passing[b]):>7}" for b in BACKENDS)
    lines += ["-" * len(head), f"{'total':<22}{len(cases):>6}{len(matched):>8}{totals}"]
    return "\n".join(lines)

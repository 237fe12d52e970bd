"""The ONNX lowering table: for every registry op, a graph of the op's ONNX nodes (graph inputs
from the case's arrays, with `dim_param`s where the case is symbolic; a layer's parameters as
initializers named like state_dict entries) passes onnx.checker's full check and, run by ONNX
Runtime, equals the op's NumPy reference — at the op's MIN_OPSET, at 17 (the emitter's
default) and at NEWEST_OPSET."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from lowering_cases import (
    CASES,
    ENV,
    LAYER,
    LAYER_CASES,
    RNG,
    B,
    Case,
    H,
    T,
    W,
    assert_one_row_per_op,
    attention_mask,
    case_id,
    mask_with_empty_row,
    onnx_nodes,
    randn,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import helper, numpy_helper  # noqa: E402

from dualnet.backends.onnx.lowering import (  # noqa: E402
    NEWEST_OPSET,
    ONNX_TYPES,
    OpsetTooOld,
)
from dualnet.backends.rows import OnnxRow, lowering_row  # noqa: E402
from dualnet.ir.dims import sym  # noqa: E402
from dualnet.ir.tagged import Tagged, written  # noqa: E402
from dualnet.ir.types import DType, TensorType  # noqa: E402
from dualnet.ops import REGISTRY  # noqa: E402

DEFAULT_OPSET = 17

# ---------------------------------------------------------------- the harness


def _value_info(name: str, t: TensorType):
    dims = [d if isinstance(d, int) else str(d) for d in t.shape]
    return helper.make_tensor_value_info(name, ONNX_TYPES[t.dtype], dims)


def build(case: Case, opset: int):
    """(model, feeds, bound case, layer parameters as arrays) of one case."""
    g = onnx_nodes(case, opset)
    graph = helper.make_graph(
        g.builder.nodes,
        case.op,
        [_value_info(n, t) for n, t in {**g.inputs, **g.sizes.extra}.items()],
        [_value_info(n, t) for n, t in zip(g.outputs, g.bound.out_types, strict=True)],
        [numpy_helper.from_array(a, n) for n, a in g.builder.initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    inputs = g.inputs
    feeds = {**{n: a for n, a in g.bound.named.items() if n in inputs}, **g.sizes.feeds}
    return model, feeds, g.bound, g.arrays


_OPTIONS = ort.SessionOptions()
_OPTIONS.intra_op_num_threads = 1
_OPTIONS.log_severity_level = 3
# float64 results as precise as float32: rows computed in float32 (ONNX Runtime has no
# float64 kernel), ONNX Runtime's float64 Gelu, and attention (its MatMul-scale fusion keeps
# the scale as a float32 attribute)
_F32_PRECISE = {
    "elu",
    "erf",
    "mish",
    "softplus",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "upsample",
    "gelu",
    "scaled_dot_product_attention",
}


def _tolerance(case: Case, dtype: np.dtype) -> float:
    if dtype != np.float64:
        return case.tol
    return 1e-6 if case.op in _F32_PRECISE else 1e-10


def check(case: Case, opset: int) -> None:
    model, feeds, bound, params = build(case, opset)
    onnx.checker.check_model(model, full_check=True)
    used = {name for node in model.graph.node for name in node.input}
    assert {i.name for i in model.graph.initializer if not i.name.startswith(LAYER)} <= used
    session = ort.InferenceSession(
        model.SerializeToString(), _OPTIONS, providers=["CPUExecutionProvider"]
    )
    results = session.run(None, feeds)
    expected = bound.reference(params)
    assert len(results) == len(expected)
    for actual, e in zip(results, expected, strict=True):
        e = np.asarray(e)
        assert actual.dtype == e.dtype, (actual.dtype, e.dtype)
        assert actual.shape == e.shape, (actual.shape, e.shape)
        if e.dtype.kind in "biu":
            np.testing.assert_array_equal(actual, e)
        else:
            tol = _tolerance(case, e.dtype)
            np.testing.assert_allclose(actual, e, rtol=tol, atol=tol)


# ---------------------------------------------------------------- ONNX-specific cases


def _onnx_cases() -> list:
    """Paths the shared cases leave out: float64 rows ONNX Runtime computes in float32, a
    bool `where`, integer matmul and clamp, adaptive pooling that keeps one axis, symbolic
    sizes through reshapes, splits, slices, norms, recurrent layers and attention, and
    "same" padding that ONNX Runtime's SAME_UPPER gets wrong."""
    c = []
    add = c.append
    x64 = randn(2, 3, 7, 9, dtype=np.float64)
    add(Case("elu", {"x": x64}))
    add(Case("softplus", {"x": x64 * 30}, beta=2.0))
    add(Case("gelu", {"x": x64[0]}))
    add(Case("avg_pool2d", {"x": x64}, kernel=3, stride=2, padding=1, count_include_pad=False))
    add(Case("upsample", {"x": x64}, scale=(2, 3)))
    add(
        Case(
            "where",
            {
                "cond": RNG.random((3, 4)) < 0.5,
                "a": RNG.random((3, 4)) < 0.5,
                "b": np.array([True, False, True, False]),
            },
        )
    )
    add(
        Case(
            "matmul",
            {
                "a": np.arange(12, dtype=np.int32).reshape(3, 4),
                "b": np.arange(8, dtype=np.int32).reshape(4, 2),
            },
        )
    )
    add(Case("clamp", {"x": np.arange(-5, 6, dtype=np.int64)}, hi=-1.5))
    add(Case("adaptive_avg_pool2d", {"x": randn(2, 3, 7, 5)}, size=(7, 1)))
    bt = {"types": {"x": TensorType(DType.f32, (B, T, 12))}, "env": ENV}
    add(Case("flatten", {"x": randn(2, 5, 12)}, **bt))
    add(Case("flatten", {"x": randn(2, 5, 12)}, **bt, start=0))
    add(Case("split", {"x": randn(2, 5, 12)}, **bt, n=3, axis=-1))
    add(Case("getitem", {"x": randn(2, 5, 12)}, **bt, items=(slice(None), slice(-2, None), 3)))
    add(Case("Linear", {"x": randn(2, 5, 12)}, {"out": 4}, **bt))
    add(Case("LayerNorm", {"x": randn(2, 5, 12)}, **bt))
    add(
        Case(
            "GroupNorm",
            {"x": randn(2, 6, 9, 8)},
            {"groups": 2},
            types={"x": TensorType(DType.f32, (B, 6, H, W))},
            env=ENV,
        )
    )
    for kind in ("LSTM", "GRU"):
        add(
            Case(
                kind,
                {"x": randn(2, 5, 12)},
                {"hidden": 3, "layers": 2, "bidirectional": True},
                param_scale=0.5,
                state=True,
                **bt,
            )
        )
    q = randn(2, 5, 12)
    qkv = {n: TensorType(DType.f32, (B, T, 12)) for n in "qkv"}
    add(
        Case(
            "MultiHeadAttention",
            {"q": q, "k": q, "v": q, "mask": attention_mask((2, 5))},
            {"dim": 12, "heads": 3},
            param_scale=0.3,
            causal=True,
            env=ENV,
            types={**qkv, "mask": TensorType(DType.bool, (B, T))},
        )
    )
    add(
        Case(
            "scaled_dot_product_attention",
            {"q": q, "k": q, "v": q, "mask": mask_with_empty_row((2, 5, 5), (1, 3))},
            causal=True,
            env=ENV,
            types={**qkv, "mask": TensorType(DType.bool, (B, T, T))},
        )
    )
    # "same" on symbolic sizes where ONNX Runtime's SAME_UPPER is not TensorFlow's rule
    # (dilation; a window shorter than the stride): pads computed at run time
    xs, bchw = randn(2, 3, 9, 8), {"x": TensorType(DType.f32, (B, 3, H, W))}
    for kernel, stride, dilation in ((2, 2, 2), (2, 4, 2), (1, 2, 1), (2, 3, 1)):
        add(
            Case(
                "Conv2d",
                {"x": xs},
                {
                    "out": 4,
                    "kernel": kernel,
                    "stride": stride,
                    "padding": "same",
                    "dilation": dilation,
                },
                types=bchw,
                env=ENV,
            )
        )
    for kernel, stride in ((1, 2), (2, 3), (3, 4)):
        add(
            Case(
                "max_pool2d",
                {"x": xs},
                types=bchw,
                env=ENV,
                kernel=kernel,
                stride=stride,
                padding="same",
            )
        )
        for include in (True, False):
            add(
                Case(
                    "avg_pool2d",
                    {"x": xs},
                    types=bchw,
                    env=ENV,
                    kernel=kernel,
                    stride=stride,
                    padding="same",
                    count_include_pad=include,
                )
            )
    add(
        Case(
            "avg_pool1d",
            {"x": randn(2, 3, 5, dtype=np.float64)},
            types={"x": TensorType(DType.f64, (B, 3, T))},
            env=ENV,
            kernel=2,
            stride=4,
            padding="same",
            count_include_pad=False,
        )
    )
    return c


ONNX_CASES = _onnx_cases()
ALL_CASES = CASES + LAYER_CASES + ONNX_CASES


def _min_opset(op: str) -> int:
    return lowering_row(op, "onnx").min_opset


def _opsets(op: str) -> list[int]:
    return sorted({_min_opset(op), DEFAULT_OPSET, NEWEST_OPSET})


RUNS = [
    pytest.param(case, opset, id=f"{case_id(case)}-opset{opset}")
    for case in ALL_CASES
    for opset in _opsets(case.op)
]


@pytest.mark.parametrize(("case", "opset"), RUNS)
def test_op_matches_reference(case, opset):
    check(case, opset)


# ---------------------------------------------------------------- the table


def test_table_covers_every_op_once():
    assert_one_row_per_op("onnx", OnnxRow, OnnxRow)


def test_every_op_has_a_case():
    assert {case.op for case in ALL_CASES} == set(REGISTRY)


def test_an_onnx_row_states_its_minimum_opset():
    """A row has no default minimum to forget: leaving it out, or claiming an opset older
    than the emitter's, fails where the row is written."""
    with pytest.raises(TypeError, match="min_opset"):
        OnnxRow(lambda call: [])
    with pytest.raises(ValueError, match="min_opset"):
        OnnxRow(lambda call: [], min_opset=12)


def test_minimum_opsets():
    assert all(13 <= _min_opset(op) <= DEFAULT_OPSET for op in REGISTRY)
    assert _min_opset("LayerNorm") == 17
    first = {}
    for case in ALL_CASES:
        first.setdefault(case.op, case)
    for op, case in first.items():
        with pytest.raises(
            OpsetTooOld, match=f"^{op} needs ONNX opset {_min_opset(op)} or newer$"
        ) as info:
            build(case, _min_opset(op) - 1)
        assert (info.value.op, info.value.minimum) == (op, _min_opset(op))


def test_checking_never_imports_a_framework():
    code = (
        "import sys, dualnet.backends.onnx.lowering; "
        "sys.exit(bool({'torch', 'tensorflow', 'keras'} & set(sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- the graphs


def _op_types(case: Case, opset: int = DEFAULT_OPSET) -> list[str]:
    return [node.op_type for node in build(case, opset)[0].graph.node]


def test_opset_dependent_nodes():
    x = randn(2, 3, 4)
    assert "Gelu" not in _op_types(Case("gelu", {"x": x}), 17)
    assert _op_types(Case("gelu", {"x": x}), 20) == ["Gelu"]
    mean = Case("mean", {"x": x}, axis=1)
    assert [a.name for a in build(mean, 17)[0].graph.node[0].attribute] == ["axes", "keepdims"]
    assert list(build(mean, 18)[0].graph.node[0].input)[1:] == ["mean/axes"]


def test_idiomatic_nodes():
    x = randn(2, 3, 8, 8)
    assert _op_types(Case("Conv2d", {"x": x}, {"out": 4, "kernel": 3})) == ["Conv"]
    assert _op_types(Case("Linear", {"x": randn(4, 7)}, {"out": 3})) == ["Gemm"]
    assert _op_types(Case("BatchNorm", {"x": x})) == ["BatchNormalization"]
    assert _op_types(Case("flatten", {"x": x})) == ["Flatten"]
    assert _op_types(Case("Dropout", {"x": x}, {"p": 0.3})) == ["Identity"]
    lstm = _op_types(
        Case("LSTM", {"x": randn(2, 5, 3)}, {"hidden": 4, "layers": 2, "bidirectional": True})
    )
    assert lstm.count("LSTM") == 2
    model = build(
        Case("Conv2d", {"x": x}, {"out": 4, "kernel": 3, "stride": 2, "padding": "same"}),
        DEFAULT_OPSET,
    )[0]
    conv = model.graph.node[0]
    assert list(conv.input) == ["x", "layer.weight", "layer.bias"]
    pads = next(a for a in conv.attribute if a.name == "pads")
    assert helper.get_attribute_value(pads) == [0, 0, 1, 1]  # the odd pixel at the end


def test_tagged_sizes_and_written_arguments():
    """Attributes the checker keeps as expressions (a Tagged size, a Written argument) are
    written as the plain values they hold."""
    x = randn(2, 3, 8, 8)
    check(
        Case(
            "avg_pool2d",
            {"x": x},
            kernel=Tagged(3, sym("k")),
            stride=2,
            count_include_pad=written(False, "include"),
        ),
        DEFAULT_OPSET,
    )
    check(Case("gelu", {"x": x}, approximate=written("tanh", "mode")), NEWEST_OPSET)
    check(Case("leaky_relu", {"x": x}, slope=written(0.2, "slope")), DEFAULT_OPSET)
    check(
        Case(
            "Conv2d",
            {"x": x},
            {"out": Tagged(4, sym("c")), "kernel": Tagged(3, sym("k")), "padding": "same"},
        ),
        DEFAULT_OPSET,
    )

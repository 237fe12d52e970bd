"""The Keras lowering table: for every registry op, the generated expression, executed with
Keras 3 on TensorFlow (and the runtime helpers it names), equals the op's NumPy reference.
Spatial ops run channels-last; layers are built from their constructor expression, given the
reference's parameters through `weights.to_keras`, and run in inference mode."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402
from lowering_cases import (  # noqa: E402
    CASES,
    ENV,
    LAYER_CASES,
    Case,
    H,
    W,
    assert_one_row_per_op,
    bind,
    case_id,
    fmt,
    one_tensor,
    positive,
    python_sources,
    randn,
)

from dualnet.backends.keras.layout import SPATIAL_OPS  # noqa: E402
from dualnet.backends.keras.lowering import (  # noqa: E402
    HELPERS,
    TRAINING,
    KerasCall,
    KerasLayerRule,
    helpers_needed,
)
from dualnet.backends.keras.weights import keras_layer, to_keras  # noqa: E402
from dualnet.backends.rows import FunctionRow, lowering_row  # noqa: E402
from dualnet.ir.dims import sym  # noqa: E402
from dualnet.ir.tagged import Tagged, Written, written  # noqa: E402
from dualnet.ir.types import DType, TensorType  # noqa: E402
from dualnet.ops import REGISTRY  # noqa: E402
from dualnet.ops.registry import run_rule  # noqa: E402

# ---------------------------------------------------------------- the harness


def lower_function(op: str, call: KerasCall) -> str:
    return lowering_row(op, "keras", layer=False).lower(call)


def _row(op: str) -> KerasLayerRule:
    return lowering_row(op, "keras", layer=True)


def _trains(case) -> bool:
    """Whether the op's rule says it computes differently in training, with the case's
    attributes."""
    return REGISTRY[case.op].is_layer and _row(case.op).trains({**case.config, **case.attrs})


def _to_keras_layout(op: str, a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, 1, -1) if op in SPATIAL_OPS and a.ndim > 2 else a


def _to_dualnet_layout(op: str, a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, -1, 1) if op in SPATIAL_OPS and a.ndim > 2 else a


def _prepared(case: Case, hide_in_types: bool = False):
    """(bound case, constructor source, call source, namespace with the inputs and the built
    layer holding the case's parameters, the parameters); `training` is False."""
    bound, construct, src = python_sources(case, "keras", hide_in_types)
    ns = {"keras": keras, "ops": ops, TRAINING: False, **case.env}
    ns.update(
        {
            name: ops.convert_to_tensor(_to_keras_layout(case.op, a))
            for name, a in bound.named.items()
        }
    )
    for name in helpers_needed(construct + "\n" + src):
        exec(HELPERS[name], ns)
    params = {}
    if construct:
        layer = ns["layer"] = eval(construct, ns)
        eval(src, ns)  # builds the layer from its input shapes
        params = bound.params()  # set_weights checks the count and shapes
        layer.set_weights(to_keras(case.op, bound.ctx.config, params) if params else [])
    return bound, construct, src, ns, params


def lower_and_run(case: Case, hide_in_types: bool = False):
    """Returns (generated sources, Keras results in dualnet's layout, reference results)."""
    bound, construct, src, ns, params = _prepared(case, hide_in_types)
    result = eval(src, ns)
    results = list(result) if isinstance(result, tuple | list) else [result]
    actual = [_to_dualnet_layout(case.op, ops.convert_to_numpy(r)) for r in results]
    expected = bound.reference(params)
    assert len(actual) == len(expected) == len(bound.out_types), src
    return (construct, src), actual, expected


def _f64_tol(case: Case) -> float:
    if case.op == "upsample" and case.attrs.get("mode") == "bilinear":
        return 1e-6  # TensorFlow's resize computes in float32, also for f64
    if case.op == "gelu":
        return 1e-7  # TensorFlow's float64 gelu is accurate to about 5e-9
    return 1e-10


def check(case: Case, hide_in_types: bool = False):
    sources, results, expected = lower_and_run(case, hide_in_types)
    for actual, e in zip(results, expected, strict=True):
        e = np.asarray(e)
        assert actual.dtype == e.dtype, (sources, actual.dtype, e.dtype)
        assert actual.shape == e.shape, (sources, actual.shape, e.shape)
        if e.dtype.kind in "biu":
            np.testing.assert_array_equal(actual, e, err_msg=str(sources))
        else:
            tol = case.tol if e.dtype != np.float64 else _f64_tol(case)
            np.testing.assert_allclose(actual, e, rtol=tol, atol=tol, err_msg=str(sources))
    return sources


# ---------------------------------------------------------------- Keras-specific cases


def _keras_cases() -> list:
    """Paths the shared cases leave out: Keras's "same" at stride 1, identity and divisible
    adaptive pooling, integer matmul, transposed convolutions whose size Keras would infer
    differently, depthwise convolutions."""
    c = []
    add = c.append
    x, xo = randn(2, 3, 8, 8), randn(2, 3, 7, 9)
    add(Case("max_pool2d", {"x": xo}, kernel=3, stride=1, padding=1))
    add(Case("max_pool1d", {"x": randn(2, 3, 10)}, kernel=2, stride=1, padding="same"))
    for include in (True, False):
        add(Case("avg_pool2d", {"x": xo}, kernel=3, stride=1, padding=1, count_include_pad=include))
        add(
            Case(
                "avg_pool1d",
                {"x": randn(2, 3, 10)},
                kernel=2,
                stride=1,
                padding="same",
                count_include_pad=include,
            )
        )
    add(Case("adaptive_avg_pool2d", {"x": randn(2, 3, 6, 6)}, size=3))
    add(Case("adaptive_avg_pool2d", {"x": randn(2, 3, 7, 5)}, size=(7, 5)))
    add(Case("adaptive_avg_pool2d", {"x": randn(2, 3, 7, 5)}, size=(1, 5)))
    add(
        Case(
            "adaptive_avg_pool2d",
            {"x": randn(2, 3, 9, 8)},
            types={"x": TensorType(DType.f32, (sym("B"), 3, H, W))},
            env=ENV,
            size=(H, W),
        )
    )
    add(Case("upsample", {"x": randn(2, 3, 4, 5)}, scale=(1, 2)))
    add(
        Case(
            "matmul",
            {
                "a": np.arange(12, dtype=np.int32).reshape(3, 4),
                "b": np.arange(8, dtype=np.int32).reshape(4, 2),
            },
        )
    )
    add(Case("softplus", {"x": randn(3, 4, dtype=np.float64) * 30}))
    add(Case("clamp", {"x": np.arange(-5, 6, dtype=np.int64)}, hi=-1.5))
    add(Case("neg", {"x": np.arange(4, dtype=np.int32)}))
    add(Case("Conv2d", {"x": x}, {"out": 4, "kernel": 3, "padding": 1}))
    add(Case("Conv2d", {"x": x}, {"out": 4, "kernel": 3, "stride": 2, "padding": 1}))
    add(Case("Conv2d", {"x": x}, {"out": 4, "kernel": 1, "bias": False}))
    add(
        Case(
            "Conv2d", {"x": x}, {"out": 6, "kernel": 3, "stride": 2, "padding": "same", "groups": 3}
        )
    )
    add(
        Case(
            "Conv1d",
            {"x": randn(2, 4, 11)},
            {"out": 8, "kernel": 3, "groups": 4, "padding": 2, "dilation": 2},
        )
    )
    add(Case("ConvTranspose2d", {"x": randn(2, 4, 5, 6)}, {"out": 3, "kernel": 2, "stride": 3}))
    add(
        Case(
            "ConvTranspose2d",
            {"x": randn(2, 4, 5, 6)},
            {"out": 3, "kernel": 4, "stride": 2, "padding": 1},
        )
    )
    add(
        Case(
            "ConvTranspose2d",
            {"x": randn(2, 2, 5, 4)},
            {"out": 4, "kernel": 2, "dilation": 3, "output_padding": (2, 1), "padding": 1},
        )
    )
    # groups of two values: float32 rounding is divided by their (possibly small) spread
    add(Case("GroupNorm", {"x": randn(4, 6)}, {"groups": 3}, tol=1e-4))
    add(Case("reshape", {"x": randn(1, 1)}, dims=()))
    add(
        Case(
            "GRU",
            {"x": randn(2, 5, 3)},
            {"hidden": 4, "bidirectional": True},
            param_scale=0.5,
            state=True,
        )
    )
    add(
        Case("LSTM", {"x": randn(2, 5, 3)}, {"hidden": 4, "layers": 3}, param_scale=0.5, state=True)
    )
    return c


KERAS_CASES = _keras_cases()
FUNCTION_CASES = CASES + [c for c in KERAS_CASES if not REGISTRY[c.op].is_layer]
ALL_LAYER_CASES = LAYER_CASES + [c for c in KERAS_CASES if REGISTRY[c.op].is_layer]


@pytest.mark.parametrize("case", FUNCTION_CASES, ids=case_id)
def test_function_matches_reference(case):
    check(case)


@pytest.mark.parametrize("case", [c for c in FUNCTION_CASES if one_tensor(c)], ids=case_id)
def test_function_without_input_types(case):
    """The emitter lowers a function child of a Sequential knowing only the result types."""
    check(case, hide_in_types=True)


@pytest.mark.parametrize("case", ALL_LAYER_CASES, ids=case_id)
def test_layer_matches_reference(case):
    check(case)


# ---------------------------------------------------------------- the table


class _TrainingContext(keras.layers.Layer):
    """Runs `run()` inside a Keras call made with `training`: the mode Keras passes on to
    every layer called without an explicit `training`."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def call(self, unused, training=None):
        return self.run()


def _results(out) -> list[np.ndarray]:
    return [ops.convert_to_numpy(t) for t in (out if isinstance(out, tuple | list) else [out])]


def _differ(a: list, b: list) -> bool:
    return any(not np.allclose(x, y, rtol=1e-6, atol=1e-6) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("case", ALL_LAYER_CASES, ids=case_id)
def test_layers_that_train_differently_are_given_training(case):
    """A layer whose results depend on Keras's training mode (BatchNorm, Dropout, and any
    layer added later) is called with the generated `call`'s `training` argument, so it
    trains in `fit()` however it is reached; a layer that does not depend on it is not."""
    _, _, src, ns, _ = _prepared(case)
    inference = _results(eval(src, ns))  # (first: a training call moves BatchNorm's state)
    ns[TRAINING] = True
    threaded = _differ(_results(eval(src, ns)), inference)
    context = _TrainingContext(lambda: eval(src, ns))
    trains = _differ(_results(context(ops.zeros(()), training=True)), inference)
    assert trains == threaded == (f"{TRAINING}={TRAINING}" in src) == _trains(case), src


def test_table_covers_every_op_once():
    assert_one_row_per_op("keras", KerasLayerRule, FunctionRow)


def test_every_op_has_a_case():
    assert {case.op for case in FUNCTION_CASES + ALL_LAYER_CASES} == set(REGISTRY)


def test_spatial_ops_are_registry_ops():
    assert SPATIAL_OPS <= set(REGISTRY)
    assert {"Conv2d", "BatchNorm", "upsample", "global_avg_pool"} <= SPATIAL_OPS
    assert not {"LayerNorm", "Linear", "pad", "flatten"} & SPATIAL_OPS


def test_lower_function_refuses_layers():
    with pytest.raises(KeyError, match="`Conv2d` is a layer, not a function"):
        lower_function("Conv2d", None)


def test_checking_never_imports_keras():
    code = (
        "import sys, dualnet.backends.keras.lowering, dualnet.backends.keras.emit; "
        "sys.exit(bool({'keras', 'tensorflow', 'torch'} & set(sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- generated source


_TORCH_INIT = r"_Torch\w*Init\((?:[^()]|\([^()]*\))*\)"  # one level of brackets inside


def _source(op, inputs, config=None, **attrs):
    """(constructor without its initializers, call) of one case."""
    construct, call = python_sources(Case(op, inputs, config, **attrs), "keras")[1:]
    return re.sub(rf", \w+_initializer={_TORCH_INIT}", "", construct), call


def test_readable_sources():
    x = randn(2, 3, 8, 8)
    assert _source(
        "Conv2d",
        {"x": randn(1, 3, 16, 16)},
        {"out": 64, "kernel": 7, "stride": 2, "padding": 3, "bias": False},
    ) == (
        "keras.layers.Conv2D(64, 7, strides=2, use_bias=False)",
        "layer(ops.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0))))",
    )
    assert _source("Conv2d", {"x": x}, {"out": 64, "kernel": 3, "padding": 1, "bias": False}) == (
        "keras.layers.Conv2D(64, 3, padding='same', use_bias=False)",
        "layer(x)",
    )
    assert _source("Conv2d", {"x": x}, {"out": 4, "kernel": 3, "stride": 2, "padding": "same"}) == (
        "keras.layers.Conv2D(4, 3, strides=2, padding='same')",
        "layer(x)",
    )
    assert (
        _source("Conv2d", {"x": x}, {"out": 6, "kernel": 3, "groups": 3})[0]
        == "keras.layers.DepthwiseConv2D(3, depth_multiplier=2)"
    )
    assert _source(
        "ConvTranspose2d", {"x": x}, {"out": 4, "kernel": 4, "stride": 2, "padding": 1}
    ) == ("keras.layers.Conv2DTranspose(4, 4, strides=2)", "layer(x)[:, 1:-1, 1:-1]")
    assert (
        _source("ConvTranspose2d", {"x": x}, {"out": 4, "kernel": 2, "stride": 3})[0]
        == "keras.layers.Conv2DTranspose(4, 2, strides=3, output_padding=0)"
    )
    assert _source("BatchNorm", {"x": x})[0] == "_BatchNorm(axis=-1, epsilon=1e-05, momentum=0.9)"
    assert (
        _source("BatchNorm", {"x": x}, {"momentum": 0.7})[0]
        == "_BatchNorm(axis=-1, epsilon=1e-05, momentum=0.3)"
    )
    assert (
        _source("LayerNorm", {"x": randn(2, 5, 6)})[0]
        == "keras.layers.LayerNormalization(epsilon=1e-05)"
    )
    assert (
        _source("GroupNorm", {"x": x}, {"groups": 3})[0]
        == "keras.layers.GroupNormalization(3, epsilon=1e-05)"
    )
    assert _source("Linear", {"x": randn(2, 7)}, {"out": 3}) == (
        "keras.layers.Dense(3)",
        "layer(x)",
    )
    assert _source("Dropout", {"x": x}, {"p": 0.1}) == (
        "keras.layers.Dropout(0.1)",
        "layer(x, training=training)",
    )
    assert _source("BatchNorm", {"x": x})[1] == "layer(x, training=training)"
    assert _source(
        "LSTM", {"x": randn(2, 5, 3)}, {"hidden": 4, "layers": 2, "bidirectional": True}, state=True
    ) == ("_Recurrent('LSTM', 4, num_layers=2, bidirectional=True)", "layer(x, state=True)")
    assert _source("GRU", {"x": randn(2, 5, 3)}, {"hidden": 4}) == (
        "_Recurrent('GRU', 4)",
        "layer(x)",
    )
    q = randn(2, 4, 8)
    assert _source(
        "MultiHeadAttention", {"q": q, "k": q, "v": q}, {"dim": 8, "heads": 2}, causal=True
    ) == ("_MultiHeadAttention(num_heads=2, key_dim=4)", "layer(q, v, key=k, use_causal_mask=True)")
    assert (
        _source("max_pool2d", {"x": x}, kernel=3, stride=2, padding=1)[1]
        == 'ops.max_pool(ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=float("-inf")), 3, strides=2)'  # noqa: E501
    )
    assert _source("max_pool2d", {"x": x}, kernel=2)[1] == "ops.max_pool(x, 2)"
    assert (
        _source("avg_pool2d", {"x": x}, kernel=3, stride=1, padding=1, count_include_pad=False)[1]
        == "ops.average_pool(x, 3, strides=1, padding='same')"
    )
    assert _source("global_avg_pool", {"x": x})[1] == "ops.mean(x, axis=(1, 2))"
    assert (
        _source("adaptive_avg_pool2d", {"x": x}, size=1)[1]
        == "ops.mean(x, axis=(1, 2), keepdims=True)"
    )
    assert (
        _source("upsample", {"x": x}, scale=2)[1]
        == "ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)"
    )
    assert (
        _source("pad", {"x": x}, pads=(1, 2, 3, 4))[1]
        == "ops.pad(x, ((0, 0), (0, 0), (1, 2), (3, 4)))"
    )
    assert (
        _source("sum", {"x": x}, axis=(2, 3), keepdims=True)[1]
        == "ops.sum(x, axis=(2, 3), keepdims=True)"
    )
    assert _source("argmax", {"x": x}, axis=1)[1] == 'ops.cast(ops.argmax(x, axis=1), "int64")'
    assert _source("softmax", {"x": x})[1] == "ops.softmax(x, axis=-1)"
    assert _source("flatten", {"x": x})[1] == "ops.reshape(x, (2, 192))"
    assert _source("getitem", {"x": x}, items=(slice(None), slice(1, 2), -1))[1] == "x[:, 1:2, 7]"
    assert (
        _source("add", {"a": 2.0, "b": 3.0})[1]
        == 'ops.convert_to_tensor(2.0, dtype="float32") + 3.0'
    )
    assert _source("eq", {"a": x, "b": 1.0})[1] == "ops.equal(a, 1.0)"
    assert _source("gelu", {"x": x})[1] == "_gelu(x, False)"
    assert _source("leaky_relu", {"x": x})[1] == "ops.leaky_relu(x, negative_slope=0.01)"
    assert _source("softplus", {"x": x}, beta=2.0)[1] == "_softplus(x, 2.0, 20.0)"
    assert _source("split", {"x": x}, n=3, axis=1)[1] == "ops.split(x, 3, axis=1)"
    assert (
        _source("scaled_dot_product_attention", {"q": q, "k": q, "v": q}, causal=True)[1]
        == "_attention(q, k, v, causal=True)"
    )


def _tagged_fmt(value) -> str:
    """An emitter's formatter: Tagged sizes and Written values as their expressions."""
    if isinstance(value, Written):
        return value.code
    if isinstance(value, Tagged):
        return str(value.expr)
    return fmt(value)


def _with(op: str, shape: tuple, config: dict) -> dict:
    """The layer config the rule completes for an input of `shape`."""
    o = REGISTRY[op]
    filled = {p.name: config.get(p.name, p.default) for p in o.construct.params}
    run_rule(o, {"x": TensorType(DType.f32, shape)}, {}, {}, None, filled)
    return filled


def test_sizes_and_values_stay_expressions():
    c, k = Tagged(3, sym("c")), Tagged(3, sym("k"))
    cfg = _with(
        "Conv2d", (2, c, 8, 8), {"out": 2 * c, "kernel": k, "groups": c, "padding": (k - 1) // 2}
    )
    assert _row("Conv2d").construct(cfg, _tagged_fmt) == (
        "keras.layers.DepthwiseConv2D(k, padding='same', depth_multiplier=2, "
        "depthwise_initializer=_TorchInit('default', fan_in=k * k), "
        "bias_initializer=_TorchInit('default', fan_in=k * k))"
    )
    cfg = _with(
        "BatchNorm",
        (2, 3, 4, 4),
        {"momentum": written(0.1, "self.momentum"), "eps": written(1e-3, "eps")},
    )
    assert (
        _row("BatchNorm").construct(cfg, _tagged_fmt)
        == "_BatchNorm(axis=-1, epsilon=eps, momentum=1 - self.momentum)"
    )
    p = Tagged(1, sym("p"))
    cfg = _with("ConvTranspose2d", (2, 4, 5, 6), {"out": 3, "kernel": 3, "stride": 2, "padding": p})
    t = TensorType(DType.f32, (2, 4, 5, 6))
    call = KerasCall({"x": "x"}, cfg, {"x": t}, [t], _tagged_fmt)
    assert (
        _row("ConvTranspose2d").call("self.up", call) == "self.up(x)[:, p:-p or None, p:-p or None]"
    )
    mode = written("tanh", "mode")
    call = KerasCall({"x": "x"}, {"approximate": mode}, {"x": t}, [t], _tagged_fmt)
    assert lower_function("gelu", call) == '_gelu(x, mode == "tanh")'


def _initializers(op: str, shape: tuple, config: dict, fmt=_tagged_fmt) -> list[str]:
    source = _row(op).construct(_with(op, shape, config), fmt)
    return re.findall(rf"\w+_initializer=(?:{_TORCH_INIT}|'\w+')", source)


def test_initializers_are_pytorchs_with_pytorchs_fans():
    """`init=` (default: PyTorch's) on the weight, PyTorch's default on the bias, fans from
    PyTorch's layouts (a depthwise weight [C·m, 1, k, k], a transposed one [in, out/g, k, k],
    an Embedding's [vocab, dim]); the zeros of a zero-dilated or grouped transposed Keras
    kernel; a scheme a hyperparameter holds."""
    c = Tagged(64, sym("C"))
    assert _initializers("Linear", (2, c), {"out": 10}) == [
        "kernel_initializer=_TorchInit('default', fan_in=C)",
        "bias_initializer=_TorchInit('default', fan_in=C)",
    ]
    assert _initializers(
        "Conv2d", (2, c, 8, 8), {"out": 32, "kernel": 3, "bias": False, "init": "xavier_normal"}
    ) == ["kernel_initializer=_TorchInit('xavier_normal', fan_in=9 * C, fan_out=288)"]
    assert (
        _initializers(
            "Conv2d", (2, 8, 8, 8), {"out": 16, "kernel": 3, "groups": 8, "init": "kaiming_normal"}
        )[0]
        == "depthwise_initializer=_TorchInit('kaiming_normal', fan_in=9)"
    )
    assert (
        _initializers(
            "Conv2d",
            (2, 8, 9, 9),
            {"out": 8, "kernel": 3, "stride": 2, "dilation": 2, "init": "ones"},
        )[0]
        == "kernel_initializer=_TorchKernelInit('ones', kernel=(3, 3), dilation=(2, 2))"
    )
    assert _initializers(
        "ConvTranspose2d", (2, 8, 5, 5), {"out": 6, "kernel": 4, "groups": 2, "init": "zeros"}
    ) == [
        "kernel_initializer=_TorchKernelInit('zeros', groups=2)",
        "bias_initializer=_TorchInit('default', fan_in=48)",
    ]
    assert _initializers("Linear", (2, 5), {"out": 3, "init": "zeros", "bias": False}) == [
        "kernel_initializer='zeros'"
    ]
    scheme = written("normal", "scheme")
    assert _initializers("Linear", (2, 5), {"out": 3, "init": scheme, "bias": False}) == [
        "kernel_initializer=_TorchInit(scheme, fan_in=5, fan_out=3)"
    ]
    o = REGISTRY["Embedding"]
    cfg = {p.name: p.default for p in o.construct.params} | {"vocab": 50, "dim": 4}
    run_rule(o, {"ids": TensorType(DType.i64, (2,))}, {}, {}, None, cfg)
    assert (
        _row("Embedding").construct(cfg, fmt)
        == "keras.layers.Embedding(50, 4, embeddings_initializer=_TorchInit('normal'))"
    )
    cfg["init"] = written("default", "scheme")
    assert "_TorchInit('normal' if scheme == 'default' else scheme, fan_in=4, fan_out=50)" in _row(
        "Embedding"
    ).construct(cfg, _tagged_fmt).replace('"', "'")


def test_conv_layer_and_call_agree_on_padding():
    """construct and call decide "same" from the same attributes (`weights.keras_same`)."""
    for config in (
        {"padding": 1},
        {"padding": 1, "stride": 2},
        {"padding": "same"},
        {"padding": "same", "stride": 2},
        {"padding": 2, "dilation": 2},
        {"padding": (1, 0)},
    ):
        cfg = _with("Conv2d", (2, 3, 8, 8), {"out": 4, "kernel": 3, **config})
        t = TensorType(DType.f32, (2, 3, 8, 8))
        call = _row("Conv2d").call("conv", KerasCall({"x": "x"}, cfg, {}, [t], fmt))
        same = keras_layer("Conv2d", cfg).kwargs["padding"] == "same"
        assert ("padding='same'" in _row("Conv2d").construct(cfg, fmt)) == same
        assert (call == "conv(x)") == same, (config, call)


def test_conv_call_needs_the_layer_config():
    t = TensorType(DType.f32, (2, 3, 8, 8))
    with pytest.raises(KeyError, match="layer.attrs"):
        _row("Conv2d").call("self.conv", KerasCall({"x": "x"}, {}, {"x": t}, [t], fmt))


def test_cast_to_bfloat16():
    x = randn(3, 4)
    _, ctx = run_rule(
        REGISTRY["cast"], {"x": TensorType(DType.f32, (3, 4))}, {"dtype": DType.bf16}, {}, None
    )
    src = lower_function("cast", KerasCall({"x": "x"}, ctx.attrs, {}, [], fmt))
    y = eval(src, {"ops": ops, "x": ops.convert_to_tensor(x)})
    assert y.dtype == tf.bfloat16
    np.testing.assert_allclose(ops.convert_to_numpy(ops.cast(y, "float32")), x, rtol=1e-2)


def _generated_sources() -> list[str]:
    sources = []
    for case in FUNCTION_CASES + ALL_LAYER_CASES:
        _, construct, src = python_sources(case, "keras")
        sources += [construct, src] if construct else [src]
    return sources


def _ruff(tmp_path, source: str, *extra: str) -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    path = tmp_path / "generated.py"
    path.write_text(source)
    result = subprocess.run(
        [ruff, "check", "--isolated", "--line-length", "100", *extra, str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_generated_sources_are_clean_python(tmp_path):
    """Every expression the cases produce, as statements (names are free: no F821)."""
    body = "\n".join(f"y = {src}" for src in _generated_sources())
    _ruff(
        tmp_path,
        "import keras\nfrom keras import ops\n\n" + body + "\n",
        "--select",
        "E,F,W,B,UP,SIM,C4",
        "--ignore",
        "F821,E501",
    )


# ---------------------------------------------------------------- runtime helpers


def test_helpers_needed_follows_dependencies():
    assert helpers_needed("y = _mha(self.attention, q, k, v, mask)") == ["_causal_mask", "_mha"]
    assert helpers_needed("self.lstm = _Recurrent('LSTM', 4)") == [
        "_TorchInit",
        "_trunc_normal",
        "_SummedBias",
        "_Recurrent",
    ]
    assert helpers_needed("self._mha(x) + my_softplus(x) + _pad_same2(x)") == []
    assert helpers_needed("ops.relu(x)") == []


def _helpers(*names: str) -> dict:
    """A namespace with the runtime helpers `names` and the helpers they use."""
    ns = {"keras": keras, "ops": ops}
    for name in helpers_needed("\n".join(f"{n}()" for n in names)):
        exec(HELPERS[name], ns)
    return ns


def test_recurrent_weights_config_and_saving(tmp_path):
    """`_Recurrent`'s weights are `to_keras`'s list, its cells are `keras_layer`'s layers, and a
    model holding it saves to and loads from a .keras file."""
    recurrent = _helpers("_Recurrent")["_Recurrent"]
    x = randn(2, 5, 3)
    for op in ("LSTM", "GRU"):
        case = Case(op, {"x": x}, {"hidden": 4, "layers": 2, "bidirectional": True})
        bound = bind(case)
        layer = recurrent(op, 4, num_layers=2, bidirectional=True)
        layer.build(x.shape)
        weights = to_keras(op, bound.ctx.config, bound.params())
        assert [w.shape for w in layer.get_weights()] == [w.shape for w in weights]
        spec = keras_layer(op, bound.ctx.config)
        cell = layer.cells[0].forward_layer.get_config()
        assert {k: cell[k] for k in spec.kwargs} == spec.kwargs
        assert (layer.dualnet_op, layer.hidden, layer.num_layers, layer.bidirectional) == (
            op,
            4,
            2,
            True,
        )
    inputs = keras.Input((5, 3))
    y, h, c = recurrent("LSTM", 4, num_layers=2, bidirectional=True)(inputs, state=True)
    model = keras.Model(inputs, [y, h, c])
    model.save(tmp_path / "lstm.keras")
    loaded = keras.saving.load_model(tmp_path / "lstm.keras")
    for a, b in zip(model(x), loaded(x), strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_fully_masked_attention_has_finite_gradients():
    ns = _helpers("_attention", "_mha")
    q, k = tf.constant(randn(1, 2, 3, 4)), tf.constant(randn(1, 2, 5, 4))
    mask = np.ones((1, 2, 3, 5), bool)
    mask[0, 1, 2] = False
    with tf.GradientTape() as tape:
        tape.watch([q, k])
        y = ns["_attention"](q, k, randn(1, 2, 5, 4), mask)
        total = ops.sum(y)
    grads = tape.gradient(total, [q, k])
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    assert (y.numpy()[0, 1, 2] == 0).all()
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    x = tf.constant(randn(2, 3, 8))
    attention(x, x)
    attention.output_dense.bias.assign(randn(8))
    keys = np.array([[True, True, False], [False, False, False]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = ns["_mha"](attention, x, x, x, keys, causal=True)
        total = ops.sum(out)
    assert np.isfinite(tape.gradient(total, x).numpy()).all()
    np.testing.assert_allclose(
        out.numpy()[1], np.broadcast_to(attention.output_dense.bias.numpy(), (3, 8))
    )


def test_runtime_padding_helper_matches_same_rule():
    """`_pad_same` at run time pads as dualnet's "same" (odd pixel at the end)."""
    ns = _helpers("_pad_same")
    x = positive(1, 7, 8, 2)
    y = ops.convert_to_numpy(ns["_pad_same"](ops.convert_to_tensor(x), (3, 3), (2, 3)))
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (1, 1), (0, 1), (0, 0))))

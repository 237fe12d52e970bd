"""A float64 ONNX model of a .dnet model, for `dualnet gradcheck` (finite differences need
float64; dualnet's parameters, hence its models, are float32).

A freshly checked IR is widened — every f32 value, parameter, buffer, layer output type and
dtype attribute becomes f64 — and emitted with float64 tensors and without the float32
fallback (`emit_onnx`), so every op computes in float64. ONNX Runtime's CPU provider has no
float64 Conv, ConvTranspose, LSTM or GRU kernels (nor Erf, Elu, Softplus, AveragePool,
Resize): the model is for ONNX's own NumPy runtime (`evaluator`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun
from onnx.reference.ops.op_conv_transpose import ConvTranspose as _ConvTranspose
from onnx.reference.ops.op_max_pool import MaxPool as _MaxPool

from dualnet.backends.onnx.emit import DEFAULT_OPSET, emit_onnx
from dualnet.backends.onnx.validate import validate
from dualnet.frontend import Summary
from dualnet.ir.graph import Graph, ModelInstance
from dualnet.ir.types import DType, TensorType


def widened(summary: Summary) -> Summary:
    """A freshly checked summary (an IR of its own), widened in place to float64."""
    _widen(summary.instance, summary.graph)
    return summary


def float64_model(
    summary: Summary, weights: dict[str, np.ndarray], opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """The ONNX model of a `widened` summary with `weights` (state_dict names; float32
    arrays are widened), every op in float64, validated by ONNX's checker."""
    arrays = {
        name: a.astype(np.float64) if a.dtype == np.float32 else a for name, a in weights.items()
    }
    model = emit_onnx(summary, arrays, opset, float32_fallback=False).model
    validate(model, summary.instance.span)
    return model


def _widen(instance: ModelInstance, entry: Graph) -> None:
    graphs = {id(entry): entry}
    _widen_layers(instance, graphs)
    values = {}
    for graph in graphs.values():
        for value in [*graph.inputs, *graph.outputs]:
            values[id(value)] = value
        for node in graph.nodes:
            node.attrs = {k: _wide(v) for k, v in node.attrs.items()}
            for value in [*node.inputs, *node.outputs]:
                values[id(value)] = value
    for value in values.values():
        value.type = _wide(value.type)


def _widen_layers(instance: ModelInstance, graphs: dict[int, Graph]) -> None:
    """The layers below `instance`; its graphs and its sub-models' are added to `graphs`."""
    graphs.update((id(g), g) for g in instance.graphs)
    for child in instance.children.values():
        if isinstance(child, ModelInstance):
            _widen_layers(child, graphs)
            continue
        child.params = {
            n: dataclasses.replace(s, dtype=_wide(s.dtype)) for n, s in child.params.items()
        }
        child.buffers = {
            n: dataclasses.replace(s, dtype=_wide(s.dtype)) for n, s in child.buffers.items()
        }
        child.output_types = tuple(map(_wide, child.output_types))
        child.attrs = {k: _wide(v) for k, v in child.attrs.items()}


def _wide(x):
    if x is DType.f32:
        return DType.f64
    if isinstance(x, TensorType) and x.dtype == DType.f32:
        return x.with_dtype(DType.f64)
    return x


class Erf(OpRun):
    """Erf in the input's precision: onnx.reference's own rounds to float32
    (`np.vectorize(erf, otypes=["f"])`)."""

    op_domain = ""

    def _run(self, x):
        return (np.vectorize(math.erf, otypes=[x.dtype])(x),)


class MaxPool(_MaxPool):
    """onnx.reference's MaxPool loops in Python over the output elements (0.6 s of
    ResNet-18's 0.75 s) and, at stride 1, reads asymmetric pads as (begin, end) pairs per
    axis: float pooling with explicit pads, strides and dilations is NumPy strided windows
    here; other forms are onnx.reference's."""

    def _run(
        self,
        x,
        auto_pad=None,
        ceil_mode=None,
        dilations=None,
        kernel_shape=None,
        pads=None,
        storage_order=None,
        strides=None,
    ):
        if (
            auto_pad not in (None, "NOTSET")
            or ceil_mode
            or len(self.output) > 1
            or x.dtype.kind != "f"
        ):
            return super()._run(
                x,
                auto_pad=auto_pad,
                ceil_mode=ceil_mode,
                dilations=dilations,
                kernel_shape=kernel_shape,
                pads=pads,
                storage_order=storage_order,
                strides=strides,
            )
        n = len(kernel_shape)
        pads, strides, dilations = pads or [0] * 2 * n, strides or [1] * n, dilations or [1] * n
        padded = np.pad(
            x, [(0, 0), (0, 0), *zip(pads[:n], pads[n:], strict=True)], constant_values=-np.inf
        )
        spans = [(k - 1) * d + 1 for k, d in zip(kernel_shape, dilations, strict=True)]
        windows = sliding_window_view(padded, spans, axis=tuple(range(2, 2 + n)))
        windows = windows[(..., *(slice(None, None, d) for d in dilations))]
        windows = windows[(slice(None), slice(None), *(slice(None, None, s) for s in strides))]
        return (windows.max(axis=tuple(range(-n, 0))),)


class ConvTranspose(_ConvTranspose):
    """onnx.reference's ConvTranspose loops in Python in col2im (0.9 s of U-Net's 1.3 s):
    with explicit pads it is one einsum per kernel tap here; other forms are onnx.reference's."""

    def _run(
        self,
        X,
        W,
        B=None,
        auto_pad=None,
        dilations=None,
        group=None,
        kernel_shape=None,
        output_padding=None,
        output_shape=None,
        pads=None,
        strides=None,
    ):
        if auto_pad not in (None, "NOTSET") or output_shape is not None:
            return super()._run(
                X,
                W,
                B,
                auto_pad=auto_pad,
                dilations=dilations,
                group=group,
                kernel_shape=kernel_shape,
                output_padding=output_padding,
                output_shape=output_shape,
                pads=pads,
                strides=strides,
            )
        n, (batch, channels), sizes = X.ndim - 2, X.shape[:2], X.shape[2:]
        group, kernel = group or 1, W.shape[2:]
        strides, dilations = strides or [1] * n, dilations or [1] * n
        pads, output_padding = pads or [0] * 2 * n, output_padding or [0] * n
        full = [
            (size - 1) * s + (k - 1) * d + 1 + extra
            for size, s, k, d, extra in zip(
                sizes, strides, kernel, dilations, output_padding, strict=True
            )
        ]
        per_group = W.shape[1]
        y = np.zeros((batch, group, per_group, *full), np.result_type(X, W))
        x = X.reshape(batch, group, channels // group, *sizes)
        w = W.reshape(group, channels // group, per_group, *kernel)
        for tap in np.ndindex(*kernel):
            at = tuple(
                slice(t * d, t * d + (size - 1) * s + 1, s)
                for t, d, size, s in zip(tap, dilations, sizes, strides, strict=True)
            )
            y[(slice(None), slice(None), slice(None), *at)] += np.einsum(
                "bgc...,gco->bgo...", x, w[(..., *tap)]
            )
        crop = tuple(slice(pads[i], full[i] - pads[n + i]) for i in range(n))
        y = y.reshape(batch, group * per_group, *full)[(slice(None), slice(None), *crop)]
        return (y if B is None else y + B.reshape(-1, *[1] * n),)


def evaluator(model: onnx.ModelProto) -> ReferenceEvaluator:
    """ONNX's reference runtime for a float64 model: a float64 Erf, and a MaxPool and
    ConvTranspose that compute what onnx.reference's do without Python loops."""
    return ReferenceEvaluator(model, new_ops=[Erf, MaxPool, ConvTranspose])

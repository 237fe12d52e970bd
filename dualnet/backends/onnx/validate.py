"""ONNX's checker on an emitted model (imports onnx: the API's `.onnx()`, `dualnet run` and
`parity`, gradcheck and the tests use it; `dualnet compile` does not, see
docs/architecture.md)."""

from __future__ import annotations

import onnx
from onnx import helper

from dualnet.diagnostics import error


def validate(model: onnx.ModelProto, span) -> None:
    """`onnx.checker.check_model(full_check=True)` (strict shape inference included), else
    E-BACKEND at `span`: an emitted model that fails it is a bug of the emitter."""
    try:
        onnx.checker.check_model(_skeleton(model), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise error(
            "E-BACKEND", f"internal error: the emitted ONNX model is invalid ({exc})", span
        ) from None


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its initializers as typed graph inputs: the checker sees the same graph
    without copying the weights (tens of MB) through protobuf again."""
    graph = model.graph
    weights = [
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in graph.initializer
    ]
    skeleton = helper.make_graph(
        graph.node, graph.name, [*graph.input, *weights], graph.output, value_info=graph.value_info
    )
    return helper.make_model(
        skeleton, opset_imports=model.opset_import, ir_version=model.ir_version
    )

"""The ONNX model of a checked model with its weights (`onnx_emitted`: protobuf classes only;
`onnx_model`: validated by ONNX's checker, which imports the onnx package)."""

from __future__ import annotations

from dualnet.backends.initial import initial_weights
from dualnet.extras import needs_extras
from dualnet.frontend import Summary


@needs_extras
def onnx_model(
    summary: Summary,
    weights: str | None = None,
    seed: int = 0,
    opset: int | None = None,
    max_params: int | None = None,
):
    """The ONNX ModelProto of a checked model, validated by ONNX's checker."""
    model = onnx_emitted(summary, weights, seed, opset, max_params).model
    from dualnet.backends.onnx.validate import validate

    validate(model, summary.instance.span)
    return model


@needs_extras
def onnx_emitted(
    summary: Summary,
    weights: str | None = None,
    seed: int = 0,
    opset: int | None = None,
    max_params: int | None = None,
):
    """The ONNX model with the emitter's map of IR values (`Emitted`), not validated: this
    imports ONNX's protobuf classes, not the onnx package."""
    arrays = initial_weights(summary, weights, seed, max_params)
    from dualnet.backends.onnx.emit import DEFAULT_OPSET, emit_onnx

    return emit_onnx(
        summary, arrays, opset or DEFAULT_OPSET, weights or f"the initialisation with seed {seed}"
    )

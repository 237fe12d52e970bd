"""An ONNX model emitted directly from the IR (never by tracing a framework's module).

The hierarchical IR is inlined into one graph: each node is named by the .dnet layer path
that produced it (`layer1.0.conv1/Conv`) and carries its source line as doc_string;
symbolic dimensions are named `dim_param`s (`B`, `T`); parameters are initializers under
their state_dict names (`conv1.weight`), from a weight file or a seeded initialisation.
Ops are written by the lowering table (`lowering.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import PurePath

import numpy as np

from dualnet.backends.onnx.builder import GraphBuilder
from dualnet.backends.onnx.lowering import (
    NEWEST_OPSET,
    ONNX_TYPES,
    OnnxCall,
    OpsetTooOld,
    lower,
)
from dualnet.backends.onnx.proto import (
    ModelParts,
    ModelProto,
    make_node,
    make_tensor_value_info,
    numpy_dtype,
)
from dualnet.backends.rows import OLDEST_OPSET
from dualnet.diagnostics import error, option
from dualnet.io.weights import (
    mismatch_error,
    mismatches,
    state_specs,
    tied_names,
    without_aliases,
)
from dualnet.ir.dims import Dim
from dualnet.ir.graph import (
    Graph,
    LayerInstance,
    ModelInstance,
    Node,
    Value,
    by_parameter,
)
from dualnet.ir.types import DType, TensorType
from dualnet.version import __version__

DEFAULT_OPSET = 17
MIN_OPSET = OLDEST_OPSET  # 13: softmax over one axis, Split/Squeeze with input axes
IR_VERSION = 10  # ONNX Runtime 1.31 reads IR versions up to 13; opset 17-21 need >= 8


@dataclass
class Emitted:
    """The model's parts, the ONNX name of every IR value (by `id(Value)`), and for per-layer
    comparisons the outputs of every layer and sub-model call, in the order they run: (path,
    ONNX names), a layer called twice appearing twice."""

    parts: ModelParts
    names: dict[int, str] = field(default_factory=dict)
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    @cached_property
    def model(self) -> ModelProto:
        """The ModelProto, built when first asked for (`dualnet compile` writes
        `parts.serialized()` instead)."""
        return self.parts.build()


class OnnxEmitter:
    def __init__(
        self,
        instance: ModelInstance,
        graph: Graph,
        weights: dict[str, np.ndarray],
        opset: int,
        source: str,
        float32_fallback: bool = True,
    ):
        self.instance, self.graph, self.weights = instance, graph, weights
        self.b = GraphBuilder(opset, float32_fallback)
        self.source = PurePath(source).name
        self.names: dict[int, str] = {}
        self.values: list[Value] = []  # the IR values nodes compute, in order
        self.calls: list[tuple[str, tuple[str, ...]]] = []  # see Emitted.calls
        self.added: set[str] = set()  # state_dict names already made initializers
        self.sizes: dict[str, str] = {}  # symbol → its int64 [1] value
        self.symbols: dict[str, tuple[str, int]] = {}  # symbol → (input, axis)

    # -- the model
    def emit(self) -> Emitted:
        inputs = [self.graph_input(v) for v in self.graph.inputs]
        self.run(self.instance, self.graph, "")
        outputs = self.graph_outputs()
        used = {x for n in self.b.nodes for x in n.input}
        initializers = {name: a for name, a in self.b.initializers.items() if name in used}
        fields = {
            "ir_version": IR_VERSION,
            "producer_name": "dualnet",
            "producer_version": __version__,
            "doc_string": f"{self.instance.definition} from {self.source}",
        }
        parts = ModelParts(
            self.b.nodes,
            self.instance.definition,
            inputs,
            outputs,
            initializers,
            self.value_infos(initializers),
            self.b.opset,
            fields,
        )
        return Emitted(parts, self.names, self.calls)

    def value_infos(self, initializers: dict) -> list:
        """dualnet's type of every value a node computes: tools show the shapes, and strict
        shape inference checks its own against them."""
        skip = {*initializers, *(v.name for v in self.graph.inputs)}
        infos, seen = [], set()
        for value in self.values:
            name = self.names[id(value)]
            if name not in skip and name not in seen:
                seen.add(name)
                infos.append(_value_info(name, value.type))
        return infos

    def graph_input(self, value: Value):
        name = self.b.reserve(value.name)
        self.names[id(value)] = name
        for axis, d in enumerate(value.type.shape):
            if isinstance(d, Dim) and d.symbol is not None:
                self.symbols.setdefault(d.symbol, (name, axis))
        return _value_info(name, value.type)

    def graph_outputs(self) -> list:
        """Outputs named as the signature names them, else `output` (or `output_0`, ...),
        each an Identity of its value."""
        outs = self.graph.outputs
        names = self.graph.output_labels()
        infos = []
        self.b.scope, self.b.doc = "", ""
        for wanted, value in zip(names, outs, strict=True):
            name = self.b.reserve(wanted)
            self.b.nodes.append(
                make_node(
                    "Identity", [self.names[id(value)]], [name], name=self.b.fresh(f"node:{name}")
                )
            )
            infos.append(_value_info(name, value.type))
        return infos

    # -- the graph, inlined
    def run(self, instance: ModelInstance, graph: Graph, prefix: str) -> None:
        for node in graph.nodes:
            self.b.doc = f"{PurePath(node.span.file).name}:{node.span.line}" if node.span else ""
            if node.kind == "call":
                child = instance.child(node.target)
                for v, callee_input in zip(node.inputs, node.callee.inputs, strict=True):
                    self.names[id(callee_input)] = self.names[id(v)]
                self.run(child, node.callee, f"{prefix}{node.target}.")
                for v, callee_output in zip(node.outputs, node.callee.outputs, strict=True):
                    self.names[id(v)] = self.names[id(callee_output)]
                self.calls.append((child.path, tuple(self.names[id(v)] for v in node.outputs)))
            elif node.kind == "constant":
                self.b.scope = f"{prefix}{node.outputs[0].name}"
                dtype = numpy_dtype(ONNX_TYPES[node.outputs[0].type.dtype])  # bf16 too
                self.names[id(node.outputs[0])] = self.b.constant(
                    np.asarray(node.attrs["value"], dtype), "value"
                )
            else:
                self.lower_node(instance, node, prefix)

    def lower_node(self, instance: ModelInstance, node: Node, prefix: str) -> None:
        attrs, params, arrays = dict(node.attrs), {}, {}
        if node.kind == "layer":
            layer = instance.child(node.target)
            attrs = {**layer.attrs, **attrs}
            self.b.scope = (
                layer.path if isinstance(layer, LayerInstance) else f"{prefix}{node.target}"
            )
            if isinstance(layer, LayerInstance):
                params, arrays = self.layer_tensors(layer)
        else:
            self.b.scope = f"{prefix}{node.outputs[0].name}"
        inputs = by_parameter(node, [self.names[id(v)] for v in node.inputs])
        in_types = by_parameter(node, [v.type for v in node.inputs])
        call = OnnxCall(
            self.b,
            inputs,
            attrs,
            in_types,
            [v.type for v in node.outputs],
            params,
            arrays,
            self.size,
        )
        try:
            outs = lower(node.op, call)
        except OpsetTooOld as exc:
            raise error(
                "E-BACKEND",
                f"`{node.op}` needs ONNX opset {exc.minimum} or newer; "
                f"this model is emitted for opset {self.b.opset}",
                node.span,
                notes=[f"pass --opset {exc.minimum} (or newer)"],
            ) from None
        for value, out in zip(node.outputs, outs, strict=True):
            self.names[id(value)] = out
            self.values.append(value)
        if node.kind == "layer":
            self.calls.append((instance.child(node.target).path, tuple(outs)))

    def layer_tensors(self, layer: LayerInstance) -> tuple[dict, dict]:
        """The layer's tensors: initializer names (added once, even for a shared layer) and
        arrays, by parameter name."""
        params, arrays = {}, {}
        for name in [*layer.params, *layer.buffers]:
            full = layer.tensor_key(name)  # a tied weight: its owner's initializer
            arrays[name] = self.weights[full]
            if full not in self.added:
                self.b.initializer(full, self.weights[full])
                self.added.add(full)
            params[name] = full
        return params, arrays

    # -- sizes at run time
    def size(self, d) -> str:
        """An int64 [1] value holding the size `d` (an int or a symbolic Dim) at run time."""
        scope, self.b.scope = self.b.scope, "sizes"
        try:
            return self.b.size(d, self.symbol)
        finally:
            self.b.scope = scope

    def symbol(self, name: str) -> str:
        """Dimension `name` of the input that first has it, read at run time (once)."""
        if name not in self.symbols:
            raise error(
                "E-BACKEND",
                f"internal error: ONNX backend: the size `{name}` is not a dimension of any input",
                self.instance.span,
            )
        if name not in self.sizes:
            value, axis = self.symbols[name]
            shape = self.b.one("Shape", [value])
            self.sizes[name] = self.b.one("Gather", [shape, self.b.ints([axis], "axis")], axis=0)
        return self.sizes[name]


def _value_info(name: str, t: TensorType):
    dims = [int(d) if isinstance(d, int) else (d.symbol or str(d)) for d in t.shape]
    return make_tensor_value_info(name, ONNX_TYPES[t.dtype], dims)


def check_weights(instance: ModelInstance, weights: dict[str, np.ndarray], file: str) -> None:
    """Strictly the model's tensors (names, shapes, dtypes), else E-WEIGHTS naming them."""
    expected = {name: (spec.dtype.value, tuple(spec.shape)) for name, spec in state_specs(instance)}
    found = {name: (_dtype_name(a), tuple(a.shape)) for name, a in weights.items()}
    problems = mismatches(expected, found, file)
    if problems:
        raise mismatch_error(problems, file)


def _dtype_name(a: np.ndarray) -> str:
    names = {np.dtype(d.numpy): d.value for d in DType if d.numpy}
    return names.get(a.dtype, str(a.dtype))


def emit_onnx(
    summary,
    weights: dict[str, np.ndarray],
    opset: int = DEFAULT_OPSET,
    weights_file: str = "the weights",
    float32_fallback: bool = True,
) -> Emitted:
    """The ONNX model of a checked entry model with these weights (state_dict names), not
    validated (`validate.py` runs ONNX's checker). `float32_fallback`: float64 values
    go through the ops ONNX Runtime has no float64 kernels for in float32 (False: in
    float64, for runtimes that have them, such as `onnx.reference`)."""
    if not MIN_OPSET <= opset <= NEWEST_OPSET:
        raise error(
            "E-BACKEND",
            f"ONNX opset {opset} is not supported: dualnet emits opsets "
            f"{MIN_OPSET} to {NEWEST_OPSET}",
            option("--opset"),
        )
    weights = without_aliases(weights, tied_names(summary.instance), weights_file)
    check_weights(summary.instance, weights, weights_file)
    return OnnxEmitter(
        summary.instance, summary.graph, weights, opset, summary.file, float32_fallback
    ).emit()

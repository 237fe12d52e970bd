"""Run the IR with the ops' NumPy references: the oracle every backend is compared with.

`run_reference(summary, inputs, weights)` evaluates the entry graph in inference mode, with
weights given under their state_dict names (NumPy arrays).
"""

from __future__ import annotations

from typing import Any

from dualnet.ir.dims import Dim
from dualnet.ir.graph import Graph, LayerInstance, ModelInstance, by_parameter
from dualnet.ops import REGISTRY
from dualnet.ops.lazy_numpy import np
from dualnet.ops.shape import substitute_attrs


def run_reference(instance: ModelInstance, graph: Graph, inputs: list, weights: dict[str, Any]):
    """The graph's outputs for `inputs` (arrays in signature order)."""
    return _run(instance, graph, list(inputs), weights)


def _run(instance: ModelInstance, graph: Graph, inputs: list, weights: dict) -> list:
    env = {id(v): x for v, x in zip(graph.inputs, inputs, strict=True)}
    sizes = _bind_sizes(graph, inputs)
    for node in graph.nodes:
        args = [env[id(v)] for v in node.inputs]
        if node.kind == "constant":
            out = [np.asarray(node.attrs["value"], dtype=_numpy(node.outputs[0].type.dtype))]
        elif node.kind == "call":
            child = instance.child(node.target)
            out = _run(child, node.callee, args, weights)
        else:
            op = REGISTRY[node.op]
            named = by_parameter(node, args)
            attrs, params = substitute_attrs(dict(node.attrs), sizes), {}
            if node.kind == "layer":
                layer = instance.child(node.target)
                attrs = {**layer.attrs, **attrs}
                if isinstance(layer, LayerInstance):
                    params = {
                        name: np.asarray(weights[layer.tensor_key(name)])
                        for name in [*layer.params, *layer.buffers]
                    }
            out = [np.asarray(x) for x in op.reference(named, attrs, params)]
        for value, x in zip(node.outputs, out, strict=True):
            env[id(value)] = x
    return [env[id(v)] for v in graph.outputs]


def _numpy(dtype) -> str:
    """NumPy's dtype for `dtype`; bf16, which NumPy lacks, is computed in float32."""
    return dtype.numpy or "float32"


def _bind_sizes(graph: Graph, inputs: list) -> dict[str, int]:
    """Symbolic dimension names → their sizes in these inputs."""
    sizes: dict[str, int] = {}
    for value, x in zip(graph.inputs, inputs, strict=True):
        for d, n in zip(value.type.shape, np.shape(x), strict=True):
            if isinstance(d, Dim) and d.symbol is not None:
                sizes[d.symbol] = int(n)
    return sizes

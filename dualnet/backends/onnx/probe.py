"""What `dualnet parity` records from an ONNX model: the values of chosen intermediate
tensors, made extra graph outputs."""

from __future__ import annotations

import onnx
from onnx import helper


def with_outputs(model: onnx.ModelProto, names: list[str]) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of `model` that also outputs each value in `names` (an Identity of it, whatever
    the value is: a node's result, an input or an initializer), and those outputs' names."""
    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    graph = probed.graph
    types = {v.name: v.type for v in [*graph.input, *graph.value_info, *graph.output]}
    types.update(
        {
            t.name: helper.make_tensor_type_proto(t.data_type, list(t.dims))
            for t in graph.initializer
        }
    )
    outputs = []
    for i, name in enumerate(names):
        out = f"probe:{i}"
        graph.node.append(helper.make_node("Identity", [name], [out], name=f"node:{out}"))
        info = onnx.ValueInfoProto(name=out)
        info.type.CopyFrom(types[name])
        graph.output.append(info)
        outputs.append(out)
    return probed, outputs

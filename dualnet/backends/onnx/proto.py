"""ONNX's protobuf classes and the builders emission uses, without `import onnx`.

`import onnx` runs the package's `__init__`, which imports ml_dtypes and the C++ checker
(most of a second); emission needs only the generated protobuf module `onnx_ml_pb2.py`,
which imports google.protobuf alone. It is loaded here by path from the installed onnx
package. A later `import onnx` in the same process adds the same file to protobuf's default
pool again, which protobuf accepts (identical bytes) and answers with the same classes: a
model built here is an `onnx.ModelProto`.

The builders give exactly the bytes of `onnx.helper` and `onnx.numpy_helper` (the fields
they set and no others: ONNX's protos are proto2, so an empty string set is written);
`tests/backends/test_onnx_proto.py` compares them.
"""

from __future__ import annotations

import importlib.util
import numbers
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _generated_module():
    spec = importlib.util.find_spec("onnx")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("No module named 'onnx'", name="onnx")
    path = Path(next(iter(spec.submodule_search_locations))) / "onnx_ml_pb2.py"
    module_spec = importlib.util.spec_from_file_location(f"{__name__}._onnx_ml_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


_pb2 = _generated_module()
AttributeProto = _pb2.AttributeProto
GraphProto = _pb2.GraphProto
ModelProto = _pb2.ModelProto
NodeProto = _pb2.NodeProto
OperatorSetIdProto = _pb2.OperatorSetIdProto
TensorProto = _pb2.TensorProto
ValueInfoProto = _pb2.ValueInfoProto

# ONNX element type → NumPy dtype name (bf16: ml_dtypes', imported only when asked for)
_NUMPY = {
    TensorProto.FLOAT16: "float16",
    TensorProto.BFLOAT16: "bfloat16",
    TensorProto.FLOAT: "float32",
    TensorProto.DOUBLE: "float64",
    TensorProto.INT32: "int32",
    TensorProto.INT64: "int64",
    TensorProto.BOOL: "bool",
}
_ONNX = {name: t for t, name in _NUMPY.items()}
# where make_tensor keeps values that are not raw bytes (half floats and bools as int32s)
_FIELDS = {
    TensorProto.FLOAT: "float_data",
    TensorProto.DOUBLE: "double_data",
    TensorProto.INT64: "int64_data",
}


def numpy_dtype(data_type: int) -> np.dtype:
    """The NumPy dtype of an ONNX element type (`helper.tensor_dtype_to_np_dtype`)."""
    if data_type == TensorProto.BFLOAT16:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(_NUMPY[data_type])


def make_attribute(key: str, value) -> AttributeProto:
    """An int, float, string or tensor attribute, or a non-empty list of ints, floats or
    strings (`helper.make_attribute`)."""
    attr = AttributeProto()
    attr.name = key
    if isinstance(value, numbers.Integral):
        attr.i, attr.type = int(value), AttributeProto.INT
    elif isinstance(value, numbers.Real):
        attr.f, attr.type = float(value), AttributeProto.FLOAT
    elif isinstance(value, str):
        attr.s, attr.type = value.encode(), AttributeProto.STRING
    elif isinstance(value, TensorProto):
        attr.t.CopyFrom(value)
        attr.type = AttributeProto.TENSOR
    elif isinstance(value, list):
        if not value:
            raise ValueError(f"attribute `{key}`: no ONNX type holds an empty list")
        if all(isinstance(v, numbers.Integral) for v in value):
            attr.ints.extend(value)
            attr.type = AttributeProto.INTS
        elif all(isinstance(v, numbers.Real) for v in value):
            attr.floats.extend(value)
            attr.type = AttributeProto.FLOATS
        elif all(isinstance(v, str) for v in value):
            attr.strings.extend(v.encode() for v in value)
            attr.type = AttributeProto.STRINGS
        else:
            raise ValueError(f"attribute `{key}`: no ONNX type holds {value!r}")
    else:
        raise TypeError(f"attribute `{key}`: {value!r} is not an ONNX attribute value")
    return attr


def make_node(
    op_type: str,
    inputs: list[str],
    outputs: list[str],
    name: str | None = None,
    doc_string: str | None = None,
    domain: str | None = None,
    **attrs,
) -> NodeProto:
    """A node; attributes sorted by name, None ones left out (`helper.make_node`)."""
    node = NodeProto()
    node.op_type = op_type
    node.input.extend(inputs)
    node.output.extend(outputs)
    if name:
        node.name = name
    if doc_string:
        node.doc_string = doc_string
    if domain is not None:
        node.domain = domain
    node.attribute.extend(
        make_attribute(key, value) for key, value in sorted(attrs.items()) if value is not None
    )
    return node


def make_tensor(name: str, data_type: int, dims: list[int], values: list) -> TensorProto:
    """A tensor holding `values` in its typed field, not as raw bytes (`helper.make_tensor`
    with raw=False)."""
    tensor = TensorProto()
    tensor.data_type = data_type
    tensor.name = name
    tensor.dims.extend(dims)
    array = np.asarray(values, dtype=numpy_dtype(data_type)).flatten()
    if data_type in (TensorProto.FLOAT16, TensorProto.BFLOAT16):
        array = array.view(np.uint16)
    elif data_type == TensorProto.BOOL:
        array = array.astype(np.uint8)
    getattr(tensor, _FIELDS.get(data_type, "int32_data")).extend(array)
    return tensor


def make_tensor_value_info(name: str, elem_type: int, shape: list[int | str]) -> ValueInfoProto:
    """A tensor value's name, element type and shape, each size a number or a name
    (`helper.make_tensor_value_info`: a rank-0 value has a present, empty shape)."""
    info = ValueInfoProto()
    info.name = name
    tensor_type = info.type.tensor_type
    tensor_type.elem_type = elem_type
    tensor_type.shape.dim.extend([])
    for d in shape:
        dim = tensor_type.shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d
    return info


@dataclass
class ModelParts:
    """A model of one graph importing the default domain at `opset`, with the model fields
    `fields` (ir_version, producer_name, producer_version, doc_string: the fields numbered
    below the graph's) and `initializers` as arrays (C order). `build()` is
    `helper.make_model(helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.
    from_array(a, n) for n, a in initializers.items()], value_info=value_info),
    opset_imports=[helper.make_opsetid("", opset)], **fields)`; `serialized()` is its
    `SerializeToString()` without building it: the tensors' bytes are not copied twice
    through protobuf, which took a sixth of `dualnet compile` on ResNet-18."""

    nodes: list[NodeProto]
    name: str
    inputs: list[ValueInfoProto]
    outputs: list[ValueInfoProto]
    initializers: dict[str, np.ndarray]
    value_info: list[ValueInfoProto]
    opset: int
    fields: dict[str, Any]

    def build(self) -> ModelProto:
        model = ModelProto(**self.fields)
        graph = model.graph
        graph.node.extend(self.nodes)
        graph.name = self.name
        graph.input.extend(self.inputs)
        graph.output.extend(self.outputs)
        for name, array in self.initializers.items():
            tensor = graph.initializer.add()
            tensor.raw_data = _header(tensor, name, array).tobytes()
        graph.value_info.extend(self.value_info)
        model.opset_import.append(self._opset_id())
        return model

    def serialized(self) -> list:
        """`build().SerializeToString()` in pieces (bytes, and each tensor's data as a view
        of its array). Protobuf writes a message's fields in the order of their numbers, so
        a message is the concatenation of messages holding its fields in that order: the
        model's fields below the graph (7), then the graph (node 1, name 2, initializer 5,
        input 11, output 12, value_info 13), then opset_import (8)."""
        head = GraphProto()
        head.node.extend(self.nodes)
        head.name = self.name
        tail = GraphProto()
        tail.input.extend(self.inputs)
        tail.output.extend(self.outputs)
        tail.value_info.extend(self.value_info)
        graph: list = [head.SerializeToString()]
        for name, array in self.initializers.items():
            tensor = TensorProto()
            data = _header(tensor, name, array)
            start = tensor.SerializeToString() + _length_delimited(9, data.nbytes)  # raw_data
            graph += [_length_delimited(5, len(start) + data.nbytes) + start, data]
        graph.append(tail.SerializeToString())
        size = sum(len(piece) if isinstance(piece, bytes) else piece.nbytes for piece in graph)
        opset = ModelProto()
        opset.opset_import.append(self._opset_id())
        return [
            ModelProto(**self.fields).SerializeToString(),
            _length_delimited(7, size),
            *graph,
            opset.SerializeToString(),
        ]

    def tensor_bytes(self) -> int:
        return sum(a.nbytes for a in self.initializers.values())

    def _opset_id(self) -> OperatorSetIdProto:
        opset_id = OperatorSetIdProto()
        opset_id.domain = ""
        opset_id.version = self.opset
        return opset_id


def _header(tensor: TensorProto, name: str, array: np.ndarray) -> np.ndarray:
    """`tensor` made `numpy_helper.from_array(array, name)` but for raw_data, and the bytes
    raw_data holds (little-endian) as a uint8 array."""
    tensor.dims.extend(array.shape)
    if name:
        tensor.name = name
    tensor.data_type = _ONNX[array.dtype.name]
    if array.dtype.byteorder == ">" or (sys.byteorder == "big" and array.dtype.byteorder == "="):
        array = array.astype(array.dtype.newbyteorder("<"))
    return array.reshape(-1).view(np.uint8)


def _length_delimited(number: int, length: int) -> bytes:
    """The key of length-delimited field `number` and the length that follows it."""
    return _varint(number << 3 | 2) + _varint(length)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)

"""`dualnet.backends.onnx.proto` (ONNX's protobuf classes without `import onnx`): its
builders give onnx.helper's bytes, and its classes are onnx's, whichever is imported first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import helper, numpy_helper  # noqa: E402

from dualnet.backends.onnx import proto  # noqa: E402
from dualnet.backends.onnx.lowering import ONNX_TYPES  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TYPES = sorted(set(ONNX_TYPES.values()))


def _bytes(message) -> bytes:
    return message.SerializeToString()


ATTRIBUTES = [
    {"axis": 1, "keepdims": True, "alpha": 0.5, "mode": "linear", "value": None},
    {"pads": [0, 1, 0, 1], "scales": [1.0, 2.5], "mixed": [1, 2.5], "names": ["a", "b"]},
    {
        "value": helper.make_tensor("one", onnx.TensorProto.FLOAT, [1], [1]),
        "count": np.int64(3),
        "scale": np.float32(0.25),
    },
]


@pytest.mark.parametrize("attrs", ATTRIBUTES)
def test_nodes_are_helpers(attrs):
    for extra in [
        {},
        {"name": "node:x/Relu", "doc_string": "m.dnet:3"},
        {"domain": ""},
        {"domain": "com.microsoft", "name": "", "doc_string": None},
    ]:
        ours = proto.make_node("Op", ["x", ""], ["y"], **extra, **attrs)
        theirs = helper.make_node("Op", ["x", ""], ["y"], **extra, **attrs)
        assert _bytes(ours) == _bytes(theirs)


def test_attributes_without_an_onnx_type_are_refused_as_helper_refuses_them():
    for value in ([], [1, "a"]):
        with pytest.raises(ValueError):
            helper.make_attribute("a", value)
        with pytest.raises(ValueError):
            proto.make_attribute("a", value)


@pytest.mark.parametrize("data_type", TYPES)
def test_typed_tensors_and_dtypes_are_helpers(data_type):
    assert proto.numpy_dtype(data_type) == helper.tensor_dtype_to_np_dtype(data_type)
    for name, values in [("one", [1]), ("", [0, 1, 1, 0])]:
        ours = proto.make_tensor(name, data_type, [len(values)], values)
        theirs = helper.make_tensor(name, data_type, [len(values)], values)
        assert _bytes(ours) == _bytes(theirs)


@pytest.mark.parametrize("shape", [[], [1], ["B", 3, "T"]])
def test_value_infos_are_helpers(shape):
    ours = proto.make_tensor_value_info("v", onnx.TensorProto.FLOAT, shape)
    theirs = helper.make_tensor_value_info("v", onnx.TensorProto.FLOAT, shape)
    assert _bytes(ours) == _bytes(theirs)


def test_models_are_helpers_and_serialized_in_pieces_the_same():
    """Every element type of the emitter as raw_data, 0-d and empty tensors included."""
    rng = np.random.default_rng(0)
    arrays = {f"t{t}": rng.standard_normal((2, 3)).astype(proto.numpy_dtype(t)) for t in TYPES}
    arrays |= {
        "scalar": np.asarray(2.5, np.float32),
        "empty": np.zeros((0, 4), np.int64),
        "big": rng.standard_normal((300, 100)).astype(np.float32),
    }  # 2-byte lengths
    node = proto.make_node("Identity", ["x"], ["y"], name="n")
    x = proto.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["B"])
    y = proto.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["B"])
    fields = {
        "ir_version": 10,
        "producer_name": "dualnet",
        "producer_version": "0.1.0",
        "doc_string": "M from m.dnet",
    }
    parts = proto.ModelParts([node], "M", [x], [y], arrays, [y], 17, fields)
    graph = helper.make_graph(
        [node],
        "M",
        [x],
        [y],
        [numpy_helper.from_array(a, n) for n, a in arrays.items()],
        value_info=[y],
    )
    theirs = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], **fields)
    ours = parts.build()
    assert isinstance(ours, onnx.ModelProto)
    assert _bytes(ours) == _bytes(theirs)
    assert b"".join(bytes(piece) for piece in parts.serialized()) == _bytes(theirs)
    assert parts.tensor_bytes() == sum(len(t.raw_data) for t in theirs.graph.initializer)


def test_onnx_imported_afterwards_has_the_same_classes():
    """proto loads ONNX's generated module by path; a later `import onnx` adds the same
    file to protobuf's pool again: no conflict, the same classes (both protobuf runtimes)."""
    code = (
        "import sys; from dualnet.backends.onnx import proto; "
        "assert 'onnx' not in sys.modules and 'ml_dtypes' not in sys.modules; "
        "import onnx; assert proto.ModelProto is onnx.ModelProto; "
        "m = proto.ModelParts([], 'g', [], [], {}, [], 17, {'ir_version': 10}).build(); "
        "onnx.checker.check_model(m, full_check=True); "
        "assert onnx.load_from_string(m.SerializeToString()) == m; print('ok')"
    )
    for runtime in ("upb", "python"):
        env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": runtime}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
        )
        assert out.returncode == 0 and out.stdout.strip() == "ok", (runtime, out.stderr)

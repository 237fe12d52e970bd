"""`dualnet run` input handling: the arrays must fit the forward signature (E-INPUT)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from zoo_data import random_weights

import dualnet
from dualnet.backends import BACKENDS
from dualnet.diagnostics import DualnetError
from dualnet.verify.runner import ordered_inputs, read_inputs

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def _code(call) -> str:
    with pytest.raises(DualnetError) as info:
        call()
    return info.value.diagnostics[0].code


def test_inputs_must_fit_the_signature():
    summary = dualnet.load(str(MODELS / "bert_encoder.dnet")).check()
    ids = np.zeros((2, 5), np.int64)
    mask = np.ones((2, 5), bool)
    good = {"ids": ids, "token_types": ids, "mask": mask}
    assert [x.shape for x in ordered_inputs(summary, good)] == [(2, 5)] * 3
    assert _code(lambda: ordered_inputs(summary, {"ids": ids, "mask": mask})) == "E-INPUT"
    assert _code(lambda: ordered_inputs(summary, {**good, "extra": ids})) == "E-INPUT"
    assert (
        _code(lambda: ordered_inputs(summary, {**good, "ids": ids.astype(np.int32)})) == "E-INPUT"
    )
    assert _code(lambda: ordered_inputs(summary, {**good, "mask": mask[:, :4]})) == "E-INPUT"


def test_fixed_sizes_are_checked(tmp_path):
    summary = dualnet.load(str(MODELS / "lenet5.dnet")).check()
    with pytest.raises(DualnetError) as info:
        ordered_inputs(summary, {"x": np.zeros((2, 1, 28, 27), np.float32)})
    assert "axis 3" in info.value.diagnostics[0].message


def test_input_files_are_read_strictly(tmp_path):
    good = tmp_path / "x.npy"
    np.save(good, np.zeros(3, np.float32))
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    assert read_inputs([f"x={good}"])["x"].shape == (3,)
    assert _code(lambda: read_inputs(["x"])) == "E-INPUT"
    assert _code(lambda: read_inputs([f"x={good}", f"x={good}"])) == "E-INPUT"
    assert _code(lambda: read_inputs([f"x={tmp_path / 'bad.npy'}"])) == "E-INPUT"
    assert _code(lambda: read_inputs([f"x={tmp_path / 'missing.npy'}"])) == "E-IO"


def test_run_reports_bad_inputs_with_exit_1(tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 28, 28), np.float64))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dualnet",
            "run",
            str(MODELS / "lenet5.dnet"),
            "--backend",
            "torch",
            "--input",
            f"x={x}",
            "-o",
            str(tmp_path / "out.npz"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1, run.stderr
    assert "E-INPUT" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out.npz").exists()


# ---------------------------------------------------------------- the ONNX model

ZOO = [
    "lenet5",
    "mlp",
    "resnet18",
    "mobilenetv2",
    "bert_encoder",
    "lstm_classifier",
    "gru_classifier",
    "unet",
]


def _weights(summary, seed: int = 0) -> dict[str, np.ndarray]:
    return random_weights(summary, np.random.default_rng(seed))


@pytest.mark.parametrize("name", ZOO)
def test_zoo_emits_checks_and_matches_pytorch(tmp_path, name):
    """check_model(full_check) passes, strict shape inference agrees with dualnet's types,
    and ONNX Runtime gives PyTorch's outputs from the same weight file."""
    import onnx
    import onnxruntime as ort
    from keras_harness import TOL, Pair, relative_error

    pair = Pair(MODELS / f"{name}.dnet", tmp_path)
    model = dualnet.load(str(MODELS / f"{name}.dnet")).onnx(weights=str(pair.file))
    onnx.checker.check_model(model, full_check=True)  # with its weights, as a user loads it
    onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)  # raises
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = pair.inputs(sizes=3)
    feed = {v.name: x for v, x in zip(pair.summary.graph.inputs, inputs, strict=True)}
    got = session.run(None, feed)
    want = pair.run_torch(inputs)
    assert max(relative_error(g, w) for g, w in zip(got, want, strict=True)) < TOL


def test_emission_is_deterministic_and_named_after_layers(tmp_path):
    from dualnet.compiler import write_onnx

    program = dualnet.load(str(MODELS / "resnet18.dnet"))
    summary = program.check()
    a = write_onnx(summary, str(tmp_path / "a"), seed=3)
    b = write_onnx(summary, str(tmp_path / "b"), seed=3)
    assert a.name == "ResNet18.onnx" and a.read_bytes() == b.read_bytes()
    import onnx

    model = onnx.load(str(a))
    names = [n.name for n in model.graph.node]
    assert any(n.startswith("node:layer1.0.conv1/") for n in names)
    assert all(n.doc_string for n in model.graph.node if "layer" in n.name)
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim][:1] == ["B"]
    assert {"conv1.weight", "fc.bias"} <= {t.name for t in model.graph.initializer}


@pytest.mark.parametrize("name", ["lenet5", "bert_encoder", "lstm_classifier"])
def test_compile_writes_the_bytes_of_the_api_model(tmp_path, name):
    """`compile` writes the model in pieces without building it (`ModelParts.serialized`):
    the bytes of the ModelProto `.onnx()` returns."""
    from dualnet.backends.onnx.model import onnx_model
    from dualnet.compiler import write_onnx

    summary = dualnet.load(str(MODELS / f"{name}.dnet")).check()
    out = write_onnx(summary, str(tmp_path), seed=2)
    assert out.read_bytes() == onnx_model(summary, seed=2).SerializeToString()


def test_compile_imports_neither_the_onnx_package_nor_a_framework(tmp_path):
    """`compile --target onnx --weights` gets ONNX's protobuf classes without the onnx
    package, whose import (ml_dtypes, the checker) takes longer than the whole command may
    (benchmarks/onnx_startup.py); nor does it import torch, TensorFlow or ONNX Runtime."""
    from dualnet.io.weights import write_state

    weights = tmp_path / "w.safetensors"
    write_state(_weights(dualnet.load(str(MODELS / "lenet5.dnet")).check()), weights)
    args = [
        "compile",
        str(MODELS / "lenet5.dnet"),
        "--target",
        "onnx",
        "--weights",
        str(weights),
        "-o",
        str(tmp_path),
    ]
    code = (
        f"import sys; from dualnet.cli import main; assert main({args!r}) == 0; "
        "print(sorted(m for m in ('onnx', 'ml_dtypes', 'torch', 'tensorflow', 'keras', "
        "'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]"
    assert (tmp_path / "LeNet5.onnx").stat().st_size > 0


def test_a_number_in_a_bf16_expression_is_a_bf16_constant(tmp_path):
    """(It was a float64 tensor, which ONNX's checker refused.) bf16 comes from ml_dtypes,
    imported for it alone."""
    import onnx

    path = tmp_path / "m.dnet"
    path.write_text(
        'model M() {\n    forward(x: f32[B, 3]) { return cast(cast(x, "bf16") * 2.0, "f32") }\n}\n'
    )
    model = dualnet.load(str(path)).onnx()  # checked
    [constant] = model.graph.initializer
    assert constant.data_type == onnx.TensorProto.BFLOAT16 and constant.raw_data == b"\x00@"


@pytest.mark.parametrize(("approximate", "fused"), [("none", "Gelu"), ("tanh", "FastGelu")])
def test_onnx_runtime_fuses_gelu_before_opset_20(tmp_path, approximate, fused):
    """Below opset 20 gelu is a formula, written as the pattern ONNX Runtime fuses into one
    kernel (and, after the Linear, with its bias), as it does for the exporter's graphs."""
    import onnx
    import onnxruntime as ort

    path = tmp_path / "m.dnet"
    path.write_text(
        "model M() {\n    up = Linear(16)\n    down = Linear(4)\n    forward(x: f32[B, T, 4]) {\n"
        f'        return down(gelu(up(x), approximate="{approximate}"))\n    }}\n}}\n'
    )
    model = dualnet.load(str(path)).onnx()
    assert model.opset_import[0].version < 20
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node}
    assert {"Erf", "Tanh", "Pow"}.isdisjoint(ops) and ops & {fused, "BiasGelu", "FastGelu"}


def test_an_invalid_model_is_an_internal_error():
    """What `onnx_model`, `run` and `parity` do with an emitted model ONNX's checker
    refuses (compile writes what the emitter makes: the tests above check it)."""
    from onnx import helper

    from dualnet.backends.onnx.validate import validate

    node = helper.make_node("NoSuchOp", ["x"], ["y"])
    value = helper.make_tensor_value_info("x", 1, [2])
    model = helper.make_model(
        helper.make_graph([node], "g", [value], [value]),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=10,
    )
    with pytest.raises(DualnetError) as info:
        validate(model, None)
    assert info.value.diagnostics[0].code == "E-BACKEND"
    assert "internal error: the emitted ONNX model is invalid" in info.value.diagnostics[0].message


def test_run_command_on_every_backend_agrees(tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32))
    outputs = {}
    for backend in BACKENDS:
        out = tmp_path / f"{backend}.npz"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "dualnet",
                "run",
                str(MODELS / "lenet5.dnet"),
                "--backend",
                backend,
                "--input",
                f"x={x}",
                "--seed",
                "4",
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
        outputs[backend] = np.load(out)["output"]
        if backend == "onnx":
            assert "CPUExecutionProvider" in run.stdout or "CUDA" in run.stdout
    assert np.allclose(outputs["onnx"], outputs["torch"], atol=1e-5)
    assert np.allclose(outputs["keras"], outputs["torch"], atol=1e-5)


def test_bad_weights_and_opsets_are_diagnostics(tmp_path):
    program = dualnet.load(str(MODELS / "lenet5.dnet"))
    other = tmp_path / "mlp.safetensors"
    from dualnet.io.weights import write_state

    write_state(_weights(dualnet.load(str(MODELS / "mlp.dnet")).check()), other)
    assert _code(lambda: program.onnx(weights=str(other))) == "E-WEIGHTS"
    assert _code(lambda: program.onnx(opset=5)) == "E-BACKEND"
    blocked = tmp_path / "file"
    blocked.write_text("")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dualnet",
            "compile",
            str(MODELS / "lenet5.dnet"),
            "--target",
            "onnx",
            "-o",
            str(blocked / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "E-IO" in run.stderr


def test_external_data_for_large_models(tmp_path, monkeypatch):
    """Over protobuf's 2 GB the tensors go to the fixed sibling `<model>.onnx.data`."""
    import onnx

    from dualnet import compiler

    monkeypatch.setattr(compiler, "PROTOBUF_LIMIT", 1000)
    summary = dualnet.load(str(MODELS / "lenet5.dnet")).check()
    out = compiler.write_onnx(summary, str(tmp_path), seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LeNet5.onnx", "LeNet5.onnx.data"]
    onnx.checker.check_model(str(out), full_check=True)
    stub = onnx.load(str(out), load_external_data=False)
    external = [
        t.name for t in stub.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    assert "fc1.weight" in external  # (tensors under 1 KB stay inline)
    loaded = {t.name: t for t in onnx.load(str(out)).graph.initializer}
    assert loaded["fc1.weight"].raw_data  # read back from the sibling file


def _ir_values(instance, graph):
    """Every value of a graph and of the graphs its calls reach (inlined by the emitter)."""
    for node in graph.nodes:
        yield from node.outputs
        if node.kind == "call":
            yield from _ir_values(instance.child(node.target), node.callee)


@pytest.mark.parametrize("name", ZOO)
def test_strict_shape_inference_agrees_with_dualnet(name):
    """For every IR value: ONNX's inferred element type, rank and every size dualnet knows
    (a number, or a named dimension such as B) are dualnet's. The graph carries dualnet's
    types as value_info, and strict inference raises where its own inference differs."""
    import onnx

    from dualnet.backends.onnx.emit import emit_onnx
    from dualnet.backends.onnx.lowering import ONNX_TYPES
    from dualnet.ir.dims import Dim

    summary = dualnet.load(str(MODELS / f"{name}.dnet")).check()
    emitted = emit_onnx(summary, _weights(summary))
    inferred = onnx.shape_inference.infer_shapes(emitted.model, strict_mode=True, data_prop=True)
    types = {
        v.name: v.type.tensor_type
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    checked = 0
    for value in _ir_values(summary.instance, summary.graph):
        t = types[emitted.names[id(value)]]
        assert t.elem_type == ONNX_TYPES[value.type.dtype], value.name
        assert len(t.shape.dim) == len(value.type.shape), value.name
        for want, got in zip(value.type.shape, t.shape.dim, strict=True):
            if isinstance(want, int):
                assert got.dim_value == want, (value.name, value.type)
            elif isinstance(want, Dim) and want.symbol is not None and got.dim_param:
                assert got.dim_param == want.symbol, (value.name, value.type)
        checked += 1
    assert checked >= len(summary.graph.outputs)


@pytest.mark.parametrize(
    "args, code, text",
    [
        (
            ["--target", "torch", "--layout", "channels_last"],
            2,
            "--layout applies to --target keras",
        ),
        (["--target", "keras", "--weights", "w.safetensors"], 2, "--weights applies to"),
        (["--target", "onnx", "--opset", "12"], 1, "E-BACKEND"),
        (["--target", "onnx", "--opset", "x"], 2, "invalid opset"),
    ],
)
def test_compile_options_are_checked(tmp_path, args, code, text):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dualnet",
            "compile",
            str(MODELS / "mlp.dnet"),
            *args,
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == code and text in run.stderr, run.stderr
    assert not list(tmp_path.iterdir())


def test_an_op_newer_than_the_opset_is_named_with_its_minimum():
    """BERT's LayerNorm is LayerNormalization, opset 17: at opset 16 the error says so, at
    the layer's line."""
    program = dualnet.load(str(MODELS / "bert_encoder.dnet"))
    with pytest.raises(DualnetError) as info:
        program.onnx(opset=16)
    (diagnostic,) = info.value.diagnostics
    assert (
        diagnostic.code == "E-BACKEND"
        and "`LayerNorm` needs ONNX opset 17" in diagnostic.message
        and diagnostic.span is not None
    )
    assert program.onnx(opset=21).opset_import[0].version == 21

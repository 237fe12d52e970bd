"""`dualnet parity`: the same model in several backends, one table of differences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dualnet
from dualnet import cli
from dualnet.backends import BACKENDS
from dualnet.diagnostics import DualnetError
from dualnet.verify import parity

MODELS = Path(__file__).resolve().parents[1] / "models"


ZOO = sorted(p.stem for p in MODELS.glob("*.dnet") if p.stem != "blocks")  # blocks: a library
# Inputs larger than parity's default 8 × 8, for models whose poolings floor it away.
SIZES = {"densenet121": {"H": 32, "W": 32}}


@pytest.mark.parametrize("name", ZOO)
def test_the_zoo_agrees_across_all_three_backends(name):
    dims = {"T": 12, **SIZES.get(name, {})}
    rows, where = parity.compare(
        dualnet.load(str(MODELS / f"{name}.dnet")), None, list(BACKENDS), dims=dims
    )
    assert len(where) == 3 and rows and all(r.ok for r in rows), rows


def test_a_difference_is_a_mismatch_and_exit_1(monkeypatch, capsys):
    real = parity.run

    def drifting(program, model, backend, inputs, weights, seed, probe, **kwargs):
        outputs, where = real(program, model, backend, inputs, weights, seed, probe, **kwargs)
        return ([o + 0.01 for o in outputs] if backend == "onnx" else outputs), where

    monkeypatch.setattr(parity, "run", drifting)
    code = cli.main(["parity", str(MODELS / "mlp.dnet"), "--backends", "torch,onnx"])
    out = capsys.readouterr().out
    assert code == 1 and "MISMATCH" in out and "torch vs onnx" in out


def test_inputs_respect_dtypes_vocabularies_and_dims():
    summary = dualnet.load(str(MODELS / "lstm_classifier.dnet")).check()
    (ids,) = parity.random_inputs(summary, {"B": 3, "T": 7}, seed=1).values()
    assert ids.shape == (3, 7) and ids.dtype == np.int64 and 0 <= ids.min() and ids.max() < 20000
    bert = dualnet.load(str(MODELS / "bert_encoder.dnet")).check()
    inputs = parity.random_inputs(bert, {"B": 4, "T": 64}, seed=0)
    assert parity.vocabularies(bert) == {"ids": 30522, "token_types": 2}
    assert inputs["token_types"].max() == 1 and inputs["ids"].max() > 1000
    assert inputs["mask"].dtype == bool and inputs["mask"][:, 0].all()
    assert parity.parse_dims("B=2, T=16") == {"B": 2, "T": 16}
    for bad in ("B", "B=0", "B=x", "=3"):
        with pytest.raises(DualnetError):
            parity.parse_dims(bad)


def test_an_index_tensor_is_drawn_below_the_size_it_indexes(tmp_path):
    """x[ids] (take): ids below x's known size, through arithmetic; a symbolic size or an
    Embedding's smaller vocabulary bounds it otherwise."""
    path = tmp_path / "take.dnet"
    path.write_text(
        "model M() {\n"
        "    emb = Embedding(3, 4)\n"
        "    forward(t: f32[50, 4], i: i64[9], j: i32[9], k: i64[9], x: f32[B, 4]) {\n"
        "        return t[i - 1], t[j] + emb(j), x[k]\n"
        "    }\n"
        "}\n"
    )
    summary = dualnet.load(str(path)).check()
    assert parity.vocabularies(summary) == {"i": 50, "j": 3}
    inputs = parity.random_inputs(summary, {"B": 2}, seed=0)
    assert inputs["i"].max() > 3 and inputs["k"].max() <= 1


SHARED = """
model Shared() {
    fc = Linear(8)
    skip = Identity()
    forward(x: f32[B, 8]) -> f32[B, 8] {
        return fc(relu(fc(skip(x))))
    }
}
"""


def test_per_layer_compares_every_call_of_every_layer(tmp_path):
    path = tmp_path / "shared.dnet"
    path.write_text(SHARED)
    outputs, rows, _ = parity.compare_layers(dualnet.load(str(path)), None, list(BACKENDS))
    assert [r.output for r in rows[::3]] == ["skip", "fc", "fc (call 2)"]
    assert all(r.ok and not r.note and r.shape == (2, 8) for r in rows), rows
    assert all(r.ok for r in outputs)


def test_per_layer_names_the_first_layer_that_diverges(monkeypatch, capsys):
    state = BACKENDS["keras"].module("state")
    real = state.load_keras

    def broken_fc2(model, path):  # the Keras fc2 kernel gets a wrong value
        real(model, path)
        model.fc2.kernel.assign(model.fc2.kernel.numpy() * 1.01)

    monkeypatch.setattr(state, "load_keras", broken_fc2)
    code = cli.main(["parity", str(MODELS / "lenet5.dnet"), "--per-layer"])
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ ")}
    assert code == 1 and "ok" in lines["fc1"] and "MISMATCH" in lines["fc2"]
    assert "first divergence: `fc2` (lenet5.dnet:15), torch vs keras" in out


def test_per_layer_zoo_layers_agree_in_their_own_axis_order():
    for name in ("unet", "bert_encoder"):  # channels-last layers; several outputs per call
        _, rows, _ = parity.compare_layers(
            dualnet.load(str(MODELS / f"{name}.dnet")), None, list(BACKENDS), dims={"T": 6}
        )
        assert len(rows) > 60 and all(r.ok and not r.note for r in rows), [
            r for r in rows if not r.ok or r.note
        ]


def test_training_mode_compares_outputs_and_running_statistics(capsys):
    from dualnet.verify.runner import Probe

    program = dualnet.load(str(MODELS / "mobilenetv2.dnet"))
    rows, _ = parity.compare(program, None, ["torch", "keras"], train=True)
    state = {r.output for r in rows if r.output.startswith("state ")}
    norms = [layer.path for layer in program.check().instance.layers() if layer.op == "BatchNorm"]
    assert state == {f"state {p}.{n}" for p in norms for n in ("running_mean", "running_var")}
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    probe = Probe(train=True, state={})  # the statistics really moved: the test can fail
    inputs = parity.random_inputs(program.check(), {}, 0)
    parity.run(program, None, "torch", inputs, None, 0, probe)
    assert np.abs(probe.state[f"{norms[0]}.running_var"] - 1).max() > 1e-2
    assert cli.main(["parity", str(MODELS / "lenet5.dnet"), "--train"]) == 0
    out = capsys.readouterr().out
    assert "onnx: left out" in out and "torch vs keras" in out and "keras vs onnx" not in out


BATCHNORM = """
model Norm() {
    conv = Conv2d(4, kernel=3, padding=1)
    bn = BatchNorm()
    forward(x: f32[B, 3, 6, 6]) -> f32[B, 4, 6, 6] { return relu(bn(conv(x))) }
}
"""


def test_training_mode_runs_keras_as_fit_does(monkeypatch, tmp_path):
    """`--train` takes Keras's own training step, so generated code whose `call` takes no
    `training` argument (and passes none on), which `fit()` runs in inference mode, is a
    mismatch of the outputs and of the running statistics; as generated, it is not."""
    import re

    from dualnet.backends.keras import emit as keras_emit

    path = tmp_path / "norm.dnet"
    path.write_text(BATCHNORM)
    program = dualnet.load(str(path))
    rows, _ = parity.compare(program, None, ["torch", "keras"], train=True)
    assert rows and all(r.ok for r in rows), rows
    real = keras_emit.emit_keras

    def without_training(*args, **kwargs):
        source, entry = real(*args, **kwargs)
        return re.sub(r",\s*training=(training|None(?=\)))", "", source), entry

    monkeypatch.setattr(keras_emit, "emit_keras", without_training)
    assert "training" not in program.source("keras").split("class Norm")[1]
    rows, _ = parity.compare(program, None, ["torch", "keras"], train=True)
    wrong = {r.output for r in rows if not r.ok}
    assert wrong == {"output", "state bn.running_mean", "state bn.running_var"}


def test_several_files_give_one_line_each(tmp_path, capsys):
    bad = tmp_path / "bad.dnet"
    bad.write_text("model X() {\n    forward(x: f32[B]) -> f32[B] { return y }\n}\n")
    files = [str(MODELS / "lenet5.dnet"), str(MODELS / "mlp.dnet")]
    assert cli.main(["parity", *files, "--backends", "torch,onnx"]) == 0
    out = capsys.readouterr().out
    assert "parity of 2 models" in out and "│ LeNet5 " in out and "│ MLP " in out
    assert cli.main(["parity", *files, str(bad)]) == 1
    captured = capsys.readouterr()
    assert "ERROR" in captured.out and "E-NAME" in captured.err and "bad.dnet:2" in captured.err
    assert cli.main(["parity", *files, "--per-layer"]) == 2


def test_outputs_of_different_shapes_say_so(monkeypatch, capsys):
    real = parity.run

    def truncating(program, model, backend, inputs, weights, seed, probe, **kwargs):
        outputs, where = real(program, model, backend, inputs, weights, seed, probe, **kwargs)
        return ([o[:, :3] for o in outputs] if backend == "onnx" else outputs), where

    monkeypatch.setattr(parity, "run", truncating)
    code = cli.main(["parity", str(MODELS / "mlp.dnet"), "--backends", "torch,onnx"])
    out = capsys.readouterr().out
    assert code == 1 and "shapes differ: [2, 10] vs [2, 3]" in out, out
    assert "inf" not in out and "nan" not in out
    files = [str(MODELS / "mlp.dnet")] * 2
    assert cli.main(["parity", *files, "--backends", "torch,onnx"]) == 1
    assert "shapes differ: [2, 10] vs [2, 3]" in capsys.readouterr().out


def test_a_backend_refusing_the_seeded_weights_is_its_bug(monkeypatch, capsys):
    """E-WEIGHTS about the temporary file parity wrote itself becomes E-BACKEND naming the
    backend; the temporary path is never shown."""
    from dualnet.io.weights import mismatch_error

    def refusing(self, program, model, summary, inputs, file, probe):
        raise mismatch_error([f"{file} has no tensor `fc1.weight`"], file)

    monkeypatch.setattr(type(BACKENDS["onnx"]), "run", refusing)
    code = cli.main(["parity", str(MODELS / "mlp.dnet"), "--backends", "torch,onnx"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error[E-BACKEND]: the onnx backend cannot take"), err
    assert "E-WEIGHTS" not in err and "init.safetensors" not in err
    assert "the seeded weights has no tensor `fc1.weight`" in err


def test_seeded_weights_redraw_their_constant_tensors():
    """Parity and gradcheck start from the seeded initialisation with every constant float
    tensor redrawn (a zero bias would hide a misplaced bias add): zeros around 0, other
    constants around themselves with their sign; drawn tensors and integers stay."""
    from dualnet.backends.initial import varied

    drawn = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    arrays = {
        "fc.weight": drawn,
        "fc.bias": np.zeros(4, np.float32),
        "bn.running_var": np.ones(4, np.float32),
        "scale": np.full((4, 1, 1), -1e-6, np.float64),
        "bn.num_batches_tracked": np.zeros((), np.int64),
    }
    out = varied(arrays, 0)
    assert (
        out["fc.weight"] is drawn
        and out["bn.num_batches_tracked"] is arrays["bn.num_batches_tracked"]
    )
    assert np.all(out["fc.bias"] != 0) and len(set(out["fc.bias"].tolist())) == 4
    assert np.all((out["bn.running_var"] >= 0.5) & (out["bn.running_var"] <= 1.5))
    assert out["scale"].dtype == np.float64 and np.all(out["scale"] < 0)
    assert all(np.array_equal(out[k], varied(arrays, 0)[k]) for k in out)
    assert not np.array_equal(out["fc.bias"], varied(arrays, 1)["fc.bias"])

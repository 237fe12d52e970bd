"""`dualnet train` and `dualnet.training.loop.train`: resuming (after an epoch, after Ctrl-C)
continues exactly; both frameworks give the same run; bad data is E-INPUT naming the array,
with nothing written; a non-finite loss stops with the last good checkpoint kept; a
checkpoint of another optimiser or model is E-WEIGHTS naming the tensor; the allocator is
set up unless --system-allocator."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from dualnet.cli import main
from dualnet.compiler import load
from dualnet.diagnostics import DualnetError
from dualnet.io.weights import read_arrays
from dualnet.training.loop import Interrupted, Options, train
from dualnet.training.spec import OptimizerSpec, ScheduleSpec, TrainSpec
from dualnet.verify.train_parity import relative

pytest.importorskip("torch")

FILE = str(Path(__file__).with_name("cnn_train.dnet"))
PROGRAM = load(FILE)
ADAM = OptimizerSpec("Adam", lr=0.01, schedule=ScheduleSpec("cosine", t_max=12))
SPEC = TrainSpec("Regressor", "Mse", ADAM)


def regression(n: int = 24, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((n, 4)).astype(np.float32),
        "target": rng.standard_normal((n, 2)).astype(np.float32),
    }


QUIET = {"progress": False}


def weights(run_dir) -> dict[str, np.ndarray]:
    last = json.loads((Path(run_dir) / "checkpoints" / "last.json").read_text())
    return read_arrays(
        str(Path(run_dir) / "checkpoints" / last["checkpoint"] / "weights.safetensors")
    )


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_resume_after_an_epoch_continues_exactly(backend, tmp_path):
    data = regression()
    whole = train(
        PROGRAM,
        SPEC,
        backend,
        tmp_path / "a",
        data,
        options=Options(epochs=3, batch_size=8, **QUIET),
    )
    train(
        PROGRAM,
        SPEC,
        backend,
        tmp_path / "b",
        data,
        options=Options(epochs=1, batch_size=8, **QUIET),
    )
    resumed = train(
        PROGRAM,
        SPEC,
        backend,
        tmp_path / "b",
        data,
        options=Options(epochs=3, batch_size=8, resume=True, **QUIET),
    )
    assert resumed["batch_loss"] == whole["batch_loss"]
    assert len(resumed["epochs"]) == 3
    for name, value in weights(tmp_path / "a").items():
        np.testing.assert_array_equal(weights(tmp_path / "b")[name], value)


class CtrlCAt:
    """Batches that press Ctrl-C while the loop trains the `at`-th one of the first pass."""

    def __init__(self, data, at: int):
        self.data, self.at, self.passes = data, at, 0

    def __iter__(self):
        self.passes += 1
        for i in range(0, 24, 8):
            if self.passes == 1 and i // 8 == self.at:
                os.kill(os.getpid(), signal.SIGINT)
            yield {k: v[i : i + 8] for k, v in self.data.items()}


def test_ctrl_c_leaves_a_checkpoint_that_resumes_exactly(tmp_path):
    data = regression()
    batches = [{k: v[i : i + 8] for k, v in data.items()} for i in range(0, 24, 8)]
    whole = train(
        PROGRAM, SPEC, "torch", tmp_path / "a", batches, options=Options(epochs=2, **QUIET)
    )
    with pytest.raises(Interrupted):
        train(
            PROGRAM,
            SPEC,
            "torch",
            tmp_path / "b",
            CtrlCAt(data, 1),
            options=Options(epochs=2, **QUIET),
        )
    state = json.loads(next((tmp_path / "b" / "checkpoints").glob("step-*/state.json")).read_text())
    assert (state["epoch"], state["batch"]) == (0, 2)
    resumed = train(
        PROGRAM,
        SPEC,
        "torch",
        tmp_path / "b",
        batches,
        options=Options(epochs=2, resume=True, **QUIET),
    )
    assert resumed["batch_loss"] == whole["batch_loss"]


def test_both_frameworks_train_alike(tmp_path):
    data, val = regression(), regression(8, 1)
    runs = {
        backend: train(
            PROGRAM,
            SPEC,
            backend,
            tmp_path / backend,
            data,
            val,
            Options(epochs=2, batch_size=8, **QUIET),
        )
        for backend in ("torch", "keras")
    }
    torch_run, keras_run = runs["torch"], runs["keras"]
    assert relative(np.array(keras_run["batch_loss"]), np.array(torch_run["batch_loss"])) <= 1e-5
    assert keras_run["epochs"][-1]["val"]["loss"] == pytest.approx(
        torch_run["epochs"][-1]["val"]["loss"], rel=1e-5
    )
    for name, value in weights(tmp_path / "torch").items():
        assert relative(weights(tmp_path / "keras")[name], value) <= 1e-4, name


class NanInSecondEpoch:
    def __init__(self, data):
        self.data, self.passes = data, 0

    def __iter__(self):
        self.passes += 1
        x = self.data["x"].copy()
        if self.passes == 2:
            x[8] = np.nan
        for i in range(0, 24, 8):
            yield {"x": x[i : i + 8], "target": self.data["target"][i : i + 8]}


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(DualnetError) as caught:
        train(
            PROGRAM,
            SPEC,
            "torch",
            tmp_path,
            NanInSecondEpoch(regression()),
            options=Options(epochs=3, **QUIET),
        )
    message = str(caught.value.diagnostics[0].message)
    assert "the loss is nan at epoch 2, batch 2" in message
    kept = weights(tmp_path)
    assert all(np.isfinite(v).all() for v in kept.values())
    assert (
        json.loads(next((tmp_path / "checkpoints").glob("step-*/state.json")).read_text())["epoch"]
        == 1
    )


def cli_train(tmp_path, data: dict, *extra: str) -> int:
    np.savez(tmp_path / "d.npz", **data)
    return main(
        [
            "train",
            FILE,
            "--model",
            "Regressor",
            "--backend",
            "torch",
            "--data",
            str(tmp_path / "d.npz"),
            "--loss",
            "Mse",
            "--no-progress",
            "-o",
            str(tmp_path / "run"),
            *extra,
        ]
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d.pop("target"), "lacks the array `target`"),
        (
            lambda d: d.update(x=d["x"].astype(np.float64)),
            "`x` in the training data must be f32[B, 4]; it is float64[24, 4]",
        ),
        (lambda d: d.update(x=d["x"][:, :, None]), "`x` in the training data must be f32[B, 4]"),
        (
            lambda d: d.update(x=d["x"][:, :3]),
            "axis 1 of the array `x` in the training data must be 4",
        ),
        (
            lambda d: d.update(target=d["target"][:20]),
            "axis 0 of the array `target` in the training data must be 24",
        ),
    ],
    ids=["missing", "dtype", "rank", "size", "examples"],
)
def test_bad_data_names_the_array_and_writes_nothing(change, says, tmp_path, capsys):
    data = regression()
    change(data)
    assert cli_train(tmp_path, data) == 1
    assert says in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_labels_out_of_range(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x=rng.standard_normal((4, 3, 12, 12)).astype(np.float32),
        labels=np.array([0, 4, 5, 1]),
    )
    argv = [
        "train",
        FILE,
        "--backend",
        "torch",
        "--data",
        str(tmp_path / "d.npz"),
        "--loss",
        "CrossEntropy",
        "-o",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 1
    assert (
        "the labels `labels` in the training data hold 5; they index 5 classes, 0..4"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_of_another_optimizer_or_model(tmp_path, capsys):
    data = regression()
    assert cli_train(tmp_path, data, "--optimizer", "Adam") == 0
    assert cli_train(tmp_path, data, "--optimizer", "SGD", "--resume") == 1
    err = capsys.readouterr().err
    assert (
        "E-WEIGHTS" in err
        and "is the state of another optimiser (torch Adam; this run: torch SGD)" in err
    )
    assert "`hidden.bias.exp_avg`" in err
    np.savez(
        tmp_path / "c.npz", x=np.zeros((4, 3, 12, 12), np.float32), labels=np.zeros(4, np.int64)
    )
    argv = [
        "train",
        FILE,
        "--backend",
        "torch",
        "--data",
        str(tmp_path / "c.npz"),
        "--loss",
        "CrossEntropy",
        "--optimizer",
        "Adam",
        "--resume",
        "-o",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 1
    assert "E-WEIGHTS" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_cli_run_writes_the_run_directory(backend, tmp_path, capsys):
    assert (
        cli_train(
            tmp_path,
            regression(),
            "--backend",
            backend,  # the last --backend counts
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--val",
            str(tmp_path / "d.npz"),
        )
        == 0
    )
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2] and len(summary["batch_loss"]) == 6
    assert {"train", "val", "lr", "examples_per_s"} <= set(summary["epochs"][0])
    tf = pytest.importorskip("tensorflow")
    from tensorflow.core.util import event_pb2

    scalars = {}
    for file in (tmp_path / "run" / "tensorboard").iterdir():
        # not tf.compat.v1.train.summary_iterator: after it, a float64 Keras model in this
        # process computes other values (test_train_parity's first loss: 0.876, not 1.379)
        for record in tf.data.TFRecordDataset(str(file)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:  # PyTorch's writer: simple_value; TF's: a tensor
                scalars[value.tag, event.step] = (
                    value.simple_value
                    if value.HasField("simple_value")
                    else float(tf.make_ndarray(value.tensor))
                )
    first = summary["epochs"][0]
    assert scalars["train/loss", 1] == pytest.approx(first["train"]["loss"], rel=1e-6)
    assert scalars["val/loss", 2] == pytest.approx(summary["epochs"][1]["val"]["loss"], rel=1e-6)
    assert scalars["lr", 1] == pytest.approx(first["lr"])


def test_plot(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    assert cli_train(tmp_path, regression(), "--plot") == 0
    assert (tmp_path / "run" / "curves.png").read_bytes().startswith(b"\x89PNG")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    (tmp_path / "again").mkdir()
    assert cli_train(tmp_path / "again", regression(), "--plot") == 1
    assert "--plot needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "again" / "run").exists()


@pytest.mark.parametrize("system", [False, True], ids=["kept", "system"])
def test_train_sets_the_allocator_up_unless_told_not_to(system, tmp_path, monkeypatch):
    import dualnet.training.allocator as allocator

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(True))
    flag = ("--system-allocator",) if system else ()
    assert cli_train(tmp_path, regression(), *flag) == 0
    assert calls == ([] if system else [True])

"""The training demo (`make train-demo`) and a `train` block through the CLI: the shipped
digits, `dualnet train` and `dualnet compile` taking the file's own training declaration,
and the demo's two frameworks training alike."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dualnet.cli import main
from dualnet.training.digits import load_digits

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "examples" / "digits.dnet")


def test_the_shipped_digits_split_by_the_seed():
    train, val = load_digits(val_fraction=0.2, seed=3)
    assert train["images"].shape == (1438, 1, 8, 8) and val["images"].shape == (359, 1, 8, 8)
    assert train["images"].dtype == np.float32 and train["labels"].dtype == np.int64
    assert 0 <= train["images"].min() and train["images"].max() <= 1
    labels = np.concatenate([train["labels"], val["labels"]])
    assert sorted(np.unique(labels)) == list(range(10)) and np.bincount(labels).min() > 170
    again, _ = load_digits(val_fraction=0.2, seed=3)
    other, _ = load_digits(val_fraction=0.2, seed=4)
    assert np.array_equal(again["labels"], train["labels"])
    assert not np.array_equal(other["labels"], train["labels"])


def test_train_and_compile_take_the_files_train_block(tmp_path, capsys):
    train, _ = load_digits()
    np.savez(tmp_path / "d.npz", **{k: v[:64] for k, v in train.items()})
    argv = ["train", DIGITS, "--backend", "torch", "--data", str(tmp_path / "d.npz")]
    assert main([*argv, "--epochs", "1", "--no-progress", "-o", str(tmp_path / "run")]) == 0
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(record["epochs"][0]["train"]) == {"loss", "accuracy"}
    assert len(record["batch_loss"]) == 2  # 64 examples, batches of 32

    assert main([*argv, "--lr", "0.1", "-o", str(tmp_path / "other")]) == 1
    err = capsys.readouterr().err
    assert "E-INPUT" in err and "has a train declaration" in err
    assert not (tmp_path / "other").exists()

    assert main(["compile", DIGITS, "--target", "torch", "-o", str(tmp_path / "src")]) == 0
    code = (tmp_path / "src" / "digits_torch_train.py").read_text()
    assert "torch.optim.AdamW" in code and "label_smoothing=0.05" in code


@pytest.mark.filterwarnings("ignore")
def test_the_demo_trains_alike_in_both_frameworks(tmp_path):
    demo = [sys.executable, str(ROOT / "examples" / "train_demo.py")]
    done = subprocess.run(
        [*demo, "--epochs", "1", "-o", str(tmp_path)], capture_output=True, text=True, check=True
    )
    lines = [line.split() for line in done.stdout.splitlines()]
    rows = {f[0]: f for f in lines if len(f) == 5 and f[0] in ("torch", "keras") and "vs" not in f}
    assert rows["torch"][1] == rows["keras"][1]  # the last epoch's training loss, 4 digits
    gaps = {" ".join(f[:-2]): float(f[-2]) for f in lines if "vs" in f}
    assert set(gaps) == {
        "torch vs keras",
        "torch vs torch on 1 thread",
        "keras vs torch on 1 thread",
    }
    assert gaps["torch vs keras"] < 1e-4 and gaps["keras vs torch on 1 thread"] < 1e-5
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"

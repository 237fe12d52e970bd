"""Inputs too small for a model (issue 11: no internal errors): `parity` and `run` check the
sizes every value would have before any framework runs, and refuse with E-INPUT at the
first value whose size would be below 1, in the caller or in a sub-model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

SOURCE = """\
model Block(k: int) {
    conv = Conv2d(2, kernel=k)
    forward(x: f32[B, C, H, W]) { return conv(x) }
}

model Net() {
    stem = Conv2d(4, kernel=3)
    block = Block(7)
    forward(x: f32[B, 1, H, W]) -> f32[B, 2, H - 8, W - 8] { return x |> stem |> block }
}
"""


def dualnet(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "dualnet", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.fixture
def model(tmp_path):
    (tmp_path / "net.dnet").write_text(SOURCE)
    return tmp_path


def test_parity_refuses_sizes_that_leave_a_sub_model_nothing(model):
    out = dualnet(
        "parity", "net.dnet", "--dims", "B=1,H=8,W=12", "--backends", "torch,onnx", cwd=model
    )
    assert out.returncode == 1, out.stderr
    assert "E-INPUT" in out.stderr and "net.dnet:3:" in out.stderr, out.stderr
    assert "H=8" in out.stderr and "is 0" in out.stderr, out.stderr


def test_parity_refuses_its_default_sizes_where_they_are_too_small(model):
    out = dualnet("parity", "net.dnet", "--backends", "torch,onnx", cwd=model)
    assert out.returncode == 1, out.stderr
    assert "E-INPUT" in out.stderr and "B=2, H=8, W=8" in out.stderr, out.stderr


def test_run_refuses_input_arrays_too_small(model):
    np.save(model / "x.npy", np.zeros((1, 1, 2, 9), np.float32))
    out = dualnet(
        "run", "net.dnet", "--backend", "torch", "--input", "x=x.npy", "-o", "out.npz", cwd=model
    )
    assert out.returncode == 1, out.stderr
    assert "E-INPUT" in out.stderr and "net.dnet:9:" in out.stderr, out.stderr
    assert not (model / "out.npz").exists()


def test_sizes_large_enough_run(model):
    out = dualnet(
        "parity", "net.dnet", "--dims", "B=1,H=9,W=9", "--backends", "torch,onnx", cwd=model
    )
    assert out.returncode == 0, out.stderr

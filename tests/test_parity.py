"""`dualnet parity`: the same model in several backends, one table of differences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dualnet
from dualnet import cli, parity
from dualnet.diagnostics import DualnetError

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_the_zoo_agrees_across_all_three_backends():
    for name, dims in (("lenet5", {}), ("bert_encoder", {"T": 12})):
        rows, where = parity.compare(dualnet.load(str(MODELS / f"{name}.dnet")), None,
                                     ["torch", "keras", "onnx"], dims=dims)
        assert len(where) == 3 and rows and all(r.ok for r in rows), rows


def test_a_difference_is_a_mismatch_and_exit_1(monkeypatch, capsys):
    real = parity.run

    def drifting(program, model, backend, inputs, weights, seed):
        outputs, where = real(program, model, backend, inputs, weights, seed)
        return ([o + 0.01 for o in outputs] if backend == "onnx" else outputs), where

    monkeypatch.setattr(parity, "run", drifting)
    code = cli.main(["parity", str(MODELS / "mlp.dnet"), "--backends", "torch,onnx"])
    out = capsys.readouterr().out
    assert code == 1 and "MISMATCH" in out and "torch vs onnx" in out


def test_inputs_respect_dtypes_vocabularies_and_dims():
    summary = dualnet.load(str(MODELS / "lstm_classifier.dnet")).check()
    (ids,) = parity.random_inputs(summary, {"B": 3, "T": 7}, seed=1).values()
    assert ids.shape == (3, 7) and ids.dtype == np.int64 and 0 <= ids.min() and ids.max() < 20000
    assert parity.parse_dims("B=2, T=16") == {"B": 2, "T": 16}
    for bad in ("B", "B=0", "B=x", "=3"):
        with pytest.raises(DualnetError):
            parity.parse_dims(bad)

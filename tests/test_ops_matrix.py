"""`dualnet ops`: the op × backend matrix, generated from the registry."""

from __future__ import annotations

import subprocess
import sys

from dualnet.backends import BACKENDS
from dualnet.ops import REGISTRY
from dualnet.verify.ops_matrix import matrix, missing


def test_every_op_has_a_row_for_every_backend():
    assert missing() == []


def test_a_missing_row_is_reported(monkeypatch):
    op = REGISTRY["relu"]
    monkeypatch.setattr(op, "lowerings", {k: v for k, v in op.lowerings.items() if k != "keras"})
    assert missing() == [("relu", "keras")]
    row = next(r for r in matrix() if r[0] == "relu")
    assert row[2 + list(BACKENDS).index("keras")].startswith("no")


def test_the_command_prints_the_matrix():
    run = subprocess.run([sys.executable, "-m", "dualnet", "ops"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{len(REGISTRY)} ops × {len(BACKENDS)} backends")
    assert "Conv2d" in run.stdout and "opset ≥ 17" in run.stdout
    piped = subprocess.run(
        f"{sys.executable} -m dualnet ops | head -3", shell=True, capture_output=True, text=True
    )
    assert "internal error" not in piped.stderr


def test_every_op_says_how_it_uses_its_axes():
    """`OpDef.axes` decides where a channels-last backend may run an op: a typo would make
    an op silently `fixed` (correct but slow), so only the four documented values exist."""
    assert {op.axes for op in REGISTRY.values()} == {"channels", "pointwise", "attribute", "fixed"}
    assert REGISTRY["Conv2d"].axes == "channels" and REGISTRY["matmul"].axes == "fixed"

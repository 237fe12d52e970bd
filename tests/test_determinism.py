"""Generated code is byte-identical across processes, hash seeds, working directories and
locales, for every backend (issue 11), on a program with `if` statements that move several
variables (in Keras, into different layouts: the branches' conversions were once written in
hash order), loops (written once and unrolled), a split class, and sub-models."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dualnet.backends import BACKENDS

PROGRAM = """
model Block(k: int, wide: bool) {
    conv = Conv2d(4, k, padding=k // 2)
    forward(x: f32[B, 4, H, W]) {
        a = relu(conv(x))
        b = x * 2.0
        c = x - 1.0
        if wide {
            a = a + b
            b = c * a
            c = permute(a, [0, 2, 3, 1])
        } else {
            c = permute(c, [0, 2, 3, 1])
        }
        for i in range(3) {
            a = a + x[:, i:i + 1]
        }
        return a + b + permute(c, [0, 3, 1, 2])
    }
}

model Layouts(wide: bool) {
    c1 = Conv2d(4, 3, padding=1)
    c2 = Conv2d(4, 3, padding=1)
    c3 = Conv2d(4, 3, padding=1)
    forward(x: f32[B, 4, H, H]) {
        if wide {
            a = c1(x)
            b = c2(x)
            c = c3(x)
        } else {
            a = transpose(c1(x), 2, 3)
            b = transpose(c2(x), 2, 3)
            c = transpose(c3(x), 2, 3)
        }
        return a + b + c
    }
}

model Net() {
    blocks = Sequential(Block(1 + 2 * i, i > 0) for i in range(3))
    head = Block(3, false)
    p = Layouts(true)
    q = Layouts(false)
    forward(x: f32[B, 4, 6, 6]) -> f32[B, 4, 6, 6] { return head(blocks(x)) + p(x) + q(x) }
}
"""

RUNS = [("0", "C"), ("1", "C.UTF-8"), ("12345", "en_US.UTF-8"), ("random", "POSIX")]


@pytest.mark.parametrize("target", list(BACKENDS))
def test_output_is_identical_across_processes(target, tmp_path):
    source = tmp_path / "program.dnet"
    source.write_text(PROGRAM)
    outputs = []
    for i, (seed, locale) in enumerate(RUNS):
        work = tmp_path / f"run{i}"
        work.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": seed, "LC_ALL": locale, "LANG": locale}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dualnet",
                "compile",
                str(source),
                "--target",
                target,
                "-o",
                "out",
            ],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
        )
        (written,) = (work / "out").iterdir()
        outputs.append(written.read_bytes())
    assert all(o == outputs[0] for o in outputs)

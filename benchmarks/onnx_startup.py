#!/usr/bin/env python3
"""Start-up of the ONNX path: `dualnet compile --target onnx` as a whole process.

    python benchmarks/onnx_startup.py [--runs 7] [--strict]

Measures the CPU time (user + system, the kernel's account of each child process: on a busy
machine wall time would count the other processes too) of whole processes on
models/resnet18.dnet with a seeded weight file (onnx_bench.write_weights), the median of
--runs runs after one warm-up run each that writes the bytecode (under a temporary
PYTHONPYCACHEPREFIX), the commands in rotating order:
  - `python -c pass`: the interpreter's start-up (info);
  - `python -m dualnet check models/resnet18.dnet` (comparison);
  - `python -c "import onnx"` (comparison: importing the onnx package, which imports
    ml_dtypes, took most of the command before it stopped importing onnx);
  - `python -m dualnet compile models/resnet18.dnet --target onnx --weights W -o DIR`.
    Target: <= 0.5 s of CPU.
Then, once under `python -X importtime`, the modules the command imports: none of onnx
(the package), ml_dtypes, torch, tensorflow, keras or onnxruntime.

Prints a table: measurement, value, target, ratio, verdict. Exits 0 unless --strict is
given and a target is missed (or a measurement failed).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from onnx_bench import MODEL, write_weights
from report import Row, finish, fmt_s, ratio_row, tail
from torch_latency import bytecode_env

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.5  # CPU seconds of `compile --target onnx --weights W` on ResNet-18
UNWANTED = ("onnx", "ml_dtypes", "torch", "tensorflow", "keras", "onnxruntime")
PASS, CHECK, IMPORT_ONNX, COMPILE = "python -c pass", "check", "import onnx", "compile"


class Failed(Exception):
    """A measured command failed."""


def commands(weights: Path, out: str) -> dict[str, list[str]]:
    rel = os.path.relpath(MODEL, ROOT)
    dualnet = [sys.executable, "-m", "dualnet"]
    return {
        PASS: [sys.executable, "-c", "pass"],
        CHECK: [*dualnet, "check", rel],
        IMPORT_ONNX: [sys.executable, "-c", "import onnx"],
        COMPILE: [
            *dualnet,
            "compile",
            rel,
            "--target",
            "onnx",
            "--weights",
            str(weights),
            "-o",
            out,
        ],
    }


def cpu_seconds(cmd: list[str], env: dict[str, str]) -> float:
    """User + system CPU seconds of one run of `cmd` (Failed if it fails)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise Failed(f"exit {proc.returncode}\n{tail(proc.stderr or proc.stdout)}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(cmds: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict[str, list[float]]:
    """CPU seconds of each command over `runs` rounds in rotating order, after a warm-up."""
    names = list(cmds)
    for name in names:
        cpu_seconds(cmds[name], env)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(cpu_seconds(cmds[name], env))
    return times


def imported(cmd: list[str], env: dict[str, str]) -> list[str]:
    """The modules of UNWANTED that `cmd` imports (`python -X importtime`)."""
    proc = subprocess.run(
        [cmd[0], "-X", "importtime", *cmd[1:]], cwd=ROOT, capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise Failed(f"exit {proc.returncode}\n{tail(proc.stderr)}")
    names = {
        line.rpartition("|")[2].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    return [m for m in UNWANTED if m in names]


def bench(runs: int) -> list[Row]:
    print(
        f"\n[1] CPU time (user + system) of whole processes, median of {runs} runs after "
        "1 warm-up each, rotating order; bytecode cached by the warm-up"
    )
    label = f"compile {os.path.relpath(MODEL, ROOT)} --target onnx --weights W"
    with tempfile.TemporaryDirectory(prefix="dualnet-bench-") as tmp:
        weights = Path(tmp) / "resnet18.safetensors"
        write_weights(weights)
        env = bytecode_env(os.path.join(tmp, "pycache"))
        cmds = commands(weights, os.path.join(tmp, "out"))
        try:
            times = measure(cmds, runs, env)
            unwanted = imported(cmds[COMPILE], env)
        except Failed as exc:
            print(f"  a command failed: {exc}")
            return [Row(label, "error", f"<= {fmt_s(TARGET_S)}", "-", "ERROR")]
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, cmd in cmds.items():
        shown = " ".join(os.path.basename(c) if c == sys.executable else c for c in cmd)
        print(f"  {fmt_s(medians[name]):>10}  {shown}")
    compile_s = medians[COMPILE]
    return [
        Row("python -c pass (interpreter start-up)", fmt_s(medians[PASS])),
        Row(
            f"python -m dualnet check {os.path.relpath(MODEL, ROOT)} (comparison)",
            fmt_s(medians[CHECK]),
        ),
        Row('python -c "import onnx" (comparison)', fmt_s(medians[IMPORT_ONNX])),
        Row(
            f"python -m dualnet {label}",
            f"{fmt_s(compile_s)} CPU (n={runs})",
            f"<= {fmt_s(TARGET_S)}",
            f"{compile_s / TARGET_S:.2f}x",
            "ok" if compile_s <= TARGET_S else "SLOW",
        ),
        ratio_row("compile / check", times[COMPILE], times[CHECK], digits=2),
        ratio_row('compile / "import onnx"', times[COMPILE], times[IMPORT_ONNX], digits=2),
        Row(
            "modules compile imports, of " + ", ".join(UNWANTED),
            ", ".join(unwanted) or "none",
            "none",
            "-",
            "FAIL" if unwanted else "ok",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs of each process")
    ap.add_argument("--strict", action="store_true", help="exit 1 unless every verdict is ok")
    args = ap.parse_args(argv)

    print(
        f"dualnet ONNX start-up benchmark  (python {sys.version.split()[0]}, "
        f"{sys.executable}, {os.cpu_count()} CPUs)"
    )
    if importlib.util.find_spec("onnx") is None:
        print(
            "\nONNX start-up benchmark skipped: onnx is not installed.\n    Install with "
            "`pip install -c constraints.txt -e '.[all]'` (or `make setup`)."
        )
        return finish(
            [Row("ONNX start-up (all rows)", "not installed (onnx)", "-", "-", "skipped")],
            args.strict,
        )
    return finish(bench(args.runs), args.strict)


if __name__ == "__main__":
    sys.exit(main())

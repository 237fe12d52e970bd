#!/usr/bin/env python3
"""Check-speed benchmark for dualnet.

    python benchmarks/run.py [--runs 7] [--sizes 250,500,1000,2000,4000] [--strict]

Measures
  1. `dualnet check models/resnet18.dnet` as a whole process, both as
     `python -m dualnet` and through the console script (median of --runs runs,
     after one warm-up run, which writes the bytecode as an installed dualnet has it), next
     to `python -c pass` and `python -c "import torch"`.
     Target: <= 0.3 s. Also verifies, in a fresh interpreter, that running the check
     pipeline imports none of torch / tensorflow / keras / onnx / onnxruntime. Then
     `python -m dualnet check` of every other entry file of the zoo (models/*.dnet that no
     other file there imports; --no-zoo skips them), same target.
  2. Generated deep models (N Linear layers, one statement per layer, no loops),
     checked in-process through `dualnet.check_file`; time per layer and
     time(N) / time(N/2) show whether checking grows linearly. Target: 2,000 layers <= 1 s.
  3. The Keras backend (benchmarks/keras_latency.py, in this process after the others; skip
     it with --no-keras): forward latency of the generated Keras ResNet-18 and MobileNetV2
     against hand-written ones (target ratio <= 1.05), and the transposes in every generated
     zoo model.

Prints a table: measurement, value, target, ratio, verdict. Exits 0 unless --strict is
given and a verdict is not ok.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from report import Row, finish, tail
from torch_latency import bytecode_env, time_process

ROOT = Path(__file__).resolve().parents[1]
PROCESS_TARGET_S = 0.3
DEEP_TARGET_N = 2000
DEEP_TARGET_S = 1.0
LINEAR_GROWTH_MAX = 2.5  # time(N)/time(N/2) above this is reported as superlinear
GROWTH_MIN_S = 0.02  # below this, t(N/2) is too small for the growth ratio to mean much
HEAVY_MODULES = ("torch", "tensorflow", "keras", "onnx", "onnxruntime")
DEEP_WIDTH = 64


# ------------------------------------------------------------------ helpers


def fmt_s(seconds: float) -> str:
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.3f} s"


def console_script() -> Path | None:
    candidates = [
        Path(sys.executable).parent / "dualnet",
        ROOT / ".venv" / "bin" / "dualnet",
    ]
    found = shutil.which("dualnet")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def zoo_entries() -> list[Path]:
    """The zoo's entry files: models/*.dnet that no other file there imports (blocks.dnet
    is checked through resnet18.dnet)."""
    files = sorted((ROOT / "models").glob("*.dnet"))
    texts = {f: f.read_text() for f in files}
    return [f for f in files if not any(f'"{f.name}"' in t for g, t in texts.items() if g != f)]


def process_row(
    label: str, cmd: list[str], runs: int, target: float | None, env: dict[str, str]
) -> Row:
    median, why = time_process(cmd, runs, env)
    if median is not None:
        print(f"  {label}: {fmt_s(median)}")
    else:
        print(f"  {label}: failed, {why}")
        return Row(label, "error", fmt_s(target) if target else "-", "-", "ERROR")
    ratio = f"{median / PROCESS_TARGET_S:.2f}x"
    if target is None:
        return Row(label, fmt_s(median), "-", ratio, "info")
    verdict = "ok" if median <= target else "SLOW"
    return Row(label, fmt_s(median), f"<= {fmt_s(target)}", ratio, verdict)


HEAVY_PROBE = r"""
import contextlib, io, sys
path = sys.argv[1]
heavy = {heavy!r}
import dualnet
sink = io.StringIO()
with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
    check_file = getattr(dualnet, "check_file", None)
    if check_file is not None:
        result = check_file(path)
        if getattr(result, "ok", True) is False:
            raise SystemExit("check reported errors")
    else:
        from dualnet import cli
        sys.argv = ["dualnet", "check", path]
        try:
            cli.main()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
print("HEAVY=" + ",".join(m for m in heavy if m in sys.modules))
""".replace("{heavy!r}", repr(HEAVY_MODULES))


def heavy_modules_row(model: Path) -> Row:
    label = "torch/tensorflow/keras/onnx(runtime) in sys.modules after check"
    proc = subprocess.run(
        [sys.executable, "-c", HEAVY_PROBE, str(model)], cwd=ROOT, capture_output=True, text=True
    )
    marker = [ln for ln in proc.stdout.splitlines() if ln.startswith("HEAVY=")]
    if proc.returncode != 0 or not marker:
        print(f"  heavy-module probe failed (exit {proc.returncode})\n{tail(proc.stderr)}")
        return Row(label, "error", "none", "-", "ERROR")
    loaded = [m for m in marker[-1].removeprefix("HEAVY=").split(",") if m]
    if loaded:
        return Row(label, "yes: " + ", ".join(loaded), "none", "-", "FAIL")
    return Row(label, "no", "none", "-", "ok")


# ------------------------------------------------------------------ deep models


def deep_model_source(n: int, width: int = DEEP_WIDTH) -> str:
    """A model with `n` Linear layers applied in a plain chain (no loops, no Sequential)."""
    lines = [f"# generated by benchmarks/run.py: {n} layers", "", "model Deep() {"]
    lines += [f"    l{i} = Linear({width})" for i in range(n)]
    lines += ["", f"    forward(x: f32[B, {width}]) -> f32[B, {width}] {{"]
    lines += [f"        x = relu(l{i}(x))" for i in range(n)]
    lines += ["        return x", "    }", "}", ""]
    return "\n".join(lines)


def validate(result: object, expected_params: int | None) -> None:
    """Fail loudly if the check reported errors or counted the wrong parameters."""
    if result is None:  # CLI path: the exit status was already checked
        return
    if getattr(result, "ok", True) is False:
        diags = getattr(result, "diagnostics", [])
        raise RuntimeError(f"check reported {len(diags)} error(s): {str(diags[:1])[:200]}")
    params = getattr(result, "trainable_params", None)
    if expected_params is not None and isinstance(params, int) and params != expected_params:
        raise RuntimeError(f"trainable_params {params:,} != expected {expected_params:,}")


def make_checker() -> tuple[str, Callable[[Path], object]]:
    """In-process `dualnet.check_file` if the API exists, else the CLI in a subprocess."""
    try:
        import dualnet
    except Exception as exc:
        print(f"  cannot import dualnet in-process ({type(exc).__name__}: {exc}); using the CLI")
        check_file = None
    else:
        check_file = getattr(dualnet, "check_file", None)
    if check_file is not None:
        return "dualnet.check_file (in-process)", lambda p: check_file(str(p))

    script = console_script()
    cmd = [str(script)] if script else [sys.executable, "-m", "dualnet"]

    def via_cli(path: Path) -> object:
        proc = subprocess.run([*cmd, "check", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"exit {proc.returncode}: {tail(proc.stderr or proc.stdout, 3)}")
        return None

    return "dualnet check (subprocess; includes interpreter start-up)", via_cli


def bench_deep(sizes: list[int], workdir: Path) -> list[Row]:
    how, check = make_checker()
    print(f"\n[2] deep generated models via {how}")

    # warm-up: imports, grammar/parser construction
    warm = workdir / "deep_warmup.dnet"
    warm.write_text(deep_model_source(8))
    try:
        validate(check(warm), 8 * (DEEP_WIDTH * DEEP_WIDTH + DEEP_WIDTH))
    except Exception as exc:
        print(f"  warm-up check failed: {type(exc).__name__}: {exc}")
        return [Row(f"deep N={n}", "error", "-", "-", "ERROR") for n in sizes]

    times: dict[int, float] = {}
    rows: list[Row] = []
    too_slow = False
    print(f"  {'N':>6}  {'time':>10}  {'per layer':>12}  {'t(N)/t(N/2)':>12}")
    for n in sizes:
        label = f"deep N={n}: check time"
        is_target = n == DEEP_TARGET_N
        target = f"<= {fmt_s(DEEP_TARGET_S)}" if is_target else "-"
        if too_slow:
            rows.append(Row(label, "skipped (previous N too slow)", target, "-", "skipped"))
            continue
        path = workdir / f"deep_{n}.dnet"
        path.write_text(deep_model_source(n))
        samples: list[float] = []
        try:
            for _ in range(3):
                start = time.perf_counter()
                result = check(path)
                samples.append(time.perf_counter() - start)
                validate(result, n * (DEEP_WIDTH * DEEP_WIDTH + DEEP_WIDTH))
                if samples[-1] > 3.0:  # slow enough: one sample is representative
                    break
        except RecursionError:
            rows.append(Row(label, "RecursionError", target, "-", "ERROR"))
            print(f"  {n:>6}  RecursionError")
            too_slow = True
            continue
        except Exception as exc:
            rows.append(Row(label, "error", target, "-", "ERROR"))
            print(f"  {n:>6}  error: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        t = statistics.median(samples)
        times[n] = t
        half = times.get(n // 2)
        growth = f"{t / half:.2f}" if half else "-"
        print(f"  {n:>6}  {fmt_s(t):>10}  {t / n * 1e6:>9.1f} us  {growth:>12}")
        if is_target:
            ratio = f"{t / DEEP_TARGET_S:.2f}x"
            verdict = "ok" if t <= DEEP_TARGET_S else "SLOW"
        else:
            ratio, verdict = "-", "info"
        rows.append(Row(label, f"{fmt_s(t)} ({t / n * 1e6:.1f} us/layer)", target, ratio, verdict))
        if t > 30.0:
            too_slow = True

    for n in sizes:
        if n in times and n // 2 in times:
            g = times[n] / times[n // 2]
            rows.append(
                Row(
                    f"deep growth t({n})/t({n // 2})",
                    f"{g:.2f}",
                    f"<= {LINEAR_GROWTH_MAX} (linear ~2)",
                    f"{g / 2:.2f}x",
                    "info (too fast to judge)"
                    if times[n // 2] < GROWTH_MIN_S
                    else "ok"
                    if g <= LINEAR_GROWTH_MAX
                    else "SUPERLINEAR",
                )
            )
    return rows


# ------------------------------------------------------------------ main


def process_rows(args: argparse.Namespace, model: Path, env: dict[str, str]) -> list[Row]:
    """The whole-process rows: baselines, `check` of `model` (module and console script),
    the heavy-module probe, then `check` of the rest of the zoo."""
    rel = os.path.relpath(model, ROOT)
    rows = [
        process_row(
            "python -c pass (baseline)", [sys.executable, "-c", "pass"], args.runs, None, env
        )
    ]
    if not args.no_torch:
        command = [sys.executable, "-c", "import torch"]
        rows.append(
            process_row(
                'python -c "import torch" (comparison)', command, min(args.runs, 3), None, env
            )
        )
    mod_label = f"python -m dualnet check {rel}"
    script = console_script()
    script_label = f"{script.name if script else 'dualnet'} check {rel} (console script)"
    if not model.is_file():
        print(f"  {rel} does not exist yet")
        for label in (mod_label, script_label, "heavy modules in sys.modules after check"):
            rows.append(Row(label, "missing", f"<= {fmt_s(PROCESS_TARGET_S)}", "-", "missing"))
    else:
        command = [sys.executable, "-m", "dualnet", "check", str(model)]
        rows.append(process_row(mod_label, command, args.runs, PROCESS_TARGET_S, env))
        if script is None:
            rows.append(Row(script_label, "no console script", "-", "-", "ERROR"))
        else:
            command = [str(script), "check", str(model)]
            rows.append(process_row(script_label, command, args.runs, PROCESS_TARGET_S, env))
        rows.append(heavy_modules_row(model))
    if not args.no_zoo:
        for path in zoo_entries():
            if path != model:
                command = [sys.executable, "-m", "dualnet", "check", str(path)]
                rows.append(
                    process_row(f"check {path.name}", command, args.runs, PROCESS_TARGET_S, env)
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per process measurement")
    ap.add_argument("--sizes", default="250,500,1000,2000,4000", help="deep model sizes")
    ap.add_argument("--model", default="models/resnet18.dnet", help="model for the process rows")
    ap.add_argument("--no-torch", action="store_true", help="skip the `import torch` baseline")
    ap.add_argument("--no-zoo", action="store_true", help="skip the rest of the zoo's check rows")
    ap.add_argument(
        "--no-keras",
        action="store_true",
        help="skip the Keras-backend benchmark (benchmarks/keras_latency.py)",
    )
    ap.add_argument("--strict", action="store_true", help="exit 1 unless every verdict is ok")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    model = (ROOT / args.model).resolve()

    print(f"dualnet check-speed benchmark  (python {sys.version.split()[0]}, {sys.executable})")
    print(
        f"[1] whole-process check, median of {args.runs} runs after 1 warm-up (bytecode "
        "cached by the warm-up, under a temporary PYTHONPYCACHEPREFIX, as pip installs it)"
    )
    with tempfile.TemporaryDirectory(prefix="dualnet-bench-") as tmp:
        rows = process_rows(args, model, bytecode_env(os.path.join(tmp, "pycache")))
        rows += bench_deep(sizes, Path(tmp))

    note = None
    if not args.no_keras:
        import keras_latency  # its measure() imports TensorFlow: last, after the timings above

        print("\n[3] Keras backend (benchmarks/keras_latency.py)")
        keras_rows, note = keras_latency.measure(threads=2, budget=1.0)
        rows += keras_rows
    return finish(rows, args.strict, note)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Differential fuzzing of the three backends (issue 6).

    python benchmarks/fuzz.py --examples N [--seed S] [--out DIR] [--every K]
                              [--constructs LIST] [--shrink [--match TEXT]]

Runs N random valid .dnet programs from `dualnet.verify.fuzzing.programs()` (hypothesis with
max_examples=N, seeded by S, no example database, generation only: a failure is kept as
found, not shrunk) through PyTorch, Keras and ONNX Runtime on the same inputs and seeded
weights, and compares every output of every backend pair (`dualnet.verify.parity`, tolerance
1e-4 relative). A program that fails `check`, raises in a backend, or disagrees is a
failure: it is written to DIR (default $TMPDIR/dualnet-fuzz, created on the first failure) with
the sizes and the finding in comments, ready for tests/fuzz_regressions/ (a program with an
imported file as a directory holding fuzz.dnet and blocks.dnet). Training-mode programs
also run one step of Keras's `train_on_batch` against PyTorch (`dualnet/verify/fuzzing/fit.py`)
and, with trainable parameters, three training steps of a drawn optimiser in both
frameworks (`dualnet/verify/fuzzing/training.py`: `dualnet parity --train-steps`).

Prints progress every K programs, then the registry ops the programs used (programs, uses)
and a table: programs run, time per program, the worst relative error per backend pair,
the differences excused as float32 rounding (counted apart), and each failure. Exits 1 on
any failure.

--constructs limits the programs to some of the language's constructs (comma-separated,
`ops` always included; default all: dualnet.verify.fuzzing.CONSTRUCTS).

With --shrink the run stops at the first failure (whose finding contains TEXT, with
--match) and hypothesis shrinks it: only the smallest failing program is written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from report import Row, finish, fmt_s  # noqa: E402

from dualnet.ops.registry import REGISTRY  # noqa: E402
from dualnet.verify import fuzzing, parity  # noqa: E402

CLEAR_EVERY = 50  # programs between keras.backend.clear_session() calls (flat memory)


class Tally:
    """What the run has seen so far."""

    def __init__(self, out: Path, seed: int, shrink: bool = False, match: str = ""):
        self.out, self.seed, self.shrink, self.match = out, seed, shrink, match
        self.last: tuple[fuzzing.Case, str] | None = None  # the latest failure (--shrink)
        self.programs = 0
        self.seconds = 0.0
        self.ops: Counter = Counter()  # programs using each op
        self.uses: Counter = Counter()
        self.worst: dict[tuple[str, str], float] = {}
        self.excused: dict[tuple[str, str], tuple[int, float]] = {}  # pair → (rows, worst)
        self.failures: list[tuple[str, str]] = []  # (file, finding)

    def record(self, case: fuzzing.Case) -> None:
        # what the process was running, should a framework take it down (a segfault)
        self.out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.out / "running", ignore_errors=True)
        (self.out / "running.dnet").unlink(missing_ok=True)
        fuzzing.write_case(
            case,
            f"running (program {self.programs + 1} of --seed {self.seed})",
            self.out / "running",
        )
        started = time.perf_counter()
        try:
            outcome = fuzzing.run_case(case)
        except Exception as exc:  # a check error or a backend crash: both are findings
            self.fail(case, f"{type(exc).__name__}: {exc}")
        else:
            self.ops.update(set(outcome.ops))
            self.uses.update(outcome.ops)
            for r in outcome.rows:
                if r.note.startswith("float32"):  # rounding explains it (excuse_rounding)
                    n, worst = self.excused.get(r.pair, (0, 0.0))
                    self.excused[r.pair] = (n + 1, max(worst, r.max_rel))
                else:
                    self.worst[r.pair] = max(self.worst.get(r.pair, 0.0), r.max_rel)
            if outcome.failures:
                self.fail(
                    case,
                    "\n".join(
                        f"{r.output} {' vs '.join(r.pair)}: max rel {r.max_rel:.3g}, shape "
                        f"{r.shape}"
                        for r in outcome.failures
                    ),
                )
        self.seconds += time.perf_counter() - started
        self.programs += 1
        if self.programs % CLEAR_EVERY == 0:
            import keras

            keras.backend.clear_session()

    def fail(self, case: fuzzing.Case, finding: str) -> None:
        if self.shrink:
            if self.match not in finding:
                return
            self.last = (case, finding)
            raise AssertionError(finding)
        self.write(case, finding)

    def write(self, case: fuzzing.Case, finding: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = fuzzing.write_case(
            case,
            f"found by benchmarks/fuzz.py --seed {self.seed}:\n{finding}",
            self.out / f"fuzz_s{self.seed}_{self.programs}",
        )
        self.failures.append((str(path), finding.splitlines()[0]))
        print(f"FAILURE {path}: {finding.splitlines()[0]}", flush=True)


def fuzz(tally: Tally, examples: int, every: int, constructs=fuzzing.CONSTRUCTS) -> None:
    phases = [Phase.generate, Phase.shrink] if tally.shrink else [Phase.generate]

    @seed(tally.seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(fuzzing.programs(constructs=constructs))
    def one(case: fuzzing.Case) -> None:
        tally.record(case)
        if tally.programs % every == 0:
            print(
                f"{tally.programs:6d}/{examples} programs, {len(tally.failures)} failures, "
                f"{fmt_s(tally.seconds / tally.programs)}/program",
                flush=True,
            )

    try:
        one()
    except AssertionError:  # --shrink: hypothesis replayed the smallest failure last
        tally.write(*tally.last)


def report(tally: Tally) -> int:
    print(f"\nops used ({len(tally.ops)} of {len(REGISTRY)}; programs, uses):")
    names = sorted(REGISTRY, key=lambda op: (-tally.ops[op], op))
    cells = [f"{op} {tally.ops[op]} ({tally.uses[op]})" for op in names]
    width = max(len(c) for c in cells) + 2
    for i in range(0, len(cells), 3):
        print("  " + "".join(c.ljust(width) for c in cells[i : i + 3]).rstrip())
    per = tally.seconds / max(tally.programs, 1)
    rows = [
        Row("programs run", str(tally.programs)),
        Row("time per program", fmt_s(per), "-", "-", f"info (total {tally.seconds:.0f} s)"),
        Row("ops covered", f"{len(tally.ops)} of {len(REGISTRY)}"),
    ]
    limit = parity.TOLERANCE
    for pair, worst in sorted(tally.worst.items()):
        if pair[0] != "expected":
            rows.append(
                Row(
                    f"worst max rel, {' vs '.join(pair)}",
                    f"{worst:.3g}",
                    f"<= {limit:g}",
                    "-",
                    "ok" if worst <= limit else "MISMATCH",
                )
            )
    rows += [
        Row(
            f"excused as float32 rounding, {' vs '.join(pair)}",
            f"{n} (worst {worst:.3g})",
            "-",
            "-",
            "info",
        )
        for pair, (n, worst) in sorted(tally.excused.items())
    ]
    rows += [Row(f"failure: {path}", finding, "-", "-", "FAIL") for path, finding in tally.failures]
    return finish(rows, strict=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="programs to run")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "dualnet-fuzz",
        help="directory for failing programs",
    )
    parser.add_argument("--every", type=int, default=100, help="progress line interval")
    parser.add_argument(
        "--shrink", action="store_true", help="stop at the first failure and shrink it"
    )
    parser.add_argument(
        "--match",
        default="",
        help="with --shrink: only failures whose finding contains this text count",
    )
    parser.add_argument(
        "--constructs",
        default=",".join(sorted(fuzzing.CONSTRUCTS)),
        help="the constructs programs may use (comma-separated)",
    )
    args = parser.parse_args(argv)
    constructs = {"ops", *filter(None, args.constructs.split(","))}
    if constructs - fuzzing.CONSTRUCTS:
        parser.error(
            f"unknown constructs: {', '.join(sorted(constructs - fuzzing.CONSTRUCTS))}"
            f" (known: {', '.join(sorted(fuzzing.CONSTRUCTS))})"
        )
    tally = Tally(args.out, args.seed, args.shrink, args.match)
    fuzz(tally, args.examples, args.every, frozenset(constructs))
    return report(tally)


if __name__ == "__main__":
    sys.exit(main())

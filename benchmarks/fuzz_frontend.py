#!/usr/bin/env python3
"""Mutation fuzzing of the front end (issue 12): `dualnet check` on random edits of the zoo.

    python benchmarks/fuzz_frontend.py [--minutes 20] [--min-mutants 10000] [--seed S]
                                       [--out DIR] [--cpu-limit 2] [--memory-mb 300]

Each mutant is one to six random edits of a file of models/ (an integer or float replaced by
an extreme value, a token deleted, duplicated or inserted, names swapped, a model made to
use itself, lines deleted, duplicated, swapped or spliced in from another file, statements
wrapped in loops of up to 100,000 iterations, expressions nested hundreds deep, sizes set to
0 or 2**62, a byte flipped). It is checked by `dualnet.cli.main(["check", FILE])` in a
process forked from this one (so the interpreter start-up, measured once, is not paid per
mutant), under a CPU-time rlimit (--timeout) and an address-space rlimit that keeps a
runaway from the rest of the machine.

It runs for --minutes and at least --min-mutants mutants, then prints the exit statuses and a
table: mutants, mutants per second, CPU time (median, 99th percentile, worst: the check plus
the measured start-up) and peak resident memory (median, worst) per mutant, and the counts
that must be zero — exit status 3 (an internal error), the CPU rlimit reached (a timeout),
more than --cpu-limit seconds of CPU, more than --memory-mb of memory, and a refusal without
a located diagnostic ("too large or too deeply nested"). Each such mutant is written to DIR
(default $TMPDIR/dualnet-fuzz-frontend) with its finding, and the slowest mutant to
DIR/slowest (for calibrating the budget's costs). Exits 1 if any count is not zero.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from report import Row, finish, fmt_s

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dualnet import cli  # noqa: E402
from dualnet.frontend import check_file  # noqa: E402

MODELS = ROOT / "models"
INTS = [0, 1, 2, 3, 7, 64, 1000, 100000, 2**31, 2**40, 2**62, 2**63, 10**30, 4611686018427387904]
FLOATS = ["0.0", "-1.0", "1e300", "1e-300", "3.5e38", "70000.0", "1e-12", "0.5"]
VOCAB = [
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "=",
    "+",
    "-",
    "*",
    "/",
    "//",
    "**",
    "@",
    "|>",
    "->",
    ".",
    ";",
    "\n",
    "model",
    "forward",
    "return",
    "for",
    "in",
    "if",
    "else",
    "const",
    "import",
    "from",
    "as",
    "true",
    "false",
    "none",
    "relu",
    "Linear",
    "Conv2d",
    "Sequential",
    "range",
    "flatten",
    "concat",
    "reshape",
    "split",
    "LSTM",
    "MultiHeadAttention",
    "Embedding",
    "B",
    "T",
    "x",
    "f32",
    "i64",
    '"s"',
    "_",
]
TOKEN = re.compile(
    r'"[^"\n]*"|#[^\n]*|[A-Za-z_]\w*|\d+\.\d*(?:[eE][-+]?\d+)?|\d+'
    r"|\|>|//|\*\*|==|!=|<=|>=|->|\s+|\S"
)
UNLOCATED = "too large or too deeply nested"


# ---------------------------------------------------------------- mutations


class Mutator:
    """Random edits of the zoo's sources."""

    def __init__(self, rng: random.Random, sources: dict[str, str]):
        self.rng = rng
        self.sources = sources
        self.lines = [
            line for text in sources.values() for line in text.splitlines() if line.strip()
        ]

    def mutate(self, text: str) -> tuple[str, list[str]]:
        edits = []
        for _ in range(self.rng.choice([1, 1, 1, 2, 2, 3, 4, 6])):
            name = self.rng.choice(self.OPERATORS)
            changed = getattr(self, name)(text)
            if changed is not None and changed != text:
                text = changed
                edits.append(name)
        return text, edits

    OPERATORS = [
        "int_value",
        "int_value",
        "float_value",
        "delete_token",
        "duplicate_token",
        "insert_token",
        "insert_token",
        "swap_names",
        "self_reference",
        "delete_line",
        "duplicate_lines",
        "swap_lines",
        "splice_line",
        "loop_wrap",
        "loop_wrap",
        "nest",
        "size",
        "size",
        "flip_byte",
    ]

    # -- tokens
    def _tokens(self, text: str) -> list[str]:
        return TOKEN.findall(text)

    def _pick(self, tokens: list[str], test) -> int | None:
        places = [i for i, t in enumerate(tokens) if test(t)]
        return self.rng.choice(places) if places else None

    def _replace_token(self, text: str, test, make) -> str | None:
        tokens = self._tokens(text)
        i = self._pick(tokens, test)
        if i is None:
            return None
        tokens[i] = make(tokens[i])
        return "".join(tokens)

    def int_value(self, text: str) -> str | None:
        return self._replace_token(text, str.isdigit, lambda t: str(self.rng.choice(INTS)))

    def float_value(self, text: str) -> str | None:
        return self._replace_token(
            text, lambda t: t[:1].isdigit() and "." in t, lambda t: self.rng.choice(FLOATS)
        )

    def delete_token(self, text: str) -> str | None:
        return self._replace_token(text, lambda t: not t.isspace(), lambda t: "")

    def duplicate_token(self, text: str) -> str | None:
        return self._replace_token(
            text, lambda t: not t.isspace(), lambda t: t + " " + t * self.rng.choice([1, 1, 2, 50])
        )

    def insert_token(self, text: str) -> str | None:
        return self._replace_token(text, str.isspace, lambda t: f" {self.rng.choice(VOCAB)} ")

    def swap_names(self, text: str) -> str | None:
        tokens = self._tokens(text)
        names = sorted({t for t in tokens if t[:1].isalpha() or t[:1] == "_"})
        if not names:
            return None
        new = self.rng.choice(names)
        return self._replace_token(text, lambda t: t[:1].isalpha() or t[:1] == "_", lambda t: new)

    def self_reference(self, text: str) -> str | None:
        """A model that uses itself (or a later model): unbounded instantiation."""
        models = re.findall(r"^model (\w+)", text, flags=re.M)
        used = [m for m in models if re.search(rf"= *{m}\(", text)]
        if not models or not used:
            return None
        return re.sub(
            rf"= *{self.rng.choice(used)}\(", f"= {self.rng.choice(models)}(", text, count=1
        )

    # -- lines
    def delete_line(self, text: str) -> str | None:
        lines = text.splitlines()
        if len(lines) < 2:
            return None
        del lines[self.rng.randrange(len(lines))]
        return "\n".join(lines) + "\n"

    def duplicate_lines(self, text: str) -> str | None:
        lines = text.splitlines()
        i = self.rng.randrange(len(lines))
        lines[i : i + 1] = [lines[i]] * self.rng.choice([2, 3, 10, 1000])
        return "\n".join(lines) + "\n"

    def swap_lines(self, text: str) -> str | None:
        lines = text.splitlines()
        i, j = self.rng.randrange(len(lines)), self.rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines) + "\n"

    def splice_line(self, text: str) -> str | None:
        lines = text.splitlines()
        lines.insert(self.rng.randrange(len(lines) + 1), self.rng.choice(self.lines))
        return "\n".join(lines) + "\n"

    def loop_wrap(self, text: str) -> str | None:
        """A forward statement (or a block of them) inside nested loops."""
        lines = text.splitlines()
        places = [
            i
            for i, line in enumerate(lines)
            if re.match(r"\s+\w+( *, *\w+)* *(: *[^=]+)?= ", line) and "(" in line
        ]
        if not places:
            return None
        i = self.rng.choice(places)
        depth = self.rng.choice([1, 1, 2, 3])
        heads = [
            f"for i{k} in range({self.rng.choice([2, 10, 300, 1000, 100000])}) {{"
            for k in range(depth)
        ]
        lines[i : i + 1] = [*heads, lines[i], *["}"] * depth]
        return "\n".join(lines) + "\n"

    def nest(self, text: str) -> str | None:
        k = self.rng.choice([2, 10, 150, 250, 1000])
        wrap = self.rng.choice([("(", ")"), ("relu(", ")"), ("-", ""), ("[", "]")])
        return self._replace_token(
            text, lambda t: t in ("x", "h", "out", "y"), lambda t: wrap[0] * k + t + wrap[1] * k
        )

    def size(self, text: str) -> str | None:
        """A number inside a tensor type `f32[...]`."""
        spots = [m for m in re.finditer(r"(?<=[\[,] )\d+|(?<=\[)\d+", text)]
        if not spots:
            return None
        m = self.rng.choice(spots)
        value = self.rng.choice([0, 1, 2**31, 2**62, 4611686018427387903])
        return text[: m.start()] + str(value) + text[m.end() :]

    def flip_byte(self, text: str) -> str | None:
        data = bytearray(text.encode("utf-8", errors="surrogateescape"))
        data[self.rng.randrange(len(data))] = self.rng.randrange(256)
        return data.decode("utf-8", errors="surrogateescape")


# ---------------------------------------------------------------- running


@dataclass
class Outcome:
    code: int  # exit status; -N: killed by signal N
    cpu: float
    rss_mb: float
    first_line: str


def check_in_child(path: Path, err_path: Path, cpu_timeout: int, memory_cap_mb: int) -> Outcome:
    """`dualnet check PATH` in a forked child, its stderr to `err_path`."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_timeout, cpu_timeout + 1))
            cap = memory_cap_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
            fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.chdir(path.parent)
            code = cli.main(["check", path.name])
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001 - anything escaping main is an internal error
            code = 3
        os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    text = err_path.read_text(encoding="utf-8", errors="replace")
    return Outcome(
        code,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        text.splitlines()[0] if text else "",
    )


def startup_cpu() -> float:
    """CPU seconds of `python -m dualnet check` on the smallest model, less its check."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    samples = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [sys.executable, "-m", "dualnet", "check", str(MODELS / "mlp.dnet")],
            env=env,
            capture_output=True,
            check=True,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return min(samples)


@dataclass
class Tally:
    out: Path
    cpu_limit: float
    memory_mb: float
    startup: float
    codes: Counter = field(default_factory=Counter)
    edits: Counter = field(default_factory=Counter)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    findings: dict[str, list[str]] = field(default_factory=dict)  # kind → files
    slowest: float = 0.0

    def record(
        self,
        n: int,
        text: bytes,
        extra: dict[str, str],
        edits: list[str],
        o: Outcome,
        cpu_timeout: int,
    ) -> None:
        self.codes[o.code] += 1
        self.edits.update(edits)
        self.cpu.append(o.cpu)
        self.rss.append(o.rss_mb)
        if o.cpu > self.slowest:  # kept for calibrating the budget's costs
            self.slowest = o.cpu
            self.write(0, "the slowest mutant so far", text, extra, edits, o, quiet=True)
        kinds = []
        timed_out = o.code == -signal.SIGXCPU or o.cpu >= cpu_timeout  # the CPU rlimit
        if o.code not in (0, 1, 2) and not timed_out:
            kinds.append("exit status 3 or a crash")
        if timed_out:
            kinds.append("timeout")
        if o.cpu + self.startup > self.cpu_limit:
            kinds.append("over the CPU limit")
        if o.rss_mb > self.memory_mb:
            kinds.append("over the memory limit")
        if UNLOCATED in o.first_line:
            kinds.append("refused without a location")
        for kind in kinds:
            self.write(n, kind, text, extra, edits, o)

    def write(
        self,
        n: int,
        kind: str,
        text: bytes,
        extra: dict[str, str],
        edits: list[str],
        o: Outcome,
        quiet: bool = False,
    ) -> None:
        folder = self.out / (f"mutant_{n}" if not quiet else "slowest")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "main.dnet").write_bytes(text)
        for name, body in extra.items():
            (folder / name).write_text(body, encoding="utf-8")
        (folder / "finding.txt").write_text(
            f"{kind}: exit {o.code}, {o.cpu:.2f} s CPU, {o.rss_mb:.0f} MB\nedits: "
            f"{', '.join(edits)}\n{o.first_line}\n",
            encoding="utf-8",
        )
        if not quiet:
            self.findings.setdefault(kind, []).append(str(folder))
            print(f"FINDING {kind}: {folder} ({o.first_line[:100]})", flush=True)


def fuzz(args, tally: Tally) -> tuple[int, float]:
    rng = random.Random(args.seed)
    sources = {p.name: p.read_text(encoding="utf-8") for p in sorted(MODELS.glob("*.dnet"))}
    imports = {
        name: re.findall(r'^\s*(?:import|from)\s+"([^"]+)"', text, flags=re.M)
        for name, text in sources.items()
    }
    mutator = Mutator(rng, sources)
    for name in sources:  # warm up: the parser is built before the first fork
        check_file(str(MODELS / name))
    work = Path(tempfile.mkdtemp(prefix="dualnet-fuzz-frontend-"))
    err = work / "stderr.txt"
    start, n = time.monotonic(), 0
    deadline = start + 60 * args.minutes
    while time.monotonic() < deadline or n < args.min_mutants:
        name = rng.choice(sorted(sources))
        libraries = {lib: sources[lib] for lib in imports[name] if lib in sources}
        target = name
        if libraries and rng.random() < 0.3:
            target = rng.choice(sorted(libraries))
        text, edits = mutator.mutate(sources[target])
        data = text.encode("utf-8", errors="surrogateescape")
        entry = work / "main.dnet"
        extra = {lib: body for lib, body in libraries.items() if lib != target}
        if target != name:  # the library is mutated; the entry file imports it
            extra = {target: data.decode("utf-8", errors="replace")}
            data = sources[name].encode("utf-8")
        for lib, body in extra.items():
            (work / lib).write_text(body, encoding="utf-8")
        entry.write_bytes(data)
        n += 1
        outcome = check_in_child(entry, err, args.timeout, args.address_space_mb)
        tally.record(n, data, extra, edits, outcome, args.timeout)
        for lib in extra:
            (work / lib).unlink()
        if n % args.every == 0:
            elapsed = time.monotonic() - start
            print(
                f"{n:7d} mutants, {elapsed / 60:5.1f} min, {n / elapsed:5.1f}/s, exits "
                f"{dict(sorted(tally.codes.items()))}, worst {max(tally.cpu):.2f} s CPU, "
                f"{max(tally.rss):.0f} MB",
                flush=True,
            )
    return n, time.monotonic() - start


def report(tally: Tally, n: int, seconds: float, args) -> int:
    cpu = sorted(c + tally.startup for c in tally.cpu)
    p99 = cpu[min(len(cpu) - 1, int(0.99 * len(cpu)))]
    print("\nedits applied:", ", ".join(f"{k} {v}" for k, v in tally.edits.most_common()))
    print("exit statuses:", ", ".join(f"{k}: {v}" for k, v in sorted(tally.codes.items())))
    rows = [
        Row(
            "mutants checked",
            f"{n:,}",
            f">= {args.min_mutants:,}",
            "-",
            "ok" if n >= args.min_mutants else "FEW",
        ),
        Row(
            "duration",
            f"{seconds / 60:.1f} min",
            f">= {args.minutes:g} min",
            "-",
            "ok" if seconds >= 60 * args.minutes else "SHORT",
        ),
        Row("mutants per second", f"{n / seconds:.1f}"),
        Row("exit status 0 / 1 / 2", " / ".join(f"{tally.codes[c]:,}" for c in (0, 1, 2))),
        Row("interpreter start-up (added to each CPU time)", fmt_s(tally.startup)),
        Row("CPU time per mutant: median, p99", f"{fmt_s(statistics.median(cpu))}, {fmt_s(p99)}"),
        Row(
            "CPU time per mutant: worst",
            fmt_s(cpu[-1]),
            f"<= {args.cpu_limit:g} s",
            "-",
            "ok" if cpu[-1] <= args.cpu_limit else "OVER",
        ),
        Row("peak memory per mutant: median", f"{statistics.median(tally.rss):.0f} MB"),
        Row(
            "peak memory per mutant: worst",
            f"{max(tally.rss):.0f} MB",
            f"<= {args.memory_mb:g} MB",
            "-",
            "ok" if max(tally.rss) <= args.memory_mb else "OVER",
        ),
    ]
    for kind in (
        "exit status 3 or a crash",
        "timeout",
        "over the CPU limit",
        "over the memory limit",
        "refused without a location",
    ):
        found = tally.findings.get(kind, [])
        rows.append(Row(kind, str(len(found)), "0", "-", "ok" if not found else "FAIL"))
    note = f"the slowest mutant is in {args.out / 'slowest'}"
    if tally.findings:
        note = f"findings written to {args.out}; {note}"
    return finish(rows, strict=True, note=note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20, help="run at least this long")
    parser.add_argument(
        "--min-mutants", type=int, default=10_000, help="and at least this many mutants"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "dualnet-fuzz-frontend",
        help="directory for the mutants of findings",
    )
    parser.add_argument(
        "--cpu-limit",
        type=float,
        default=2.0,
        help="CPU seconds a check may take, start-up included",
    )
    parser.add_argument("--memory-mb", type=float, default=300, help="peak memory a check may use")
    parser.add_argument("--timeout", type=int, default=10, help="CPU rlimit of a child (s)")
    parser.add_argument(
        "--address-space-mb",
        type=int,
        default=4096,
        help="address-space rlimit of a child (keeps a runaway contained)",
    )
    parser.add_argument("--every", type=int, default=1000, help="progress line interval")
    args = parser.parse_args(argv)
    tally = Tally(args.out, args.cpu_limit, args.memory_mb, startup_cpu())
    n, seconds = fuzz(args, tally)
    return report(tally, n, seconds, args)


if __name__ == "__main__":
    sys.exit(main())

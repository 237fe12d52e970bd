#!/usr/bin/env python3
"""Latency of `dualnet lsp`, driven over stdio as an editor drives it (lsp_client.py).

    python benchmarks/lsp_bench.py [--rounds 3] [--strict]

For models/resnet18.dnet and models/bert_encoder.dnet: a statement typed one character at a
time into the entry model's forward (each keystroke a didChange with the whole text; the time
until its publishDiagnostics arrives, whatever the half-typed text's errors), then hovers,
completions and definitions at every name of the forward. Prints the median and 95th
percentile of each; the target is a p95 of at most 100 ms (wall time, client side).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

from lsp_client import Client
from report import Row, finish, fmt_s

ROOT = Path(__file__).resolve().parents[1]
FILES = ["resnet18.dnet", "bert_encoder.dnet"]
TYPED = "y = relu(x) + 1.0  # typed"
TARGET = 0.100


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def keystrokes(client: Client, uri: str, text: str, rounds: int) -> list[float]:
    """Type TYPED at the start of the last forward's body, then delete it, a character at a
    time; each keystroke's time to its diagnostics."""
    body = text.rindex("forward(")
    at = text.index("\n", text.index("{", body)) + 1
    indent = " " * 8
    times = []
    for _ in range(rounds):
        steps = [TYPED[:n] for n in range(1, len(TYPED) + 1)]
        for typed in steps + steps[::-1][1:] + [""]:
            edited = text[:at] + (indent + typed + "\n" if typed else "") + text[at:]
            times.append(timed(lambda e=edited: client.diagnostics(uri, client.change(uri, e))))
    return times


def positions(text: str) -> list[tuple[int, int]]:
    """The start of every name in the last forward's body (0-based line, character)."""
    start = text.rindex("forward(")
    out = []
    for m in re.finditer(r"[A-Za-z_]\w*", text[start:]):
        before = text[: start + m.start()]
        out.append((before.count("\n"), len(before) - before.rfind("\n") - 1))
    return out


def stats(label: str, times: list[float]) -> Row:
    times = sorted(times)
    median = statistics.median(times)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    value = f"median {fmt_s(median)}, p95 {fmt_s(p95)} (n={len(times)})"
    return Row(label, value, f"p95 <= {fmt_s(TARGET)}", f"{p95 / TARGET:.2f}", _verdict(p95))


def _verdict(p95: float) -> str:
    return "ok" if p95 <= TARGET else "SLOW"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="times the statement is typed")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    client = Client(ROOT / "models")
    rows = []
    try:
        for name in FILES:
            path = ROOT / "models" / name
            text = path.read_text()
            uri, version = client.open(path, text)
            client.diagnostics(uri, version)
            rows.append(
                stats(
                    f"{name}: keystroke → diagnostics", keystrokes(client, uri, text, args.rounds)
                )
            )
            client.diagnostics(uri, client.change(uri, text))
            spots = positions(text) * args.rounds
            for method, label in [
                ("textDocument/hover", "hover"),
                ("textDocument/completion", "completion"),
                ("textDocument/definition", "definition"),
            ]:
                times = [timed(lambda s=s, m=method, u=uri: client.at(m, u, *s)) for s in spots]
                rows.append(stats(f"{name}: {label}", times))
    finally:
        client.close()
    return finish(rows, args.strict, f"python {sys.version.split()[0]}; one server process")


if __name__ == "__main__":
    sys.exit(main())

"""The table every benchmark prints: measurement, value, target, ratio, verdict."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

COLUMNS = ["measurement", "value", "target", "ratio", "verdict"]


@dataclass
class Row:
    measurement: str
    value: str
    target: str = "-"
    ratio: str = "-"
    verdict: str = "info"


def fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def ratio_row(
    measurement: str,
    times: list[float],
    baseline: list[float],
    limit: float | None = None,
    at_least: bool = False,
    digits: int = 3,
) -> Row:
    """`times` against `baseline` (interleaved rounds): the ratio of their medians, checked
    against `limit` (at most, or `at_least`; None: information only), and the median of the
    per-round ratios, which is steadier on a busy machine."""
    median, base = statistics.median(times), statistics.median(baseline)
    ratio = median / base
    paired = statistics.median(t / b for t, b in zip(times, baseline, strict=True))
    value = f"{fmt_s(median)} vs {fmt_s(base)} (n={len(times)}, paired {paired:.{digits}f}x)"
    if limit is None:
        return Row(measurement, value, "-", f"{ratio:.{digits}f}x", "info")
    ok = ratio >= limit if at_least else ratio <= limit
    target = f">= {limit:g}x" if at_least else f"<= {limit:.2f}"
    return Row(measurement, value, target, f"{ratio:.{digits}f}x", "ok" if ok else "SLOW")


def print_table(rows: list[Row]) -> None:
    header = Row(*COLUMNS)
    widths = {c: max(len(getattr(r, c)) for r in [header, *rows]) for c in COLUMNS}

    def line(r: Row) -> str:
        return "  ".join(getattr(r, c).ljust(widths[c]) for c in COLUMNS).rstrip()

    print()
    print(line(header))
    print("  ".join("-" * widths[c] for c in COLUMNS))
    for r in rows:
        print(line(r))


def tail(text: str, n: int = 6) -> str:
    """The last lines of a failed command's output, indented under its row."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join("      " + line for line in lines[-n:])


def failure(exc: Exception) -> str:
    """An exception's last lines, indented (TensorFlow's messages end with the cause)."""
    return tail(f"{type(exc).__name__}: {exc}", 4)


def part_rows(label: str, parts: dict, chosen: list[str]) -> list[Row]:
    """The rows of each chosen part (`parts`: name → a function giving rows); a part that
    raises is one ERROR row, its cause printed."""
    rows = []
    for part in chosen:
        try:
            rows += parts[part]()
        except Exception as exc:
            print(f"  {label} {part}: failed\n{failure(exc)}", flush=True)
            rows.append(Row(f"{label}: {part}", "error", "-", "-", "ERROR"))
    return rows


def finish(rows: list[Row], strict: bool, note: str | None = None) -> int:
    """Print the table and a verdict line; the exit status (1 under --strict if any missed)."""
    print_table(rows)
    if note:
        print("\n" + note)
    bad = [
        r for r in rows if r.verdict not in ("ok", "skipped") and not r.verdict.startswith("info")
    ]
    if bad:
        print(f"\n{len(bad)} measurement(s) not ok: " + "; ".join(r.measurement for r in bad))
    else:
        print("\nall measurements within target")
    return 1 if (strict and bad) else 0

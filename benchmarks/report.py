"""The table every benchmark prints: measurement, value, target, ratio, verdict."""

from __future__ import annotations

from dataclasses import dataclass

COLUMNS = ["measurement", "value", "target", "ratio", "verdict"]


@dataclass
class Row:
    measurement: str
    value: str
    target: str = "-"
    ratio: str = "-"
    verdict: str = "info"


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


def finish(rows: list[Row], strict: bool, note: str | None = None) -> int:
    """Print the table and a verdict line; the exit status (1 under --strict if any missed)."""
    print_table(rows)
    if note:
        print("\n" + note)
    bad = [r for r in rows
           if r.verdict not in ("ok", "skipped") and not r.verdict.startswith("info")]
    if bad:
        print(f"\n{len(bad)} measurement(s) not ok: " + "; ".join(r.measurement for r in bad))
    else:
        print("\nall measurements within target")
    return 1 if (strict and bad) else 0

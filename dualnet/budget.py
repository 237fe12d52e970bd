"""The front end's work budget: one counter of elaboration work, checked as the work happens.

Every `check_file` runs under a fresh `Budget`. Each piece of work the front end does costs
units (`COSTS`, each roughly the microseconds it takes): a token parsed, an expression node
evaluated, a statement run, a loop iteration, an IR node traced, a layer or model instance
created, a parameter tensor declared, a diagnostic recorded. When the total passes `LIMIT`
(about a second of work), checking stops with E-LIMIT at the place that crossed it. The
units make the limit the same on every machine; as backstops for work they undercount, the
resident memory the check has added and the CPU time it has taken are sampled as it goes,
and passing `MEMORY_LIMIT` or the CPU limit (`TIME_LIMIT` seconds, or
$DUALNET_CHECK_CPU_SECONDS) stops it the same way. So every input finishes
`check` (or is refused) in bounded time and memory, whatever it nests, unrolls or
instantiates.

The budget is found through a context variable, so deep parts of the front end (a shape rule
declaring parameters) charge it without being handed it. Outside `check_file` nothing is
charged.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from collections.abc import Iterator

from dualnet.diagnostics import DualnetError, Span, error, outside

LIMIT = 1_400_000
MEMORY_LIMIT = 200 * 2**20  # bytes of resident memory the check may add
TIME_LIMIT = 1.5  # seconds of CPU time the check may take (this thread's), by default
TIME_ENV = "DUALNET_CHECK_CPU_SECONDS"  # raises or lowers it (a slow machine, an editor)
_SAMPLE_STRIDE = 20_000  # units between two samples of the memory and the time

# What each kind of work costs, in units (about a microsecond each, on a 2020s CPU).
COSTS = {
    "token": 20,  # lexed, parsed and converted to the syntax tree
    "expression": 1,  # one syntax-tree node evaluated
    "call": 5,  # one call applied (a function, a layer, a model or Sequential constructor)
    "statement": 1,  # one statement run
    "iteration": 2,  # one pass of a `for` loop or a `Sequential` generator
    "operation": 40,  # one IR node traced (an op, a layer call, a model call, a constant)
    "graph": 200,  # one forward traced for a new input signature
    "construction": 10,  # one built-in layer's arguments bound (`Linear(8)`)
    "layer": 25,  # one built-in layer or Sequential created
    "instance": 300,  # one model instance created
    "parameter": 2,  # one parameter or buffer tensor declared
    "item": 1,  # one item of a list a shape rule writes out (split parts, pooling windows)
    "size": 12,  # one symbolic size computed (`(H - 1) // 2 + 1`)
    "diagnostic": 400,  # one error met (and recorded, unless it repeats one)
}
_NAMES = {
    "token": "tokens",
    "expression": "expressions evaluated",
    "call": "calls",
    "statement": "statements run",
    "iteration": "loop iterations",
    "operation": "operations traced",
    "graph": "forward traces",
    "construction": "layer constructors bound",
    "layer": "layers created",
    "instance": "model instances created",
    "parameter": "parameter tensors",
    "item": "listed items",
    "size": "symbolic sizes",
    "diagnostic": "errors met",
}


# The two most frequent kinds of work are counted where it is cheapest: hot paths bump these
# module attributes (`budget.expressions += 1`), and the next `spend` adds them to the active
# budget. Outside a check they only grow, and a new budget starts them from zero.
expressions = 0
sizes = 0


class BudgetExceeded(DualnetError):
    """Checking stopped: the program needs more work or memory than the front end allows.
    Error recovery never continues past it."""


class Budget:
    """Units spent so far, by kind, against `limit`."""

    __slots__ = ("limit", "time_limit", "used", "counts", "_next_sample", "_rss0", "_cpu0")

    def __init__(self, limit: int = LIMIT):
        self.limit = limit
        self.time_limit = time_limit()
        self.used = 0
        self.counts = dict.fromkeys(COSTS, 0)
        self._next_sample = _SAMPLE_STRIDE
        self._rss0 = _rss()
        self._cpu0 = time.thread_time()
        global expressions, sizes
        expressions = sizes = 0

    def spend(self, kind: str, count: int, span: Span | None) -> None:
        """Add the work; past the limit, raise at `span`. Work without a place (`None`) is
        only added: the next charge with a place raises, so the error always has one."""
        global expressions, sizes
        if expressions or sizes:
            self.counts["expression"] += expressions
            self.counts["size"] += sizes
            self.used += expressions * COSTS["expression"] + sizes * COSTS["size"]
            expressions = sizes = 0
        count = int(count)  # a size that remembers its expression is counted as a plain int
        self.counts[kind] += count
        self.used += COSTS[kind] * count
        if span is None:
            return
        if self.used > self._next_sample:
            self._next_sample = self.used + _SAMPLE_STRIDE
            if _rss() - self._rss0 > MEMORY_LIMIT:
                raise self._exceeded(
                    f"checking needs more than {MEMORY_LIMIT >> 20} MB of memory", span
                )
            if time.thread_time() - self._cpu0 > self.time_limit:
                raise self._exceeded(
                    f"checking needs more than {self.time_limit:g} s of CPU time", span
                )
        if self.used > self.limit:
            raise self._exceeded(
                f"checking needs more than the front end's work limit of {self.limit:,} units", span
            )

    def _exceeded(self, message: str, span: Span | None) -> BudgetExceeded:
        heavy = sorted(((COSTS[k] * n, k) for k, n in self.counts.items() if n), reverse=True)
        spent = ", ".join(f"{self.counts[k]:,} {_NAMES[k]}" for _, k in heavy[:3])
        notes = [
            f"so far: {spent}",
            "the limits are in docs/language.md; split the program, or use fewer "
            "layers, loop iterations or nested models",
        ]
        diagnostic = error(
            "E-LIMIT", message, span, "the limit was reached here", notes
        ).diagnostics[0]
        return BudgetExceeded(diagnostic)


def time_limit() -> float:
    """The CPU seconds a check may take: $DUALNET_CHECK_CPU_SECONDS, else TIME_LIMIT."""
    text = os.environ.get(TIME_ENV, "").strip()
    if not text:
        return TIME_LIMIT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise error(
            "E-INPUT",
            f"{TIME_ENV}={os.environ[TIME_ENV]!r} is not a positive number of seconds",
            outside(f"the environment variable {TIME_ENV}"),
        )
    return value


_ACTIVE: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "dualnet_budget", default=None
)


@contextlib.contextmanager
def active(budget: Budget) -> Iterator[Budget]:
    """Charge `budget` for the front-end work done inside the block."""
    token = _ACTIVE.set(budget)
    try:
        yield budget
    finally:
        _ACTIVE.reset(token)


def spend(kind: str, count: int, span: Span | None) -> None:
    """Charge the active budget (if any) for `count` pieces of work of `kind` at `span`."""
    budget = _ACTIVE.get()
    if budget is not None:
        budget.spend(kind, count, span)


def current() -> Budget | None:
    return _ACTIVE.get()


def _rss() -> int:
    """This process's resident memory in bytes (its peak where the current one is unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource  # (POSIX)

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024

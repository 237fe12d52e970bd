"""The registry of step families, and the conditions families share."""

from __future__ import annotations

from collections.abc import Callable

from dualnet.verify.fuzzing.builder import Builder, Value

MAX_ELEMENTS = 3000  # a step that grows its value only applies below this many elements

# The constructs a program may use (`programs(constructs=...)`): ops and branches; numbers
# as constants, hyperparameters and expressions; sub-model templates; Sequentials;
# conditional layers and expressions; `if` and `for` statements; a second, imported file.
CONSTRUCTS = frozenset(
    {"ops", "values", "templates", "sequential", "conditionals", "statements", "imports"}
)

Accepts = Callable[[Builder, Value], bool]
FAMILIES: list[tuple[Accepts, Callable[[Builder], None], int, str]] = []


def family(accepts: Accepts, weight: int = 1, construct: str = "ops"):
    """Register a family of steps: `accepts(builder, x)` says whether it applies to the
    current value; `weight` makes it that many times likelier than a plain one; it is
    drawn only in programs that use its `construct`."""
    assert construct in CONSTRUCTS

    def register(fn: Callable[[Builder], None]):
        FAMILIES.append((accepts, fn, weight, construct))
        return fn

    return register


def one_step(b: Builder) -> None:
    b.pick(
        [
            fn
            for accepts, fn, weight, construct in FAMILIES
            if construct in b.files.constructs and accepts(b, b.x)
            for _ in range(weight)
        ]
    )(b)


def small(b: Builder, x: Value) -> bool:
    return b.numel(x.shape) <= MAX_ELEMENTS


def free(b: Builder) -> bool:
    """Whether a step may declare layers: not inside an `if` branch, where an instance
    that skips the branch would never call them (E-UNUSED)."""
    return not b.branch


def outer(b: Builder) -> bool:
    """Whether a step may add inputs and outputs: in the entry model, outside blocks."""
    return b.top and not b.guarded


def layer_ok(b: Builder, x: Value) -> bool:
    """Whether a layer with parameters may take x (its parameters are f32: E-DTYPE else)."""
    return free(b) and x.dtype == "f32"

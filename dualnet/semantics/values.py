"""Compile-time values: what names stand for while a program is checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dualnet import budget
from dualnet.diagnostics import Span, error
from dualnet.ir.graph import LayerInstance, ModelInstance, Value
from dualnet.ops.registry import OpDef
from dualnet.syntax import ast

if TYPE_CHECKING:
    from dualnet.semantics.loader import ModuleInfo


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model declaration, callable to make a layer."""

    model: ast.Model
    module: ModuleInfo

    @property
    def name(self) -> str:
        return self.model.name.id

    def description(self) -> str:
        return f"model {self.name}"


@dataclass(frozen=True, slots=True)
class Namespace:
    """An imported file bound by `import "x.dnet" as name`."""

    module: ModuleInfo

    def description(self) -> str:
        return f"module {self.module.path.name}"


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """A built-in function (`relu`, `max_pool2d`) named without calling it; `span`: where
    it was named (a Sequential step's own place, also inside a conditional)."""

    op: OpDef
    span: Span | None = field(default=None, compare=False)

    def description(self) -> str:
        return f"function {self.op.name}"


@dataclass(frozen=True, slots=True)
class LayerType:
    """A built-in layer constructor (`Conv2d`, `Linear`), or a function's layer form
    (`MaxPool2d`, named `name`, of the function `max_pool2d`: constructing it gives the
    function with its later arguments, a `PartialSpec`)."""

    op: OpDef
    name: str = ""

    def description(self) -> str:
        return f"layer {self.name or self.op.name}"


@dataclass(frozen=True, slots=True)
class InitFunction:
    """An initialiser that takes arguments (`normal`, `trunc_normal`): called, it is the
    `init=` value `Initializer`."""

    name: str

    def description(self) -> str:
        return f"initialiser {self.name}"


@dataclass(frozen=True, slots=True)
class Builtin:
    """`range` and `Sequential`."""

    name: str

    def description(self) -> str:
        return f"built-in {self.name}"


@dataclass(frozen=True, slots=True)
class RangeValue:
    start: int
    stop: int
    step: int

    def __len__(self) -> int:
        return len(range(self.start, self.stop, self.step))

    def __iter__(self):
        return iter(range(self.start, self.stop, self.step))

    def description(self) -> str:
        return f"range({self.start}, {self.stop}, {self.step})"


@dataclass(eq=False)
class LayerSpec:
    """An evaluated built-in layer constructor call: `Conv2d(64, kernel=3)`."""

    op: OpDef
    config: dict[str, Any]
    spans: dict[str, Span]
    span: Span
    tie: tuple | None = None  # `tie=`: (expression, scope) of the layer it shares `weight` with

    def description(self) -> str:
        return f"layer {self.op.name}"


@dataclass(eq=False)
class ModelSpec:
    """An evaluated model constructor call: `BasicBlock(64, stride=2)`."""

    ref: ModelRef
    hyper: dict[str, Any]
    span: Span

    def description(self) -> str:
        return f"model {self.ref.name}"


@dataclass(eq=False)
class SequentialSpec:
    children: list[Any]
    span: Span
    items: tuple = ()  # a generator's: the value its loop variable took per child
    names: tuple[str, ...] = ()  # the children's names, when not `0, 1, 2, ...`

    def description(self) -> str:
        return "Sequential"


@dataclass(eq=False)
class PartialSpec:
    """A built-in function with its later arguments: `max_pool2d(2)` in a Sequential."""

    op: OpDef
    args: list
    keywords: dict
    span: Span

    def description(self) -> str:
        return f"function {self.op.name}"


@dataclass(eq=False, slots=True)
class TensorValue:
    value: Value

    def description(self) -> str:
        return f"tensor {self.value.type}"


@dataclass(eq=False)
class LayerHandle:
    """A declared layer as seen from a forward body."""

    name: str
    target: LayerInstance | ModelInstance
    spec: Any = None  # PartialSpec for function children of a Sequential
    children: list[LayerHandle] = field(default_factory=list)  # for Sequential

    def description(self) -> str:
        target = self.target
        kind = target.op if isinstance(target, LayerInstance) else target.definition
        return f"layer `{self.name}` ({kind})"


class Poison:
    """The value of an expression that already produced a diagnostic; silences follow-ups."""

    _instance: Poison | None = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance


POISON = Poison()


MAX_ITEMS = 100_000  # scalars in one compile-time tuple or list, counted through its nesting
MAX_NESTING = 200


class ValueSizes:
    """The size of every tuple and list the evaluator builds, kept as they are built: a tuple
    of a tuple of ... shares its parts, so `A = (B, B)`, `B = (C, C)`, ... doubles at each
    step for the price of one, and anything that walks it (checks, printing, the backends'
    literals) would pay for every copy. Items are charged to the work budget."""

    def __init__(self):
        # id → (value, scalars, nesting, plain: only numbers, strings, bools and none)
        self._known: dict[int, tuple[object, int, int, bool]] = {}

    def built(self, value: tuple | list, span: Span):
        budget.spend("item", len(value), span)
        items, nesting, plain = self._measure(value)
        if items > MAX_ITEMS:
            raise error(
                "E-LIMIT",
                f"a compile-time value of more than {MAX_ITEMS:,} items",
                span,
                "too large",
                ["nested tuples repeat their parts"],
            )
        if nesting > MAX_NESTING:
            raise error(
                "E-DEPTH",
                f"a compile-time value nested deeper than {MAX_NESTING} levels",
                span,
                "too deep",
            )
        self._known[id(value)] = (value, items, nesting, plain)
        return value

    def is_plain(self, value) -> bool:
        """A number, string, bool, none, or a tuple or list of them (what a constant may be)."""
        return self._measure(value)[2]

    def _measure(self, x) -> tuple[int, int, bool]:
        """(scalars, nesting, plain) of a value; a tuple or list not built here (a layer's
        results, a hyperparameter) is walked, down to the parts that were."""
        if not isinstance(x, tuple | list):
            return 1, 0, isinstance(x, int | float | str | bool) or x is None
        known = self._known.get(id(x))
        if known is not None and known[0] is x:
            return known[1:]
        items, nesting, plain = 0, 1, True
        for y in x:
            n, d, p = self._measure(y)
            items, nesting, plain = items + n, max(nesting, d + 1), plain and p
        return items, nesting, plain

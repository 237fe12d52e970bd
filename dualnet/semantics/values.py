"""Compile-time values: what names stand for while a program is checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dualnet.diagnostics import Span
from dualnet.ir.dims import Dim
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


@dataclass(frozen=True, slots=True)
class Namespace:
    """An imported file bound by `import "x.dnet" as name`."""

    module: ModuleInfo


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """A built-in function (`relu`, `max_pool2d`) named without calling it."""

    op: OpDef


@dataclass(frozen=True, slots=True)
class LayerType:
    """A built-in layer constructor (`Conv2d`, `Linear`)."""

    op: OpDef


@dataclass(frozen=True, slots=True)
class Builtin:
    """`range` and `Sequential`."""

    name: str


@dataclass(frozen=True, slots=True)
class RangeValue:
    start: int
    stop: int
    step: int

    def __len__(self) -> int:
        return len(range(self.start, self.stop, self.step))

    def __iter__(self):
        return iter(range(self.start, self.stop, self.step))


@dataclass(eq=False)
class LayerSpec:
    """An evaluated built-in layer constructor call: `Conv2d(64, kernel=3)`."""

    op: OpDef
    config: dict[str, Any]
    spans: dict[str, Span]
    span: Span


@dataclass(eq=False)
class ModelSpec:
    """An evaluated model constructor call: `BasicBlock(64, stride=2)`."""

    ref: ModelRef
    hyper: dict[str, Any]
    span: Span


@dataclass(eq=False)
class SequentialSpec:
    children: list[Any]
    span: Span
    items: tuple = ()  # a generator's: the value its loop variable took per child


@dataclass(eq=False)
class PartialSpec:
    """A built-in function with its later arguments: `max_pool2d(2)` in a Sequential."""

    op: OpDef
    args: list
    keywords: dict
    span: Span


@dataclass(eq=False, slots=True)
class TensorValue:
    value: Value


@dataclass(eq=False)
class LayerHandle:
    """A declared layer as seen from a forward body."""

    name: str
    target: LayerInstance | ModelInstance
    spec: Any = None  # PartialSpec for function children of a Sequential
    children: list[LayerHandle] = field(default_factory=list)  # for Sequential


class Poison:
    """The value of an expression that already produced a diagnostic; silences follow-ups."""

    _instance: Poison | None = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance


POISON = Poison()


def describe_value(v: Any) -> str:
    """A value as diagnostics show it."""
    if isinstance(v, TensorValue):
        return f"tensor {v.value.type}"
    if isinstance(v, bool):
        return f"bool {'true' if v else 'false'}"
    if isinstance(v, int):
        return f"int {v}"
    if isinstance(v, float):
        return f"float {v:g}"
    if isinstance(v, str):
        return f'str "{v}"'
    if v is None:
        return "none"
    if isinstance(v, Dim):
        return f"dimension {v}"
    if isinstance(v, tuple | list):
        inner = ", ".join(describe_value(x) for x in v[:4]) + (", …" if len(v) > 4 else "")
        return f"{'tuple' if isinstance(v, tuple) else 'list'} ({inner})"
    if isinstance(v, LayerSpec | LayerType):
        return f"layer {v.op.name}"
    if isinstance(v, FunctionRef | PartialSpec):
        return f"function {v.op.name}"
    if isinstance(v, ModelSpec):
        return f"model {v.ref.name}"
    if isinstance(v, ModelRef):
        return f"model {v.name}"
    if isinstance(v, SequentialSpec):
        return "Sequential"
    if isinstance(v, LayerHandle):
        target = v.target
        kind = target.op if isinstance(target, LayerInstance) else target.definition
        return f"layer `{v.name}` ({kind})"
    if isinstance(v, RangeValue):
        return f"range({v.start}, {v.stop}, {v.step})"
    if isinstance(v, Namespace):
        return f"module {v.module.path.name}"
    if isinstance(v, Builtin):
        return f"built-in {v.name}"
    return type(v).__name__

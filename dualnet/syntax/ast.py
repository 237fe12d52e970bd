"""The abstract syntax tree: frozen dataclasses, each node carrying its source span."""

from __future__ import annotations

from dataclasses import dataclass

from dualnet.diagnostics import Span

# ---------------------------------------------------------------- dimensions and types


@dataclass(frozen=True, slots=True)
class DimInt:
    span: Span
    value: int


@dataclass(frozen=True, slots=True)
class DimName:
    span: Span
    name: str


@dataclass(frozen=True, slots=True)
class DimAny:
    span: Span


@dataclass(frozen=True, slots=True)
class DimBinary:
    span: Span
    op: str  # + - * // %
    left: DimExpr
    right: DimExpr


@dataclass(frozen=True, slots=True)
class DimIndex:
    """An element of a tuple hyperparameter: `padding[0]`."""

    span: Span
    name: str
    index: int


@dataclass(frozen=True, slots=True)
class DimCall:
    """`max(a, b, ...)` or `min(...)` of sizes."""

    span: Span
    func: str
    args: tuple[DimExpr, ...]


DimExpr = DimInt | DimName | DimAny | DimBinary | DimIndex | DimCall


@dataclass(frozen=True, slots=True)
class NamedType:
    """A scalar type (`int`, `float`, `bool`, `str`)."""

    span: Span
    name: str


@dataclass(frozen=True, slots=True)
class TensorTypeExpr:
    span: Span
    dtype: str
    dims: tuple[DimExpr, ...]


@dataclass(frozen=True, slots=True)
class TupleTypeExpr:
    span: Span
    items: tuple[TypeExpr, ...]
    names: tuple[str, ...] = ()  # a forward's named outputs: one name per item, or none


TypeExpr = NamedType | TensorTypeExpr | TupleTypeExpr

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Name:
    span: Span
    id: str


@dataclass(frozen=True, slots=True)
class Literal:
    span: Span
    value: int | float | str | bool | None


@dataclass(frozen=True, slots=True)
class TupleExpr:
    span: Span
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class ListExpr:
    span: Span
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Binary:
    """Arithmetic (`+ - * / // % @ **`), comparisons (`< <= > >= == !=`) and `is`,
    `is not` (of `none`)."""

    span: Span
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class BoolOp:
    span: Span
    op: str  # and / or
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Unary:
    span: Span
    op: str  # - + not
    operand: Expr


@dataclass(frozen=True, slots=True)
class Conditional:
    span: Span
    cond: Expr
    then: Expr
    orelse: Expr


@dataclass(frozen=True, slots=True)
class Keyword:
    span: Span
    name: str
    value: Expr


@dataclass(frozen=True, slots=True)
class Generator:
    """`element for var in iterable`, the sole argument of a call; `{key: element for var in
    iterable}` names each child by `key`."""

    span: Span
    element: Expr
    var: str
    iterable: Expr
    key: Expr | None = None


@dataclass(frozen=True, slots=True)
class NamedSteps:
    """`{key: step, ...}`, the sole argument of `Sequential`: children with these names."""

    span: Span
    keys: tuple[Expr, ...]
    steps: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class FString:
    """`f"denselayer{i + 1}"`: text parts and expressions, in order."""

    span: Span
    parts: tuple[str | Expr, ...]


@dataclass(frozen=True, slots=True)
class Call:
    span: Span
    func: Expr
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]


@dataclass(frozen=True, slots=True)
class Pipe:
    """`value |> func`: `func` is a name, attribute or call that receives `value` first."""

    span: Span
    value: Expr
    func: Expr


@dataclass(frozen=True, slots=True)
class Slice:
    span: Span
    start: Expr | None
    stop: Expr | None
    step: Expr | None


@dataclass(frozen=True, slots=True)
class Index:
    span: Span
    value: Expr
    items: tuple[Expr | Slice, ...]


@dataclass(frozen=True, slots=True)
class Attribute:
    span: Span
    value: Expr
    name: str


Expr = (
    Name
    | Literal
    | TupleExpr
    | ListExpr
    | Binary
    | BoolOp
    | Unary
    | Conditional
    | Call
    | Pipe
    | Index
    | Attribute
    | Generator
    | NamedSteps
    | FString
)

# ---------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class Assign:
    span: Span
    targets: tuple[Name, ...]
    value: Expr


@dataclass(frozen=True, slots=True)
class Annotated:
    span: Span
    target: Name
    type: TypeExpr
    value: Expr


@dataclass(frozen=True, slots=True)
class Return:
    span: Span
    values: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class For:
    span: Span
    var: Name
    iterable: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class If:
    span: Span
    cond: Expr
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]


Stmt = Assign | Annotated | Return | For | If


def assigned_names(stmt: Stmt) -> list[str]:
    """The names a statement may bind, inside loops and branches too (a loop's variable
    included)."""
    if isinstance(stmt, Assign):
        return [t.id for t in stmt.targets]
    if isinstance(stmt, Annotated):
        return [stmt.target.id]
    if isinstance(stmt, For | If):
        inner = [*stmt.body, *(stmt.orelse if isinstance(stmt, If) else ())]
        own = [stmt.var.id] if isinstance(stmt, For) else []
        return own + [name for s in inner for name in assigned_names(s)]
    return []


# ---------------------------------------------------------------- declarations


@dataclass(frozen=True, slots=True)
class Hyper:
    span: Span
    name: str
    type: TypeExpr
    default: Expr | None


@dataclass(frozen=True, slots=True)
class Arg:
    span: Span
    name: str
    type: TypeExpr | None
    default: Expr | None = None  # only `none`: the argument may be left out


@dataclass(frozen=True, slots=True)
class Forward:
    span: Span
    args: tuple[Arg, ...]
    returns: TypeExpr | None
    body: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class LayerDecl:
    span: Span
    name: Name
    value: Expr


@dataclass(frozen=True, slots=True)
class Model:
    span: Span
    name: Name
    hypers: tuple[Hyper, ...]
    members: tuple[LayerDecl | Forward, ...]


@dataclass(frozen=True, slots=True)
class Const:
    span: Span
    name: Name
    value: Expr


@dataclass(frozen=True, slots=True)
class ImportName:
    span: Span
    name: str
    alias: str | None


@dataclass(frozen=True, slots=True)
class Import:
    """`import "p"`, `import "p" as m` (names empty) or `from "p" import a, b` (names set)."""

    span: Span
    path: str
    path_span: Span
    alias: str | None
    names: tuple[ImportName, ...] | None


@dataclass(frozen=True, slots=True)
class TrainSetting:
    """`optimizer = SGD(lr=0.1)`, `accumulate = 2`, ... in a `train` block."""

    span: Span
    name: Name
    value: Expr


@dataclass(frozen=True, slots=True)
class TrainFunction:
    """`loss(...) -> f32[] {...}` or `metrics(...) -> (...) {...}` in a `train` block."""

    span: Span
    name: Name
    forward: Forward


@dataclass(frozen=True, slots=True)
class Train:
    """`train Model { settings; loss(...) {...}; metrics(...) {...} }`."""

    span: Span
    model: Name
    settings: tuple[TrainSetting, ...]
    functions: tuple[TrainFunction, ...]


Decl = Const | Import | Model | Train


@dataclass(frozen=True, slots=True)
class Module:
    span: Span
    path: str
    decls: tuple[Decl, ...]

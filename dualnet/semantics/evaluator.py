"""Expression evaluation. Compile-time values are computed here; tensor expressions become IR
nodes through the `Tracer` of the forward body being checked (none outside forward)."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

from dualnet import budget
from dualnet.diagnostics import Span, error
from dualnet.ir.dims import Dim, DimTooLarge, extremum, floordiv, mod
from dualnet.ir.graph import LayerInstance
from dualnet.ir.tagged import untagged
from dualnet.ops.binding import Arg, bind, describe
from dualnet.ops.common import INIT_FUNCTIONS, Initializer
from dualnet.ops.elementwise import BINARY_SYMBOLS
from dualnet.ops.free import FREE_TENSORS, TIEABLE
from dualnet.semantics.constant import evaluate
from dualnet.semantics.scope import Scope, namespace_member
from dualnet.semantics.unify import undecided_extremum
from dualnet.semantics.values import (
    POISON,
    Builtin,
    FunctionRef,
    InitFunction,
    LayerHandle,
    LayerSpec,
    LayerType,
    ModelRef,
    ModelSpec,
    Namespace,
    PartialSpec,
    RangeValue,
    SequentialSpec,
    TensorValue,
)
from dualnet.syntax import ast
from dualnet.syntax.parser import QUOTED_NAME

if TYPE_CHECKING:
    from dualnet.semantics.checker import Checker, Tracer

MAX_UNROLL = 100_000
INT_LIMIT = 2**63

_COMPARE = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _extreme_of_numbers(callee, args: list, keywords: dict) -> bool:
    """`max(a, b, ...)` / `min(...)` of numbers known at compile time (hyperparameters,
    constants) or of sizes: Python's, not the reduction (whose first argument is a tensor)."""
    return (
        callee.op.name in ("max", "min")
        and len(args) >= 2
        and not keywords
        and all(is_number(a.value) or isinstance(a.value, Dim) for a in args)
    )


def _computed_buffer(callee, tracer, prepend, e: ast.Call) -> bool:
    """`Buffer(expr, ...)` in a model body, its first argument written positionally."""
    return (
        tracer is None
        and prepend is None
        and isinstance(callee, LayerType)
        and callee.op.name == "Buffer"
        and bool(e.args)
        and not isinstance(e.args[0], ast.Generator)
    )


def is_size(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, Dim)


class Evaluator:
    def __init__(self, checker: Checker, scope: Scope, tracer: Tracer | None):
        self.checker = checker
        self.scope = scope
        self.tracer = tracer

    def eval(self, expr: ast.Expr) -> Any:
        budget.expressions += 1
        try:
            return getattr(self, "_" + type(expr).__name__)(expr)
        except DimTooLarge:
            raise DimTooLarge.at(expr.span) from None

    # -- atoms
    def _Name(self, e: ast.Name):
        value = self.scope.lookup(e.id, e.span)
        if (
            self.tracer is not None
            and isinstance(value, LayerHandle)
            and isinstance(value.target, LayerInstance)
            and value.target.op in FREE_TENSORS
        ):
            return self.tracer.read_free_tensor(value, e.span)
        if isinstance(value, FunctionRef):
            return FunctionRef(value.op, e.span)
        return value

    def _Literal(self, e: ast.Literal):
        return e.value

    def _FString(self, e: ast.FString):
        """`f"denselayer{i + 1}"`: the text with each part's value (an integer or a string
        known at compile time) written in."""
        text = []
        for part in e.parts:
            if isinstance(part, str):
                text.append(part)
                continue
            v = self.eval(part)
            if v is POISON:
                return POISON
            v = untagged(v)
            if isinstance(v, bool) or not isinstance(v, int | str):
                raise error(
                    "E-TYPE",
                    f"an f-string part must be an integer or a string, found {describe(v)}",
                    part.span,
                )
            text.append(str(v))
        return "".join(text)

    def _NamedSteps(self, e: ast.NamedSteps):
        raise error(
            "E-SYNTAX",
            "named children `{...}` are only allowed as the argument of Sequential",
            e.span,
        )

    def _TupleExpr(self, e: ast.TupleExpr):
        items = tuple(self.eval(x) for x in e.items)
        return POISON if POISON in items else self.checker.values.built(items, e.span)

    def _ListExpr(self, e: ast.ListExpr):
        items = [self.eval(x) for x in e.items]
        return (
            POISON if any(x is POISON for x in items) else self.checker.values.built(items, e.span)
        )

    def _Attribute(self, e: ast.Attribute):
        base = self.eval(e.value)
        if base is POISON:
            return POISON
        if isinstance(base, Namespace):
            return namespace_member(base, e.name, e.span, self.checker.eval_const)
        if isinstance(base, LayerHandle):
            return self.member(base, e.name, e.span)
        raise error("E-TYPE", f"{describe(base)} has no attribute `{e.name}`", e.span)

    def member(self, handle: LayerHandle, name: str, span: Span):
        """`transformer.wte` (a child model's layer) or `wte.weight` (a layer's tensor, read
        in forward), as `module.child` and `module.weight` in PyTorch."""
        target = handle.target
        if isinstance(target, LayerInstance):
            if target.op in FREE_TENSORS or self.tracer is None:
                raise error(
                    "E-TYPE",
                    f"{describe(handle)} has no attribute `{name}`"
                    if target.op in FREE_TENSORS
                    else f"`{handle.name}.{name}`: a layer's tensors are read in forward",
                    span,
                )
            return self.tracer.read_tensor(handle, name, span)
        if target.definition == "Sequential":
            raise error(
                "E-TYPE",
                f"{describe(handle)} has no attribute `{name}`",
                span,
                notes=[f"its steps are numbered: `{handle.name}[0]`"],
            )
        frame = handle.spec
        if not frame.declared:
            raise error(
                "E-MODEL",
                f"`{handle.name}.{name}` is read before `{handle.name}` is called",
                span,
                "not made yet",
                [f"a model's layers are made at its first call: call `{handle.name}` first"],
            )
        value = frame.names.get(name)
        if not isinstance(value, LayerHandle):
            layers = [n for n, v in frame.names.items() if isinstance(v, LayerHandle)]
            raise error(
                "E-TYPE",
                f"{describe(handle)} has no layer `{name}`",
                span,
                notes=[f"its layers: {', '.join(f'`{n}`' for n in layers) or 'none'}"],
            )
        child = LayerHandle(f"{handle.name}.{name}", value.target, value.spec, value.children)
        if (
            self.tracer is not None
            and isinstance(child.target, LayerInstance)
            and child.target.op in FREE_TENSORS
        ):
            return self.tracer.read_free_tensor(child, span)
        return child

    def _Generator(self, e: ast.Generator):
        raise error("E-SYNTAX", "a generator is only allowed as the argument of Sequential", e.span)

    # -- operators
    def _Unary(self, e: ast.Unary):
        v = self.eval(e.operand)
        if v is POISON:
            return POISON
        if e.op == "not":
            return not self.want_bool(v, e.operand.span, "`not`")
        if isinstance(v, TensorValue):
            return v if e.op == "+" else self.tracer.op("neg", [Arg(v, e.operand.span)], {}, e.span)
        if is_number(v) or isinstance(v, Dim):
            return self.check_int(v if e.op == "+" else -v, e.span)
        raise error(
            "E-TYPE",
            f"unary `{e.op}` needs a number or a tensor, found {describe(v)}",
            e.operand.span,
        )

    def _BoolOp(self, e: ast.BoolOp):
        chain = _left_chain(e, "left")  # `a and b or c`, innermost first
        value = self.eval(chain[0].left)
        for node in chain:
            if value is POISON:
                return POISON
            value = self.want_bool(value, node.left.span, f"`{node.op}`")
            if (node.op == "and" and value) or (node.op == "or" and not value):
                value = self.eval(node.right)
                if value is not POISON:
                    value = self.want_bool(value, node.right.span, f"`{node.op}`")
        return value

    def _Conditional(self, e: ast.Conditional):
        cond = self.eval(e.cond)
        if cond is POISON:
            return POISON
        taken = self.want_bool(cond, e.cond.span, "`if`")
        if self.tracer is not None:  # which branch a forward took (backends write both)
            self.tracer.graph.branches[(e.span, self.tracer.iteration)] = taken
        return self.eval(e.then if taken else e.orelse)

    def _Binary(self, e: ast.Binary):
        chain = _left_chain(e, "left")  # `a + b - c`, innermost first, without recursion
        left = self.eval(chain[0].left)
        for node in chain:
            right = self.eval(node.right)
            left = POISON if left is POISON or right is POISON else self.binary(node, left, right)
        return left

    def binary(self, e: ast.Binary, left, right):
        if e.op in ("is", "is not"):
            return self.identity(e, left, right)
        if isinstance(left, TensorValue) or isinstance(right, TensorValue):
            return self.tensor_binary(e, left, right)
        if e.op in _COMPARE:
            return self.compare(e, left, right)
        return self.arith(e, left, right)

    @staticmethod
    def identity(e: ast.Binary, left, right) -> bool:
        """`a is none` / `a is not none`, known at compile time: an optional forward
        argument left out is `none`, a tensor never is."""
        if left is not None and right is not None:
            raise error(
                "E-TYPE",
                f"`{e.op}` compares with `none` only",
                e.span,
                "neither side is none",
                ["write `x is none` to ask whether an optional argument was left out"],
            )
        same = left is None and right is None
        return same if e.op == "is" else not same

    def tensor_binary(self, e: ast.Binary, left, right):
        name = BINARY_SYMBOLS.get(e.op)
        if name is None:
            raise error(
                "E-TYPE",
                f"operator `{e.op}` is not defined for tensors",
                e.span,
                notes=["tensor operators are + - * / ** @ and comparisons"],
            )
        for v, side in ((left, e.left), (right, e.right)):
            if not isinstance(v, TensorValue) and not is_number(v):
                raise error("E-TYPE", f"cannot apply `{e.op}` to {describe(v)}", side.span)
        return self.tracer.op(name, [Arg(left, e.left.span), Arg(right, e.right.span)], {}, e.span)

    def compare(self, e: ast.Binary, left, right) -> bool:
        if is_size(left) and is_size(right) and (isinstance(left, Dim) or isinstance(right, Dim)):
            diff = left - right
            if isinstance(diff, Dim):
                if e.op in ("==", "!="):
                    raise error(
                        "E-CONST",
                        f"cannot decide `{left} {e.op} {right}` at compile time",
                        e.span,
                        "depends on symbolic dimensions",
                        ["give the dimension a concrete size in the forward signature"],
                    )
                raise error(
                    "E-CONST",
                    f"cannot decide `{left} {e.op} {right}` at compile time",
                    e.span,
                    "depends on symbolic dimensions",
                )
            return _COMPARE[e.op](diff, 0)
        if e.op in ("==", "!="):
            return _COMPARE[e.op](left, right)
        if (is_number(left) and is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        ):
            return _COMPARE[e.op](left, right)
        raise error("E-TYPE", f"cannot compare {describe(left)} with {describe(right)}", e.span)

    def arith(self, e: ast.Binary, left, right):
        for v, side in ((left, e.left), (right, e.right)):
            if not (is_number(v) or isinstance(v, Dim)):
                raise error("E-TYPE", f"`{e.op}` needs numbers, found {describe(v)}", side.span)
        symbolic = isinstance(left, Dim) or isinstance(right, Dim)
        if symbolic and (
            isinstance(left, float)
            or isinstance(right, float)
            or e.op not in ("+", "-", "*", "//", "%")
        ):
            raise error(
                "E-TYPE",
                f"`{e.op}` is not defined for symbolic dimensions",
                e.span,
                notes=["dimension arithmetic supports + - * // %"],
            )
        try:
            if e.op == "**":
                return self.check_int(_power(left, right, e.span), e.span)
            if e.op == "//":
                result = (
                    floordiv(left, right)
                    if symbolic or (isinstance(left, int) and isinstance(right, int))
                    else left // right
                )
            else:
                result = {
                    "+": operator.add,
                    "-": operator.sub,
                    "*": operator.mul,
                    "/": operator.truediv,
                    "%": mod if symbolic else operator.mod,
                }[e.op](left, right)
        except ZeroDivisionError:
            raise error("E-VALUE", "division by zero", e.right.span, "zero") from None
        except OverflowError:
            raise error("E-VALUE", "number out of range", e.span) from None
        return self.check_int(result, e.span)

    @staticmethod
    def check_int(v, span: Span):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= INT_LIMIT:
            raise error("E-VALUE", "integer does not fit in 64 bits", span, "too large")
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            raise error("E-VALUE", "number out of range", span)
        return v

    @staticmethod
    def want_bool(v, span: Span, what: str) -> bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, TensorValue):
            raise error(
                "E-CONST",
                f"{what} needs a condition known at compile time, found {describe(v)}",
                span,
                "a tensor",
                ["use where(cond, a, b) to choose between tensors element-wise"],
            )
        raise error("E-TYPE", f"{what} needs true or false, found {describe(v)}", span)

    def computed_buffer(self, callee: LayerType, e: ast.Call, span: Span):
        """`Buffer(expr)` in a model body: `expr` traced into a graph of its own and computed
        with the ops' NumPy references; a shape (`Buffer([2, 3])`) is the plain Buffer."""
        tracer = self.checker.scratch_tracer()
        value = Evaluator(self.checker, self.scope, tracer).eval(e.args[0])
        keywords = {k.name: Arg(self.eval(k.value), k.value.span, k.span) for k in e.keywords}
        if not isinstance(value, TensorValue):
            return self.apply(callee, [Arg(value, e.args[0].span)], keywords, span, e.func.span)
        for name in ("init", "value", "dtype"):
            if name in keywords:
                raise error(
                    "E-ARGS",
                    f"a computed Buffer takes its dtype and values from its expression: "
                    f"no `{name}=`",
                    keywords[name].keyword_span,
                    "not with an expression",
                    ['cast it: Buffer(cast(expr, "i64"))'],
                )
        table = evaluate(tracer.graph, value.value, e.args[0].span)
        t = value.value.type
        config, spans = bind(
            callee.op.name,
            callee.op.construct,
            [Arg(tuple(t.shape), e.args[0].span)],
            {"dtype": Arg(t.dtype.value, e.args[0].span)},
            span,
            self.checker.tensor_type,
        )
        budget.spend("construction", 1, span)
        config = {**config, "init": "table", "table": tuple(table.reshape(-1).tolist())}
        return LayerSpec(callee.op, config, spans, span)

    def extreme(self, func: str, values: list, span: Span):
        """max/min of numbers (Python's) or of sizes: a symbolic one is decided for every
        value of its symbols (the argument chosen is recorded for the backends) or E-CONST."""
        if not any(isinstance(v, Dim) for v in values):
            pick = max if func == "max" else min
            return untagged(pick(values))  # tags: the loser's may differ
        if any(isinstance(v, float) for v in values):
            raise error("E-TYPE", f"`{func}` of a symbolic size and a float", span)
        result = extremum(func, values)
        if result is None:
            raise undecided_extremum(func, values, span)
        if self.tracer is not None:  # which argument: backends write it, not a call
            self.tracer.graph.branches[(span, self.tracer.iteration)] = values.index(result)
        return result

    # -- calls
    def _Pipe(self, e: ast.Pipe):
        chain = _left_chain(e, "value")  # `x |> f |> g`, innermost first
        value = self.eval(chain[0].value)
        for node in chain:
            if value is POISON:
                return POISON
            first = Arg(value, node.value.span)
            if isinstance(node.func, ast.Call):  # each step is located at its own function
                value = self.call(node.func, prepend=first, span=node.func.span)
            else:
                value = self.apply(
                    self.eval(node.func), [first], {}, node.func.span, node.func.span
                )
        return value

    def _Call(self, e: ast.Call):
        return self.call(e, None, e.span)

    def call(self, e: ast.Call, prepend: Arg | None, span: Span):
        callee = self.eval(e.func)
        if callee is POISON:
            return POISON
        if e.args and isinstance(e.args[0], ast.Generator | ast.NamedSteps):
            if callee != Builtin("Sequential"):
                what = "a generator" if isinstance(e.args[0], ast.Generator) else "`{...}`"
                raise error(
                    "E-SYNTAX",
                    f"{what} is only allowed as the argument of Sequential",
                    e.args[0].span,
                )
            if isinstance(e.args[0], ast.NamedSteps):
                return self.named_sequential(e.args[0], e.span)
            return self.sequential_generator(e.args[0], e.span)
        args = [] if prepend is None else [prepend]
        if _computed_buffer(callee, self.tracer, prepend, e):
            return self.computed_buffer(callee, e, span)
        args += [Arg(self.eval(a), a.span) for a in e.args]
        keywords: dict[str, Arg] = {}
        tie = None
        for kw in e.keywords:
            if kw.name == "tie" and isinstance(callee, LayerType) and self.tracer is None:
                tie = self.tie(callee, kw)  # resolved at the layer's first call
                continue
            if kw.name in keywords:
                raise error("E-ARGS", f"argument `{kw.name}` given twice", kw.span)
            keywords[kw.name] = Arg(self.eval(kw.value), kw.value.span, kw.span)
        if any(a.value is POISON for a in [*args, *keywords.values()]):
            return POISON
        value = self.apply(callee, args, keywords, span, e.func.span)
        if tie is not None and isinstance(value, LayerSpec):
            value.tie = tie
        return value

    def tie(self, callee: LayerType, kw: ast.Keyword) -> tuple:
        """`tie=transformer.wte`: the layer whose `weight` this one uses, as (expression,
        scope), evaluated at this layer's first call (a child model's layers are made at
        its first call). It must start at a layer declared above this one."""
        if callee.op.name not in TIEABLE:
            raise error(
                "E-ARGS",
                f"{callee.op.name} takes no `tie`",
                kw.span,
                notes=[f"`tie=` is an argument of {' and '.join(TIEABLE)}"],
            )
        root = kw.value
        while isinstance(root, ast.Attribute | ast.Index):
            root = root.value
        if not (
            isinstance(root, ast.Name) and isinstance(self.scope.find(root.id)[1], LayerHandle)
        ):
            raise error(
                "E-TYPE",
                "`tie=` names a layer declared above this one (`transformer.wte`)",
                kw.value.span,
                "not a layer declared above",
            )
        return kw.value, self.scope

    def apply(
        self, callee, args: list[Arg], keywords: dict[str, Arg], span: Span, callee_span: Span
    ):
        if callee is POISON:
            return POISON
        budget.spend("call", 1, span)
        if isinstance(callee, FunctionRef) and _extreme_of_numbers(callee, args, keywords):
            return self.extreme(callee.op.name, [a.value for a in args], span)
        if isinstance(callee, FunctionRef):
            if self.tracer is None:
                return PartialSpec(callee.op, args, keywords, span)
            return self.tracer.op(callee.op.name, args, keywords, span)
        if isinstance(callee, LayerHandle):
            if self.tracer is None:
                raise error("E-MODEL", "layers are called in forward, not in the model body", span)
            return self.tracer.call_layer(callee, args, keywords, span)
        if isinstance(callee, LayerType | ModelRef) or callee == Builtin("Sequential"):
            if self.tracer is not None:
                raise error(
                    "E-MODEL",
                    f"{describe(callee)} must be declared in the "
                    "model body, not created in forward",
                    span,
                    notes=["declare it as `name = ...` above forward, then call it"],
                )
            if isinstance(callee, LayerType):
                budget.spend("construction", 1, span)
                op = callee.op
                if not op.is_layer:  # a function's layer form: `MaxPool2d(2)` is `max_pool2d(2)`
                    return PartialSpec(op, args, keywords, span)
                config, spans = bind(
                    op.name, op.construct, args, keywords, span, self.checker.tensor_type
                )
                return LayerSpec(op, config, spans, span)
            if isinstance(callee, ModelRef):
                return self.checker.bind_hypers(callee, args, keywords, span)
            return self.sequential([a.value for a in args], keywords, span)
        if callee == Builtin("range"):
            return self.range(args, keywords, span)
        if isinstance(callee, InitFunction):  # `normal(std=0.02)`, an `init=` value
            values, _ = bind(callee.name, INIT_FUNCTIONS[callee.name], args, keywords, span)
            return Initializer(callee.name, tuple(values.items()))
        raise error("E-TYPE", f"{describe(callee)} cannot be called", callee_span, "not callable")

    def range(self, args: list[Arg], keywords: dict[str, Arg], span: Span) -> RangeValue:
        if keywords or not 1 <= len(args) <= 3:
            raise error("E-ARGS", "range takes 1 to 3 positional integers", span)
        for a in args:
            if not (isinstance(a.value, int) and not isinstance(a.value, bool)):
                raise error(
                    "E-TYPE",
                    f"range needs integers known at compile time, found {describe(a.value)}",
                    a.span,
                )
        values = [a.value for a in args]
        start, stop, step = (0, values[0], 1) if len(values) == 1 else (*values, 1)[:3]
        if step == 0:
            raise error("E-VALUE", "range step must not be zero", args[2].span)
        return RangeValue(start, stop, step)

    def sequential(self, children: list, keywords: dict, span: Span) -> SequentialSpec:
        if keywords:
            raise error("E-ARGS", "Sequential takes layers as positional arguments", span)
        for child in children:
            self.check_child(child, span)
        return SequentialSpec(
            [
                c if not isinstance(c, FunctionRef) else PartialSpec(c.op, [], {}, c.span or span)
                for c in children
            ],
            span,
        )

    def check_child(self, child, span: Span) -> None:
        if not isinstance(
            child, LayerSpec | ModelSpec | SequentialSpec | PartialSpec | FunctionRef
        ):
            raise error(
                "E-TYPE", f"Sequential children must be layers, found {describe(child)}", span
            )

    def sequential_generator(self, gen: ast.Generator, span: Span) -> SequentialSpec:
        iterable = self.eval(gen.iterable)
        if iterable is POISON:
            return POISON
        items = self.iteration_items(iterable, gen.iterable.span)
        children, names = [], []
        for item in items:
            budget.spend("iteration", 1, gen.iterable.span)
            inner = Evaluator(self.checker, Scope({gen.var: item}, self.scope), self.tracer)
            child = inner.eval(gen.element)
            name = None if gen.key is None else inner.eval(gen.key)
            if child is POISON or name is POISON:
                return POISON
            self.check_child(child, gen.element.span)
            children.append(child)
            names.append(name)
        spec = self.sequential(children, {}, span)
        spec.items = tuple(items)
        if gen.key is not None:
            spec.names = _child_names(names, [gen.key] * len(names))
        return spec

    def named_sequential(self, steps: ast.NamedSteps, span: Span) -> SequentialSpec:
        """`Sequential({"conv": Conv2d(...), "relu": relu})`: children with these names."""
        names = [self.eval(k) for k in steps.keys]
        children = [self.eval(v) for v in steps.steps]
        if POISON in names or any(c is POISON for c in children):
            return POISON
        spec = self.sequential(children, {}, span)
        spec.names = _child_names(names, steps.keys)
        return spec

    def iteration_items(self, iterable, span: Span) -> list:
        """The items a `for` iterates over; the count is checked before anything unrolls."""
        if isinstance(iterable, RangeValue | list | tuple):
            if len(iterable) > MAX_UNROLL:
                raise error(
                    "E-LIMIT",
                    f"loop of {len(iterable):,} iterations exceeds the limit of {MAX_UNROLL:,}",
                    span,
                    "too many iterations",
                    ["loops and Sequential generators are unrolled at compile time"],
                )
            return list(iterable)
        if isinstance(iterable, LayerHandle) and iterable.children:
            return list(iterable.children)
        raise error(
            "E-TYPE",
            f"cannot iterate over {describe(iterable)}",
            span,
            notes=["iterate over range(n), a list, or a Sequential layer"],
        )

    # -- indexing
    def _Index(self, e: ast.Index):
        base = self.eval(e.value)
        if base is POISON:
            return POISON
        items = []
        for item in e.items:
            if isinstance(item, ast.Slice):
                parts = [
                    None if p is None else self.eval(p) for p in (item.start, item.stop, item.step)
                ]
                for p, src in zip(parts, (item.start, item.stop, item.step), strict=True):
                    if p is not None and not is_size(p):
                        raise error(
                            "E-TYPE",
                            f"slice bounds must be integers, found {describe(p)}",
                            src.span,
                        )
                items.append(slice(*parts))
            else:
                v = self.eval(item)
                if isinstance(base, LayerHandle) and base.children and isinstance(v, str):
                    return _child_by_name(base, v, item)
                if isinstance(v, TensorValue) and isinstance(base, TensorValue):
                    items.append(Arg(v, item.span))  # an index tensor: `take`
                    continue
                if not (is_size(v) or (v is None and isinstance(base, TensorValue))):
                    raise error(
                        "E-TYPE",
                        f"an index must be an integer, found {describe(v)}",
                        item.span,
                        notes=["a tensor's index may also be an integer tensor: `x[ids]`"],
                    )
                items.append(v)  # none: a new axis of size 1
        if isinstance(base, TensorValue) and any(isinstance(item, Arg) for item in items):
            return self._take(base, items, e)
        if isinstance(base, TensorValue):
            return self.tracer.op(
                "getitem", [Arg(base, e.value.span)], {"items": Arg(tuple(items), e.span)}, e.span
            )
        if isinstance(base, tuple | list) and len(items) == 1 and isinstance(items[0], int):
            try:
                return base[items[0]]
            except IndexError:
                raise error(
                    "E-VALUE", f"index {items[0]} is out of range for {len(base)} items", e.span
                ) from None
        if (
            isinstance(base, LayerHandle)
            and base.children
            and len(items) == 1
            and isinstance(items[0], int)
        ):
            try:
                return base.children[items[0]]
            except IndexError:
                raise error(
                    "E-VALUE",
                    f"index {items[0]} is out of range for a Sequential of "
                    f"{len(base.children)} layers",
                    e.span,
                ) from None
        raise error("E-TYPE", f"cannot index {describe(base)}", e.span)

    def _take(self, base, items: list, e: ast.Index):
        """`x[index]` with an integer tensor `index`, after whole-axis slices only
        (`x[:, index]`): the op `take` along that axis."""
        axis = next(i for i, item in enumerate(items) if isinstance(item, Arg))
        if any(not _whole(item) for i, item in enumerate(items) if i != axis):
            raise error(
                "E-TYPE",
                "indexing with a tensor takes one integer tensor, after whole-axis slices `:` only",
                e.span,
                "unsupported index",
                ["slice or index first, then index with the tensor: `x[:, 1:][:, ids]`"],
            )
        return self.tracer.op(
            "take",
            [Arg(base, e.value.span), items[axis]],
            {"axis": Arg(axis, e.span)},
            e.span,
        )


def _whole(item) -> bool:
    """Whether an index item is `:`, the whole axis."""
    return isinstance(item, slice) and all(p is None for p in (item.start, item.stop, item.step))


def _left_chain(e, operand: str) -> list:
    """`e` and the nodes of its type down its left `operand`, innermost first: a chain such
    as `a + b + c` is evaluated in a loop, so width never turns into recursion depth. Each
    node but `e` (which `eval` charged) is charged to the work budget here."""
    chain = [e]
    while type(getattr(chain[-1], operand)) is type(e):
        chain.append(getattr(chain[-1], operand))
    budget.expressions += len(chain) - 1
    return chain[::-1]


def _power(base, exp, span: Span):
    if isinstance(base, Dim) or isinstance(exp, Dim):
        raise error("E-TYPE", "`**` is not defined for symbolic dimensions", span)
    if isinstance(base, int) and isinstance(exp, int) and exp >= 0:
        if base not in (0, 1, -1) and exp * max(abs(base).bit_length() - 1, 1) > 64:
            raise error("E-VALUE", "integer does not fit in 64 bits", span, "too large")
        return base**exp
    result = float(base) ** float(exp)
    if isinstance(result, complex):
        raise error("E-VALUE", "a negative number to a fractional power", span)
    return result


def _child_names(names: list, keys: list) -> tuple[str, ...]:
    """The names of a Sequential's children, checked: strings that are valid quoted names
    (letters, digits, `_`, `-`), each once."""
    seen: set[str] = set()
    for name, key in zip(names, keys, strict=True):
        if not isinstance(name, str) or not QUOTED_NAME.fullmatch(name):
            found = f"`{name}`" if isinstance(name, str) else describe(name)
            raise error(
                "E-VALUE",
                f"a child's name must be a string of letters, digits, `_` and `-`, found {found}",
                key.span,
                "not a child's name",
                ["a `.` separates children in a state_dict name"] if "." in str(name) else [],
            )
        if name in seen:
            raise error(
                "E-REDEFINED", f"two children of this Sequential are named `{name}`", key.span
            )
        seen.add(name)
    return tuple(names)


def _child_by_name(seq: LayerHandle, name: str, item: ast.Expr) -> LayerHandle:
    """`layers["encoder_layer_0"]`: a Sequential's child read by its name, a literal."""
    if not isinstance(item, ast.Literal):
        raise error(
            "E-TYPE",
            "a child of a Sequential is read by a literal name",
            item.span,
            "not a literal",
            ['write the name itself (`layers["encoder_layer_0"]`), or its position'],
        )
    found = next((c for c in seq.children if c.name == name), None)
    if found is None:
        names = [c.name for c in seq.children]
        raise error(
            "E-NAME",
            f"{seq.description()} has no child named `{name}`",
            item.span,
            "not a child",
            [f"its children: {', '.join(names[:8])}{', …' if len(names) > 8 else ''}"],
        )
    return found

"""Python classes from the typed IR, shared by the backends that write Python source.

`Emitter` plans one class per model definition reachable from the entry instance (children
first); a backend's `ClassWriter` subclass writes each class. The base writer mirrors the
.dnet model: the constructor takes the hyperparameters (same names and defaults) plus, for
sub-models, the input sizes dualnet inferred (keyword-only); layer declarations become
`self.name = ...` and the forward body is translated statement by statement. The IR supplies
what the source doesn't say: resolved layer sizes (as expressions over the model's own
names, from tagged sizes), normalised op attributes, and the types for the shape comments.

A backend fills in the framework: how a layer is referenced, constructed and called, how an
op node is lowered, the class and method headers (the abstract methods below).
"""

from __future__ import annotations

import builtins
import functools
import keyword
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from dualnet.backends.line_layout import layout
from dualnet.backends.syntax_tree import (
    as_call,
    callee_name,
    dotted,
    inside,
    mentions,
    span_key,
)
from dualnet.diagnostics import Span
from dualnet.ir.dims import Dim, substitute
from dualnet.ir.graph import LayerInstance, ModelInstance, Node, by_parameter
from dualnet.ir.tagged import Tagged, Written, written
from dualnet.ir.types import TensorType
from dualnet.ops import REGISTRY
from dualnet.syntax import ast

PYTHON_RESERVED = frozenset(set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins))
                            | {"self", "math", "_unchecked"})

# Python operator precedence, lowest first (`x if c else y` is 0).
_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "<": 4, "<=": 4, ">": 4, ">=": 4, "==": 4,
               "!=": 4, "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "@": 6, "**": 8}
_UNARY, _ATOM = 7, 9


def fmt_literal(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, str):
        text = repr(v)
        return f'"{text[1:-1]}"' if text[0] == "'" and '"' not in v else text
    if isinstance(v, tuple | list):
        return sequence([fmt_literal(x) for x in v], isinstance(v, tuple))
    raise TypeError(v)


def sequence(items: list[str], is_tuple: bool) -> str:
    """Already formatted items as a tuple or list display."""
    text = ", ".join(items)
    if not is_tuple:
        return f"[{text}]"
    return f"({text},)" if len(items) == 1 else f"({text})"


class Unsupported(Exception):
    """A construct a backend cannot write; becomes a located E-BACKEND diagnostic."""

    def __init__(self, message: str, span: Span | None):
        super().__init__(message)
        self.span = span


@dataclass
class ClassPlan:
    name: str
    decl: ast.Model
    instances: list[ModelInstance]
    required_dims: list[str] = field(default_factory=list)  # keyword-only inferred sizes


class Emitter:
    """Plans one file for an entry model instance and everything it uses. A backend sets
    `writer` (its ClassWriter subclass) and `reserved` (names generated code must not
    shadow) and assembles the file around `write_classes()`."""

    writer: type[ClassWriter]
    reserved: frozenset[str] = PYTHON_RESERVED

    def __init__(self, entry: ModelInstance, source: str):
        self.entry = entry
        self.source = PurePath(source).name
        self.plans: dict[int, ClassPlan] = {}
        self.order: list[ClassPlan] = []
        self._collect(entry)

    # -- planning
    def _collect(self, inst: ModelInstance) -> None:
        for child in inst.children.values():
            if isinstance(child, ModelInstance):
                self._collect(child)
        if inst.definition == "Sequential":
            return
        plan = self.plans.get(id(inst.decl))
        if plan is None:
            names = {p.name for p in self.order}
            name = self.py_name(inst.definition)
            while name in names:
                name += "_"
            plan = ClassPlan(name, inst.decl, [])
            self.plans[id(inst.decl)] = plan
            self.order.append(plan)
        plan.instances.append(inst)

    def plan_of(self, inst: ModelInstance) -> ClassPlan:
        return self.plans[id(inst.decl)]

    def py_name(self, name: str) -> str:
        """A .dnet name as a Python identifier that shadows nothing the generated code uses."""
        return name + "_" if name in self.reserved else name

    def write_classes(self) -> str:
        """Every planned class, children first, separated as ruff format separates them."""
        return "\n\n\n".join(self.writer(self, plan).write() for plan in self.order)


class ClassWriter:
    def __init__(self, emitter: Emitter, plan: ClassPlan):
        self.em = emitter
        self.plan = plan
        self.py = emitter.py_name
        self.decl = plan.decl
        self.hypers = [h.name for h in self.decl.hypers]
        self.forward = next(m for m in self.decl.members if isinstance(m, ast.Forward))
        self.first = plan.instances[0]
        self.sig_dims = self._signature_dims()
        self.used_in_init: set[str] = set()
        self.used_in_forward: set[str] = set()
        self.nodes = self._nodes_by_span()
        self.layer_names = [m.name.id for m in self.decl.members if isinstance(m, ast.LayerDecl)]
        self.local_consts: dict[str, ast.Expr] = {}
        self.src = PurePath(self.decl.span.file).name  # the file this model is declared in

    # -- lookups
    def _signature_dims(self) -> dict[str, tuple[str, int]]:
        """Dimension name → (argument, axis) of its first occurrence in the signature."""
        out: dict[str, tuple[str, int]] = {}
        for arg in self.forward.args:
            if isinstance(arg.type, ast.TensorTypeExpr):
                for axis, d in enumerate(arg.type.dims):
                    if isinstance(d, ast.DimName) and d.name not in self.hypers:
                        out.setdefault(d.name, (arg.name, axis))
        return out

    def _nodes_by_span(self) -> dict[tuple, list[Node]]:
        table: dict[tuple, list[Node]] = {}
        for inst in self.plan.instances:
            for graph in inst.graphs:
                for node in graph.nodes:
                    if node.span is not None:
                        table.setdefault(span_key(node.span), []).append(node)
        return table

    def node_at(self, span: Span, kinds=("op", "layer", "call")) -> Node | None:
        for node in self.nodes.get(span_key(span), ()):
            if node.kind in kinds:
                return node
        return None

    # -- size formatting
    def init_name(self, name: str) -> str:
        if name in self.hypers or name in self.sig_dims or name in self.local_consts:
            self.used_in_init.add(name)
            return self.py(name)
        raise Unsupported(f"size `{name}` is not known when the module is constructed", None)

    def fmt_init(self, v: Any) -> str:
        """An attribute as constructor code (sizes over the constructor's arguments)."""
        return self._format(v, self.init_name, in_forward=False)

    def _format(self, v: Any, name_of, in_forward: bool) -> str:
        if isinstance(v, Written):
            return v.code
        if isinstance(v, Tagged):
            return render(v.expr, name_of)
        if isinstance(v, Dim):
            if not in_forward:
                raise Unsupported(f"a layer size depends on the symbolic dimension `{v}`", None)
            return render(v, name_of)
        if isinstance(v, tuple | list):
            return sequence([self._format(x, name_of, in_forward) for x in v],
                             isinstance(v, tuple))
        return fmt_literal(v)

    def forward_name(self, name: str) -> str:
        if name in self.sig_dims:
            self.used_in_forward.add(name)
            return f"{self.py(name)}_"
        if name in self.hypers or name in self.local_consts:
            self.used_in_forward.add(name)
            return f"self.{self.attr_name(name)}"
        for arg, t in zip(self.forward.args, self.first.graphs[0].inputs, strict=True):
            for axis, d in enumerate(t.type.shape):
                if isinstance(d, Dim) and d.symbol == name:
                    return self.dim_source(arg.name, axis)
        raise Unsupported(f"cannot find the size `{name}` at run time", None)

    def fmt_forward(self, v: Any) -> str:
        """An attribute as forward code (symbolic sizes read from the inputs at run time)."""
        return self._format(v, self.forward_name, in_forward=True)

    # -- the class
    def write(self) -> str:
        init_lines = self.init_body()
        forward_lines = self.forward_body()
        self.plan.required_dims = [d for d in self.sig_dims if d in self.used_in_init]
        params = ["self"] + [self.hyper_param(h) for h in self.decl.hypers]
        if self.plan.required_dims:
            params.append("*")
            for d in self.plan.required_dims:
                default = (f" = {self.fmt_init(self.first.call_dims[d])}"
                           if self.first is self.em.entry else "")
                params.append(f"{self.py(d)}: int{default}")
        stored = self.stored_names()
        span = self.decl.span
        lines = [f"class {self.plan.name}({self.base_class()}):",
                 f'    """{self.decl.name.id} ({self.src}:{span.line})."""', "",
                 *(f"    {line}" for line in self.constructor_header(params))]
        lines += [f"        {line}" for line in self.default_fixups()]
        lines += [f"        self.{self.attr_name(h)} = {self.py(h)}" for h in stored]
        lines += [f"        {line}" for line in init_lines]
        lines += [f"    {line}" if line else "" for line in self.extra_methods(params)]
        lines += [""] + [f"    {line}" for line in forward_lines]
        return "\n".join(layout(lines))

    # -- what a backend writes
    def base_class(self) -> str:
        raise NotImplementedError

    def constructor_header(self, params: list[str]) -> list[str]:
        """The `def __init__` line and the call of the base constructor."""
        raise NotImplementedError

    def stored_names(self) -> list[str]:
        """Constructor arguments and local constants kept as attributes: those forward
        reads."""
        return [h for h in self.hypers + list(self.local_consts) if h in self.used_in_forward]

    def attr_name(self, name: str) -> str:
        """The attribute that stores hyperparameter or constant `name`."""
        return self.py(name)

    def dim_source(self, arg: str, axis: int) -> str:
        """A dimension of a forward argument, read at run time."""
        return f"{self.py(arg)}.shape[{axis}]"

    def extra_methods(self, params: list[str]) -> list[str]:
        """Methods between the constructor and the forward method (none by default)."""
        return []

    def layer_ref(self, name: str) -> str:
        """How forward code names layer `name` (`self.conv1`)."""
        raise NotImplementedError

    def construct_layer(self, op: str, attrs: dict) -> str:
        """The constructor expression of a built-in layer."""
        raise NotImplementedError

    def sequential_expr(self, e: ast.Call, built: list, env: dict[str, str]) -> str:
        raise NotImplementedError

    def generator_steps(self, e: ast.Call, built: list, env: dict[str, str]) -> tuple:
        """(step source, loop variable, iterable source) of `Sequential(f(i) for i in r)`."""
        gen = e.args[0]
        var = self.py(gen.var)
        children = [c for seq in built for c in seq.children.values()]
        inner = self.layer_expr(gen.element, children, {**env, gen.var: var})
        return inner, var, self.const_expr(gen.iterable, env)

    def function_module(self, layer: LayerInstance) -> str:
        """A parameterless function as a step of a Sequential."""
        raise NotImplementedError

    def forward_header(self, graph) -> str:
        """The `def forward(...)` (or `def call(...)`) line."""
        raise NotImplementedError

    def layer_call(self, node: Node, target: str, codes: dict, attrs: dict) -> str:
        """A call of the built-in layer `target` with its inputs' source (`codes`)."""
        raise NotImplementedError

    def lower(self, node: Node, codes: dict, attrs: dict | None = None) -> str:
        """An op node as an expression, its inputs' source by signature name."""
        raise NotImplementedError

    def model_call(self, node: Node, target: str, args: list[str],
                   keywords: dict[str, str]) -> str:
        """A call of a child model (or a Sequential) with its arguments' source."""
        kw = [f"{self.py(k)}={v}" for k, v in keywords.items()]
        return f"{target}({', '.join(args + kw)})"

    def op_expr(self, node: Node, operands: list[ast.Expr], codes: dict) -> str:
        """An operator (`a + b`, `-x`, `x[i]`) as an expression."""
        return self.lower(node, codes)

    def op_attrs(self, node: Node, attrs: dict, first) -> dict:
        """A backend's extra attributes for a called op (`first`: its first argument)."""
        return attrs

    def before_statements(self) -> None:
        """Called before the forward body is written."""

    def after_statement(self, stmt) -> None:
        """Called after each top-level statement of the forward body is written."""

    def hyper_param(self, h: ast.Hyper) -> str:
        annotation = {"int": "int", "float": "float", "bool": "bool", "str": "str"}.get(
            getattr(h.type, "name", ""), "tuple")
        if h.default is None:
            return f"{self.py(h.name)}: {annotation}"
        if mentions(h.default, set(self.hypers)):
            return f"{self.py(h.name)}: {annotation} | None = None"
        return f"{self.py(h.name)}: {annotation} = {self.const_expr(h.default)}"

    def default_fixups(self) -> list[str]:
        """Defaults that refer to earlier hyperparameters are computed in the constructor."""
        out = []
        for h in self.decl.hypers:
            if h.default is not None and mentions(h.default, set(self.hypers)):
                name = self.py(h.name)
                out.append(f"{name} = {self.const_expr(h.default)} if {name} is None else {name}")
        return out

    # -- compile-time expressions (Python values)
    def const_expr(self, e: ast.Expr, env: dict[str, str] | None = None,
                   name_of=None) -> str:
        """A compile-time expression as Python; `name_of` writes a hyperparameter, local
        constant or dimension name (constructor locals by default)."""
        return self._const(e, env or {}, name_of or self.init_name)[0]

    def _const(self, e: ast.Expr, env: dict[str, str], name_of) -> tuple[str, int]:
        """(source, precedence) with only the brackets precedence needs."""
        def sub(x: ast.Expr, least: int) -> str:
            code, prec = self._const(x, env, name_of)
            return f"({code})" if prec < least else code

        if isinstance(e, ast.Literal):
            return fmt_literal(e.value), _ATOM
        if isinstance(e, ast.Name | ast.Attribute):
            key = e.id if isinstance(e, ast.Name) else dotted(e)
            if key in env:
                return env[key], _ATOM
            if key in self.hypers or key in self.local_consts or key in self.sig_dims:
                return name_of(key), _ATOM
            if key in self.first.constants:
                return fmt_literal(self.first.constants[key]), _ATOM
            raise Unsupported(f"`{key}` cannot be written as a Python value", e.span)
        if isinstance(e, ast.Binary | ast.BoolOp):
            prec = _PRECEDENCE[e.op]
            right = prec + 1 if e.op != "**" else prec
            left = prec if e.op != "**" else prec + 1
            return f"{sub(e.left, left)} {e.op} {sub(e.right, right)}", prec
        if isinstance(e, ast.Unary):
            if e.op == "not":
                return f"not {sub(e.operand, _PRECEDENCE['not'])}", _PRECEDENCE["not"]
            return f"{e.op}{sub(e.operand, _UNARY)}", _UNARY
        if isinstance(e, ast.Conditional):
            return f"{sub(e.then, 1)} if {sub(e.cond, 1)} else {sub(e.orelse, 0)}", 0
        if isinstance(e, ast.TupleExpr | ast.ListExpr):
            return sequence([sub(x, 0) for x in e.items], isinstance(e, ast.TupleExpr)), _ATOM
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "range":
            return f"range({', '.join(sub(a, 0) for a in e.args)})", _ATOM
        raise Unsupported("this expression cannot be written as a Python value", e.span)

    # -- __init__
    def init_body(self) -> list[str]:
        lines: list[str] = []
        for member in self.decl.members:
            if not isinstance(member, ast.LayerDecl):
                continue
            name = member.name.id
            built = [inst.children.get(name) for inst in self.plan.instances]
            if all(b is None for b in built):  # a local compile-time constant
                self.local_consts[name] = member.value
                lines.append(f"{self.py(name)} = {self.const_expr(member.value)}"
                             f"  # {self.src}:{member.span.line}")
                continue
            code = self.layer_expr(member.value, [b for b in built if b is not None], {})
            lines.append(f"{self.layer_ref(name)} = {code}  # {self.src}:{member.span.line}")
        return lines

    def layer_expr(self, e: ast.Expr, built: list, env: dict[str, str]) -> str:
        """Constructor source for a layer declaration, given the objects it built in the
        instances of this model (several instances may have taken different branches)."""
        if isinstance(e, ast.Conditional):
            then = [b for b in built if inside(b.span, e.then.span)]
            orelse = [b for b in built if inside(b.span, e.orelse.span)]
            return (f"{self.branch(e.then, then, env)} if {self.const_expr(e.cond, env)} "
                    f"else {self.branch(e.orelse, orelse, env)}")
        if isinstance(e, ast.Name) and e.id in env:
            raise Unsupported("a loop variable cannot be a layer here", e.span)
        if isinstance(e, ast.Call):
            callee = callee_name(e.func)
            if callee == "Sequential":
                return self.sequential_expr(e, built, env)
            if callee in REGISTRY and REGISTRY[callee].is_layer:
                attrs = self.written_args(REGISTRY[callee].construct, e, self.common_attrs(built),
                                          lambda x: self.const_expr(x, env))
                return self.construct_layer(built[0].op, attrs)
            if callee in REGISTRY:
                return self.function_module(built[0])
            return self.model_expr(e, built, env)
        if isinstance(e, ast.Name) and e.id in REGISTRY:
            return self.function_module(built[0])
        raise Unsupported("this layer declaration cannot be written", e.span)

    @staticmethod
    def written_args(signature, e: ast.Call, attrs: dict, render) -> dict:
        """Attributes whose argument the source wrote as an expression (`p=dropout`) carry
        that expression, so the generated code stays generic in the hyperparameter."""
        given = dict(zip([p.name for p in signature.params], e.args, strict=False))
        given.update({k.name: k.value for k in e.keywords})
        out = dict(attrs)
        for name, arg in given.items():
            if name in out and not isinstance(arg, ast.Literal) and \
                    type(out[name]) in (bool, float, str):
                out[name] = written(out[name], render(arg))
        return out

    def common_attrs(self, layers: list[LayerInstance]) -> dict:
        """One layer's attributes, with each size written by an expression that gives every
        checked instance its own value (instances that took different branches above may tag
        the same size differently: `C` where an Identity kept it, `hidden` elsewhere)."""
        owners = [self._owner(layer) for layer in layers]
        attrs = dict(layers[0].attrs)
        for key, value in attrs.items():
            if isinstance(value, tuple):
                attrs[key] = tuple(self._agreeing([layer.attrs[key][i] for layer in layers],
                                                  owners) for i in range(len(value)))
            else:
                attrs[key] = self._agreeing([layer.attrs[key] for layer in layers], owners)
        return attrs

    def _owner(self, layer: LayerInstance) -> ModelInstance:
        return next(inst for inst in self.plan.instances
                    if not inst.path or layer.path.startswith(inst.path + "."))

    @staticmethod
    def _agreeing(values: list, owners: list[ModelInstance]):
        candidates = [v.expr for v in values if isinstance(v, Tagged)]
        for expr in candidates:
            if all(isinstance(v, int) and substitute(expr, inst.sizes) == int(v)
                   for v, inst in zip(values, owners, strict=True)):
                return Tagged(int(values[0]), expr)
        return values[0]

    def branch(self, e: ast.Expr, built: list, env: dict[str, str]) -> str:
        if built:
            return self.layer_expr(e, built, env)
        message = (f"{self.decl.name.id}: dualnet checked no configuration that takes this "
                   f"branch ({self.src}:{e.span.line}); regenerate with such "
                   "hyperparameters")
        return f"_unchecked({message!r})"

    def model_expr(self, e: ast.Call, built: list, env: dict[str, str]) -> str:
        child = built[0]
        plan = self.em.plan_of(child)
        args = [self.const_expr(a, env) for a in e.args]
        args += [f"{self.py(k.name)}={self.const_expr(k.value, env)}" for k in e.keywords]
        for dim in plan.required_dims:
            values = [self.fmt_init(b.call_dims[dim]) for b in built]
            args.append(f"{self.py(dim)}={per_iteration(values, env)}")
        return f"{plan.name}({', '.join(args)})"

    # -- forward
    def forward_body(self) -> list[str]:
        graph = self.first.graphs[0]
        body: list[str] = []
        for arg, value in zip(self.forward.args, graph.inputs, strict=True):
            body.append(f"# {self.py(arg.name)}: {self.type_comment(value.type)}")
        self.nesting = 0
        self.before_statements()
        statements = []
        for stmt in self.forward.body:
            statements += self.statement(stmt, {})
            self.after_statement(stmt)
        text = "\n".join(statements)  # a lowering may format a size it then does not use
        prelude = [f"{self.py(d)}_ = {self.dim_source(*self.sig_dims[d])}"
                   for d in self.sig_dims if re.search(rf"\b{self.py(d)}_\b", text)]
        return [self.forward_header(graph)] + \
            [f"    {line}" for line in body + prelude + statements]

    def block(self, stmts, env: dict[str, str]) -> list[str]:
        """The statements of a loop or branch body, indented."""
        self.nesting += 1
        try:
            lines = [line for stmt in stmts for line in self.statement(stmt, env)]
        finally:
            self.nesting -= 1
        return [f"    {line}" for line in lines or ["pass"]]

    def statement(self, s, env: dict[str, str]) -> list[str]:
        where = f"{self.src}:{s.span.line}"
        if isinstance(s, ast.Assign | ast.Annotated):
            return self.assign_statement(s, env, where)
        if isinstance(s, ast.Return):
            return self.return_statement(s, env, where)
        if isinstance(s, ast.For):
            return self.for_statement(s, env, where)
        if isinstance(s, ast.If):
            return self.if_statement(s, env, where)
        raise Unsupported("statement not supported by this backend", s.span)

    def assign_statement(self, s, env: dict[str, str], where: str) -> list[str]:
        targets = [s.target] if isinstance(s, ast.Annotated) else list(s.targets)
        code = self.expr(s.value, env)
        types = self.result_types(s.value)
        shown = ", ".join(self.type_comment(t) for t in types) if types else ""
        for t in targets:
            env.pop(t.id, None)
        names = ", ".join(self.assigned(t.id, code, i) for i, t in enumerate(targets))
        return [f"{names} = {code}  # {shown + '  ' if shown else ''}{where}"]

    def assigned(self, name: str, code: str, index: int) -> str:
        """The Python name `name` gets when it is assigned (`index`-th target of `code`)."""
        return self.py(name)

    def return_statement(self, s, env: dict[str, str], where: str) -> list[str]:
        values = ", ".join(self.returned([self.expr(v, env) for v in s.values]))
        return [f"return {values}  # {where}"]

    def returned(self, codes: list[str]) -> list[str]:
        """The returned values' source (a backend may convert them)."""
        return codes

    def for_statement(self, s, env: dict[str, str], where: str) -> list[str]:
        var = self.py(s.var.id)
        iterable = self.iterable(s.iterable, env)
        inner = {**env, s.var.id: var}
        return [f"for {var} in {iterable}:  # {where}", *self.block(s.body, inner)]

    def if_statement(self, s, env: dict[str, str], where: str) -> list[str]:
        lines = [f"if {self.const_forward(s.cond, env)}:  # {where}", *self.block(s.body, env)]
        if s.orelse:
            lines += ["else:", *self.block(s.orelse, env)]
        return lines

    def iterable(self, e: ast.Expr, env: dict[str, str]) -> str:
        if isinstance(e, ast.Name) and e.id in self.layer_names:
            return self.layer_ref(e.id)
        return self.const_forward(e, env)

    def const_forward(self, e: ast.Expr, env: dict[str, str]) -> str:
        """A compile-time expression inside forward: hyperparameters are attributes."""
        return self.const_expr(e, env, self.forward_name)

    def result_types(self, e: ast.Expr) -> list[TensorType]:
        span = e.func.span if isinstance(e, ast.Pipe) else e.span
        node = self.node_at(span)
        return [v.type for v in node.outputs] if node else []

    def type_comment(self, t: TensorType) -> str:
        dims = []
        for d in t.shape:
            if isinstance(d, Tagged):
                dims.append(d.expr.render(str) if isinstance(d.expr, Dim) else str(d.expr))
            else:
                dims.append(str(d))
        return f"{t.dtype}[{', '.join(dims)}]"

    # -- tensor expressions
    def expr(self, e: ast.Expr, env: dict[str, str]) -> str:
        if isinstance(e, ast.Name):
            if e.id in env:
                return env[e.id]
            if e.id in self.layer_names:
                return self.layer_ref(e.id)
            if e.id in self.hypers or e.id in self.sig_dims or e.id in self.local_consts:
                return self.forward_name(e.id)
            if e.id in self.first.constants:
                return fmt_literal(self.first.constants[e.id])
            return self.variable(e.id)
        if isinstance(e, ast.Literal):
            return fmt_literal(e.value)
        if isinstance(e, ast.Pipe):
            return self.call(e.func, e.func.span, env, prepend=self.expr(e.value, env),
                             prepend_tree=e.value)
        if isinstance(e, ast.Call):
            return self.call(e, e.span, env)
        if isinstance(e, ast.Binary | ast.Unary | ast.Index):
            node = self.node_at(e.span)
            if node is not None and node.kind == "op":
                if isinstance(e, ast.Binary):
                    operands = [e.left, e.right]
                elif isinstance(e, ast.Unary):
                    operands = [e.operand]
                else:
                    operands = [e.value]
                names = [p.name for p in REGISTRY[node.op].signature.params if p.is_tensor]
                codes = {n: self.expr(a, env) for n, a in zip(names, operands, strict=False)}
                return self.op_expr(node, operands, codes)
            if isinstance(e, ast.Index):
                items = ", ".join(self.expr(i, env) for i in e.items)
                return f"{self.expr(e.value, env)}[{items}]"
            return self.const_forward(e, env)
        if isinstance(e, ast.Conditional):
            return self.conditional(self.expr(e.then, env), self.const_forward(e.cond, env),
                                    self.expr(e.orelse, env))
        if isinstance(e, ast.TupleExpr | ast.ListExpr):
            items = ", ".join(self.expr(x, env) for x in e.items)
            return f"[{items}]" if isinstance(e, ast.ListExpr) else f"({items})"
        raise Unsupported("expression not supported by this backend", e.span)

    def call(self, e: ast.Expr, span: Span, env: dict[str, str], prepend: str | None = None,
             prepend_tree: ast.Expr | None = None):
        func = e.func if isinstance(e, ast.Call) else e
        args: list = [] if prepend is None else [prepend]  # source text, or syntax trees
        keywords: dict[str, ast.Expr] = {}
        if isinstance(e, ast.Call):
            args += list(e.args)
            keywords = {k.name: k.value for k in e.keywords}
        node = self.node_at(span)
        if node is None:
            raise Unsupported("dualnet did not trace this call in any checked configuration",
                               span)
        if node.kind == "op":
            op = REGISTRY[node.op]
            attrs = self.written_args(op.signature, as_call(e, args), dict(node.attrs),
                                      lambda x: self.const_forward(x, env))
            first = prepend_tree if prepend is not None else (args[0] if args else None)
            attrs = self.op_attrs(node, attrs, first)
            return self.lower(node, self.bind(op, args, keywords, env), attrs)
        target = self.expr(func, env)
        if node.kind == "layer" and REGISTRY[node.op].is_layer:
            codes = self.bind(REGISTRY[node.op], args, keywords, env)
            layer = self.layer_of(node)
            return self.layer_call(node, target, codes, {**layer.attrs, **node.attrs})
        positional = [a if isinstance(a, str) else self.expr(a, env) for a in args]
        return self.model_call(node, target, positional,
                               {k: self.expr(v, env) for k, v in keywords.items()})

    def layer_of(self, node: Node) -> LayerInstance:
        for inst in self.plan.instances:
            for graph in inst.graphs:
                if any(n is node for n in graph.nodes):
                    return inst.child(node.target)
        raise Unsupported("layer not found", node.span)

    def bind(self, op, args: list, keywords: dict[str, ast.Expr], env) -> dict:
        """Tensor arguments' source by signature name (a list for `tensors` parameters);
        `args` items are source text (a piped value) or syntax trees."""
        params = op.signature.params
        given: dict[str, Any] = dict(zip([p.name for p in params], args, strict=False))
        given.update(keywords)
        codes: dict[str, Any] = {}
        for p in params:
            if not p.is_tensor:
                continue
            arg = given.get(p.name)
            if arg is None or isinstance(arg, str):
                codes[p.name] = arg
            elif p.kind == "tensors" and isinstance(arg, ast.ListExpr | ast.TupleExpr):
                codes[p.name] = [self.expr(x, env) for x in arg.items]
            elif isinstance(arg, ast.Literal) and arg.value is None:
                codes[p.name] = None
            else:
                codes[p.name] = self.expr(arg, env)
        return codes

    @staticmethod
    def input_types(node: Node) -> dict[str, Any]:
        """The node's input types by signature name (a list for a `tensors` parameter)."""
        return by_parameter(node, [v.type for v in node.inputs])

    def number_inputs(self, node: Node) -> frozenset[str]:
        """The node's inputs (signature names) that the generated code holds as plain
        numbers, not tensors: values of constant nodes (literals, hyperparameters, sizes)."""
        return frozenset(name for name, v in by_parameter(node, node.inputs).items()
                         if id(v) in self._constant_values)

    @functools.cached_property
    def _constant_values(self) -> set[int]:
        return {id(v) for inst in self.plan.instances for graph in inst.graphs
                for n in graph.nodes if n.kind == "constant" for v in n.outputs}

    def variable(self, name: str) -> str:
        """A forward-body variable read."""
        return self.py(name)

    def conditional(self, then: str, cond: str, orelse: str) -> str:
        return f"{then} if {cond} else {orelse}"


def render(expr, name_of) -> str:
    if isinstance(expr, int):
        return str(int(expr))
    text = expr.render(name_of)
    return text if re.fullmatch(r"[\w.\[\]]+", text) else f"({text})"


def per_iteration(values: list[str], env: dict[str, str]) -> str:
    """One expression for values that differ across the iterations of a generator: equal →
    that value; only the first differs → `(a if i == 0 else b)`."""
    if len(set(values)) == 1:
        return values[0]
    loop_vars = list(env.values())
    if loop_vars and len(set(values[1:])) <= 1:
        return f"({values[0]} if {loop_vars[-1]} == 0 else {values[1]})"
    raise Unsupported("inferred sizes differ between the iterations of a generator", None)



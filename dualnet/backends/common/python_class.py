"""Python classes from the typed IR, shared by the backends that write Python source.

`Emitter` decides which instances share a class (`class_plan`: the class is written from
each instance's own IR, and only instances with identical texts share it) and assembles the
classes, children first; a backend's `ClassWriter` subclass writes one class from one *unit*
(an instance and one of its forward graphs). The base writer mirrors the .dnet model: the
constructor takes the hyperparameters (same names and defaults) plus, for sub-models, the
input sizes dualnet inferred (keyword-only); layer declarations become attributes and the
forward body is translated statement by statement. The IR supplies what the source doesn't
say: resolved layer sizes (as expressions over the model's own names, from tagged sizes),
normalised op attributes, and the types for the shape comments.

Every decision the writer takes comes from the unit it writes (its nodes, found by source
span and loop iteration), so a text is right for that unit. Code the unit never ran (a
branch it does not take) is written from the first unit of the class that runs it, or, where
none does, as a call that refuses the configuration (`_unchecked`). A forward loop whose
iterations would be written differently is unrolled.

Identifiers come from one `naming.Namespace` per scope (constructor, attributes, forward),
user text through `escape`. A backend fills in the framework: how a layer is referenced,
constructed and called, how an op node is lowered, the class and method headers.
"""

from __future__ import annotations

import ast as pyast
import operator
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from dualnet.backends.common import escape
from dualnet.backends.common.class_plan import ClassPlan, Unit, configurations, recursive
from dualnet.backends.common.line_layout import layout, scan
from dualnet.backends.common.naming import PYTHON_RESERVED, Namespace
from dualnet.backends.common.source_helpers import atom
from dualnet.backends.common.syntax_tree import (
    as_call,
    dotted,
    inside,
    mentions,
)
from dualnet.diagnostics import Span
from dualnet.ir.dims import Dim, substitute
from dualnet.ir.graph import Graph, LayerInstance, ModelInstance, Node, by_parameter
from dualnet.ir.tagged import Tagged, TaggedDim, Written, element_of, written
from dualnet.ir.types import TensorType
from dualnet.ops import REGISTRY
from dualnet.syntax import ast

# Python operator precedence, lowest first (`x if c else y` is 0).
_PRECEDENCE = {
    "or": 1,
    "and": 2,
    "not": 3,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "==": 4,
    "!=": 4,
    "is": 4,
    "is not": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "//": 6,
    "%": 6,
    "@": 6,
    "**": 8,
}
_UNARY, _ATOM = 7, 9
_MAX_ROUNDS = 50  # rewrites of every class before the plan must have settled
_UNREAD = "\x00"  # marks the assignment of a compile-time value, dropped if never read
_STORE = "\x01"  # marks where a local constant is stored, if forward reads it
_DEEP = 40  # bracket depth from which `expr` puts a part of an expression into a variable


_FOLDABLE = {
    pyast.Add: operator.add,
    pyast.Sub: operator.sub,
    pyast.Mult: operator.mul,
    pyast.FloorDiv: operator.floordiv,
    pyast.Mod: operator.mod,
}


def folded(code: str) -> str:
    """`code`, a Python expression, as the literal it computes where it holds nothing but
    literals, tuples, indexing and integer arithmetic (`((1, 16), (6, 24))[2 - 1][1]` is
    `24`: a constant table indexed in an unrolled loop); otherwise unchanged."""

    def value(n: pyast.AST):
        if isinstance(n, pyast.Constant) and isinstance(n.value, int | float | str | bool):
            return n.value
        if isinstance(n, pyast.Tuple):
            return tuple(value(x) for x in n.elts)
        if isinstance(n, pyast.UnaryOp) and isinstance(n.op, pyast.USub):
            return -_int(value(n.operand))
        if isinstance(n, pyast.BinOp) and type(n.op) in _FOLDABLE:
            return _FOLDABLE[type(n.op)](_int(value(n.left)), _int(value(n.right)))
        if isinstance(n, pyast.Subscript) and isinstance(table := value(n.value), tuple):
            return table[_int(value(n.slice))]
        raise ValueError(n)

    try:
        return fmt_literal(value(pyast.parse(code, mode="eval").body))
    except (ValueError, IndexError, ZeroDivisionError, SyntaxError, TypeError):
        return code


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(v)
    return v


def fmt_literal(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, float):
        return repr(float(v))
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, str):
        return escape.string(str(v))
    if isinstance(v, tuple | list):
        return sequence([fmt_literal(x) for x in v], isinstance(v, tuple))
    if isinstance(v, dict):
        return "{" + ", ".join(f"{fmt_literal(k)}: {fmt_literal(x)}" for k, x in v.items()) + "}"
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
class Written_:
    """One write of a class from one unit: its text and what a parent reads from it."""

    text: str
    extra: tuple = ()


class Emitter:
    """Plans one file for an entry model instance and everything it uses. A backend sets
    `writer` (its ClassWriter subclass) and `module_names` (the global names generated code
    uses: framework modules, runtime helpers) and assembles the file around
    `write_classes()`."""

    writer: type[ClassWriter]
    module_names: frozenset[str] = frozenset()
    # locals never take these (a backend adds what its base classes' methods take)
    init_reserved: frozenset[str] = frozenset({"self", "super"})
    forward_reserved: frozenset[str] = frozenset({"self"})
    attr_reserved: frozenset[str] = frozenset()

    def __init__(self, entry: ModelInstance, source: str):
        self.entry = entry
        self.source = PurePath(source).name
        decls, groups = configurations(entry)
        self.plans = [ClassPlan(decl, groups[id(decl)]) for decl in decls]
        self.class_of: dict[int, ClassPlan] = {}
        self._indexes: dict[int, dict] = {}
        self._span_nodes: dict[int, tuple] = {}
        self._constants: dict[int, set[int]] = {}
        self._program_names = _program_names(decls)
        self._reads: list[tuple[ClassPlan, tuple]] = []  # this round's reads of interfaces
        self._settle(recursive(decls, groups))

    # -- planning
    def _settle(self, self_naming: bool) -> None:
        """Write every class from every unit, split plans whose units disagree, and repeat
        until no plan splits, no class was written from another's interface (name,
        parameters, inferred sizes) that has changed since, and, where a class names
        itself, its text is stable."""
        previous: list[str] | None = None
        for _ in range(_MAX_ROUNDS):
            self._name_classes()
            self.start_round()
            self._reads = []
            plans: list[ClassPlan] = []
            for plan in self.plans:
                buckets: dict[tuple, list[list[ModelInstance]]] = {}
                for config in plan.configs:
                    key = self._write_config(plan, config)
                    buckets.setdefault(key, []).append(config)
                if len(buckets) == 1:
                    plan.text = next(iter(buckets))[0]
                    plans.append(plan)
                else:
                    plans += [ClassPlan(plan.decl, configs) for configs in buckets.values()]
            split = len(plans) != len(self.plans)
            self.plans = plans
            texts = [p.text for p in plans]
            stale = any(_interface(plan) != seen for plan, seen in self._reads)
            if not split and not stale and (not self_naming or texts == previous):
                return
            previous = None if split else texts
        raise Unsupported("the generated classes did not settle", None)

    def _write_config(self, plan: ClassPlan, config: list[ModelInstance]) -> tuple:
        """(text, extra) of the class written from this configuration's units, which must
        agree with each other (they are one object)."""
        units = [u for u in plan.units() if u.instance is config[0]]
        keys = set()
        for unit in units:
            out = self.writer(self, plan, unit).write()
            keys.add((out.text, out.extra))
        if len(keys) > 1:
            raise Unsupported(
                f"{plan.decl.name.id} is called with inputs of several sizes "
                "that its generated forward would handle differently",
                plan.decl.name.span,
            )
        return keys.pop()

    def _name_classes(self) -> None:
        """Class names: a definition's name for its first class, `Name2`, ... for others;
        never a name the program uses for anything else, nor a module-level name."""
        ns = Namespace(
            self.module_names | self._program_names | self.init_reserved | self.forward_reserved
        )  # a class is named in a constructor's scope
        first: dict[int, ClassPlan] = {}
        for plan in self.plans:
            first.setdefault(id(plan.decl), plan)
        for plan in first.values():
            plan.name = ns.name(id(plan), plan.decl.name.id)
        count: dict[int, int] = {}
        for plan in self.plans:
            count[id(plan.decl)] = count.get(id(plan.decl), 0) + 1
            if plan is not first[id(plan.decl)]:
                plan.name = ns.name(id(plan), f"{plan.decl.name.id}{count[id(plan.decl)]}")
        self.class_of = {id(inst): plan for plan in self.plans for inst in plan.instances}

    def extra_globals(self) -> set[str]:
        """Module-level names a backend adds besides the classes (none by default)."""
        return set()

    def start_round(self) -> None:
        """Called before every class is written again (a backend resets what it collects)."""

    def plan_of(self, inst: ModelInstance) -> ClassPlan:
        return self.class_of[id(inst)]

    def interface_of(self, inst: ModelInstance) -> ClassPlan:
        """The plan of a child model, read to write a call of it: the read is kept, and the
        classes are written again if the child's interface changes after it."""
        plan = self.class_of[id(inst)]
        self._reads.append((plan, _interface(plan)))
        return plan

    def siblings(self, plan: ClassPlan) -> int:
        """How many classes share `plan`'s definition."""
        return sum(1 for p in self.plans if p.decl is plan.decl)

    def span_nodes(self, plan: ClassPlan) -> dict:
        """Span → the nodes traced there by every unit of the plan, in every iteration."""
        cached = self._span_nodes.get(id(plan))
        if cached is None or cached[0] is not plan:
            index: dict = {}
            for unit in plan.units():
                for node in unit.graph.nodes if unit.graph is not None else ():
                    index.setdefault(node.span, []).append(node)
            cached = self._span_nodes[id(plan)] = (plan, index)
        return cached[1]

    def constant_values(self, graph: Graph) -> set[int]:
        """The ids of the graph's values that constant nodes make."""
        found = self._constants.get(id(graph))
        if found is None:
            found = self._constants[id(graph)] = {
                id(v) for n in graph.nodes if n.kind == "constant" for v in n.outputs
            }
        return found

    def node_index(self, graph: Graph) -> dict:
        """(span, iteration) → the graph's nodes traced there, in order."""
        index = self._indexes.get(id(graph))
        if index is None:
            index = {}
            for node in graph.nodes:
                if node.span is not None:
                    index.setdefault((node.span, node.iteration), []).append(node)
            self._indexes[id(graph)] = index
        return index

    def write_classes(self) -> str:
        """Every planned class, children first, separated as ruff format separates them."""
        return "\n\n\n".join(plan.text for plan in self.plans)


def _interface(plan: ClassPlan) -> tuple:
    """What a caller's code reads of a class: its name, parameter names, inferred sizes."""
    return (
        plan.name,
        tuple(plan.params.items()),
        tuple(plan.required_dims),
        tuple(plan.forward_args.items()),
    )


def _program_names(decls: list) -> frozenset[str]:
    """Every name the program's models declare or bind (class names stay clear of them)."""
    out: set[str] = set()
    for decl in decls:
        out.update(h.name for h in decl.hypers)
        for member in decl.members:
            if isinstance(member, ast.LayerDecl):
                out.add(member.name.id)
            elif isinstance(member, ast.Forward):
                out.update(a.name for a in member.args)
                for stmt in member.body:
                    out.update(ast.assigned_names(stmt))
    return frozenset(out)


class ClassWriter:
    def __init__(self, emitter: Emitter, plan: ClassPlan, unit: Unit):
        self.em = emitter
        self.plan = plan
        self.decl = plan.decl
        self.unit = unit
        self.inst = unit.instance
        others = [u for u in plan.units() if u.instance is not unit.instance]
        self.units = (
            [unit]
            + [u for u in plan.units() if u.instance is unit.instance and u is not unit]
            + others
        )
        self.instances = [self.inst] + [i for i in plan.instances if i is not self.inst]
        self.hypers = [h.name for h in self.decl.hypers]
        self.forward = next(m for m in self.decl.members if isinstance(m, ast.Forward))
        decls = [m for m in self.decl.members if isinstance(m, ast.LayerDecl)]
        # declarations that built a layer in some instance; the others are local constants
        self.layer_names = [
            m.name.id for m in decls if any(m.name.id in inst.children for inst in self.instances)
        ]
        self.local_consts = {m.name.id: m.value for m in decls if m.name.id not in self.layer_names}
        self.sig_dims = self._signature_dims()
        self.used_in_init: set[str] = set()
        self.used_in_forward: set[str] = set()
        self.iteration: tuple[int, ...] = ()
        self.bound: set[str] = set()  # forward names bound so far (arguments, variables)
        self.reads: set[str] = set()  # forward variables the generated code reads
        self.parts: list[str] = []  # statements computing parts of the current statement
        self.in_branch = 0  # inside a branch of a conditional expression
        self.nesting = 0
        self.generator_items: tuple = ()
        self.src = PurePath(self.decl.span.file).name  # the file this model is declared in
        self._names()

    # -- names
    def _names(self) -> None:
        """The three namespaces of the class: constructor (its parameters are the
        hyperparameters and sizes, in that order), attributes (layers first) and forward
        (its arguments first)."""
        module = self.em.module_names | {p.name for p in self.em.plans} | self.em.extra_globals()
        self.init_ns = Namespace(module | self.em.init_reserved)
        self.plan.params = {h: self.init_ns.name(("hyper", h), h) for h in self.hypers}
        self.plan.params.update({d: self.init_ns.name(("dim", d), d) for d in self.sig_dims})
        self.attr_ns = Namespace(self.em.attr_reserved)
        self.attr_ns.reserve(self.layer_attr(n) for n in self.layer_names)
        self.fwd_ns = Namespace(module | self.em.forward_reserved)
        self.plan.forward_args = {
            a.name: self.fwd_ns.name(("var", a.name), a.name) for a in self.forward.args
        }

    def param(self, name: str) -> str:
        """The constructor parameter (or constructor local) for a hyperparameter, size or
        local constant."""
        if name in self.plan.params:
            return self.plan.params[name]
        return self.init_ns.name(("const", name), name)

    def stored(self, name: str) -> str:
        """The attribute holding hyperparameter or constant `name` for forward."""
        return self.attr_ns.name(("stored", name), name)

    def local(self, name: str) -> str:
        """The forward variable for .dnet variable (or argument, or loop variable) `name`."""
        return self.fwd_ns.name(("var", name), name)

    def dim_local(self, name: str) -> str:
        """The forward variable holding signature dimension `name`, read from the inputs."""
        return self.fwd_ns.name(("dim", name), f"{name}_")

    def init_loop_var(self, name: str) -> str:
        return self.init_ns.name(("loop", name), name)

    # -- lookups
    def _signature_dims(self) -> dict[str, tuple[str, int]]:
        """Dimension name → (argument, axis) of its first occurrence in the signature."""
        out: dict[str, tuple[str, int]] = {}
        required = [a for a in self.forward.args if a.default is None]  # read first: always given
        for arg in required + [a for a in self.forward.args if a.default is not None]:
            if isinstance(arg.type, ast.TensorTypeExpr):
                for axis, d in enumerate(arg.type.dims):
                    if (
                        isinstance(d, ast.DimName)
                        and d.name not in self.hypers
                        and d.name not in self.local_consts
                        and d.name not in self.inst.constants
                    ):
                        out.setdefault(d.name, (arg.name, axis))
        return out

    @property
    def graph(self) -> Graph:
        return self.unit.graph

    def node_at(self, span: Span, kinds=("op", "layer", "call")) -> Node | None:
        """The node the current unit traced at `span` in the current loop iteration."""
        if self.graph is None:
            return None
        for node in self.em.node_index(self.graph).get((span, self.iteration), ()):
            if node.kind in kinds:
                return node
        return None

    def reaches(self, unit: Unit, stmts) -> bool:
        """Whether `unit` traced any node inside these statements or expressions in the
        current loop iteration (or inside a loop within them)."""
        if unit.graph is None:
            return False
        depth = len(self.iteration)
        spans = [s.span for s in stmts]
        return any(
            n.iteration[:depth] == self.iteration
            and n.span is not None
            and any(inside(n.span, s) for s in spans)
            for n in unit.graph.nodes
        )

    @contextmanager
    def writing_as(self, unit: Unit) -> Iterator[None]:
        """Write code the current unit never runs from a unit that does."""
        saved = self.unit
        self.unit = unit
        try:
            yield
        finally:
            self.unit = saved

    def unchecked(self, span: Span) -> str:
        """A call that refuses a configuration no checked instance of this class has."""
        return (
            f"_unchecked({fmt_literal(self.decl.name.id)}, "
            f"{fmt_literal(f'{self.src}:{span.line}')})"
        )

    def where(self, span: Span) -> str:
        """`file:line` of a source position, for a comment."""
        return f"{escape.comment(self.src)}:{span.line}"

    # -- size formatting
    def init_name(self, name: str) -> str:
        if name in self.hypers or name in self.sig_dims or name in self.local_consts:
            self.used_in_init.add(name)
            return self.param(name)
        item = element_of(name)
        if item is not None and item[0] in {*self.hypers, *self.local_consts}:
            return f"{self.init_name(item[0])}[{item[1]}]"
        raise Unsupported(f"size `{name}` is not known when the module is constructed", None)

    def fmt_init(self, v: Any) -> str:
        """An attribute as constructor code (sizes over the constructor's arguments)."""
        return self._format(v, self.init_name, in_forward=False)

    def _format(self, v: Any, name_of, in_forward: bool) -> str:
        if isinstance(v, Written):
            return v.code
        if isinstance(v, Dim) and not in_forward:
            raise Unsupported(f"a layer size depends on the symbolic dimension `{v}`", None)
        if isinstance(v, Tagged) and not in_forward and self.symbolic_in(v.expr):
            return fmt_literal(int(v))  # its expression needs a size known only at run time
        if isinstance(v, Tagged | TaggedDim):
            return render(v.expr, name_of)
        if isinstance(v, Dim):
            return self.runtime_size(v)
        if isinstance(v, tuple | list):
            return sequence([self._format(x, name_of, in_forward) for x in v], isinstance(v, tuple))
        return fmt_literal(v)

    def symbolic_in(self, expr) -> bool:
        """Whether a size expression names a dimension this instance has symbolically."""
        return isinstance(expr, Dim) and any(
            name in self.sig_dims and name not in self.inst.sizes for name in expr.symbols()
        )

    def forward_name(self, name: str) -> str:
        if name in self.sig_dims:
            self.used_in_forward.add(name)
            return self.dim_local(name)
        if name in self.hypers or name in self.local_consts:
            self.used_in_forward.add(name)
            return f"self.{self.stored(name)}"
        item = element_of(name)
        if item is not None and item[0] in {*self.hypers, *self.local_consts}:
            return f"{self.forward_name(item[0])}[{item[1]}]"
        raise Unsupported(f"cannot find the size `{name}` at run time", None)

    def runtime_size(self, d: Dim) -> str:
        """A size known only by its value (no expression in this model's names): read from
        an input axis of exactly that size, or, in the entry model, whose names are the
        sizes' own, written over its inputs' axes."""
        if self.graph is not None:
            for arg, value in zip(
                self.graph.present(self.forward.args), self.graph.inputs, strict=True
            ):
                for axis, size in enumerate(value.type.shape):
                    if isinstance(size, Dim) and size == d:
                        return self.dim_source(arg.name, axis)
        if self.inst is self.em.entry:
            return render(d, self.entry_symbol)
        raise Unsupported(
            f"the size `{d}` cannot be computed from the inputs of {self.decl.name.id}", None
        )

    def entry_symbol(self, name: str) -> str:
        """A symbol of the entry model's sizes: its signature dimension, or an input axis."""
        if name in self.sig_dims:
            return self.forward_name(name)
        for arg, value in zip(
            self.graph.present(self.forward.args), self.graph.inputs, strict=True
        ):
            for axis, size in enumerate(value.type.shape):
                if isinstance(size, Dim) and size.symbol == name:
                    return self.dim_source(arg.name, axis)
        raise Unsupported(f"cannot find the size `{name}` at run time", None)

    def fmt_forward(self, v: Any) -> str:
        """An attribute as forward code (symbolic sizes read from the inputs at run time)."""
        return self._format(v, self.forward_name, in_forward=True)

    # -- the class
    def write(self) -> Written_:
        init_lines = self.init_body()
        forward_lines = self.forward_body()
        init_lines = [
            self.stored_constant(line) if _STORE in line else line
            for line in init_lines
            if _STORE not in line or line.split(_STORE)[1] in self.used_in_forward
        ]
        self.plan.required_dims = [d for d in self.sig_dims if d in self.used_in_init]
        params = ["self"] + [self.hyper_param(h) for h in self.decl.hypers]
        if self.plan.required_dims:
            params.append("*")
            for d in self.plan.required_dims:
                default = (
                    f" = {self.fmt_init(self.inst.call_dims[d])}"
                    if self.inst is self.em.entry
                    else ""
                )
                params.append(f"{self.param(d)}: int{default}")
        stored = self.stored_names()
        lines = [
            f"class {self.plan.name}({self.base_class()}):",
            f'    """{self.docstring()}"""',
            "",
            *(f"    {line}" for line in self.constructor_header(params)),
        ]
        lines += [f"        {line}" for line in self.default_fixups()]
        lines += [f"        self.{self.stored(h)} = {self.param(h)}" for h in stored]
        lines += [f"        {line}" for line in init_lines]
        lines += [f"    {line}" if line else "" for line in self.extra_methods(params)]
        lines += [""] + [f"    {line}" for line in forward_lines]
        return Written_("\n".join(layout(lines)), self.extra())

    def stored_constant(self, line: str) -> str:
        """The statement keeping local constant `name` (marked `<indent>_STORE name`)."""
        indent, name = line.split(_STORE)
        return f"{indent}self.{self.stored(name)} = {self.param(name)}"

    def docstring(self) -> str:
        """The class docstring: the model and where it is declared; for a definition written
        as several classes, which layers this one serves."""
        text = (
            f"{escape.docstring(self.decl.name.id)} ({escape.docstring(self.src)}:"
            f"{self.decl.span.line})."
        )
        if self.em.siblings(self.plan) < 2:
            return text
        paths = [inst.path or "the model" for inst in self.plan.instances]
        shown = ", ".join(f"`{escape.docstring(p)}`" for p in paths[:3])
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        return f"{text}\n\n    The configuration of {shown}{more}.\n    "

    def extra(self) -> tuple:
        """What else a parent reads from this write (compared between units like the text)."""
        return (tuple(self.plan.required_dims),)

    # -- what a backend writes
    def base_class(self) -> str:
        raise NotImplementedError

    def constructor_header(self, params: list[str]) -> list[str]:
        """The `def __init__` line and the call of the base constructor."""
        raise NotImplementedError

    def stored_names(self) -> list[str]:
        """Constructor arguments kept as attributes: those forward reads (local constants
        are kept where they are defined)."""
        return [h for h in self.hypers if h in self.used_in_forward]

    def layer_attr(self, name: str) -> str:
        """The attribute name (or registered name) of layer `name`."""
        return name

    def dim_source(self, arg: str, axis: int) -> str:
        """A dimension of a forward argument, read at run time."""
        return f"{self.local(arg)}.shape[{axis}]"

    def extra_methods(self, params: list[str]) -> list[str]:
        """Methods between the constructor and the forward method (none by default)."""
        return []

    def layer_ref(self, name: str) -> str:
        """How code names layer `name` (`self.conv1`)."""
        raise NotImplementedError

    def layer_read(self, name: str) -> str:
        """Layer `name` used as a value in forward (a Parameter or Buffer: its tensor)."""
        return self.layer_ref(name)

    def construct_layer(self, op: str, attrs: dict) -> str:
        """The constructor expression of a built-in layer."""
        raise NotImplementedError

    def sequential_expr(self, e: ast.Call, built: list, env: dict[str, str]) -> str:
        raise NotImplementedError

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

    def model_call(self, node: Node, target: str, args: list[str], keywords: dict[str, str]) -> str:
        """A call of a child model (or a Sequential) with its arguments' source."""
        names = self.callee_args(node)
        kw = [f"{names.get(k, k)}={v}" for k, v in keywords.items()]
        return f"{target}({', '.join(args + kw)})"

    def callee_args(self, node: Node) -> dict[str, str]:
        """The Python names of the forward arguments of the model a call node reaches."""
        child = self.layer_of(node)
        if isinstance(child, ModelInstance) and child.definition != "Sequential":
            return self.em.interface_of(child).forward_args
        return {}

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
            getattr(h.type, "name", ""), "tuple"
        )
        name = self.param(h.name)
        if self.given(h):
            return f"{name}: {annotation} = {fmt_literal(self.inst.hyper[h.name])}"
        if h.default is None and self.after_default(h):
            return f"{name}: {annotation} | None = None"  # Python's order; checked below
        if h.default is None:
            return f"{name}: {annotation}"
        if mentions(h.default, set(self.hypers)):
            return f"{name}: {annotation} | None = None"
        return f"{name}: {annotation} = {self.const_expr(h.default)}"

    def given(self, h: ast.Hyper) -> bool:
        """Whether the caller gave `h` to the entry model (`--hyper`, the API's `**hyper`):
        its value is then the constructor's default, so `Entry()` is the checked model."""
        return self.inst is self.em.entry and h.name in self.inst.given

    def after_default(self, h: ast.Hyper) -> bool:
        """Whether a hyperparameter with a default comes before `h` (Python wants defaults
        last: `h` then gets `None`, and the constructor checks it was given)."""
        hypers = list(self.decl.hypers)
        return any(x.default is not None for x in hypers[: hypers.index(h)])

    def default_fixups(self) -> list[str]:
        """Defaults that refer to earlier hyperparameters are computed in the constructor;
        a required hyperparameter after a default one must have been given."""
        out = []
        for h in self.decl.hypers:
            if self.given(h):
                continue
            if h.default is None and self.after_default(h):
                name = self.param(h.name)
                message = f"{self.decl.name.id}() needs the hyperparameter {h.name}"
                out += [f"if {name} is None:", f"    raise TypeError({fmt_literal(message)})"]
            if h.default is not None and mentions(h.default, set(self.hypers)):
                name = self.param(h.name)
                out.append(f"{name} = {self.const_expr(h.default)} if {name} is None else {name}")
        return out

    # -- compile-time expressions (Python values)
    def const_expr(
        self,
        e: ast.Expr,
        env: dict[str, str] | None = None,
        name_of=None,
        variables: set[str] = frozenset(),
    ) -> str:
        """A compile-time expression as Python; `name_of` writes a hyperparameter, local
        constant or dimension name (constructor locals by default); `variables`: forward
        variables in scope (they hold compile-time values too: `k = 2`)."""
        return self._const(e, env or {}, name_of or self.init_name, variables)[0]

    def _const(self, e: ast.Expr, env: dict[str, str], name_of, variables) -> tuple[str, int]:
        """(source, precedence) with only the brackets precedence needs."""

        def sub(x: ast.Expr, least: int) -> str:
            code, prec = self._const(x, env, name_of, variables)
            return f"({code})" if prec < least else code

        if isinstance(e, ast.Literal):
            return fmt_literal(e.value), _ATOM
        if isinstance(e, ast.Name | ast.Attribute):
            key = e.id if isinstance(e, ast.Name) else dotted(e)
            if key in env:
                return env[key], _ATOM
            if key in variables:
                return self.variable(key), _ATOM
            if key in self.hypers or key in self.local_consts or key in self.sig_dims:
                return name_of(key), _ATOM
            if key in self.inst.constants:
                return fmt_literal(self.inst.constants[key]), _ATOM
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
        if isinstance(e, ast.Index) and len(e.items) == 1 and not isinstance(e.items[0], ast.Slice):
            return folded(f"{sub(e.value, _ATOM)}[{sub(e.items[0], 0)}]"), _ATOM
        if isinstance(e, ast.FString):  # its text holds letters, digits, `_` and `-` only
            text = []
            for part in e.parts:
                code = part if isinstance(part, str) else "{" + sub(part, 0) + "}"
                if not isinstance(part, str) and set(code[1:-1]) & set("\"'\\{}"):
                    raise Unsupported("this f-string part cannot be written in Python", e.span)
                text.append(code)
            return 'f"' + "".join(text) + '"', _ATOM
        if (
            isinstance(e, ast.Call)
            and isinstance(e.func, ast.Name)
            and e.func.id in ("range", "max", "min")  # max/min: of numbers (the checker's)
            and not e.keywords
        ):
            chosen = self.chosen_argument(e)
            if chosen is not None:  # max/min of symbolic sizes: the argument it always is
                return self._const(e.args[chosen], env, name_of, variables)
            return f"{e.func.id}({', '.join(sub(a, 0) for a in e.args)})", _ATOM
        raise Unsupported("this expression cannot be written as a Python value", e.span)

    def chosen_argument(self, e: ast.Call) -> int | None:
        """Which argument a `max`/`min` of symbolic sizes is for this unit (the checker
        decided it for every size), None for one of numbers."""
        graph = self.unit.graph if self.unit is not None else None
        chosen = graph.branches.get((e.span, self.iteration)) if graph is not None else None
        return None if isinstance(chosen, bool) else chosen

    # -- __init__
    def init_body(self) -> list[str]:
        lines: list[str] = []
        if self.graph is None:  # an instance never called holds nothing, as in the checked
            return lines  # model (its forward refuses to run): a class of its own
        for member in self.decl.members:
            if not isinstance(member, ast.LayerDecl):
                continue
            name = member.name.id
            built = [inst.children.get(name) for inst in self.instances]
            where = self.where(member.span)
            if name in self.local_consts:  # a local compile-time constant
                lines.append(f"{self.param(name)} = {self.const_expr(member.value)}  # {where}")
                lines.append(f"{_STORE}{name}")  # kept as an attribute if forward reads it
                continue
            code = self.layer_expr(member.value, [b for b in built if b is not None], {})
            lines.append(f"{self.assign_layer(name, code)}  # {where}")
            lines += self.tie_lines(name, member)
        return lines

    @staticmethod
    def tie_of(member: ast.LayerDecl) -> ast.Expr | None:
        """The `tie=` argument of a layer declaration (the checker allows it only there)."""
        if isinstance(member.value, ast.Call):
            for k in member.value.keywords:
                if k.name == "tie":
                    return k.value
        return None

    def assign_layer(self, name: str, code: str) -> str:
        """The statement that makes `code` the layer `name` of the module."""
        return f"{self.layer_ref(name)} = {code}"

    def layer_expr(self, e: ast.Expr, built: list, env: dict[str, str]) -> str:
        """Constructor source for a layer declaration, given the objects it built in the
        instances of this class, the current unit's first (instances may have taken
        different branches)."""
        if isinstance(e, ast.Conditional):
            then = [b for b in built if inside(b.span, e.then.span)]
            orelse = [b for b in built if inside(b.span, e.orelse.span)]
            cond, prec = self._const(e.cond, env, self.init_name, frozenset())
            first = self.branch(e.then, then, env)
            return (
                f"{f'({first})' if isinstance(e.then, ast.Conditional) else first} if "
                f"{f'({cond})' if prec <= 0 else cond} "
                f"else {self.branch(e.orelse, orelse, env)}"
            )
        if isinstance(e, ast.Name) and e.id in env:
            raise Unsupported("a loop variable cannot be a layer here", e.span)
        child = built[0]  # what the declaration built decides what it is (a model may be
        # named like a built-in function: the file's names come first)
        if isinstance(e, ast.Call) and isinstance(child, ModelInstance):
            if child.definition == "Sequential":
                return self.sequential_expr(e, built, env)
            return self.model_expr(e, built, env)
        if isinstance(e, ast.Call | ast.Name) and isinstance(child, LayerInstance):
            op = REGISTRY[child.op]
            if op.is_layer and isinstance(e, ast.Call):
                attrs = self.written_args(
                    op.construct, e, self.common_attrs(built), lambda x: self.const_expr(x, env)
                )
                return self.construct_layer(child.op, attrs)
            return self.function_module(child)
        raise Unsupported("this layer declaration cannot be written", e.span)

    @staticmethod
    def written_args(signature, e: ast.Call, attrs: dict, render) -> dict:
        """Attributes whose argument the source wrote as an expression (`p=dropout`) carry
        that expression, so the generated code stays generic in the hyperparameter."""
        given = dict(zip([p.name for p in signature.params], e.args, strict=False))
        given.update({k.name: k.value for k in e.keywords})
        out = dict(attrs)
        for name, arg in given.items():
            if (
                name in out
                and not isinstance(arg, ast.Literal)
                and type(out[name]) in (bool, float, str)
            ):
                out[name] = written(out[name], render(arg))
        return out

    def common_attrs(self, layers: list[LayerInstance]) -> dict:
        """The first layer's attributes, each size written by an expression that gives
        every instance its own value where one does (instances that took different branches
        above may tag the same size differently: `C` where an Identity kept it, `hidden`
        elsewhere)."""
        owners = [self._owner(layer) for layer in layers]
        attrs = dict(layers[0].attrs)
        for key, value in attrs.items():
            if isinstance(value, tuple):
                if all(
                    isinstance(layer.attrs.get(key), tuple) and len(layer.attrs[key]) == len(value)
                    for layer in layers
                ):
                    attrs[key] = tuple(
                        self._agreeing([layer.attrs[key][i] for layer in layers], owners)
                        for i in range(len(value))
                    )
            elif all(key in layer.attrs for layer in layers):
                attrs[key] = self._agreeing([layer.attrs[key] for layer in layers], owners)
        return attrs

    def _owner(self, layer: LayerInstance) -> ModelInstance:
        return next(
            inst
            for inst in self.instances
            if not inst.path or layer.path.startswith(inst.path + ".")
        )

    @staticmethod
    def _agreeing(values: list, owners: list[ModelInstance]):
        candidates = [v.expr for v in values if isinstance(v, Tagged)]
        for expr in candidates:
            if all(
                isinstance(v, int)
                and not isinstance(v, bool)
                and substitute(expr, inst.sizes) == int(v)
                for v, inst in zip(values, owners, strict=True)
            ):
                return Tagged(int(values[0]), expr)
        return values[0]

    def branch(self, e: ast.Expr, built: list, env: dict[str, str]) -> str:
        if built:
            return self.layer_expr(e, built, env)
        if isinstance(e, ast.Literal) and e.value is None:  # `X if c else none`: no layer
            return "None"
        return self.unchecked(e.span)

    def model_expr(
        self, e: ast.Call, built: list, env: dict[str, str], columns: list[list] | None = None
    ) -> str:
        """A child model's constructor call (`built[0]`: the current unit's child, then the
        same child of the class's other instances). `columns`: for a generator's element,
        per iteration the children the instances made there (the inferred sizes may differ
        per iteration)."""
        child = built[0]
        plan = self.em.interface_of(child)
        params = plan.params
        args = [self.const_expr(a, env) for a in e.args]
        args += [
            f"{params.get(k.name, k.name)}={self.const_expr(k.value, env)}" for k in e.keywords
        ]
        for dim in plan.required_dims:
            values = [self.fmt_init(self.size_for(column, dim)) for column in columns or [built]]
            items = self.generator_items if columns else ()
            args.append(f"{params[dim]}={per_iteration(values, env, items)}")
        return f"{plan.name}({', '.join(args)})"

    def size_for(self, children: list, dim: str):
        """The size a parent passes for `dim` to these children (one per instance of the
        class): an expression over the parent's names that gives each its own value where
        one does, else the current unit's value."""
        children = [c for c in children if dim in c.call_dims]
        if not children:  # a child no checked instance calls: it never learns the size
            return None
        return self._agreeing(
            [c.call_dims[dim] for c in children], [self._owner(c) for c in children]
        )

    def child_expr(
        self, child: ModelInstance | LayerInstance, e: ast.Expr, env: dict[str, str]
    ) -> str:
        """One child of an unrolled generator, written from its own configuration: a model
        with its hyperparameter values, a layer with its attributes (of a conditional element,
        the branch it took)."""
        if isinstance(child, ModelInstance) and child.definition != "Sequential":
            plan = self.em.interface_of(child)
            args = [f"{plan.params[k]}={self.fmt_init(v)}" for k, v in child.hyper.items()]
            args += [
                f"{plan.params[d]}={self.fmt_init(child.call_dims[d])}" for d in plan.required_dims
            ]
            return f"{plan.name}({', '.join(args)})"
        while isinstance(e, ast.Conditional):  # the branch this child took, alone
            taken = [b for b in (e.then, e.orelse) if inside(child.span, b.span)]
            if len(taken) != 1:
                break
            e = taken[0]
        return self.layer_expr(e, [child], env)

    def generator_steps(self, e: ast.Call, built: list, env: dict[str, str]) -> list[str] | str:
        """The steps of `Sequential(f(i) for i in r)`: one expression `(step, variable,
        iterable)` when every iteration is written alike, else each step written out."""
        gen = e.args[0]
        seq = built[0]
        var = self.init_loop_var(gen.var)
        inner = {**env, gen.var: var}
        children = list(seq.children.values())
        rest = [c for other in built[1:] for c in other.children.values()]
        self.generator_items = seq.items
        columns = [
            [c, *(s.step(k) for s in built[1:] if s.step(k) is not None)]
            for k, c in enumerate(children)
        ]
        try:
            texts = [
                self.element(
                    gen.element, [child, *children[:k], *children[k + 1 :], *rest], inner, columns
                )
                for k, child in enumerate(children)
            ]
            if len(set(texts)) == 1:
                return texts[0], var, self.const_expr(gen.iterable, env)
        except Unroll:
            pass
        return [
            self.child_expr(child, gen.element, {**env, gen.var: literal_source(item)})
            for child, item in zip(children, seq.items, strict=True)
        ]

    def element(self, e: ast.Expr, built: list, env: dict[str, str], columns: list) -> str:
        """A generator's element for one iteration (`built[0]` its child)."""
        if (
            isinstance(e, ast.Call)
            and isinstance(built[0], ModelInstance)
            and built[0].definition != "Sequential"
        ):
            return self.model_expr(e, built, env, columns)
        return self.layer_expr(e, built, env)

    # -- forward
    def forward_body(self) -> list[str]:
        if self.graph is None:
            return self.never_called()
        graph = self.graph
        body: list[str] = []
        for arg in self.forward.args:
            types = [
                t
                for u in self.units
                if u.graph is not None
                for t in _input_types(u.graph, self.forward.args, arg)
            ]
            shown = self.type_comment(types) if types else "none"
            body.append(f"# {self.local(arg.name)}: {shown}")
        self.bound = {a.name for a in self.forward.args}
        self.before_statements()
        statements = []
        for stmt in self.forward.body:
            statements += self.statement(stmt, {})
            self.after_statement(stmt)
        statements = self.without_unread(statements)
        used = {d for d in self.sig_dims if d in self.used_in_forward}
        prelude = [
            f"{self.dim_local(d)} = {self.dim_source(*self.sig_dims[d])}"
            for d in self.sig_dims
            if d in used and self.dim_read(d, statements)
        ]
        return [self.forward_header(graph)] + [
            f"    {line}" for line in body + prelude + statements
        ]

    def without_unread(self, lines: list[str]) -> list[str]:
        """The lines, less the assignments of compile-time values nothing reads (a block
        left empty gets `pass`)."""
        kept = []
        for line in lines:
            if _UNREAD in line:
                indent, name, rest = line.split(_UNREAD)
                if name not in self.reads:
                    continue
                line = indent + rest
            kept.append(line)
        out = []
        for i, line in enumerate(kept):
            out.append(line)
            depth = len(line) - len(line.lstrip())
            after = kept[i + 1] if i + 1 < len(kept) else ""
            if _opens_block(line) and len(after) - len(after.lstrip()) <= depth:
                out.append(" " * (depth + 4) + "pass")
        return out

    def dim_read(self, name: str, statements: list[str]) -> bool:
        """Whether the forward statements read the local of signature dimension `name` (a
        lowering may format a size it then does not use)."""
        local = re.escape(self.dim_local(name))
        return any(re.search(rf"(?<![\w.]){local}\b", line) for line in statements)

    def never_called(self) -> list[str]:
        """The forward of a class no checked instance calls."""
        return [self.forward_header(None), f"    return {self.unchecked(self.forward.span)}"]

    def block(self, stmts, env: dict[str, str]) -> list[str]:
        """The statements of a loop or branch body, indented."""
        self.nesting += 1
        try:
            lines = [line for stmt in stmts for line in self.statement(stmt, env)]
        finally:
            self.nesting -= 1
        return [f"    {line}" for line in lines or ["pass"]]

    def statement(self, s, env: dict[str, str]) -> list[str]:
        """A statement's lines, after those computing the parts of its expressions that
        `expr` put into variables."""
        saved, self.parts = self.parts, []
        try:
            lines = self.statement_lines(s, env)
            return [*self.parts, *lines]
        finally:
            self.parts = saved

    def statement_lines(self, s, env: dict[str, str]) -> list[str]:
        where = self.where(s.span)
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
        shown = ", ".join(types)
        for t in targets:
            env.pop(t.id, None)
            self.bound.add(t.id)
        names = ", ".join(self.assigned(t.id, code, i) for i, t in enumerate(targets))
        line = f"{names} = {code}  # {shown + '  ' if shown else ''}{where}"
        if len(targets) == 1 and not self.reaches(self.unit, [s.value]):
            # a compile-time value: generated code may use its tag instead, and never read it
            return [f"{_UNREAD}{targets[0].id}{_UNREAD}{line}"]
        return [line]

    def assigned(self, name: str, code: str, index: int) -> str:
        """The Python name `name` gets when it is assigned (`index`-th target of `code`)."""
        return self.local(name)

    def return_statement(self, s, env: dict[str, str], where: str) -> list[str]:
        values = ", ".join(self.returned([self.expr(v, env) for v in s.values]))
        return [f"return {values}  # {where}"]

    def returned(self, codes: list[str]) -> list[str]:
        """The returned values' source (a backend may convert them)."""
        return codes

    # -- loops
    def loop_items(self, s: ast.For) -> tuple:
        if self.graph is None or (s.span, self.iteration) not in self.graph.loops:
            raise Unsupported("internal error: this loop was not traced", s.span)
        return self.graph.loops[(s.span, self.iteration)]

    def for_statement(self, s, env: dict[str, str], where: str) -> list[str]:
        """A loop, written once where every iteration is written alike, else unrolled."""
        items = self.loop_items(s)
        self.bound.add(s.var.id)
        var = self.local(s.var.id)
        iterable = self.iterable(s.iterable, env)
        if not items:
            return [f"# {where}: a loop of no iterations"]
        looped = self.loop_form(s, {**env, s.var.id: var}, len(items))
        if looped is not None:
            prologue, body = looped
            return [*prologue, f"for {var} in {iterable}:  # {where}", *body]
        return self.unrolled(s, env, where, items, iterable)

    def loop_form(
        self, s: ast.For, env: dict[str, str], count: int
    ) -> tuple[list[str], list[str]] | None:
        """(lines before the loop, its body) if every iteration is written alike, else
        None."""
        bodies = [self.loop_body(s, env, k) for k in range(count)]
        return ([], bodies[0]) if all(b == bodies[0] for b in bodies) else None

    def loop_body(self, s: ast.For, env: dict[str, str], k: int) -> list[str]:
        """The loop's body as iteration `k` writes it."""
        outer = self.iteration
        self.iteration = (*outer, k)
        try:
            return self.block(s.body, dict(env))
        finally:
            self.iteration = outer

    def unrolled(
        self, s: ast.For, env: dict[str, str], where: str, items: tuple, iterable: str
    ) -> list[str]:
        """Each iteration written out, the loop variable replaced by its value."""
        lines = []
        for k, item in enumerate(items):
            value = (
                f"{iterable}[{item[1]}]"
                if isinstance(item, tuple) and item[:1] == ("child",)
                else literal_source(item)
            )
            lines.append(
                f"# {where}: iteration {k + 1} of {len(items)} "
                f"({escape.comment(s.var.id)} = {escape.comment(value)})"
            )
            body = self.loop_body(s, {**env, s.var.id: value}, k)
            lines += [line[4:] for line in body if line.strip() != "pass"]
        return lines

    # -- branches
    def if_statement(self, s, env: dict[str, str], where: str) -> list[str]:
        lines = [
            f"if {self.const_forward(s.cond, env)}:  # {where}",
            *self.branch_block(s, True, env),
        ]
        if s.orelse:
            lines += ["else:", *self.branch_block(s, False, env)]
        return lines

    def branch_block(self, s: ast.If, first: bool, env: dict[str, str]) -> list[str]:
        """A branch of an `if` statement: from the current unit if it takes the branch, else
        from the first unit of the class that does, else a refusal."""
        stmts = s.body if first else s.orelse
        chosen = self.taking(s.span, first)
        if chosen is None:
            return [f"    {self.unchecked(stmts[0].span)}"]
        with self.writing_as(chosen):
            return self.block(stmts, env)

    def taking(self, span: Span, first: bool) -> Unit | None:
        """The unit to write a branch from (of the `if` or conditional at `span`, in the
        current loop iteration): the current one if it takes the branch, else the first
        unit of the class that does (None: none does)."""
        for unit in self.units:
            if unit.graph is not None and unit.graph.branches.get((span, self.iteration)) is first:
                return unit
        return None

    def iterable(self, e: ast.Expr, env: dict[str, str]) -> str:
        if isinstance(e, ast.Name) and e.id in self.layer_names and e.id not in self.bound:
            return self.layer_ref(e.id)
        return self.const_forward(e, env)

    def const_forward(self, e: ast.Expr, env: dict[str, str]) -> str:
        """A compile-time expression inside forward: hyperparameters are attributes."""
        return self.const_expr(e, env, self.forward_name, self.bound)

    def result_types(self, e: ast.Expr) -> list[str]:
        """The shape comments of an expression's results: what every unit of the class (in
        every loop iteration) has there, a size that differs between them shown as `_`."""
        span = e.func.span if isinstance(e, ast.Pipe) else e.span
        nodes = [
            n
            for n in self.em.span_nodes(self.plan).get(span, ())
            if n.kind in ("op", "layer", "call")
        ]
        if not nodes or self.node_at(span) is None:
            return []
        return [
            self.type_comment([n.outputs[i].type for n in nodes])
            for i in range(len(nodes[0].outputs))
        ]

    def type_comment(self, types: list[TensorType]) -> str:
        """A type as the class's own names write it (sizes from tags); a size that differs
        between the `types` (one per unit or iteration) is `_`."""
        first = types[0]
        dims = []
        for axis in range(len(first.shape)):
            shown = {
                _size_text(t.shape[axis], self.inst is self.em.entry)
                for t in types
                if len(t.shape) == len(first.shape)
            }
            dims.append(shown.pop() if len(shown) == 1 else "_")
        return escape.comment(f"{first.dtype}[{', '.join(dims)}]")

    # -- tensor expressions
    def expr(self, e: ast.Expr, env: dict[str, str]) -> str:
        """An expression's source; one nested deeply (a long pipeline or `@` chain) is put
        into a variable of its own first (Python parses at most 200 nested brackets)."""
        src = self.expression(e, env)
        if (
            self.in_branch
            or bracket_depth(src) <= _DEEP
            or not isinstance(e, ast.Call | ast.Pipe | ast.Binary | ast.Unary)
        ):
            return src
        name = self.fwd_ns.name(("part", len(self.parts)), f"_part{len(self.parts)}")
        self.parts.append(f"{name} = {src}")
        return self.hoisted(src, name)

    def hoisted(self, src: str, name: str) -> str:
        """The variable `name` that now holds the value of `src`."""
        return name

    def expression(self, e: ast.Expr, env: dict[str, str]) -> str:
        if isinstance(e, ast.Name):
            if e.id in env:
                return env[e.id]
            if e.id in self.bound:
                return self.variable(e.id)
            if e.id in self.layer_names:
                return self.layer_read(e.id)
            if e.id in self.hypers or e.id in self.sig_dims or e.id in self.local_consts:
                return self.forward_name(e.id)
            if e.id in self.inst.constants:
                return fmt_literal(self.inst.constants[e.id])
            return self.variable(e.id)
        if isinstance(e, ast.Literal):
            return fmt_literal(e.value)
        if isinstance(e, ast.Attribute) and self.is_layer_chain(e.value, env):
            return self.member(e, env)
        if isinstance(e, ast.Pipe):
            return self.call(
                e.func, e.func.span, env, prepend=self.expr(e.value, env), prepend_tree=e.value
            )
        if isinstance(e, ast.Call):
            return self.call(e, e.span, env)
        if isinstance(e, ast.Binary | ast.Unary | ast.Index):
            node = self.node_at(e.span)
            if node is not None and node.kind == "op":
                if isinstance(e, ast.Binary):
                    operands = [e.left, e.right]
                elif isinstance(e, ast.Unary):
                    operands = [e.operand]
                elif node.op == "take":  # x[:, ids]: the tensor item's position is the axis
                    operands = [e.value, e.items[node.attrs["axis"]]]
                else:
                    operands = [e.value]
                names = [p.name for p in REGISTRY[node.op].signature.params if p.is_tensor]
                codes = {n: self.expr(a, env) for n, a in zip(names, operands, strict=False)}
                return self.op_expr(node, operands, codes)
            if isinstance(e, ast.Index) and self.is_layer_chain(e.value, env):
                (item,) = e.items
                if isinstance(item, ast.Literal) and isinstance(item.value, str):
                    return self.named_child(self.expr(e.value, env), item.value)
                return self.indexed_layer(self.expr(e.value, env), self.const_forward(item, env))
            return self.const_forward(e, env)
        if isinstance(e, ast.Conditional):
            cond, prec = self._const(e.cond, env, self.forward_name, self.bound)
            return self.conditional(
                self.branch_expr(e, True, env),
                cond if prec > 0 else f"({cond})",
                self.branch_expr(e, False, env),
            )
        if isinstance(e, ast.TupleExpr | ast.ListExpr):
            items = ", ".join(self.expr(x, env) for x in e.items)
            return f"[{items}]" if isinstance(e, ast.ListExpr) else f"({items})"
        raise Unsupported("expression not supported by this backend", e.span)

    def is_layer_chain(self, e: ast.Expr, env: dict[str, str]) -> bool:
        """Whether `e` names a layer through its parents (`transformer.wte`, `blocks[0]`)."""
        while isinstance(e, ast.Attribute | ast.Index):
            e = e.value
        return self.is_layer_expr(e, env)

    def member(self, e: ast.Attribute, env: dict[str, str]) -> str:
        """`transformer.wte` (a child model's layer), `transformer.scale` (its Parameter, read)
        or `wte.weight` (a built-in layer's tensor, read): the node the trace made says which."""
        node = self.node_at(e.span, ("layer",))
        parent = self.expr(e.value, env)
        if node is None:
            return self.child_ref(parent, e.name)
        layer = self.unit.instance.child(node.target)
        if "tensor" in node.attrs:
            return self.tensor_read(parent, layer.op, node.attrs["tensor"])
        return self.free_read(self.child_ref(parent, e.name, layer), layer)

    def child_ref(self, parent: str, name: str, child=None) -> str:
        """Layer `name` (the IR's `child` where known) of the module `parent` (source)."""
        raise NotImplementedError

    def tensor_read(self, layer: str, op: str, tensor: str) -> str:
        """Tensor `tensor` of the built-in layer `layer` (source text) in PyTorch's layout."""
        raise NotImplementedError

    def free_read(self, ref: str, layer: LayerInstance) -> str:
        """The tensor of a Parameter or Buffer held as `ref`."""
        return ref

    def tie_lines(self, name: str, member: ast.LayerDecl) -> list[str]:
        """Statements after layer `name`'s construction that tie its weight (`tie=`)."""
        return []

    def is_layer_expr(self, e: ast.Expr, env: dict[str, str]) -> bool:
        """Whether `e` names a layer (a Sequential, for `seq[i]`)."""
        return (
            isinstance(e, ast.Name)
            and e.id not in env
            and e.id not in self.bound
            and e.id in self.layer_names
        )

    def indexed_layer(self, seq: str, index: str) -> str:
        """The child `index` of Sequential `seq`."""
        return f"{seq}[{index}]"

    def named_child(self, seq: str, name: str) -> str:
        """The child named `name` of Sequential `seq` (`Sequential({...})`)."""
        return f"{seq}.get_submodule({fmt_literal(name)})"

    def branch_expr(self, e: ast.Conditional, first: bool, env: dict[str, str]) -> str:
        """One side of a conditional expression, written as `branch_block` writes a branch."""
        part = e.then if first else e.orelse
        chosen = self.taking(e.span, first)
        if chosen is None:
            return self.unchecked(part.span)
        self.in_branch += 1  # (a part put into a variable would run whatever the condition)
        try:
            with self.writing_as(chosen):
                return self.expr(part, env)
        finally:
            self.in_branch -= 1

    def call(
        self,
        e: ast.Expr,
        span: Span,
        env: dict[str, str],
        prepend: str | None = None,
        prepend_tree: ast.Expr | None = None,
    ):
        func = e.func if isinstance(e, ast.Call) else e
        args: list = [] if prepend is None else [prepend]  # source text, or syntax trees
        keywords: dict[str, ast.Expr] = {}
        if isinstance(e, ast.Call):
            args += list(e.args)
            keywords = {k.name: k.value for k in e.keywords}
        node = self.node_at(span)
        if node is None and prepend is None and _compile_time_call(e):
            return self.const_forward(e, env)  # max/min of numbers: no node
        if node is None:
            raise Unsupported("internal error: this call was not traced", span)
        if node.kind == "op":
            op = REGISTRY[node.op]
            attrs = self.written_args(
                op.signature,
                as_call(e, args),
                dict(node.attrs),
                lambda x: self.const_forward(x, env),
            )
            first = prepend_tree if prepend is not None else (args[0] if args else None)
            attrs = self.op_attrs(node, attrs, first)
            return self.lower(node, self.bind(op, args, keywords, env), attrs)
        target = self.expr(func, env)
        if node.kind == "layer" and REGISTRY[node.op].is_layer:
            codes = self.bind(REGISTRY[node.op], args, keywords, env)
            layer = self.layer_of(node)
            return self.layer_call(node, target, codes, {**layer.attrs, **node.attrs})
        positional = [a if isinstance(a, str) else self.expr(a, env) for a in args]
        return self.model_call(
            node, target, positional, {k: self.expr(v, env) for k, v in keywords.items()}
        )

    def layer_of(self, node: Node) -> LayerInstance | ModelInstance:
        """The layer or child model a node of the current unit calls."""
        return self.unit.instance.child(node.target)

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
        constants = self.em.constant_values(self.graph)
        return frozenset(
            name for name, v in by_parameter(node, node.inputs).items() if id(v) in constants
        )

    def variable(self, name: str) -> str:
        """A forward-body variable read."""
        self.reads.add(name)
        return self.local(name)

    def conditional(self, then: str, cond: str, orelse: str) -> str:
        return f"{conditional_part(then)} if {cond} else {orelse}"


def _input_types(graph: Graph, args, arg: ast.Arg) -> list[TensorType]:
    """The type of forward argument `arg` in `graph` (none where its caller left it out)."""
    present = graph.present(args)
    return [v.type for a, v in zip(present, graph.inputs, strict=True) if a is arg]


def _opens_block(line: str) -> bool:
    """Whether a generated line opens a block (`if ...:`, `else:`, `for ...:`)."""
    code = line.split("  # ")[0].rstrip()
    return code.endswith(":") and code.lstrip().split(" ")[0] in ("if", "else:", "for")


def _size_text(d, own: bool) -> str:
    """A size in a shape comment: its expression in the class's names where known; a plain
    symbolic size only in the entry model (elsewhere its names are another model's)."""
    if isinstance(d, Tagged | TaggedDim):
        return d.expr.render(str) if isinstance(d.expr, Dim) else str(d.expr)
    return str(d) if own or not isinstance(d, Dim) else "_"


def bracket_depth(src: str) -> int:
    """How deeply brackets nest in `src` (strings aside)."""
    deepest = 0
    for _, ch, depth in scan(src):
        if ch in "([{":
            deepest = max(deepest, depth + 1)
    return deepest


def conditional_part(src: str) -> str:
    """The first part of `a if c else b`, bracketed where it is a conditional itself."""
    return f"({src})" if " if " in src and atom(src) != src else src


def render(expr, name_of) -> str:
    if isinstance(expr, int):
        return str(int(expr))
    text = expr.render(name_of)
    return text if re.fullmatch(r"[\w.\[\]]+", text) else f"({text})"


def literal_source(value) -> str:
    """A compile-time value as an operand: bracketed where an operator could split it."""
    text = fmt_literal(value)
    return f"({text})" if text.startswith("-") else text


class Unroll(Exception):
    """A generator whose iterations cannot share one expression: write each step."""


def per_iteration(values: list[str], env: dict[str, str], items: tuple) -> str:
    """One expression for values that differ across the iterations of a generator: equal →
    that value; only the first differs → `(a if i == first else b)`."""
    if len(set(values)) == 1:
        return values[0]
    loop_vars = list(env.values())
    if loop_vars and len(set(values[1:])) <= 1 and items and items[0] not in items[1:]:
        return f"({values[0]} if {loop_vars[-1]} == {literal_source(items[0])} else {values[1]})"
    raise Unroll


__all__ = [
    "PYTHON_RESERVED",
    "ClassPlan",
    "ClassWriter",
    "Emitter",
    "Unsupported",
    "fmt_literal",
    "sequence",
]


def _compile_time_call(e: ast.Expr) -> bool:
    """A call the checker computed at compile time (`max`/`min` of numbers), not an op."""
    return isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id in ("max", "min")

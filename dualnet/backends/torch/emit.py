"""PyTorch source from the typed IR: one `nn.Module` class per model definition.

Each class mirrors its .dnet model: the constructor takes the hyperparameters (same names
and defaults) plus, for sub-models, the input sizes dualnet inferred (keyword-only); layer
declarations become `self.name = ...` and the forward body is translated statement by
statement. The IR supplies what the source doesn't say: resolved layer sizes (as expressions
over the model's own names, from tagged sizes), normalised op attributes, and the types for
the shape comments. Ops are written by the lowering table (`lowering.py`).
"""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from dualnet import __version__
from dualnet.backends.syntax_tree import (
    as_call,
    callee_name,
    dotted,
    inside,
    last_reads,
    mentions,
    reads,
    span_key,
)
from dualnet.backends.torch import lowering
from dualnet.backends.torch.layout import layout
from dualnet.diagnostics import Span, error
from dualnet.ir.dims import Dim, substitute
from dualnet.ir.graph import LayerInstance, ModelInstance, Node
from dualnet.ir.tagged import Tagged, Written, written
from dualnet.ir.types import TensorType
from dualnet.ops import REGISTRY
from dualnet.syntax import ast

_RESERVED = (set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins))
             | {"torch", "nn", "F", "self", "math", "_Function", "_unchecked"}
             | set(lowering.HELPERS))
# nn.Module attributes a layer name must not shadow (kept static: emitting never imports torch)
_MODULE_ATTRS = {
    "training", "forward", "state_dict", "load_state_dict", "parameters", "named_parameters",
    "buffers", "named_buffers", "children", "named_children", "modules", "named_modules",
    "train", "eval", "to", "cuda", "cpu", "type", "float", "double", "half", "bfloat16",
    "apply", "zero_grad", "add_module", "register_buffer", "register_parameter",
    "register_module", "get_submodule", "get_parameter", "get_buffer", "extra_repr",
    "requires_grad_", "share_memory", "dump_patches", "call_super_init", "compile", "ipu",
    "xpu", "mtia", "to_empty", "set_extra_state", "get_extra_state",
}


def py_name(name: str) -> str:
    """A .dnet name as a Python identifier that shadows nothing the generated code uses."""
    return name + "_" if name in _RESERVED else name


def layer_ref(name: str) -> str:
    """How generated code names a layer: `self.conv1`, or `self._modules["eval"]` when the
    name would shadow an nn.Module attribute (its state_dict name stays `eval`)."""
    if name in _MODULE_ATTRS or keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"self._modules[{_fmt_literal(name)}]"
    return f"self.{name}"


def _fmt_literal(v: Any) -> str:
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
        return _sequence([_fmt_literal(x) for x in v], isinstance(v, tuple))
    raise TypeError(v)


def _sequence(items: list[str], is_tuple: bool) -> str:
    """Already formatted items as a tuple or list display."""
    text = ", ".join(items)
    if not is_tuple:
        return f"[{text}]"
    return f"({text},)" if len(items) == 1 else f"({text})"


@dataclass
class ClassPlan:
    name: str
    decl: ast.Model
    instances: list[ModelInstance]
    required_dims: list[str] = field(default_factory=list)  # keyword-only inferred sizes


class Emitter:
    """Writes one file for an entry model instance and everything it uses."""

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
            name = py_name(inst.definition)
            while name in names:
                name += "_"
            plan = ClassPlan(name, inst.decl, [])
            self.plans[id(inst.decl)] = plan
            self.order.append(plan)
        plan.instances.append(inst)

    def plan_of(self, inst: ModelInstance) -> ClassPlan:
        return self.plans[id(inst.decl)]

    # -- the file
    def emit(self) -> str:
        classes = [ClassWriter(self, plan).write() for plan in self.order]
        body = "\n\n\n".join(classes)
        helpers = lowering.helpers_needed(body)
        own = [EMITTER_HELPERS[h] for h in sorted(EMITTER_HELPERS) if f"{h}(" in body]
        uses_f = "F." in body or any("F." in lowering.HELPERS[h] for h in helpers)
        imports = "import torch\n" + ("import torch.nn.functional as F\n" if uses_f else "") + \
            "from torch import nn"
        if "math." in body or any("math." in lowering.HELPERS[h] for h in helpers):
            imports = "import math\n\n" + imports
        header = (f'"""PyTorch modules generated by dualnet {__version__} from {self.source}.\n\n'
                  'Edit the .dnet source and regenerate rather than editing this file.\n"""\n\n'
                  f"from __future__ import annotations\n\n{imports}")
        parts = [header, *(lowering.HELPERS[h].strip() for h in helpers), *own, body]
        return "\n\n\n".join(p.strip("\n") for p in parts if p) + "\n"


class _Unsupported(Exception):
    """A construct the PyTorch backend cannot write; becomes a located diagnostic."""

    def __init__(self, message: str, span: Span | None):
        super().__init__(message)
        self.span = span


class ClassWriter:
    def __init__(self, emitter: Emitter, plan: ClassPlan):
        self.em = emitter
        self.plan = plan
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
            return py_name(name)
        raise _Unsupported(f"size `{name}` is not known when the module is constructed", None)

    def fmt_init(self, v: Any) -> str:
        """An attribute as constructor code (sizes over the constructor's arguments)."""
        return self._format(v, self.init_name, in_forward=False)

    def _format(self, v: Any, name_of, in_forward: bool) -> str:
        if isinstance(v, Written):
            return v.code
        if isinstance(v, Tagged):
            return _render(v.expr, name_of)
        if isinstance(v, Dim):
            if not in_forward:
                raise _Unsupported(f"a layer size depends on the symbolic dimension `{v}`", None)
            return _render(v, name_of)
        if isinstance(v, tuple | list):
            return _sequence([self._format(x, name_of, in_forward) for x in v],
                             isinstance(v, tuple))
        return _fmt_literal(v)

    def forward_name(self, name: str) -> str:
        if name in self.sig_dims:
            self.used_in_forward.add(name)
            return f"{py_name(name)}_"
        if name in self.hypers or name in self.local_consts:
            self.used_in_forward.add(name)
            return f"self.{py_name(name)}"
        for arg, t in zip(self.forward.args, self.first.graphs[0].inputs, strict=True):
            for axis, d in enumerate(t.type.shape):
                if isinstance(d, Dim) and d.symbol == name:
                    return f"{py_name(arg.name)}.shape[{axis}]"
        raise _Unsupported(f"cannot find the size `{name}` at run time", None)

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
                params.append(f"{py_name(d)}: int{default}")
        stored = [h for h in self.hypers + list(self.local_consts)
                  if h in self.used_in_forward]
        span = self.decl.span
        lines = [f"class {self.plan.name}(nn.Module):",
                 f'    """{self.decl.name.id} ({self.src}:{span.line})."""', "",
                 f"    def __init__({', '.join(params)}) -> None:",
                 "        super().__init__()"]
        lines += [f"        {line}" for line in self.default_fixups()]
        lines += [f"        self.{py_name(h)} = {py_name(h)}" for h in stored]
        lines += [f"        {line}" for line in init_lines]
        lines += [""] + [f"    {line}" for line in forward_lines]
        return "\n".join(layout(lines))

    def hyper_param(self, h: ast.Hyper) -> str:
        annotation = {"int": "int", "float": "float", "bool": "bool", "str": "str"}.get(
            getattr(h.type, "name", ""), "tuple")
        if h.default is None:
            return f"{py_name(h.name)}: {annotation}"
        if mentions(h.default, set(self.hypers)):
            return f"{py_name(h.name)}: {annotation} | None = None"
        return f"{py_name(h.name)}: {annotation} = {self.const_expr(h.default)}"

    def default_fixups(self) -> list[str]:
        """Defaults that refer to earlier hyperparameters are computed in the constructor."""
        out = []
        for h in self.decl.hypers:
            if h.default is not None and mentions(h.default, set(self.hypers)):
                name = py_name(h.name)
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
            return _fmt_literal(e.value), _ATOM
        if isinstance(e, ast.Name | ast.Attribute):
            key = e.id if isinstance(e, ast.Name) else dotted(e)
            if key in env:
                return env[key], _ATOM
            if key in self.hypers or key in self.local_consts or key in self.sig_dims:
                return name_of(key), _ATOM
            if key in self.first.constants:
                return _fmt_literal(self.first.constants[key]), _ATOM
            raise _Unsupported(f"`{key}` cannot be written as a Python value", e.span)
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
            return _sequence([sub(x, 0) for x in e.items], isinstance(e, ast.TupleExpr)), _ATOM
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "range":
            return f"range({', '.join(sub(a, 0) for a in e.args)})", _ATOM
        raise _Unsupported("this expression cannot be written as a Python value", e.span)

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
                lines.append(f"{py_name(name)} = {self.const_expr(member.value)}"
                             f"  # {self.src}:{member.span.line}")
                continue
            code = self.layer_expr(member.value, [b for b in built if b is not None], {})
            lines.append(f"{layer_ref(name)} = {code}  # {self.src}:{member.span.line}")
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
            raise _Unsupported("a loop variable cannot be a layer here", e.span)
        if isinstance(e, ast.Call):
            callee = callee_name(e.func)
            if callee == "Sequential":
                return self.sequential_expr(e, built, env)
            if callee in REGISTRY and REGISTRY[callee].is_layer:
                attrs = self.written_args(REGISTRY[callee].construct, e, self.common_attrs(built),
                                          lambda x: self.const_expr(x, env))
                return lowering.TORCH_LAYERS[built[0].op].construct(attrs, self.fmt_init)
            if callee in REGISTRY:
                return self.function_module(built[0])
            return self.model_expr(e, built, env)
        if isinstance(e, ast.Name) and e.id in REGISTRY:
            return self.function_module(built[0])
        raise _Unsupported("this layer declaration cannot be written for PyTorch", e.span)

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

    def sequential_expr(self, e: ast.Call, built: list, env: dict[str, str]) -> str:
        if e.args and isinstance(e.args[0], ast.Generator):
            gen = e.args[0]
            var = py_name(gen.var)
            children = [c for seq in built for c in seq.children.values()]
            inner = self.layer_expr(gen.element, children, {**env, gen.var: var})
            return f"nn.Sequential(*({inner} for {var} in {self.const_expr(gen.iterable, env)}))"
        items = []
        for index, arg in enumerate(e.args):
            children = [seq.children[str(index)] for seq in built]
            after = [seq.children.get(str(index - 1)) for seq in built] if index else []
            if after and all(isinstance(a, LayerInstance) and a.op in _FRESH_LAYERS
                             for a in after) and children[0].op in _NN_INPLACE:
                items.append(self.function_module(children[0], inplace=True))
            else:
                items.append(self.layer_expr(arg, children, env))
        return f"nn.Sequential({', '.join(items)})"

    def model_expr(self, e: ast.Call, built: list, env: dict[str, str]) -> str:
        child = built[0]
        plan = self.em.plan_of(child)
        args = [self.const_expr(a, env) for a in e.args]
        args += [f"{py_name(k.name)}={self.const_expr(k.value, env)}" for k in e.keywords]
        for dim in plan.required_dims:
            values = [self.fmt_init(b.call_dims[dim]) for b in built]
            args.append(f"{py_name(dim)}={_per_iteration(values, env)}")
        return f"{plan.name}({', '.join(args)})"

    def function_module(self, layer: LayerInstance, inplace: bool = False) -> str:
        """A parameterless function as an nn.Sequential step: a torch.nn module when one has
        exactly this meaning, else `_Function` around the op's lowering. `inplace`: the step
        follows a layer whose fresh output it may overwrite (ReLU, ReLU6)."""
        attrs = layer.attrs
        simple = _NN_STEPS.get(layer.op)
        if simple is not None and (layer.op != "clamp" or (attrs["lo"], attrs["hi"]) == (0, 6)):
            return simple(attrs, inplace)
        call = lowering.TorchCall({"x": "x"}, dict(attrs), {}, list(layer.output_types),
                                  self.fmt_init)
        return f"_Function(lambda x: {lowering.lower_function(layer.op, call)}, {layer.op!r})"

    # -- forward
    def forward_body(self) -> list[str]:
        args = ", ".join(f"{py_name(a.name)}: torch.Tensor" for a in self.forward.args)
        graph = self.first.graphs[0]
        returns = "torch.Tensor" if len(graph.outputs) == 1 else \
            f"tuple[{', '.join(['torch.Tensor'] * len(graph.outputs))}]"
        body: list[str] = []
        for arg, value in zip(self.forward.args, graph.inputs, strict=True):
            body.append(f"# {py_name(arg.name)}: {self.type_comment(value.type)}")
        self.last_read = last_reads(self.forward.body)
        self.fresh_vars: set[str] = set()
        self.reads_here: dict[str, int] = {}
        self.index, self.nesting = -1, 0
        statements = []
        for index, stmt in enumerate(self.forward.body):
            self.index, self.reads_here = index, reads(stmt)
            statements += self.statement(stmt, {})
            self.track_fresh(stmt)
        prelude = [f"{py_name(d)}_ = {py_name(self.sig_dims[d][0])}.shape[{self.sig_dims[d][1]}]"
                   for d in self.sig_dims if d in self.used_in_forward]
        return [f"def forward(self, {args}) -> {returns}:"] + \
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
            targets = [s.target] if isinstance(s, ast.Annotated) else list(s.targets)
            code = self.expr(s.value, env)
            types = self.result_types(s.value)
            shown = ", ".join(self.type_comment(t) for t in types) if types else ""
            names = ", ".join(py_name(t.id) for t in targets)
            for t in targets:
                env.pop(t.id, None)
            return [f"{names} = {code}  # {shown + '  ' if shown else ''}{where}"]
        if isinstance(s, ast.Return):
            values = ", ".join(self.expr(v, env) for v in s.values)
            return [f"return {values}  # {where}"]
        if isinstance(s, ast.For):
            var = py_name(s.var.id)
            iterable = self.iterable(s.iterable, env)
            inner = {**env, s.var.id: var}
            return [f"for {var} in {iterable}:  # {where}", *self.block(s.body, inner)]
        if isinstance(s, ast.If):
            lines = [f"if {self.const_forward(s.cond, env)}:  # {where}", *self.block(s.body, env)]
            if s.orelse:
                lines += ["else:", *self.block(s.orelse, env)]
            return lines
        raise _Unsupported("statement not supported by the PyTorch backend", s.span)

    def track_fresh(self, stmt) -> None:
        """Names that hold a fresh temporary after this top-level statement."""
        if isinstance(stmt, ast.Assign | ast.Annotated):
            targets = [stmt.target] if isinstance(stmt, ast.Annotated) else list(stmt.targets)
            for t in targets:
                self.fresh_vars.discard(t.id)
            if len(targets) == 1 and self.fresh(stmt.value):
                self.fresh_vars.add(targets[0].id)
        else:
            self.fresh_vars -= set(reads(stmt)) | set(ast.assigned_names(stmt))

    def overwritable(self, e: ast.Expr, node: Node) -> bool:
        """`e` names a fresh temporary read here for the last time, once, outside any loop or
        branch (a loop body would read it again), and the op's result has its type (so
        `e.add_(...)` computes the same, without a new tensor)."""
        return (self.nesting == 0 and isinstance(e, ast.Name) and e.id in self.fresh_vars
                and self.last_read.get(e.id) == self.index and self.reads_here.get(e.id) == 1
                and node.inputs[0].type == node.outputs[0].type)

    def iterable(self, e: ast.Expr, env: dict[str, str]) -> str:
        if isinstance(e, ast.Name) and e.id in self.layer_names:
            return layer_ref(e.id)
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
                return layer_ref(e.id)
            if e.id in self.hypers or e.id in self.sig_dims or e.id in self.local_consts:
                return self.forward_name(e.id)
            if e.id in self.first.constants:
                return _fmt_literal(self.first.constants[e.id])
            return py_name(e.id)
        if isinstance(e, ast.Literal):
            return _fmt_literal(e.value)
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
                if node.op in _INPLACE_METHODS and self.overwritable(operands[0], node):
                    return f"{codes[names[0]]}.{_INPLACE_METHODS[node.op]}({codes[names[1]]})"
                return self.lower(node, codes)
            if isinstance(e, ast.Index):
                items = ", ".join(self.expr(i, env) for i in e.items)
                return f"{self.expr(e.value, env)}[{items}]"
            return self.const_forward(e, env)
        if isinstance(e, ast.Conditional):
            return (f"{self.expr(e.then, env)} if {self.const_forward(e.cond, env)} "
                    f"else {self.expr(e.orelse, env)}")
        if isinstance(e, ast.TupleExpr | ast.ListExpr):
            items = ", ".join(self.expr(x, env) for x in e.items)
            return f"[{items}]" if isinstance(e, ast.ListExpr) else f"({items})"
        raise _Unsupported("expression not supported by the PyTorch backend", e.span)

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
            raise _Unsupported("dualnet did not trace this call in any checked configuration",
                               span)
        if node.kind == "op":
            op = REGISTRY[node.op]
            attrs = self.written_args(op.signature, as_call(e, args), dict(node.attrs),
                                      lambda x: self.const_forward(x, env))
            first = prepend_tree if prepend is not None else (args[0] if args else None)
            if node.op in _INPLACE_OPS and isinstance(first, ast.Expr) and self.fresh(first):
                attrs["_inplace"] = True
            return self.lower(node, self.bind(op, args, keywords, env), attrs)
        target = self.expr(func, env)
        if node.kind == "layer" and REGISTRY[node.op].is_layer:
            codes = self.bind(REGISTRY[node.op], args, keywords, env)
            layer = self.layer_of(node)
            call = self.torch_call(node, codes, {**layer.attrs, **node.attrs})
            return lowering.TORCH_LAYERS[node.op].call(target, call)
        positional = [a if isinstance(a, str) else self.expr(a, env) for a in args]
        kw = [f"{py_name(k)}={self.expr(v, env)}" for k, v in keywords.items()]
        return f"{target}({', '.join(positional + kw)})"

    def fresh(self, e: ast.Expr) -> bool:
        """Whether `e` is a temporary that only its consumer reads and autograd does not keep:
        the result of a conv, linear or normalisation layer, or of `+ - *` (so an op may
        overwrite it in place). Identity and Dropout may return their input: never fresh."""
        span = e.func.span if isinstance(e, ast.Pipe) else e.span
        if not isinstance(e, ast.Pipe | ast.Call | ast.Binary):
            return False
        node = self.node_at(span)
        if node is None:
            return False
        return node.op in (_FRESH_LAYERS if node.kind == "layer" else _FRESH_OPS)

    def layer_of(self, node: Node) -> LayerInstance:
        for inst in self.plan.instances:
            for graph in inst.graphs:
                if any(n is node for n in graph.nodes):
                    return inst.child(node.target)
        raise _Unsupported("layer not found", node.span)

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

    def torch_call(self, node: Node, codes: dict, attrs: dict) -> lowering.TorchCall:
        in_types: dict[str, Any] = {}
        for name, value in zip(node.input_names, node.inputs, strict=True):
            base, _, index = name.partition(".")
            if index:
                in_types.setdefault(base, []).append(value.type)
            else:
                in_types[base] = value.type
        return lowering.TorchCall(codes, attrs, in_types, [v.type for v in node.outputs],
                                  self.fmt_forward)

    def lower(self, node: Node, codes: dict, attrs: dict | None = None) -> str:
        attrs = dict(node.attrs) if attrs is None else attrs
        if self.forward.args:  # tensors an op creates go where the inputs are
            attrs["_device"] = f"{py_name(self.forward.args[0].name)}.device"
        return lowering.lower_function(node.op, self.torch_call(node, codes, attrs))


# Python operator precedence, lowest first (`x if c else y` is 0).
_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "<": 4, "<=": 4, ">": 4, ">=": 4, "==": 4,
               "!=": 4, "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "@": 6, "**": 8}
_UNARY, _ATOM = 7, 9

_INPLACE_OPS = {"relu"}
_INPLACE_METHODS = {"add": "add_", "sub": "sub_", "mul": "mul_"}
_FRESH_LAYERS = {"Conv1d", "Conv2d", "Conv3d", "ConvTranspose2d", "Linear", "BatchNorm",
                 "LayerNorm", "GroupNorm"}
_FRESH_OPS = {"add", "sub", "mul"}
_NN_INPLACE = {"relu", "clamp"}  # steps written as nn.ReLU() / nn.ReLU6()

# (attrs, inplace) → the nn module; only steps in _NN_INPLACE are ever asked for inplace
_NN_STEPS = {
    "relu": lambda a, inplace: f"nn.ReLU({'inplace=True' if inplace else ''})",
    "sigmoid": lambda a, inplace: "nn.Sigmoid()",
    "tanh": lambda a, inplace: "nn.Tanh()",
    "silu": lambda a, inplace: "nn.SiLU()",
    "gelu": lambda a, inplace: f"nn.GELU(approximate={_fmt_literal(a['approximate'])})",
    "clamp": lambda a, inplace: f"nn.ReLU6({'inplace=True' if inplace else ''})",
}

# Helpers the emitter itself may call in generated code (the lowering table has its own).
EMITTER_HELPERS = {
    "_Function": (
        "class _Function(nn.Module):\n"
        '    """A parameterless step of an nn.Sequential: applies `fn` to its input."""\n\n'
        "    def __init__(self, fn, name: str) -> None:\n"
        "        super().__init__()\n"
        "        self.fn = fn\n"
        "        self.name = name\n\n"
        "    def extra_repr(self) -> str:\n"
        "        return self.name\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        "        return self.fn(x)\n"),
    "_unchecked": (
        "def _unchecked(message: str) -> nn.Module:\n"
        '    """A configuration dualnet never checked: refuse it rather than guess sizes."""\n'
        "    raise ValueError(message)\n"),
}


def _render(expr, name_of) -> str:
    if isinstance(expr, int):
        return str(int(expr))
    text = expr.render(name_of)
    return text if re.fullmatch(r"[\w.\[\]]+", text) else f"({text})"


def _per_iteration(values: list[str], env: dict[str, str]) -> str:
    """One expression for values that differ across the iterations of a generator: equal →
    that value; only the first differs → `(a if i == 0 else b)`."""
    if len(set(values)) == 1:
        return values[0]
    loop_vars = list(env.values())
    if loop_vars and len(set(values[1:])) <= 1:
        return f"({values[0]} if {loop_vars[-1]} == 0 else {values[1]})"
    raise _Unsupported("inferred sizes differ between the iterations of a generator", None)


def emit_torch(entry: ModelInstance, source: str) -> tuple[str, str]:
    """(generated source, entry class name); a construct the backend can't write is a
    diagnostic."""
    try:
        emitter = Emitter(entry, source)
        return emitter.emit(), emitter.plan_of(entry).name
    except _Unsupported as exc:
        raise error("E-BACKEND", f"PyTorch backend: {exc}", exc.span) from None

"""Model instantiation and forward tracing: AST → typed, hierarchical IR.

A model instance declares its layers at its first call (declarations may use the dimension
names its forward signature binds), then its forward body is traced statement by statement
into a `Graph`. An error in one statement is recorded and its targets become POISON, so
independent errors further on are still found.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from dualnet import budget
from dualnet.budget import BudgetExceeded
from dualnet.diagnostics import Diagnostic, DualnetError, Span, error
from dualnet.ir.dims import Dim, DimTooLarge, substitute
from dualnet.ir.graph import Graph, LayerInstance, ModelInstance, Node, Value
from dualnet.ir.tagged import expr_of, outer_exprs, retag, tag_as, untagged
from dualnet.ir.types import DType, TensorType, out_of_range
from dualnet.ops import REGISTRY
from dualnet.ops.binding import Arg, bind, describe
from dualnet.ops.free import FREE_TENSORS, READABLE, TIEABLE
from dualnet.ops.registry import OpDef, run_rule, suggest
from dualnet.semantics.evaluator import Evaluator, is_number
from dualnet.semantics.loader import ModuleInfo
from dualnet.semantics.scope import ModuleScope, Scope
from dualnet.semantics.unify import fresh_type, unify
from dualnet.semantics.values import (
    POISON,
    FunctionRef,
    LayerHandle,
    LayerSpec,
    ModelRef,
    ModelSpec,
    PartialSpec,
    SequentialSpec,
    TensorValue,
    ValueSizes,
)
from dualnet.syntax import ast

_SCALAR_TYPES = {"int": int, "float": float, "bool": bool, "str": str}
_WIDER = {DType.f16: "f32", DType.bf16: "f32", DType.f32: "f64", DType.i32: "i64"}
MAX_MODEL_NESTING = 100  # model instances called inside model instances
MAX_CONST_NESTING = 100  # constants defined through other constants


@dataclass(eq=False)
class Frame:
    """A model instance being checked: its declaration, hyperparameters and layers."""

    ref: ModelRef
    instance: ModelInstance
    names: dict[str, Any]  # hyperparameters, then dims, layers and local constants
    forward: ast.Forward
    declared: bool = False
    first_dims: dict[str, Any] = field(default_factory=dict)
    first_call: Span | None = None  # where the sizes of `first_dims` were fixed
    graphs: dict[tuple, Graph | None] = field(default_factory=dict)  # None: failed
    # The caller's expression for each of this model's names (hyperparameters, and dims per
    # call signature), to move result sizes from this model's scope into the caller's.
    outer: dict[str, Any] = field(default_factory=dict)
    outer_dims: dict[tuple, dict[str, Any]] = field(default_factory=dict)


def _readable_list() -> str:
    return ", ".join(f"{op}.{'/'.join(names)}" for op, names in READABLE.items())


class Checker:
    def __init__(self):
        self.diagnostics: list[Diagnostic] = []
        self._recorded: set[tuple[str, Span | None]] = set()
        self.values = ValueSizes()
        self._consts: dict[tuple[int, str], Any] = {}
        self._const_busy: set[tuple[int, str]] = set()
        self._context: list[str] = []  # "in X, called with ..." notes, innermost last
        self.errors_met = 0  # recoverable errors met, repeats included
        self.sequential_graphs: dict[tuple, Graph] = {}
        self.ties: list[tuple[LayerInstance, LayerSpec]] = []  # layers declared with `tie=`

    # -- diagnostics
    def record(self, exc: DualnetError) -> None:
        """Keep the diagnostics of a recoverable error (one per code and place: a loop or a
        model used many times repeats it); a BudgetExceeded stops checking instead."""
        if isinstance(exc, BudgetExceeded):
            raise exc
        for d in exc.diagnostics:
            budget.spend("diagnostic", 1, d.span)
            self.errors_met += 1
            if (d.code, d.span) in self._recorded:
                continue
            self._recorded.add((d.code, d.span))
            notes = d.notes + ((self._context[-1],) if self._context else ())
            self.diagnostics.append(Diagnostic(d.code, d.message, d.span, d.label, notes))

    @staticmethod
    def tensor_type(v: Any) -> TensorType | None:
        return v.value.type if isinstance(v, TensorValue) else None

    # -- constants and hyperparameters
    def module_scope(self, module: ModuleInfo) -> ModuleScope:
        return ModuleScope(module, self.eval_const)

    def eval_const(self, module: ModuleInfo, decl: ast.Const) -> Any:
        """A constant's value, computed once; a failure is recorded once and gives POISON."""
        key = (id(module), decl.name.id)
        if key in self._consts:
            return self._consts[key]
        if key in self._const_busy:  # caught by the constant being evaluated below this one
            raise error("E-VALUE", f"constant `{decl.name.id}` depends on itself", decl.span)
        if len(self._const_busy) >= MAX_CONST_NESTING:
            raise error(
                "E-DEPTH",
                f"constant `{decl.name.id}` is defined through more than "
                f"{MAX_CONST_NESTING} other constants",
                decl.span,
                "too deep",
                ["define it more directly"],
            )
        self._const_busy.add(key)
        try:
            value = Evaluator(self, Scope({}, self.module_scope(module)), None).eval(decl.value)
            if value is not POISON and not self.values.is_plain(value):
                raise error(
                    "E-TYPE",
                    f"constant `{decl.name.id}` must be a number, string, "
                    f"bool or tuple, found {describe(value)}",
                    decl.value.span,
                )
        except DualnetError as exc:
            self.record(exc)
            value = POISON
        finally:
            self._const_busy.discard(key)
        self._consts[key] = value
        return value

    def visible_constants(self, ref: ModelRef) -> dict[str, Any]:
        """The values of the file constants a model can name (`lib.X` for namespaces)."""
        m = ref.module
        out = {name: self.eval_const(m, decl) for name, decl in m.consts.items()}
        for local, (other, original, _) in m.imported.items():
            if original in other.consts:
                out[local] = self.eval_const(other, other.consts[original])
        for other in m.import_alls:
            for name, decl in other.consts.items():
                out.setdefault(name, self.eval_const(other, decl))
        for alias, (other, _) in m.namespaces.items():
            for name, decl in other.consts.items():
                out[f"{alias}.{name}"] = self.eval_const(other, decl)
        return out

    def bind_hypers(
        self, ref: ModelRef, args: list[Arg], keywords: dict[str, Arg], span: Span
    ) -> ModelSpec:
        hypers = ref.model.hypers
        if len(args) > len(hypers):
            raise error(
                "E-ARGS",
                f"{ref.name} takes {len(hypers)} hyperparameters, found "
                f"{len(args)} positional arguments",
                args[len(hypers)].span,
                "extra argument",
                [f"{ref.name}{_hyper_sig(ref)}"],
            )
        given = {h.name: a for h, a in zip(hypers, args, strict=False)}
        for key, arg in keywords.items():
            require_hyper_name(ref, key, arg.keyword_span)
            if key in given:
                raise error("E-ARGS", f"hyperparameter `{key}` given twice", arg.keyword_span)
            given[key] = arg
        return ModelSpec(ref, self.hyper_values(ref, given, span), span)

    def hyper_values(self, ref: ModelRef, given: dict[str, Arg], span: Span) -> dict[str, Any]:
        values: dict[str, Any] = {}
        scope = Scope(values, self.module_scope(ref.module))
        for h in ref.model.hypers:
            if h.name in given:
                arg = given[h.name]
                values[h.name] = self.check_hyper(ref, h, arg.value, arg.span)
            elif h.default is not None:
                default = Evaluator(self, scope, None).eval(h.default)
                values[h.name] = self.check_hyper(ref, h, default, h.default.span)
            else:
                raise error(
                    "E-ARGS",
                    f"{ref.name}: missing hyperparameter `{h.name}`",
                    span,
                    f"`{h.name}` is required",
                    [f"{ref.name}{_hyper_sig(ref)}"],
                )
        return values

    def check_hyper(self, ref: ModelRef, h: ast.Hyper, value: Any, span: Span) -> Any:
        if value is POISON:
            return value
        ok, out = _check_scalar_type(h.type, value)
        if ok is None:
            raise error(
                "E-TYPE",
                f"hyperparameter `{h.name}` has an unknown type",
                h.type.span,
                notes=["hyperparameter types are int, float, bool, str and tuples of them"],
            )
        if not ok:
            raise error(
                "E-TYPE",
                f"{ref.name}: hyperparameter `{h.name}` expects "
                f"{_type_text(h.type)}, found {describe(value)}",
                span,
                f"expected {_type_text(h.type)}",
            )
        return out

    # -- model instances
    def new_frame(self, spec: ModelSpec, path: str) -> Frame:
        model = spec.ref.model
        forwards = [m for m in model.members if isinstance(m, ast.Forward)]
        if not forwards:
            raise error("E-MODEL", f"model `{spec.ref.name}` has no forward", model.name.span)
        if len(forwards) > 1:
            raise error(
                "E-MODEL",
                f"model `{spec.ref.name}` has more than one forward",
                forwards[1].span,
                "second forward",
            )
        budget.spend("instance", 1, spec.span)
        instance = ModelInstance(
            path,
            spec.ref.name,
            dict(spec.hyper),
            spec.span,
            decl=spec.ref.model,
            constants=self.visible_constants(spec.ref),
        )
        names = {k: tag_as(v, k) for k, v in spec.hyper.items()}  # sizes seen from inside
        outer = {
            n: e for k, v in spec.hyper.items() for n, e in outer_exprs(k, v, _outer_expr).items()
        }
        return Frame(spec.ref, instance, names, forwards[0], outer=outer)

    def entry_graph(self, frame: Frame) -> Graph | None:
        """Trace the entry model with the symbolic types its signature declares."""
        scope = Scope(frame.names, self.module_scope(frame.ref.module))
        types = []
        for arg in frame.forward.args:
            if arg.type is None:
                raise error(
                    "E-TYPE",
                    f"the entry model's input `{arg.name}` needs a type",
                    arg.span,
                    "add a type such as f32[B, 3, H, W]",
                )
            types.append(fresh_type(arg.type, self.dim_lookup(scope)))
        return self.trace(frame, types, [a.span for a in frame.forward.args], frame.forward.span)

    def alias_ties(self) -> None:
        """A tied layer forward never calls is another name of its owner's tensor
        (T5EncoderModel's `shared`, the tensor of `encoder.embed_tokens`): made from the
        owner's weight shape once every forward has run, as if called on one item."""
        for layer, spec in self.ties:
            if layer.built:
                continue
            tracer = self.scratch_tracer()
            owner = Evaluator(self, spec.tie[1], None).eval(spec.tie[0])
            if not isinstance(owner, LayerHandle) or not owner.target.built:
                continue  # the owner is reported unused (or was wrong) on its own
            cols = owner.target.params["weight"].shape[1]
            inputs = (
                {"ids": TensorType(DType.i64, (1,))}
                if layer.op == "Embedding"
                else {"x": TensorType(DType.f32, (1, cols))}
            )
            op = REGISTRY[layer.op]
            _, ctx = run_rule(op, inputs, {}, dict(spec.spans), spec.span, dict(spec.config))
            tracer.tie(layer, spec, ctx, spec.span)
            layer.attrs, layer.params, layer.buffers = ctx.config, ctx.params, ctx.buffers
            layer.built = True

    def scratch_tracer(self) -> Tracer:
        """A tracer of a graph of its own, outside every model (a computed Buffer's)."""
        tracer = Tracer(self, None, Graph(None, []))
        tracer.constants_only = True
        return tracer

    def dim_lookup(self, scope: Scope):
        """Names in dimensions: hyperparameters and constants give sizes (tuples of sizes, for
        `padding[0]`); others are symbols."""

        def lookup(name: str, span: Span):
            found, value = scope.find(name)
            if not found or isinstance(value, FunctionRef | ModelRef) or value is POISON:
                return None
            if isinstance(value, int | Dim | tuple) and not isinstance(value, bool):
                return value
            raise error("E-TYPE", f"`{name}` is {describe(value)}, not a size", span)

        return lookup

    def trace(
        self, frame: Frame, types: list[TensorType], spans: list[Span], span: Span
    ) -> Graph | None:
        """Bind the forward signature, declare layers on first use, and trace the body."""
        fwd = frame.forward
        scope_outer = Scope(frame.names, self.module_scope(frame.ref.module))
        dims: dict[str, Any] = {}
        lookup = self.dim_lookup(scope_outer)
        _check_defaults(fwd)
        for arg, t, s in zip(fwd.args, types, spans, strict=True):
            if arg.type is not None and t is not None:
                self.bind_argument(frame, arg, t, s, dims, lookup)
        key = tuple(types)
        if key in frame.graphs:
            return frame.graphs[key]
        budget.spend("graph", 1, span)
        before = len(self.diagnostics)
        frame.outer_dims[key] = {
            k: _outer_expr(v) for k, v in dims.items() if _outer_expr(v) is not None
        }
        if not frame.declared:
            frame.names.update({k: tag_as(v, k) for k, v in dims.items()})
            frame.first_dims = dict(dims)
            frame.first_call = span
            frame.instance.call_dims = dict(dims)
            self.declare_layers(frame, frame.outer_dims[key])
            frame.instance.sizes = {
                k: int(v)
                for k, v in frame.names.items()
                if isinstance(v, int) and not isinstance(v, bool)
            }
            frame.declared = True
        else:
            for name, value in dims.items():
                if name in frame.first_dims and frame.first_dims[name] != value:
                    raise error(
                        "E-SHAPE",
                        f"{frame.ref.name} `{frame.instance.path}` is called "
                        f"again with {name} = {value}, but its layers were built for "
                        f"{name} = {frame.first_dims[name]}",
                        span,
                        "different sizes on reuse",
                        [f"first called at {frame.first_call}"],
                    )
        dims = {k: tag_as(v, k) for k, v in dims.items()}  # this model's names from here on
        graph = Graph(frame.instance, [])
        tracer = Tracer(self, frame, graph)
        local = Scope({}, Scope({**frame.names, **dims}, self.module_scope(frame.ref.module)))
        for arg, t in zip(fwd.args, types, strict=True):
            if t is None:  # an optional argument left out: `none` in the body
                graph.omitted.append(arg.name)
                local.names[arg.name] = None
                continue
            v = tracer.new_value(_inner_type(arg, t, {**frame.names, **dims}), arg.name, arg.span)
            graph.inputs.append(v)
            local.names[arg.name] = TensorValue(v)
        tracer.run_body(fwd.body, local, dims)
        if len(self.diagnostics) > before or not graph.outputs:
            frame.graphs[key] = None
            return None
        frame.instance.graphs.append(graph)
        frame.graphs[key] = graph
        return graph

    def bind_argument(
        self, frame: Frame, arg: ast.Arg, t: TensorType, span: Span, dims: dict, lookup
    ) -> None:
        """Unify an argument with its annotation, binding `dims`; a conflict with a size
        that the instance's first call fixed names that call in a note."""
        fixed: dict[str, None] = {}  # the first call's dimension names the annotation uses

        def lookup_fixed(name: str, s: Span):
            if name in frame.first_dims:
                fixed[name] = None
            return lookup(name, s)

        what = f"argument `{arg.name}` of {frame.ref.name}"
        try:
            unify(arg.type, t, dims, lookup_fixed, "E-SHAPE", span, what)
        except DualnetError as exc:
            if not fixed or isinstance(exc, BudgetExceeded):
                raise
            note = _fixed_by_first_call(frame, arg, t, list(fixed))
            raise DualnetError(
                [replace(d, notes=(*d.notes, note)) for d in exc.diagnostics]
            ) from None

    def declare_layers(self, frame: Frame, outer_dims: dict[str, Any]) -> None:
        scope = Scope(frame.names, self.module_scope(frame.ref.module))
        hypers = {h.name for h in frame.ref.model.hypers}
        for member in frame.ref.model.members:
            if not isinstance(member, ast.LayerDecl):
                continue
            name = member.name.id
            if name in hypers:
                self.record(_shares_a_hyperparameter(frame, member))
                frame.names[name] = POISON  # its uses are not reported again
                continue
            if name in frame.names and (
                name in frame.instance.children or name in frame.first_dims
            ):
                self.record(
                    error(
                        "E-REDEFINED",
                        f"`{name}` is already declared in {frame.ref.name}",
                        member.name.span,
                        "declared again",
                    )
                )
                continue
            try:
                value = Evaluator(self, scope, None).eval(member.value)
                local = outer_exprs(name, value, expr_of)
                if local:  # a local size (or tuple of sizes): later sizes name it
                    try:  # the caller's expression for each name, earlier local sizes too
                        outer = {**frame.outer, **outer_dims}
                        frame.outer.update({n: substitute(e, outer) for n, e in local.items()})
                    except DimTooLarge:
                        raise DimTooLarge.at(member.value.span) from None
                    value = tag_as(value, name)
                frame.names[name] = self.declare(frame.instance, name, value, member)
            except DualnetError as exc:
                self.record(exc)
                frame.names[name] = POISON

    def declare(self, owner: ModelInstance, name: str, value: Any, member: ast.LayerDecl):
        if value is POISON or self.values.is_plain(value) or isinstance(value, Dim):
            return value  # a local compile-time constant
        if isinstance(value, FunctionRef):
            value = PartialSpec(value.op, [], {}, member.value.span)
        if isinstance(value, LayerHandle):
            raise error(
                "E-TYPE",
                f"`{name}` would be a second name for an existing layer",
                member.value.span,
                "already a layer",
                ["call the same layer twice to share its weights"],
            )
        if (
            isinstance(value, LayerSpec)
            and value.tie is not None
            and (value.span != member.value.span)
        ):
            raise error(
                "E-MODEL",
                "`tie=` is written on a layer declared on its own (`head = Linear(..., tie=wte)`)",
                value.span,
                notes=["not inside a Sequential or a conditional declaration"],
            )
        if not isinstance(value, LayerSpec | ModelSpec | SequentialSpec | PartialSpec):
            raise error(
                "E-TYPE",
                f"`{name}` must be a layer or a constant, found {describe(value)}",
                member.value.span,
            )
        return self.instantiate(owner, name, value)

    @staticmethod
    def make_free_tensor(owner: ModelInstance, layer: LayerInstance, spec: LayerSpec) -> None:
        """A Parameter or Buffer has its tensor from its declaration (forward only reads it)."""
        if owner.definition == "Sequential":
            raise error(
                "E-MODEL",
                f"a {spec.op.name} cannot be a step of a Sequential",
                spec.span,
                "not a layer",
                ["declare it in the model body and read it by name in forward"],
            )
        outputs, ctx = run_rule(spec.op, {}, {}, spec.spans, spec.span, dict(spec.config))
        layer.attrs, layer.params, layer.buffers = ctx.config, ctx.params, ctx.buffers
        layer.output_types, layer.built = tuple(outputs), True

    def instantiate(self, owner: ModelInstance, name: str, spec: Any) -> LayerHandle:
        path = f"{owner.path}.{name}" if owner.path else name
        if not isinstance(spec, ModelSpec):
            budget.spend("layer", 1, spec.span)
        if isinstance(spec, LayerSpec | PartialSpec):
            attrs = dict(spec.config) if isinstance(spec, LayerSpec) else {}
            layer = LayerInstance(path, spec.op.name, attrs, spec.span)
            if (
                isinstance(spec, LayerSpec)
                and spec.tie is not None
                and (owner.definition == "Sequential")
            ):
                raise error(
                    "E-MODEL",
                    "`tie=` is written on a layer declared on its own, not a step of a Sequential",
                    spec.span,
                )
            if isinstance(spec, LayerSpec) and spec.tie is not None:
                self.ties.append((layer, spec))
            if spec.op.name in FREE_TENSORS:
                self.make_free_tensor(owner, layer, spec)
            owner.children[name] = layer
            return LayerHandle(name, layer, spec)
        if isinstance(spec, SequentialSpec):
            seq = ModelInstance(path, "Sequential", {}, spec.span, items=spec.items)
            owner.children[name] = seq
            handle = LayerHandle(name, seq)
            names = spec.names or [str(i) for i in range(len(spec.children))]
            handle.children = [
                self.instantiate(seq, name, child)
                for name, child in zip(names, spec.children, strict=True)
            ]
            return handle
        frame = self.new_frame(spec, path)
        owner.children[name] = frame.instance
        return LayerHandle(name, frame.instance, frame)


def _shares_a_hyperparameter(frame: Frame, member: ast.LayerDecl) -> DualnetError:
    name = member.name.id
    hyper = next(h for h in frame.ref.model.hypers if h.name == name)
    return error(
        "E-REDEFINED",
        f"`{name}` is a hyperparameter of {frame.ref.name}: a layer cannot share its name",
        member.name.span,
        "also a hyperparameter",
        [
            f"the hyperparameter is declared at {hyper.span}",
            f"rename the hyperparameter (`num_{name}`): the layer keeps its state_dict name",
        ],
    )


class Tracer:
    """Builds one graph: values, nodes, and the forward statements that produce them."""

    def __init__(self, checker: Checker, frame: Frame | None, graph: Graph):
        self.checker = checker
        self.frame = frame
        self.graph = graph
        self._names: dict[str, int] = {}
        self._ids = 0
        self.iteration: tuple[int, ...] = ()  # of the forward loops being traced
        self.constants_only = False  # a computed Buffer's: no layers

    # -- values and nodes
    def new_value(self, t: TensorType, name: str, span: Span | None) -> Value:
        n = self._names.get(name, 0)
        self._names[name] = n + 1
        self._ids += 1
        return Value(self._ids, name if n == 0 else f"{name}_{n}", t, span)

    def rename(self, v: Value, name: str) -> None:
        """Give a freshly computed value the name it is assigned to."""
        if v.name != name and not v.name.startswith(name + "_"):
            n = self._names.get(name, 0)
            self._names[name] = n + 1
            v.name = name if n == 0 else f"{name}_{n}"

    def add_node(
        self,
        kind: str,
        op: str,
        inputs: list[Value],
        names: tuple[str, ...],
        attrs: dict,
        out_types: list[TensorType],
        span: Span,
        target=None,
        callee=None,
    ):
        budget.spend("operation", 1, span)
        outs = tuple(self.new_value(t, target or op, span) for t in out_types)
        self.graph.nodes.append(
            Node(kind, op, tuple(inputs), attrs, outs, span, target, callee, names, self.iteration)
        )
        wrapped = tuple(TensorValue(v) for v in outs)
        return wrapped[0] if len(wrapped) == 1 else wrapped

    def read_free_tensor(self, handle: LayerHandle, span: Span) -> TensorValue:
        """A Parameter or Buffer read by name in forward: a layer node without inputs."""
        self.require_model(span)
        layer = handle.target
        return self.add_node(
            "layer", layer.op, [], (), {}, list(layer.output_types), span, self.relative(handle)
        )

    def read_tensor(self, handle: LayerHandle, name: str, span: Span) -> TensorValue:
        """`wte.weight`, a tensor of a built-in layer read in forward (after the layer's first
        call, which fixes its shape): a layer node without inputs, `tensor` naming it."""
        layer = handle.target
        where = f"`{handle.name}.{name}`"
        if not layer.built:
            raise error(
                "E-MODEL",
                f"{where} is read before `{handle.name}` is called",
                span,
                "not made yet",
                [f"a layer's tensors are made at its first call: call `{handle.name}` first"],
            )
        spec = layer.params.get(name) or layer.buffers.get(name)
        if spec is None or name not in READABLE.get(layer.op, ()):
            readable = READABLE.get(layer.op, ())
            raise error(
                "E-TYPE",
                f"{describe(handle)} has no tensor `{name}` to read"
                if spec is None
                else f"{where} cannot be read in forward",
                span,
                notes=[
                    f"its tensors read in forward: {', '.join(readable)}"
                    if readable
                    else f"tensors read in forward: {_readable_list()}"
                ],
            )
        if name in layer.tied:
            raise error(
                "E-TYPE",
                f"{where} is tied to `{layer.tied[name]}`: read that one",
                span,
            )
        op = "Parameter" if name in layer.params else "Buffer"
        return self.add_node(
            "layer",
            op,
            [],
            (),
            {"tensor": name},
            [TensorType(spec.dtype, spec.shape)],
            span,
            self.relative(handle),
        )

    def tie(self, target: LayerInstance, spec: LayerSpec, ctx, span: Span) -> None:
        """Resolve `tie=` at the layer's first call: the owner is a built-in layer with a
        `weight` of the same shape, called before; its tensor is the one both use."""
        expr, scope = spec.tie
        owner = Evaluator(self.checker, scope, None).eval(expr)
        if owner is POISON:
            return
        if not (
            isinstance(owner, LayerHandle)
            and isinstance(owner.target, LayerInstance)
            and owner.target.op in TIEABLE
        ):
            raise error(
                "E-TYPE",
                f"`tie=` takes a {' or '.join(TIEABLE)} layer, found {describe(owner)}",
                expr.span,
            )
        if owner.target.tied:
            raise error(
                "E-MODEL",
                f"`{owner.name}` is tied itself: tie to `{owner.target.tied['weight']}`",
                expr.span,
            )
        if owner.target is target or not owner.target.built:
            raise error(
                "E-MODEL",
                f"`tie=` needs `{owner.name}` called before `{target.path}`",
                expr.span,
                "not made yet",
                ["the weight's shape is fixed by its owner's first call"],
            )
        if ctx.params.get("bias") is not None:
            raise error(
                "E-VALUE",
                "a tied Linear has no bias here: write bias=false",
                spec.span,
                notes=["only `weight` is shared; give the bias to a layer of its own"],
            )
        mine, theirs = ctx.params["weight"].shape, owner.target.params["weight"].shape
        if mine != theirs:
            raise error(
                "E-SHAPE",
                f"`{target.path}.weight` is {list(mine)}, but the weight of "
                f"`{owner.name}` it is tied to is {list(theirs)}",
                span,
                "shapes differ",
                ["a tied weight has the same shape, in PyTorch's layout"],
            )
        target.tied = {"weight": owner.target.tensor_key("weight")}

    def relative(self, handle: LayerHandle) -> str:
        """The handle's path from this graph's instance (a Sequential child iterated by its
        owner is `seq.0`)."""
        base, full = self.graph.instance.path, handle.target.path
        return full[len(base) + 1 :] if base else full

    def constant(self, value, dtype: DType, span: Span) -> TensorValue:
        why = out_of_range(value, dtype)
        if why is not None:
            raise error(
                "E-VALUE",
                why,
                span,
                f"out of range for {dtype}",
                [f'compute in a wider type: cast(x, "{_WIDER.get(dtype, "f64")}")'],
            )
        return self.add_node(
            "constant", "constant", [], (), {"value": value}, [TensorType(dtype, ())], span
        )

    # -- ops and layers
    def require_model(self, span: Span) -> None:
        """Layers and free tensors exist in a model's forward, not in a computed Buffer."""
        if self.constants_only:
            raise error(
                "E-MODEL",
                "a computed Buffer is made of built-in functions of constants",
                span,
                "a layer or free tensor",
                ["layers, parameters and buffers are read in forward"],
            )

    def op(self, name: str, args: list[Arg], keywords: dict[str, Arg], span: Span):
        """Apply a built-in function: bind, run its shape rule, add the node."""
        outputs, ctx, node_inputs, names = self.run_op(REGISTRY[name], args, keywords, span)
        return self.add_node("op", name, node_inputs, names, ctx.attrs, outputs, span)

    def run_op(
        self,
        op: OpDef,
        args: list[Arg],
        keywords: dict[str, Arg],
        span: Span,
        config: dict | None = None,
        config_spans: dict | None = None,
    ):
        values, spans = bind(op.name, op.signature, args, keywords, span, self.checker.tensor_type)
        inputs, node_inputs, names, attrs = self.split_inputs(op, values, spans)
        outputs, ctx = run_rule(op, inputs, attrs, {**(config_spans or {}), **spans}, span, config)
        return outputs, ctx, node_inputs, names

    def split_inputs(self, op: OpDef, values: dict, spans: dict):
        """Tensor arguments (constants made for scalars) apart from attributes."""
        tensors = [
            v
            for p in op.signature.params
            if p.is_tensor
            for v in (values[p.name] if p.kind == "tensors" else [values[p.name]])
            if isinstance(v, TensorValue)
        ]
        inputs, node_inputs, names, attrs = {}, [], [], {}
        for p in op.signature.params:
            v = values[p.name]
            if not p.is_tensor:
                attrs[p.name] = v
                continue
            if is_number(v):
                v = self.constant(v, _constant_dtype(v, tensors, spans[p.name]), spans[p.name])
            items = v if p.kind == "tensors" else [v]
            for i, item in enumerate(items):
                if item is None:
                    continue
                node_inputs.append(item.value)
                names.append(f"{p.name}.{i}" if p.kind == "tensors" else p.name)
            inputs[p.name] = (
                [x.value.type for x in v]
                if p.kind == "tensors"
                else None
                if v is None
                else v.value.type
            )
        return inputs, node_inputs, tuple(names), attrs

    def call_layer(
        self, handle: LayerHandle, args: list[Arg], keywords: dict[str, Arg], span: Span
    ):
        self.require_model(span)
        target = handle.target
        if isinstance(target, ModelInstance):
            if target.definition == "Sequential":
                return self.call_sequential(handle, args, keywords, span)
            return self.call_model(handle, args, keywords, span)
        spec = handle.spec
        if isinstance(spec, PartialSpec):  # a function child of a Sequential
            out = self.op(spec.op.name, [*args, *spec.args], {**spec.keywords, **keywords}, span)
            node = self.graph.nodes[-1]
            node.kind, node.target = "layer", self.relative(handle)
            if not target.built:
                target.attrs, target.built = dict(node.attrs), True
                target.output_types = tuple(v.type for v in node.outputs)
            return out
        op = REGISTRY[target.op]
        outputs, ctx, node_inputs, names = self.run_op(
            op, args, keywords, span, dict(spec.config), spec.spans
        )
        _check_parameter_dtype(target.path, op.name, ctx.params, node_inputs, names, span)
        if not target.built and spec.tie is not None:
            self.tie(target, spec, ctx, span)
        if not target.built:
            target.attrs = ctx.config
            target.params, target.buffers = ctx.params, ctx.buffers
            target.output_types, target.built = tuple(outputs), True
        else:
            for pname, p in ctx.params.items():
                if target.params[pname].shape != p.shape:
                    raise error(
                        "E-SHAPE",
                        f"layer `{target.path}` is called again with an "
                        f"input that needs {pname} {list(p.shape)}, but it was built "
                        f"with {list(target.params[pname].shape)}",
                        span,
                        "input differs from the first call",
                        ["calling a layer twice shares its weights, so its input sizes must agree"],
                    )
        return self.add_node(
            "layer",
            op.name,
            node_inputs,
            names,
            ctx.attrs,
            outputs,
            span,
            target=self.relative(handle),
        )

    def call_sequential(
        self, handle: LayerHandle, args: list[Arg], keywords: dict[str, Arg], span: Span
    ):
        if len(args) != 1 or keywords:
            raise error(
                "E-ARGS",
                f"Sequential `{handle.target.path}` takes one tensor, found "
                f"{len(args) + len(keywords)} arguments",
                span,
                notes=[
                    "for layers with several inputs, iterate: "
                    "`for layer in seq { h = layer(h, mask) }`"
                ],
            )
        x = args[0]
        if not isinstance(x.value, TensorValue):
            raise error("E-TYPE", f"Sequential expects a tensor, found {describe(x.value)}", x.span)
        seq = handle.target
        key = (id(seq), x.value.value.type)
        cache = self.checker.sequential_graphs
        graph = cache.get(key)
        if graph is None:
            graph = Graph(seq, [])
            inner = Tracer(self.checker, None, graph)
            v = inner.new_value(x.value.value.type, "x", x.span)
            graph.inputs.append(v)
            current = TensorValue(v)
            for child in handle.children:
                current = inner.call_layer(child, [Arg(current, x.span)], {}, span)
                if current is POISON:
                    return POISON
                if not isinstance(current, TensorValue):
                    raise error(
                        "E-TYPE",
                        f"layer `{child.target.path}` returns several "
                        "values and cannot be chained in a Sequential",
                        span,
                    )
            graph.outputs.append(current.value)
            seq.graphs.append(graph)
            cache[key] = graph
        return self.add_node(
            "call",
            "Sequential",
            [x.value.value],
            ("x",),
            {},
            [v.type for v in graph.outputs],
            span,
            target=self.relative(handle),
            callee=graph,
        )

    def call_model(
        self, handle: LayerHandle, args: list[Arg], keywords: dict[str, Arg], span: Span
    ):
        frame: Frame = handle.spec
        params = [a.name for a in frame.forward.args]
        if len(args) > len(params):
            raise error(
                "E-ARGS",
                f"{frame.ref.name} takes {len(params)} inputs, found {len(args)}",
                args[len(params)].span,
                "extra argument",
            )
        given = dict(zip(params, args, strict=False))
        for key, arg in keywords.items():
            if key not in params or key in given:
                raise error(
                    "E-ARGS",
                    f"{frame.ref.name}'s forward has no argument `{key}`"
                    if key not in params
                    else f"argument `{key}` given twice",
                    arg.keyword_span,
                )
            given[key] = arg
        optional = {a.name for a in frame.forward.args if a.default is not None}
        missing = [p for p in params if p not in given and p not in optional]
        if missing:
            raise error(
                "E-ARGS",
                f"{frame.ref.name}: missing input `{missing[0]}`",
                span,
                notes=[f"forward({', '.join(params)})"],
            )
        given = {p: a for p, a in given.items() if not (p in optional and a.value is None)}
        ordered = [given[p] for p in params if p in given]  # optional ones left out: none
        for a in ordered:
            if not isinstance(a.value, TensorValue):
                raise error(
                    "E-TYPE",
                    f"{frame.ref.name} expects tensors, found {describe(a.value)}",
                    a.span,
                )
        types = [given[p].value.value.type if p in given else None for p in params]
        where = f"{frame.ref.name} `{frame.instance.path}`"
        if len(self.checker._context) >= MAX_MODEL_NESTING:
            raise error(
                "E-DEPTH",
                f"models called inside each other more than {MAX_MODEL_NESTING} levels deep",
                span,
                "too deep",
            )
        self.checker._context.append(
            f"in {where}, called with " + ", ".join(str(t) for t in types if t is not None)
        )
        try:
            spans = [given[p].span if p in given else span for p in params]
            graph = self.checker.trace(frame, types, spans, span)
        finally:
            self.checker._context.pop()
        if graph is None:
            return POISON
        env = {**frame.outer, **frame.outer_dims[tuple(types)]}
        results = [
            TensorType(v.type.dtype, tuple(retag(d, env) for d in v.type.shape))
            for v in graph.outputs
        ]  # result sizes in the caller's terms
        return self.add_node(
            "call",
            frame.ref.name,
            [a.value.value for a in ordered],
            tuple(p for p in params if p in given),
            {},
            results,
            span,
            target=self.relative(handle),
            callee=graph,
        )

    # -- statements
    def run_body(self, body: tuple, scope: Scope, dims: dict) -> None:
        """Trace a forward body, recording errors."""
        before = self.checker.errors_met  # (a repeated error is met, though not reported)
        returned = self.block(body, scope, dims)
        if returned is None and self.checker.errors_met == before:
            self.checker.record(
                error(
                    "E-MODEL",
                    f"forward of {self.frame.ref.name} has no return",
                    self.frame.forward.span,
                    "no return",
                )
            )

    def block(self, body: tuple, scope: Scope, dims: dict):
        for i, stmt in enumerate(body):
            try:
                result = self.statement(stmt, scope, dims)
            except DualnetError as exc:
                self.checker.record(exc)
                for name in ast.assigned_names(stmt):
                    scope.names[name] = POISON
                continue
            if result is not None:
                if i + 1 < len(body):
                    self.checker.record(
                        error(
                            "E-MODEL",
                            "statement after return is never reached",
                            body[i + 1].span,
                            "unreachable",
                        )
                    )
                return result
        return None

    def statement(self, stmt, scope: Scope, dims: dict):
        budget.spend("statement", 1, stmt.span)
        ev = Evaluator(self.checker, scope, self)
        if isinstance(stmt, ast.Assign):
            value = ev.eval(stmt.value)
            self.assign(stmt, [t.id for t in stmt.targets], value, scope)
        elif isinstance(stmt, ast.Annotated):
            value = ev.eval(stmt.value)
            if isinstance(value, TensorValue):
                unify(
                    stmt.type,
                    value.value.type,
                    dims,
                    self.checker.dim_lookup(scope),
                    "E-ANNOTATION",
                    stmt.value.span,
                    f"`{stmt.target.id}`",
                )
                scope.names.update({k: v for k, v in dims.items() if k not in scope.names})
            elif value is not POISON:
                raise error(
                    "E-ANNOTATION",
                    f"`{stmt.target.id}` is annotated as a tensor but is {describe(value)}",
                    stmt.value.span,
                )
            self.assign(stmt, [stmt.target.id], value, scope)
        elif isinstance(stmt, ast.Return):
            return self.do_return(stmt, ev, scope, dims)
        elif isinstance(stmt, ast.For):
            iterable = ev.eval(stmt.iterable)
            if iterable is POISON:
                return None
            items = ev.iteration_items(iterable, stmt.iterable.span)
            outer = self.iteration
            self.graph.loops[(stmt.span, outer)] = tuple(
                ("child", i) if isinstance(item, LayerHandle) else item
                for i, item in enumerate(items)
            )
            try:
                for k, item in enumerate(items):
                    budget.spend("iteration", 1, stmt.iterable.span)
                    self.iteration = (*outer, k)
                    scope.names[stmt.var.id] = item
                    result = self.block(stmt.body, scope, dims)
                    if result is not None:
                        return result
            finally:
                self.iteration = outer
        elif isinstance(stmt, ast.If):
            cond = ev.eval(stmt.cond)
            if cond is POISON:
                return None
            taken = ev.want_bool(cond, stmt.cond.span, "`if`")
            self.graph.branches[(stmt.span, self.iteration)] = taken
            return self.block(stmt.body if taken else stmt.orelse, scope, dims)
        return None

    def assign(self, stmt, targets: list[str], value, scope: Scope) -> None:
        if len(targets) == 1:
            scope.names[targets[0]] = value
            if isinstance(value, TensorValue):
                self.rename(value.value, targets[0])
            return
        if value is POISON:
            for t in targets:
                scope.names[t] = POISON
            return
        if not isinstance(value, tuple | list) or len(value) != len(targets):
            count = len(value) if isinstance(value, tuple | list) else 1
            raise error(
                "E-ARGS",
                f"cannot unpack {count} value{'s' * (count != 1)} into {len(targets)} names",
                stmt.value.span,
                f"{count} value{'s' * (count != 1)}",
            )
        for t, v in zip(targets, value, strict=True):
            scope.names[t] = v
            if isinstance(v, TensorValue):
                self.rename(v.value, t)

    def do_return(self, stmt: ast.Return, ev: Evaluator, scope: Scope, dims: dict):
        values = [ev.eval(v) for v in stmt.values]
        if not values:
            raise error("E-MODEL", "forward must return at least one tensor", stmt.span)
        if any(v is POISON for v in values):
            return values
        for v, src in zip(values, stmt.values, strict=True):
            if not isinstance(v, TensorValue):
                raise error("E-TYPE", f"forward returns tensors, found {describe(v)}", src.span)
        declared = self.frame.forward.returns
        if declared is not None:
            items = declared.items if isinstance(declared, ast.TupleTypeExpr) else (declared,)
            if len(items) != len(values):
                raise error(
                    "E-ANNOTATION",
                    f"forward is declared to return {len(items)} "
                    f"value{'s' * (len(items) != 1)}, found {len(values)}",
                    stmt.span,
                )
            for texpr, v, src in zip(items, values, stmt.values, strict=True):
                unify(
                    texpr,
                    v.value.type,
                    dims,
                    self.checker.dim_lookup(scope),
                    "E-ANNOTATION",
                    src.span,
                    "the result",
                )
        self.graph.outputs.extend(v.value for v in values)
        if isinstance(declared, ast.TupleTypeExpr) and declared.names:
            self.graph.output_names = declared.names
        return values


def _check_defaults(fwd: ast.Forward) -> None:
    """A forward argument's default is `none` (it may be left out), and only optional
    arguments follow an optional one (as in Python)."""
    seen_optional = False
    for arg in fwd.args:
        if arg.default is None:
            if seen_optional:
                raise error(
                    "E-ARGS",
                    f"argument `{arg.name}` without a default follows an optional one",
                    arg.span,
                    "needs `= none`",
                )
            continue
        seen_optional = True
        if not (isinstance(arg.default, ast.Literal) and arg.default.value is None):
            raise error(
                "E-TYPE",
                f"the default of forward argument `{arg.name}` can only be `none`",
                arg.default.span,
                "not none",
                ["an optional input is left out by its caller: test it with `if x is none`"],
            )


def _outer_expr(value):
    """What a hyperparameter or dimension value is in the caller's own names (None: not a
    size, or a symbolic size whose expression there is unknown)."""
    return expr_of(value)


def _inner_type(arg: ast.Arg, t: TensorType, names: dict) -> TensorType:
    """An input's type seen from inside the model: an axis its signature names (a dimension
    or a hyperparameter) takes the name's tagged size; other concrete axes are numbers."""
    if not isinstance(arg.type, ast.TensorTypeExpr):
        return t
    shape = []
    for d, size in zip(arg.type.dims, t.shape, strict=True):
        if (
            isinstance(d, ast.DimName)
            and isinstance(names.get(d.name), int | Dim)
            and not isinstance(names.get(d.name), bool)
        ):
            shape.append(names[d.name])
        else:
            shape.append(untagged(size))  # the caller's names mean nothing in here
    return TensorType(t.dtype, tuple(shape))


def _constant_dtype(value, tensors: list[TensorValue], span: Span) -> DType:
    """A scalar next to tensors takes the dtype of the first non-bool tensor."""
    for t in tensors:
        dtype = t.value.type.dtype
        if dtype == DType.bool:
            continue
        if isinstance(value, float) and not dtype.is_float:
            raise error(
                "E-DTYPE",
                f"cannot combine a {dtype} tensor with the float {value:g}",
                span,
                "float scalar",
                ['cast the tensor first: cast(x, "f32")'],
            )
        return dtype
    return DType.f32 if isinstance(value, float) else DType.i64


def _check_scalar_type(texpr: ast.TypeExpr, value) -> tuple[bool | None, Any]:
    if isinstance(texpr, ast.NamedType):
        want = _SCALAR_TYPES.get(texpr.name)
        if want is None:
            return None, None
        if want is float and is_number(value):
            return True, float(value)
        if want is int and isinstance(value, Dim):
            return True, value
        ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
        return ok, value
    if isinstance(texpr, ast.TupleTypeExpr):
        if not isinstance(value, tuple | list) or len(value) != len(texpr.items):
            return False, None
        out = []
        for item_type, item in zip(texpr.items, value, strict=True):
            ok, v = _check_scalar_type(item_type, item)
            if not ok:
                return ok, None
            out.append(v)
        return True, tuple(out)
    return None, None


def _type_text(texpr: ast.TypeExpr) -> str:
    if isinstance(texpr, ast.NamedType):
        return texpr.name
    if isinstance(texpr, ast.TupleTypeExpr):
        return "(" + ", ".join(_type_text(t) for t in texpr.items) + ")"
    return "a tensor type"


def _fixed_by_first_call(frame: Frame, arg: ast.Arg, t: TensorType, fixed: list[str]) -> str:
    """A note: the sizes among `fixed` that `t` contradicts (else all of them) and the call
    of `frame`'s instance that fixed them."""
    axes = zip(getattr(arg.type, "dims", ()), t.shape, strict=False)
    differ = [
        d.name
        for d, size in axes
        if isinstance(d, ast.DimName)
        and d.name in fixed
        and untagged(size) != frame.first_dims[d.name]
    ]
    sizes = ", ".join(f"{n} = {frame.first_dims[n]}" for n in differ or fixed)
    where = f"{frame.ref.name} `{frame.instance.path}`"
    return f"{sizes} since the first call of {where}, at {frame.first_call}"


def require_hyper_name(ref: ModelRef, key: str, span: Span) -> None:
    """E-ARGS unless model `ref` has a hyperparameter `key` (the nearest suggested)."""
    names = [h.name for h in ref.model.hypers]
    if key not in names:
        hint = suggest(key, names)
        raise error(
            "E-ARGS",
            f"{ref.name} has no hyperparameter `{key}`",
            span,
            "unknown argument",
            [*([f"did you mean `{hint}`?"] if hint else []), f"{ref.name}{_hyper_sig(ref)}"],
        )


def _hyper_sig(ref: ModelRef) -> str:
    return "(" + ", ".join(h.name for h in ref.model.hypers) + ")"


def _check_parameter_dtype(path: str, op: str, params: dict, inputs, names, span) -> None:
    """A layer's float inputs must have its parameters' dtype (f32): no framework mixes them
    (PyTorch refuses, ONNX's type constraints forbid, Keras would silently compute in f32)."""
    dtypes = {p.dtype for p in params.values() if p.dtype.is_float}
    for value, name in zip(inputs, names, strict=True):
        if dtypes and value.type.dtype.is_float and value.type.dtype not in dtypes:
            want = next(iter(dtypes))
            raise error(
                "E-DTYPE",
                f"layer `{path}` ({op}) has {want} parameters, but its input "
                f"`{name}` is {value.type}",
                span,
                f"{want} expected",
                [f'cast it first: cast(x, "{want}")'],
            )

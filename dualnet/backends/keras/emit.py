"""Keras 3 source from the typed IR: one class per model definition (the entry model a
`keras.Model`, the others `keras.layers.Layer`), built by the shared
`python_class.ClassWriter` with Keras headers, `keras.Sequential`, and the lowering table.

Layouts (`layout.py`): every tensor expression the writer produces is a `Code` that knows
whether it holds the value channels-first (dualnet's order) or channels-last, and its rank;
the writer transposes only where an op needs the other layout. The entry model takes and
returns dualnet's order (or channels-last images with `layout="channels_last"`).
"""

from __future__ import annotations

import ast as pyast
import math
from pathlib import PurePath

from dualnet.backends.common import escape
from dualnet.backends.common.class_plan import ClassPlan, Unit
from dualnet.backends.common.naming import Namespace, mangled
from dualnet.backends.common.python_class import (
    ClassWriter,
    Emitter,
    Unsupported,
    conditional_part,
    fmt_literal,
    literal_source,
    render,
    sequence,
)
from dualnet.backends.keras import lowering
from dualnet.backends.keras.base_attrs import KERAS_BASE_ATTRS
from dualnet.backends.keras.layout import (
    AXIS_OPS,
    CF,
    CL,
    is_spatial,
    keeps_layout,
    prefers_channels_last,
    remap_attrs,
    remap_axis,
    to_cf,
    to_cl,
)
from dualnet.backends.keras.names import keras_attr, keras_name, keras_name_source
from dualnet.backends.keras.weights import CONVS, TRANSPOSED, keras_same, same_spans
from dualnet.backends.rows import lowering_row
from dualnet.diagnostics import error
from dualnet.ir.dims import Dim
from dualnet.ir.graph import LayerInstance, ModelInstance, Node
from dualnet.ir.tagged import Tagged, Written
from dualnet.ir.types import DType, TensorType
from dualnet.ops import REGISTRY
from dualnet.ops.free import FREE_TENSORS
from dualnet.syntax import ast
from dualnet.version import __version__

LAYOUTS = ("channels_first", "channels_last")
# A layer's tensor read in forward (`wte.weight`), from its Keras variable, in PyTorch's layout.
_READS = {
    ("Linear", "weight"): "ops.transpose({}.kernel)",
    ("Linear", "bias"): "{}.bias",
    ("Embedding", "weight"): "{}.embeddings",
    ("LayerNorm", "weight"): "{}.gamma",
    ("LayerNorm", "bias"): "{}.beta",
    ("RMSNorm", "weight"): "{}.scale",
}


class Code(str):
    """Generated source of a tensor expression, with its layout and rank; `layouts` holds
    one (layout, rank) per result when the expression gives a tuple."""

    layout: str
    rank: int
    layouts: tuple[tuple[str, int], ...]


def code(text: str, layout: str = CF, rank: int = 0, layouts=()) -> Code:
    out = Code(text)
    out.layout, out.rank, out.layouts = (layout if rank >= 3 else CF), rank, tuple(layouts)
    return out


def convert(src: str, want: str) -> str:
    """`src` (a Code; plain source is channels-first) in layout `want`."""
    have = getattr(src, "layout", CF)
    rank = getattr(src, "rank", 0)
    if have == want or rank < 3:
        return src
    perm = to_cl(rank) if want == CL else to_cf(rank)
    return code(f"ops.transpose({src}, {fmt_literal(perm)})", want, rank)


def _indirect(attr: str) -> bool:
    """Whether attribute `attr` is set and read by `setattr`/`getattr`: Python would mangle
    it (`__w`), or it is no identifier (a quoted name, `block1-0`)."""
    return mangled(attr) or not attr.isidentifier()


def _permuted(t: TensorType) -> TensorType:
    if len(t.shape) < 3:
        return t
    return TensorType(t.dtype, tuple(t.shape[i] for i in to_cl(len(t.shape))))


def _concrete(value):
    """An attribute as the value a parameterless step bakes in: this instance's value (a
    size that depends on the input stays symbolic and is read from it at run time)."""
    if isinstance(value, tuple | list):
        return type(value)(_concrete(v) for v in value)
    if isinstance(value, Tagged):
        return int(value)
    if isinstance(value, Written):  # its plain value: the step is written for this instance
        return (
            float(value)
            if isinstance(value, float)
            else str(value)
            if isinstance(value, str)
            else bool(value)
        )
    return value


# Function steps of a Sequential that Keras has a built-in layer for (exactly this meaning).
_BUILTIN_STEPS = {
    "relu": lambda a: "keras.layers.ReLU()",
    "sigmoid": lambda a: 'keras.layers.Activation("sigmoid")',
    "tanh": lambda a: 'keras.layers.Activation("tanh")',
    "silu": lambda a: 'keras.layers.Activation("silu")',
    "clamp": lambda a: "keras.layers.ReLU(max_value=6.0)" if (a["lo"], a["hi"]) == (0, 6) else None,
    "relu6": lambda a: "keras.layers.ReLU(max_value=6.0)",
    "hardsigmoid": lambda a: 'keras.layers.Activation("hard_sigmoid")',
    "hardswish": lambda a: 'keras.layers.Activation("hard_silu")',
    "mish": lambda a: 'keras.layers.Activation("mish")',
}


class KerasEmitter(Emitter):
    """Writes one Keras file for an entry model instance and everything it uses."""

    module_names = frozenset({"keras", "ops", "math", "_register"}) | set(lowering.HELPERS)
    # Keras fills `mask` and `training` itself; Layer.__init__ takes the keywords
    forward_reserved = frozenset({"self", "mask", "training"})
    init_reserved = frozenset(
        {
            "self",
            "super",
            "cls",
            "kwargs",
            "activity_regularizer",
            "trainable",
            "dtype",
            "autocast",
            "name",
            "input_dim",
            "input_shape",
            "inputs",
            "outputs",
        }
    )
    attr_reserved = KERAS_BASE_ATTRS

    def __init__(self, entry: ModelInstance, source: str, layout: str = "channels_first"):
        self.interface = layout
        self.steps: dict[str, str] = {}  # step class body → its name
        self.layouts: dict[int, tuple[tuple, tuple]] = {}  # id(instance) → (ins, outs)
        self.layer_layouts: dict[int, tuple] = {}  # id(LayerInstance) → its outputs' layouts
        super().__init__(entry, source)

    def start_round(self) -> None:
        self.steps = {}
        self.step_names = Namespace(
            self.module_names | self._program_names | {p.name for p in self.plans}
        )

    def emit(self) -> str:
        body = self.write_classes()
        steps = "\n\n\n".join(self.step_classes())
        # the runtime helpers it calls, `_unchecked` included
        helpers = lowering.helpers_needed(body + "\n\n" + steps)
        package = f"dualnet.{PurePath(self.source).stem}"
        interface = (
            "Inputs and outputs have PyTorch's axis order (images [B, C, H, W])"
            if self.interface == LAYOUTS[0]
            else "Image inputs and outputs are channels-last ([B, H, W, C]); other tensors\n"
            "keep PyTorch's axis order"
        )
        header = (
            f'"""Keras models generated by dualnet {__version__} from '
            f"{escape.docstring(self.source)}.\n\n"
            f"{interface};\ninside, convolutions, pooling and "
            "normalisation run channels-last.\nEdit the .dnet source and regenerate rather "
            'than editing this file.\n"""\n\n'
            "from __future__ import annotations\n\nimport keras\nfrom keras import ops\n\n"
            "_register = keras.saving.register_keras_serializable(package="
            f"{fmt_literal(package)})"
        )
        parts = [header, *(lowering.HELPERS[h].strip() for h in helpers), steps, body]
        return "\n\n\n".join(p.strip("\n") for p in parts if p) + "\n"

    def step_class(self, body: str, op: str) -> str:
        """The name of the step class with this `call` body (one per distinct body)."""
        if body not in self.steps:
            base = "".join(w.capitalize() for w in op.split("_")) + "Step"
            self.steps[body] = self.step_names.name(body, base)
        return self.steps[body]

    def step_classes(self) -> list[str]:
        return [
            f"@_register\nclass {name}(keras.layers.Layer):\n"
            f'    """A parameterless Sequential step."""\n\n'
            f"    def call(self, x):\n        return {body}"
            for body, name in self.steps.items()
        ]


class KerasClassWriter(ClassWriter):
    def __init__(self, emitter: KerasEmitter, plan: ClassPlan, unit: Unit):
        super().__init__(emitter, plan, unit)
        self.em: KerasEmitter = emitter
        self.step_key: str | None = None  # the Keras name source of the step being written
        self.is_entry = self.inst is emitter.entry
        self.in_layouts = self.argument_layouts([u.graph for u in self.units if u.graph])
        self.vars: dict[str, tuple[str, int]] = {}  # variable → (layout, rank)
        self.out_layouts: list[str] | None = None

    def argument_layouts(self, graphs: list) -> tuple:
        """One layout per forward argument, from the first trace that received it (an
        optional argument no trace received: channels-first); () where none ran."""
        if not graphs:
            return ()
        out = []
        for arg in self.forward.args:
            found = [
                (g, v)
                for g in graphs
                for a, v in zip(g.present(self.forward.args), g.inputs, strict=True)
                if a is arg
            ]
            out.append(self.input_layout(*found[0]) if found else CF)
        return tuple(out)

    def present_layouts(self) -> list[str]:
        """The layouts of the arguments this unit's trace received."""
        omitted = self.graph.omitted
        return [
            w
            for a, w in zip(self.forward.args, self.in_layouts, strict=True)
            if a.name not in omitted
        ]

    def input_layout(self, graph, value) -> str:
        """The entry model's interface layout, else what the body prefers."""
        if self.is_entry and self.em.interface == LAYOUTS[0]:
            return CF
        return CL if prefers_channels_last(graph, value) else CF

    # -- class
    def base_class(self) -> str:
        return "keras.Model" if self.is_entry else "keras.layers.Layer"

    def write(self):
        out = super().write()
        ins = self.in_layouts
        outs = tuple(self.out_layouts or ())
        for inst in self.plan.instances if self.graph is not None else ():  # (one never
            self.em.layouts[id(inst)] = (ins, outs)  # called has no layouts to give)
        out.text = "@_register\n" + out.text
        return out

    def extra(self) -> tuple:
        return (*super().extra(), self.in_layouts, tuple(self.out_layouts or ()))

    def constructor_header(self, params: list[str]) -> list[str]:
        policy = self.float_policy() if self.is_entry else None
        own = [f'    kwargs.setdefault("dtype", {fmt_literal(policy)})'] if policy else []
        if self.plan.name.startswith("_"):  # Keras's own name (`_net`) is no valid scope name
            own.append(
                f'    kwargs.setdefault("name", {fmt_literal(keras_name(self.decl.name.id))})'
            )
        return [
            f"def __init__({', '.join([*params, '**kwargs'])}) -> None:",
            *own,
            "    super().__init__(**kwargs)",
        ]

    def stored_names(self) -> list[str]:
        """Every constructor argument (get_config returns them)."""
        return self.hypers + self.plan.required_dims

    def layer_attr(self, name: str) -> str:
        return keras_attr(name)

    def init_body(self) -> list[str]:
        """The layers; the entry model then calls itself on symbolic inputs, which builds
        every layer: weights exist (to load, save or export) before the first real call."""
        lines = super().init_body()
        if not self.is_entry:
            return lines
        specs = []
        for value, layout in zip(self.graph.inputs, self.present_layouts(), strict=True):
            t = _permuted(value.type) if layout == CL else value.type
            shape = tuple(None if isinstance(d, Dim) else d for d in t.shape)
            specs.append(
                f"keras.KerasTensor({self.fmt_init(shape)}, "
                f"{fmt_literal(lowering.KERAS_DTYPES[t.dtype])})"
            )
        lines = [
            *lines,
            "# build every layer now: weights exist before the first call",
            f"self({', '.join(specs)})",
        ]
        policy = self.float_policy()
        if policy is None:
            return lines
        return [
            f"# the model computes in {policy}: its layers are made under that policy",
            "previous = keras.config.dtype_policy()",
            f"keras.config.set_dtype_policy({fmt_literal(policy)})",
            "try:",
            *(f"    {line}" for line in lines),
            "finally:",
            "    keras.config.set_dtype_policy(previous)",
        ]

    def float_policy(self) -> str | None:
        """The Keras dtype policy of a parameterless model whose floating inputs are all
        float16 or all float64 (Keras's default, float32, would compute them in float32);
        else None (dualnet's parameters are float32: such a model computes in float32)."""
        if self.inst.param_count or self.inst.buffer_count or self.graph is None:
            return None
        floats = {v.type.dtype for v in self.graph.inputs if v.type.dtype.is_float}
        if len(floats) != 1 or floats & {DType.f32, DType.bf16}:
            return None
        return lowering.KERAS_DTYPES[floats.pop()]

    def extra_methods(self, params: list[str]) -> list[str]:
        names = self.hypers + self.plan.required_dims  # the constructor's arguments
        config = (
            [
                "",
                "def get_config(self) -> dict:",
                "    return {",
                "        **super().get_config(),",
                *(f"        {fmt_literal(self.param(n))}: self.{self.stored(n)}," for n in names),
                "    }",
            ]
            if names
            else []
        )
        return [
            *config,
            "",
            "def build(self, input_shape) -> None:",
            '    """Nothing to create ahead: each layer builds at its first call (Keras records',
            '    the first input\'s shape, which TFLiteConverter.from_keras_model reads)."""',
        ]

    def layer_ref(self, name: str) -> str:
        return self.child_ref("self", name)

    def layer_read(self, name: str) -> str:
        """A Parameter or Buffer is read through its row's call (`self.scale.weight`), a
        tensor in dualnet's axis order."""
        child = self.inst.children.get(name)
        if isinstance(child, LayerInstance) and child.op in FREE_TENSORS:
            row = lowering_row(child.op, "keras", layer=True)
            return code(row.call(self.layer_ref(name), None), CF, len(child.output_types[0].shape))
        return self.layer_ref(name)

    def assign_layer(self, name: str, code: str) -> str:
        attr = keras_attr(name)
        if _indirect(attr):  # set without Python's name mangling (Keras tracks it as usual)
            return f"setattr(self, {fmt_literal(attr)}, {code})"
        return super().assign_layer(name, code)

    def iterable(self, e: ast.Expr, env: dict[str, str]) -> str:
        if isinstance(e, ast.Name) and e.id in self.layer_names and e.id not in self.bound:
            return f"{self.layer_ref(e.id)}.layers"  # a keras.Sequential's steps
        return super().iterable(e, env)

    def indexed_layer(self, seq: str, index: str) -> str:
        return f"{seq}.layers[{index}]"

    def named_child(self, seq: str, name: str) -> str:
        return f"{seq}.get_layer({fmt_literal(keras_name(name))})"

    def construct_layer(self, op: str, attrs: dict) -> str:
        return lowering_row(op, "keras", layer=True).construct(attrs, self.fmt_init)

    def forward_header(self, graph) -> str:
        args = [
            self.local(a.name) + ("=None" if a.default is not None else "")
            for a in self.forward.args
        ]
        if self.packs_inputs():
            args = [args[0], *(a if a.endswith("=None") else f"{a}=None" for a in args[1:])]
        return f"def call({', '.join(['self', *args, f'{lowering.TRAINING}=None'])}):"

    def packs_inputs(self) -> bool:
        """Whether `call` also takes the inputs as one tuple, as fit(), evaluate() and
        predict() pass a model's inputs: an entry model of several."""
        return self.is_entry and len(self.forward.args) > 1

    def forward_body(self) -> list[str]:
        lines = super().forward_body()
        if not self.packs_inputs():
            return lines
        args = [self.local(a.name) for a in self.forward.args]
        return [
            lines[0],
            f"    if {args[1]} is None:  # fit() and predict() pass one tuple",
            f"        {', '.join(args)} = {args[0]}",
            *lines[1:],
        ]

    def child_ref(self, parent: str, name: str, child=None) -> str:
        attr = keras_attr(name)
        return f"getattr({parent}, {fmt_literal(attr)})" if _indirect(attr) else f"{parent}.{attr}"

    def tensor_read(self, layer: str, op: str, tensor: str) -> str:
        return _READS[(op, tensor)].format(layer)

    def free_read(self, ref: str, layer: LayerInstance) -> str:
        return lowering_row(layer.op, "keras", layer=True).call(ref, None)

    def member(self, e: ast.Attribute, env: dict[str, str]) -> str:
        src = super().member(e, env)
        node = self.node_at(e.span, ("layer",))
        return src if node is None else code(src, CF, len(node.outputs[0].type.shape))

    def tied_layer(self, e: ast.Expr, layer: LayerInstance) -> str:
        """`_Tied(lambda: self.transformer.wte.embeddings, "Linear", "transformer.wte.weight")`:
        a layer using its owner's variable (`tie=`), read in PyTorch's layout."""
        owner = layer.tied["weight"].removesuffix(".weight")
        base = self.unit.instance.path
        rel = owner[len(base) + 1 :] if base else owner
        tie = next(k.value for k in e.keywords if k.name == "tie")
        read = self.tensor_read(self.expr(tie, {}), self.unit.instance.child(rel).op, "weight")
        return f"_Tied(lambda: {read}, {fmt_literal(layer.op)}, {fmt_literal(rel + '.weight')})"

    def layer_expr(self, e: ast.Expr, built: list, env: dict[str, str]) -> str:
        """The constructor, its Keras layer named as the .dnet layer (a Sequential's step by
        position); the steps of a generated Sequential are named by `positional_steps`."""
        if built and isinstance(built[0], LayerInstance) and built[0].tied:
            src = self.tied_layer(e, built[0])
        else:
            src = super().layer_expr(e, built, env)
        names = {b.path.rsplit(".", 1)[-1] for b in built}
        if len(names) == 1:
            return named(src, fmt_literal(keras_name(names.pop())))
        return named(src, self.step_key) if self.step_key else src  # a name per instance

    def child_expr(self, child, e: ast.Expr, env: dict[str, str]) -> str:
        return named(
            super().child_expr(child, e, env),
            fmt_literal(keras_name(child.path.rsplit(".", 1)[-1])),
        )

    def positional_steps(self, inner: str, var: str, iterable: str, gen, env) -> str:
        """`inner for var in iterable` of a generated Sequential, each step named by its
        position, or by the generator's key (`{f"layer{i}": ... for i in ...}`)."""
        if gen.key is not None:
            key = self.keras_key(gen.key, {**env, gen.var: var})
            return f"{named(inner, key)} for {var} in {iterable}"
        if _is_range_from_zero(iterable):
            return f"{named(inner, f'str({var})')} for {var} in {iterable}"
        index = self.init_ns.name(("generator index",), "index")  # (bracketed: not split)
        return f"{named(inner, f'str({index})')} for ({index}, {var}) in enumerate({iterable})"

    def dim_source(self, arg: str, axis: int) -> str:
        index = [a.name for a in self.graph.present(self.forward.args)].index(arg)
        value = self.graph.inputs[index]
        rank = len(value.type.shape)
        if self.present_layouts()[index] == CL:
            axis = remap_axis(axis, rank)
        return f"ops.shape({self.local(arg)})[{axis}]"

    # -- variables and statements
    def before_statements(self) -> None:
        for arg, value, layout in zip(
            self.graph.present(self.forward.args),
            self.graph.inputs,
            self.present_layouts(),
            strict=True,
        ):
            self.vars[arg.name] = (layout, len(value.type.shape))

    def hoisted(self, src: str, name: str) -> str:
        return code(
            name, getattr(src, "layout", CF), getattr(src, "rank", 0), getattr(src, "layouts", ())
        )

    def variable(self, name: str) -> str:
        layout, rank = self.vars.get(name, (CF, 0))
        return code(super().variable(name), layout, rank)

    def assigned(self, name: str, src: str, index: int) -> str:
        layouts = getattr(src, "layouts", ())
        if layouts:
            self.vars[name] = layouts[index] if index < len(layouts) else (CF, 0)
        else:
            self.vars[name] = (getattr(src, "layout", CF), getattr(src, "rank", 0))
        return self.local(name)

    def returned(self, codes: list[str]) -> list[str]:
        if self.is_entry:
            wants = [
                CL if self.em.interface == LAYOUTS[1] and getattr(c, "layout", CF) == CL else CF
                for c in codes
            ]
        else:
            wants = self.out_layouts or [getattr(c, "layout", CF) for c in codes]
        self.out_layouts = self.out_layouts or wants
        out = [convert(c, w) for c, w in zip(codes, self.out_layouts, strict=True)]
        names = self.graph.output_names if self.is_entry else None
        if names:  # the entry model's named outputs: a dict, as a functional model's
            return [
                "{"
                + ", ".join(f"{fmt_literal(n)}: {c}" for n, c in zip(names, out, strict=True))
                + "}"
            ]
        return out

    def loop_form(
        self, s: ast.For, env: dict[str, str], count: int
    ) -> tuple[list[str], list[str]] | None:
        """A loop body must leave each variable in the layout it found it in: the first
        iteration is written once to learn what it does; a variable it changes is converted
        before the loop (once), and if it still changes, back at the end of each iteration.
        Unrolled iterations (None) start from the layouts before the loop."""
        before = dict(self.vars)
        self.loop_body(s, env, 0)
        changed = {n: self.vars[n] for n in before if self.vars.get(n) != before[n]}
        prologue = [
            f"{self.local(n)} = {convert(code(self.local(n), *before[n]), info[0])}"
            for n, info in changed.items()
        ]
        start = {**before, **changed}
        bodies = []
        for k in range(count):
            self.vars = dict(start)
            body = self.loop_body(s, env, k)
            bodies.append(
                body
                + [
                    f"    {self.local(n)} = {convert(self.variable(n), start[n][0])}"
                    for n in start
                    if self.vars.get(n) != start[n]
                ]
            )
        if all(b == bodies[0] for b in bodies):
            self.vars = start
            return prologue, bodies[0]
        self.vars = before
        return None

    def if_statement(self, s, env: dict[str, str], where: str) -> list[str]:
        """Both branches leave each variable in one layout (dualnet's, where they differ)."""
        before = dict(self.vars)
        cond = self.const_forward(s.cond, env)
        body = self.branch_block(s, True, env)
        after_body, self.vars = self.vars, dict(before)
        orelse = self.branch_block(s, False, env) if s.orelse else []
        after_else = self.vars
        # a branch no instance takes refuses the call: what it leaves does not matter
        if self.taking(s.span, True) is None:
            after_body = after_else
        elif s.orelse and self.taking(s.span, False) is None:
            after_else = after_body
        merged, fix_body, fix_else = {}, [], []
        for name in [*after_body, *(n for n in after_else if n not in after_body)]:
            a, b = after_body.get(name), after_else.get(name)
            if a == b or a is None or b is None:
                merged[name] = a or b
                continue
            merged[name] = (CF, a[1])
            for info, fixes in ((a, fix_body), (b, fix_else)):
                fixes.append(
                    f"    {self.local(name)} = {convert(code(self.local(name), *info), CF)}"
                )
        self.vars = merged
        lines = [f"if {cond}:  # {where}", *body, *fix_body]
        if s.orelse or fix_else:
            lines += ["else:", *(orelse or ["    pass"]), *fix_else]
        return lines

    def conditional(self, then: str, cond: str, orelse: str) -> str:
        want = getattr(then, "layout", CF)
        if want != getattr(orelse, "layout", CF):
            want = CF
        rank = max(getattr(then, "rank", 0), getattr(orelse, "rank", 0))
        return code(
            f"{conditional_part(convert(then, want))} if {cond} else {convert(orelse, want)}",
            want,
            rank,
        )

    # -- ops and layers
    def keras_call(
        self, node: Node, codes: dict, attrs: dict, permuted: bool, fmt=None
    ) -> lowering.KerasCall:
        in_types = self.input_types(node)
        out_types = [v.type for v in node.outputs]
        if permuted:
            in_types = {
                k: ([_permuted(t) for t in v] if isinstance(v, list) else _permuted(v))
                for k, v in in_types.items()
            }
            out_types = [_permuted(t) for t in out_types]
        return lowering.KerasCall(
            codes, attrs, in_types, out_types, fmt or self.fmt_forward, self.number_inputs(node)
        )

    def layouts_for(self, node: Node, codes: dict, attrs: dict) -> tuple[str, dict]:
        """The layout `node` runs in, its inputs converted to it, and its attributes (axes
        remapped when it runs channels-last)."""
        rank = len(node.inputs[0].type.shape) if node.inputs else 0
        out_rank = len(node.outputs[0].type.shape) if node.outputs else 0
        if is_spatial(node.op, rank):
            return CL, attrs
        flat = [
            c for v in codes.values() if v is not None for c in (v if isinstance(v, list) else [v])
        ]
        channels_last = [c for c in flat if getattr(c, "layout", CF) == CL]
        full = all(getattr(c, "rank", 0) in (0, out_rank) for c in flat)
        if not (channels_last and full):
            return CF, attrs
        if keeps_layout(node.op):
            return CL, attrs
        remapped = remap_attrs(node.op, attrs, rank) if node.op in AXIS_OPS else None
        return (CF, attrs) if remapped is None else (CL, remapped)

    def run_in(self, node: Node, codes: dict, attrs: dict) -> tuple[str, dict, dict]:
        layout, attrs = self.layouts_for(node, codes, attrs)
        converted = {
            k: (
                [convert(c, layout) for c in v]
                if isinstance(v, list)
                else None
                if v is None
                else convert(v, layout)
            )
            for k, v in codes.items()
        }
        return layout, converted, attrs

    def result(self, node: Node, src: str, layout: str) -> Code:
        """The node's result source, each output's layout known (rank-2 results are CF)."""
        outs = [(layout if len(v.type.shape) >= 3 else CF, len(v.type.shape)) for v in node.outputs]
        if len(outs) == 1:
            return code(src, *outs[0])
        return code(src, CF, 0, outs)

    def lower(self, node: Node, codes: dict, attrs: dict | None = None) -> str:
        attrs = dict(node.attrs) if attrs is None else attrs
        layout, codes, attrs = self.run_in(node, codes, attrs)
        permuted = layout == CL and not is_spatial(node.op, len(node.inputs[0].type.shape))
        row = lowering_row(node.op, "keras", layer=False)
        src = row.lower(self.keras_call(node, codes, attrs, permuted))
        return self.result(node, src, layout)

    def layer_call(self, node: Node, target: str, codes: dict, attrs: dict) -> str:
        layout, codes, attrs = self.run_in(node, codes, attrs)
        permuted = layout == CL and not is_spatial(node.op, len(node.inputs[0].type.shape))
        call = self.keras_call(node, codes, attrs, permuted)
        src = lowering_row(node.op, "keras", layer=True).call(target, call)
        layers = self.instances_child(node.target)
        if any(
            isinstance(layer, ModelInstance)
            or lowering_row(layer.op, "keras", layer=True).trains(layer.attrs)
            for layer in layers
        ):  # another instance declared a layer that trains here
            src = with_keyword(src, lowering.TRAINING, lowering.TRAINING, target)
        result = self.result(node, src, layout)
        outs = [x for x, _ in result.layouts] if result.layouts else [result.layout]
        self.record(layers, outs)
        return result

    def record(self, layers: list, outs) -> None:
        """The layouts of the outputs of these layers (one per class instance), for
        per-layer comparisons."""
        for layer in layers:
            self.em.layer_layouts[id(layer)] = tuple(outs)

    def instances_child(self, path: str) -> list:
        """The layer or model at `path` in every instance of the class that has one."""
        out = []
        for inst in self.plan.instances:
            try:
                out.append(inst.child(path))
            except KeyError:
                continue
        return out

    def model_call(self, node: Node, target: str, args: list[str], keywords: dict[str, str]) -> str:
        ins, outs = self.callee_layouts(node)
        names = self.callee_args(node)
        positional = [convert(a, w) for a, w in zip(args, ins, strict=False)]
        order = list(names)  # the callee's forward arguments: a keyword's layout by name
        kw = [
            f"{names.get(k, k)}={convert(v, ins[order.index(k)] if k in order else CF)}"
            for k, v in keywords.items()
        ]
        kw.append(f"{lowering.TRAINING}={lowering.TRAINING}")
        src = f"{target}({', '.join(positional + kw)})"
        ranks = [len(v.type.shape) for v in node.outputs]
        if len(outs) == 1:
            return code(src, outs[0], ranks[0])
        return code(src, CF, 0, list(zip(outs, ranks, strict=True)))

    def callee_layouts(self, node: Node) -> tuple[tuple, tuple]:
        """(input layouts, output layouts) of the child model, Sequential or step a call
        node reaches."""
        layouts = self.em.layouts.get(id(self.layer_of(node)))
        if layouts is None:
            raise Unsupported("the layout of this call is unknown", node.span)
        return layouts

    # -- Sequential
    def sequential_expr(self, e: ast.Call, built: list, env: dict[str, str]) -> str:
        """A keras.Sequential: each dualnet step, with the steps Keras needs between them
        (layout conversions, a convolution's explicit padding). A generator stays one
        expression where every step is written alike and nothing goes between them."""
        seq = built[0]
        if not seq.children:  # Keras cannot build a Sequential without steps
            for inst in built:
                self.em.layouts[id(inst)] = ((CF,), (CF,))
            return "keras.layers.Identity()"
        generated = bool(e.args) and isinstance(e.args[0], ast.Generator)
        given = e.args[0] if e.args and isinstance(e.args[0], ast.NamedSteps) else None
        keys = self.step_keys(e, seq, env)
        cls = "_NamedSequential" if keys else "keras.Sequential"
        args = given.steps if given else e.args
        steps = self.generator_steps(e, built, env) if generated else None
        if not seq.graphs:  # only iterated or indexed (`for layer in seq`, `seq[i]`)
            if isinstance(steps, tuple):
                return f"{cls}([{self.positional_steps(*steps, e.args[0], env)}])"
            if steps is not None:  # a generator's steps, each written out
                return f"{cls}({sequence(steps, False)})"
            items = []
            for i, arg in enumerate(args):
                self.step_key = keys[i] if keys else None
                items.append(self.layer_expr(arg, [s.step(i) for s in built], env))
            self.step_key = None
            return f"{cls}({sequence(items, False)})"
        graph = seq.graphs[0]
        first = CL if prefers_channels_last(graph, graph.inputs[0]) else CF
        current = first
        items: list[str] = []
        uniform = isinstance(steps, tuple)
        for index, node in enumerate(graph.nodes):
            child = seq.step(index)
            children = [s.step(index) for s in built if s.step(index) is not None]
            if generated:
                arg = e.args[0].element
                step_env = {**env, e.args[0].var: literal_source(seq.items[index])}
            else:
                arg, step_env = args[index], env
            self.step_key = keys[index] if keys else None
            if isinstance(child, ModelInstance):  # written first: its layouts are then known
                step = [
                    self.child_expr(child, arg, step_env)
                    if generated
                    else self.layer_expr(arg, children, step_env)
                ]
            ins, outs = self.step_layouts(child, node, current)
            rank = len(node.inputs[0].type.shape)
            if ins[0] != current and rank >= 3:
                if index:
                    perm = (to_cl if ins[0] == CL else to_cf)(rank)[1:]
                    items.append(f"keras.layers.Permute({fmt_literal(perm)})")
                    uniform = False
                else:
                    first = ins[0]
            if not isinstance(child, ModelInstance):
                step = self.step_expr(arg, children, step_env, current, node)
                if rank == 1 and child.op == "Linear":  # Dense wants a batch axis
                    step = ["_BatchAxis(True)", *step, "_BatchAxis(False)"]
                uniform = uniform and len(step) == 1
            items += step
            current = outs[0] if len(node.outputs[0].type.shape) >= 3 else CF
            self.record(children, (current,))
        self.step_key = None
        if uniform:
            items = [self.positional_steps(*steps, e.args[0], env)]
        for inst in built:
            self.em.layouts[id(inst)] = ((first,), (current,))
        return f"{cls}({sequence(items, False)})"

    def step_keys(self, e: ast.Call, seq: ModelInstance, env: dict[str, str]) -> list[str]:
        """Source of each step's Keras name in a Sequential of named children (`{...}`);
        empty for one numbered `0, 1, 2, ...`."""
        arg = e.args[0] if e.args else None
        if isinstance(arg, ast.NamedSteps):
            return [self.keras_key(k, env) for k in arg.keys]
        if isinstance(arg, ast.Generator) and arg.key is not None:
            return [
                self.keras_key(arg.key, {**env, arg.var: literal_source(item)})
                for item in seq.items
            ]
        return []

    def keras_key(self, key: ast.Expr, env: dict[str, str]) -> str:
        """Source of the Keras name of a step named by `key` (see `keras_name`)."""
        if isinstance(key, ast.Literal):
            return fmt_literal(keras_name(key.value))
        code = self.const_expr(key, env)
        if isinstance(key, ast.FString):
            first = key.parts[0] if isinstance(key.parts[0], str) else None
            return keras_name_source(code, first)
        return f'"." + ({code})'

    def step_layouts(self, child, node: Node, current: str) -> tuple[tuple, tuple]:
        rank = len(node.inputs[0].type.shape)
        if isinstance(child, ModelInstance):
            if child.definition == "Sequential":
                graph = child.graphs[0]
                first = CL if prefers_channels_last(graph, graph.inputs[0]) else CF
                return (first,), self.em.layouts.get(id(child), ((first,), (first,)))[1]
            return self.em.layouts[id(child)]
        if REGISTRY[child.op].is_layer:
            if is_spatial(child.op, rank):
                return (CL,), (CL,)
            if keeps_layout(child.op):
                return (current,), (current,)
            return (CF,), (CF,)
        # a function step converts inside its own call
        layout, _ = self.layouts_for(node, {"x": code("x", current, rank)}, dict(node.attrs))
        return (current,), (layout,)

    def step_expr(self, arg, children: list, env, current: str, node: Node) -> list[str]:
        """A Sequential step, with the padding (before) or cropping (after) steps a
        convolution's call would apply in forward."""
        child = children[0]
        if isinstance(child, LayerInstance) and not REGISTRY[child.op].is_layer:
            step = self.function_step(child, node, current)
            return [named(step, fmt_literal(keras_name(child.path.rsplit(".", 1)[-1])))]
        step = self.layer_expr(arg, children, env)
        if not isinstance(child, LayerInstance) or child.op not in CONVS:
            return [step]
        attrs = self.common_attrs(children)
        if child.op in TRANSPOSED:  # rows for an output padding beyond the stride
            spread, padding = lowering.keras_transposed_padding(attrs)
            n = len(attrs["pads"])
            rows, crops = tuple((0, r) for r in padding.rows), padding.crops
            if n == 1:  # ZeroPadding1D / Cropping1D take one pair
                rows, crops = rows[0], crops[0]
            widen = [f"keras.layers.ZeroPadding{n}D({self.fmt_init(rows)})"]
            crop = any(p for pair in padding.crops for p in pair)
            return [
                *([f"_ZeroUpsample({self.fmt_init(spread)})"] if spread else []),
                *(widen if any(padding.rows) else []),
                step,
                *([f"keras.layers.Cropping{n}D({self.fmt_init(crops)})"] if crop else []),
            ]
        if lowering.strided_pointwise(attrs):  # (TensorFlow's oneDNN bug)
            pads, attrs = lowering.pointwise_unpadded(attrs)
            crop = f"_ReadPart({self.fmt_init(tuple(attrs['stride']))})"
            padding = self.padded_step({**attrs, "pads": pads}, step)[:-1] if pads else []
            return [*padding, crop, *self.conv_steps(attrs, step, children, node)]
        return self.conv_steps(attrs, step, children, node)

    def conv_steps(self, attrs: dict, step: str, children: list, node: Node) -> list[str]:
        """A convolution step with its padding, and the widened column of `onednn_conv_bug`."""
        n = len(attrs["pads"])
        if lowering.onednn_conv_bug(attrs, node.outputs[0].type.shape[-1]):
            last = ((0, 0),) * (n - 1)  # one more output column, dropped again
            steps = [
                f"keras.layers.ZeroPadding{n}D({self.fmt_init((*last, (0, attrs['stride'][-1])))})",
                *self.padded_step(attrs, step),
                f"keras.layers.Cropping{n}D({self.fmt_init((*last, (0, 1)))})",
            ]
        else:
            steps = self.padded_step(attrs, step)
        return steps + self.sizes_step(children, node)

    def sizes_step(self, children: list, node: Node) -> list[str]:
        """A `_Shaped` step after a convolution step whose known output sizes TensorFlow's
        dilated convolution loses (in some instance), that a later layer builds from."""
        in_shape, out_shape = node.inputs[0].type.shape, node.outputs[0].type.shape
        if not any(lowering.dilation_loses_sizes(c.attrs, in_shape, out_shape) for c in children):
            return []

        def known(d) -> bool:  # and the same in every instance of this class
            return isinstance(d, int) and not (isinstance(d, Tagged) and self.symbolic_in(d.expr))

        last = _permuted(node.outputs[0].type).shape
        sizes = ", ".join(self.fmt_init(d) if known(d) else "None" for d in last)
        return [f"_Shaped(({sizes}))"]  # rank 3 or more

    def padded_step(self, attrs: dict, step: str) -> list[str]:
        """A convolution step with the padding step its call would apply in forward."""
        pads = tuple(attrs["pads"])
        n = len(pads)
        if keras_same(attrs):
            return [step]
        if any(pair is None for pair in pads):  # "same" that Keras's padding="same" misreads
            return [
                f"_PadSame({self.fmt_init(same_spans(attrs))}, {self.fmt_init(attrs['stride'])})",
                step,
            ]
        if not any(p for pair in pads for p in pair):
            return [step]
        widths = pads[0] if n == 1 else pads
        padding = f"keras.layers.ZeroPadding{n}D({self.fmt_init(widths)})"
        unit = lowering.unit_strides(attrs, self.fmt_init)
        if unit:  # Keras's "same" where the strides are 1: pad only the other instances
            return [f"*([] if {unit} else [{padding}])", step]
        return [padding, step]

    def function_module(self, layer: LayerInstance) -> str:
        """A function declared as a layer (`act = gelu`): a step that takes dualnet's order."""
        node = next(
            n
            for inst in self.instances
            for g in inst.graphs
            for n in g.nodes
            if n.kind == "layer" and inst.child(n.target) is layer
        )
        out = self.step_layouts(layer, node, CF)[1]
        self.em.layouts[id(layer)] = ((CF,), out)
        return self.function_step(layer, node, CF)

    def function_step(self, layer: LayerInstance, node: Node, current: str) -> str:
        """A parameterless function as a Sequential step: a Keras layer with exactly its
        meaning, else a small generated layer class whose `call` is the op's lowering."""
        attrs = {k: _concrete(v) for k, v in layer.attrs.items()}
        builtin = _BUILTIN_STEPS.get(layer.op)
        if builtin is not None and builtin(attrs):
            return builtin(attrs)
        rank = len(node.inputs[0].type.shape)
        x = code("x", current, rank)
        layout, codes, attrs = self.run_in(node, {"x": x}, attrs)
        permuted = layout == CL and not is_spatial(node.op, rank)
        seen = node.inputs[0].type
        seen = _permuted(seen) if current == CL else seen

        def size(name: str) -> str:  # a symbolic size, read from the step's input
            axis = next(
                (i for i, d in enumerate(seen.shape) if isinstance(d, Dim) and d.symbol == name),
                None,
            )
            if axis is None:
                raise Unsupported(f"cannot find the size `{name}` in a Sequential step", node.span)
            return f"ops.shape(x)[{axis}]"

        def fmt(v) -> str:
            if isinstance(v, Dim):  # an input axis, or a run of them merged (flatten)
                for i in range(len(seen.shape)):
                    for j in range(i + 1, len(seen.shape) + 1):
                        if math.prod(seen.shape[i:j]) == v:
                            return " * ".join(f"ops.shape(x)[{k}]" for k in range(i, j))
                return render(v, size)
            if isinstance(v, tuple | list):
                return sequence([fmt(x) for x in v], isinstance(v, tuple))
            return fmt_literal(v)

        call = self.keras_call(node, codes, attrs, permuted, fmt=fmt)
        body = lowering_row(layer.op, "keras", layer=False).lower(call)
        return f"{self.em.step_class(body, layer.op)}()"


KerasEmitter.writer = KerasClassWriter


def with_keyword(src: str, key: str, value: str, callee: str | None = None) -> str:
    """Call source `src` with the keyword argument `key=value` (source) added: unless it has
    it already, or is no call (of `callee`, when given)."""
    tree = pyast.parse(src, mode="eval").body
    if (
        not isinstance(tree, pyast.Call)
        or any(k.arg == key for k in tree.keywords)
        or (callee is not None and pyast.unparse(tree.func) != callee)
    ):
        return src
    return f"{src[:-1]}{', ' if tree.args or tree.keywords else ''}{key}={value})"


def named(src: str, name: str) -> str:
    """Layer constructor source with its Keras name (source) added; a conditional's branches
    are named already, and `_unchecked` builds nothing."""
    if src.startswith("_unchecked("):
        return src
    return with_keyword(src, "name", name)


def _is_range_from_zero(src: str) -> bool:
    """Whether `src` is `range(n)`, whose values are their own positions."""
    tree = pyast.parse(src, mode="eval").body
    return (
        isinstance(tree, pyast.Call)
        and isinstance(tree.func, pyast.Name)
        and tree.func.id == "range"
        and len(tree.args) == 1
    )


def emit_keras(entry: ModelInstance, source: str, layout: str = "channels_first"):
    """(generated source, entry class name); a construct the backend can't write is a
    diagnostic."""
    try:
        emitter = KerasEmitter(entry, source, layout)
        return emitter.emit(), emitter.plan_of(entry).name
    except Unsupported as exc:
        raise error("E-BACKEND", f"Keras backend: {exc}", exc.span or entry.span) from None


def output_layouts(entry: ModelInstance, source: str, layout: str = "channels_first") -> dict:
    """The layout (CF or CL) of each output of every layer and sub-model the generated Keras
    model holds, by dualnet path: what a per-layer comparison must undo."""
    emitter = KerasEmitter(entry, source, layout)
    emitter.emit()
    out = {}

    def walk(instance: ModelInstance) -> None:
        for child in instance.children.values():
            if id(child) in emitter.layer_layouts:
                out[child.path] = emitter.layer_layouts[id(child)]
            elif id(child) in emitter.layouts:  # a sub-model's (ins, outs)
                out[child.path] = emitter.layouts[id(child)][1]
            if isinstance(child, ModelInstance):
                walk(child)

    walk(entry)
    return out

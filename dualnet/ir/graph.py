"""The typed IR: a hierarchical dataflow graph per model instance.

A `ModelInstance` owns its layers (built-in `LayerInstance`s and child `ModelInstance`s, in
declaration order) and one `Graph` per distinct call signature. A graph is a list of `Node`s
of four kinds:

- `op`: a built-in function (`relu`, `add`, `flatten`, ...) — no parameters;
- `layer`: a call of a built-in layer owned by the instance (`target` names it);
- `call`: a call of a child model instance (`target` names it, `callee` is its graph);
- `constant`: a scalar literal as a 0-d tensor (`attrs["value"]`).

Every node and value keeps the span of the source it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dualnet.diagnostics import Span
from dualnet.ir.types import DType, TensorType


@dataclass(eq=False, slots=True)
class Value:
    id: int
    name: str
    type: TensorType
    span: Span | None


@dataclass(eq=False, slots=True)
class Node:
    kind: str  # op | layer | call | constant
    op: str  # registry name, or the callee's model name for calls
    inputs: tuple[Value, ...]
    attrs: dict[str, Any]
    outputs: tuple[Value, ...]
    span: Span | None
    target: str | None = None  # layer path relative to the graph's instance ("encoder.0")
    callee: Graph | None = None
    input_names: tuple[str, ...] = ()  # the signature parameter each input binds ("xs.0")
    # The iteration of each enclosing forward `for` loop (outermost first) it was traced in:
    # with its span, it says which source expression and which unrolled copy made the node.
    iteration: tuple[int, ...] = ()


def by_parameter(node: Node, items) -> dict[str, Any]:
    """`items` (one per input of `node`: values, their types, their names in some backend)
    keyed by signature parameter; the inputs of a `tensors` parameter (`xs.0`, `xs.1`)
    become one list `xs`."""
    out: dict[str, Any] = {}
    for name, item in zip(node.input_names, items, strict=True):
        base, _, index = name.partition(".")
        if index:
            out.setdefault(base, []).append(item)
        else:
            out[base] = item
    return out


def state_key(path: str, name: str) -> str:
    """The state_dict name of tensor `name` of the layer at `path`; a free `Parameter` or
    `Buffer` is its own only tensor, named "" (so its state_dict name is its path)."""
    return f"{path}.{name}" if name and path else name or path


@dataclass(frozen=True, slots=True)
class Init:
    """How a tensor is initialised: a scheme name and its arguments (PyTorch's definitions)."""

    scheme: str  # kaiming_uniform | uniform | normal | zeros | ones | xavier_uniform | ...
    args: tuple[tuple[str, Any], ...] = ()  # numbers; a "table": its values, row-major

    def __str__(self) -> str:
        if self.scheme == "table":  # values computed at compile time (a Buffer(expr))
            return f"table({len(self.args[0][1])} values)"
        args = ", ".join(f"{k}={v:g}" for k, v in self.args)
        return f"{self.scheme}({args})"


@dataclass(frozen=True, slots=True)
class ParamSpec:
    shape: tuple[int, ...]
    dtype: DType
    init: Init
    trainable: bool = True

    @property
    def numel(self) -> int:
        return math.prod(map(int, self.shape))

    def __str__(self) -> str:
        return f"{TensorType(self.dtype, self.shape)} {self.init}"


@dataclass(eq=False)
class LayerInstance:
    path: str  # full state_dict prefix from the entry model: "layer1.0.conv1"
    op: str  # registry name of the layer: "Conv2d"
    attrs: dict[str, Any]  # resolved construction attributes, sizes included
    span: Span | None
    params: dict[str, ParamSpec] = field(default_factory=dict)
    buffers: dict[str, ParamSpec] = field(default_factory=dict)
    output_types: tuple[TensorType, ...] = ()  # at the first call
    built: bool = False
    # Parameters tied to another layer's (`tie=`): name → the owner's state_dict name. The
    # one tensor is the owner's; this layer's name for it is an alias (not counted, not
    # in the weight file, accepted on load when equal).
    tied: dict[str, str] = field(default_factory=dict)

    @property
    def param_count(self) -> int:
        return sum(p.numel for n, p in self.params.items() if p.trainable and n not in self.tied)

    def tensor_key(self, name: str) -> str:
        """The state_dict name holding tensor `name`: the owner's where it is tied."""
        return self.tied.get(name) or state_key(self.path, name)

    @property
    def buffer_count(self) -> int:
        return sum(b.numel for b in self.buffers.values())


@dataclass(eq=False)
class Graph:
    instance: ModelInstance
    inputs: list[Value]
    nodes: list[Node] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    # Each forward `for` loop the trace ran, by (span of the loop, iteration of the loops
    # around it): the items its variable took, in order — compile-time values, or child
    # indices (`("child", i)`) for a loop over a Sequential.
    loops: dict[tuple, tuple] = field(default_factory=dict)
    # Each forward `if` statement and conditional expression the trace ran, by (its span,
    # the iteration of the loops around it): whether it took its first branch; for a
    # `max`/`min` of symbolic sizes, the index of the argument it is.
    branches: dict[tuple, bool | int] = field(default_factory=dict)
    # Optional forward arguments this trace's caller left out (`none` in the body); the
    # other arguments are `inputs`, in order.
    omitted: list[str] = field(default_factory=list)
    # The names of the outputs, where the signature names them (`-> (logits: ..., ...)`).
    output_names: tuple[str, ...] | None = None

    def output_labels(self) -> list[str]:
        """The outputs' names: as the signature names them, else `output` (one) or
        `output_0`, `output_1`, ... (the names ONNX graphs, `run` and `parity` use)."""
        if self.output_names:
            return list(self.output_names)
        n = len(self.outputs)
        return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]

    def present(self, args) -> list:
        """The forward's arguments (syntax) this trace received, in order."""
        return [a for a in args if a.name not in self.omitted]


@dataclass(eq=False)
class ModelInstance:
    path: str  # "" for the entry model
    definition: str  # model name, or "Sequential"
    hyper: dict[str, Any]
    span: Span | None
    children: dict[str, LayerInstance | ModelInstance] = field(default_factory=dict)
    graphs: list[Graph] = field(default_factory=list)
    decl: Any = None  # the model's declaration (syntax tree), for backends that emit a class
    # The caller's expression (int, Tagged or Dim) for each dimension name the forward
    # signature binds, at the first call: what a parent passes to this instance's class.
    call_dims: dict[str, Any] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)  # file constants the model sees
    sizes: dict[str, int] = field(default_factory=dict)  # its names' integer values (tags)
    items: tuple = ()  # a generated Sequential: the value its loop variable took per child
    given: tuple[str, ...] = ()  # the entry model: hyperparameters the caller gave (--hyper)

    def child(self, path: str) -> LayerInstance | ModelInstance:
        """The layer or instance at a dotted path below this one (a node's `target`)."""
        node: LayerInstance | ModelInstance = self
        for part in path.split("."):
            node = node.children[part]
        return node

    def step(self, index: int) -> LayerInstance | ModelInstance | None:
        """A Sequential's child at position `index` (named `index` or as its `{...}` says)."""
        steps = list(self.children.values())
        return steps[index] if 0 <= index < len(steps) else None

    def layers(self):
        """Every built-in layer below this instance, depth first in declaration order."""
        for child in self.children.values():
            if isinstance(child, LayerInstance):
                yield child
            else:
                yield from child.layers()

    @property
    def param_count(self) -> int:
        return sum(layer.param_count for layer in self.layers())

    @property
    def buffer_count(self) -> int:
        return sum(layer.buffer_count for layer in self.layers())

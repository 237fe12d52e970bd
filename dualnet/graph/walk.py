"""One walk over a checked forward graph, shared by the summary and the picture: the call
sites in execution order, their MACs, and each layer's parameters counted at its first use."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from dualnet.ir.dims import Dim, substitute
from dualnet.ir.graph import Graph, LayerInstance, Node, by_parameter
from dualnet.ir.sizes import callee_sizes
from dualnet.ir.types import TensorType
from dualnet.ops.registry import REGISTRY, Use

Sizes = Mapping[str, int | Dim]


def sites(graph: Graph, sizes: Sizes) -> Iterator[tuple[Graph, Node, Sizes]]:
    """Every node but constants below `graph`, calls of sub-models entered, in the order
    the forward runs them: (the graph it is in, the node, the sizes of that graph's
    dimension names in the entry model's: `sizes`, where given, else its symbols)."""
    for node in graph.nodes:
        if node.kind == "call":
            yield from sites(node.callee, callee_env(node, sizes))
        elif node.kind != "constant":
            yield graph, node, sizes


def callee_env(node: Node, sizes: Sizes) -> Sizes:
    """The sizes of a called sub-model's dimension names, in its caller's terms."""
    return {**sizes, **callee_sizes(node, sizes)}


def layer_of(graph: Graph, node: Node) -> LayerInstance | None:
    """The built-in layer a `layer` node calls (None for other nodes)."""
    return graph.instance.child(node.target) if node.kind == "layer" else None


def macs(graph: Graph, node: Node):
    """The multiply-accumulates of one call (`OpDef.macs`): an int or a symbolic `Dim`."""
    layer = layer_of(graph, node)
    attrs = {**layer.attrs, **node.attrs} if layer else node.attrs
    inputs = by_parameter(node, [v.type for v in node.inputs])
    return REGISTRY[node.op].macs(Use(inputs, tuple(v.type for v in node.outputs), attrs))


class FirstUse:
    """A layer's trainable parameters at its first call, 0 at later ones (a shared layer,
    a tied tensor are counted once, as `ModelInstance.param_count` counts them)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def params(self, layer: LayerInstance | None) -> int:
        if layer is None or layer.path in self.seen:
            return 0
        self.seen.add(layer.path)
        return layer.param_count


def sized(t: TensorType, sizes: Sizes) -> TensorType:
    """`t` with its dimension names replaced by `sizes`."""
    return t.with_shape(substitute(d, sizes) for d in t.shape) if sizes else t

"""The autodiff checks of LANGUAGE.md §9.

Every trainable parameter must have a differentiable path to an output. The hierarchical
graph is flattened (calls inlined; a value is keyed by the call that made it), then:
gradient liveness flows backwards from the float outputs through differentiable inputs of
floating type; a parameter whose layer output is not gradient-live is reported with the op
that cut its path (none when the cut is `stop_gradient`, an intended cut).
"""

from __future__ import annotations

from dataclasses import dataclass

from dualnet.diagnostics import Diagnostic
from dualnet.ir.graph import Graph, LayerInstance, ModelInstance, Node
from dualnet.ops import REGISTRY


@dataclass(frozen=True, slots=True)
class FlatNode:
    node: Node
    layer: LayerInstance | None
    inputs: tuple  # value keys
    outputs: tuple


def flatten(graph: Graph, input_keys: list, prefix: tuple, out: list[FlatNode]) -> list:
    """Inline calls; returns the keys of the graph's outputs."""
    env = {id(v): key for v, key in zip(graph.inputs, input_keys, strict=True)}
    for i, node in enumerate(graph.nodes):
        ins = tuple(env[id(v)] for v in node.inputs)
        if node.kind == "call":
            outs = flatten(node.callee, list(ins), (*prefix, i), out)
        else:
            outs = tuple((*prefix, i, j) for j in range(len(node.outputs)))
            layer = graph.instance.child(node.target) if node.kind == "layer" else None
            out.append(
                FlatNode(node, layer if isinstance(layer, LayerInstance) else None, ins, outs)
            )
        for v, key in zip(node.outputs, outs, strict=True):
            env[id(v)] = key
    return [env[id(v)] for v in graph.outputs]


def _flat(graph: Graph) -> tuple[list[FlatNode], list, dict, set]:
    """The flattened graph, the keys of its outputs, each value's dtype, and the values a
    gradient of its float outputs reaches (gradient-live)."""
    flat: list[FlatNode] = []
    outputs = flatten(graph, [("in", i) for i in range(len(graph.inputs))], (), flat)
    dtype = {("in", i): v.type.dtype for i, v in enumerate(graph.inputs)}
    for f in flat:
        for key, v in zip(f.outputs, f.node.outputs, strict=True):
            dtype[key] = v.type.dtype
    grad_live = _backward(
        flat,
        {k for k in outputs if dtype[k].is_float},
        lambda f, name, key: _differentiable(f, name) and dtype[key].is_float,
    )
    return flat, outputs, dtype, grad_live


def live_inputs(graph: Graph) -> set[int]:
    """The positions of the float inputs of `graph` that a gradient of its float outputs
    reaches (a loss's check that it trains the model)."""
    _, _, dtype, live = _flat(graph)
    return {i for i in range(len(graph.inputs)) if ("in", i) in live and dtype[("in", i)].is_float}


def check_gradients(instance: ModelInstance, graph: Graph) -> list[Diagnostic]:
    flat, outputs, dtype, grad_live = _flat(graph)
    data_live = _backward(flat, set(outputs), lambda f, name, key: True)

    diagnostics = []
    calls: dict[int, list[FlatNode]] = {}
    for f in flat:
        if f.layer is not None:
            calls.setdefault(id(f.layer), []).append(f)
    for layer in instance.layers():
        # a tied tensor is its owner's: checked there (an alias-only tie is never called)
        trainable = [n for n, p in layer.params.items() if p.trainable and n not in layer.tied]
        if not layer.built:
            diagnostics.append(
                Diagnostic(
                    "E-UNUSED",
                    f"layer `{layer.path}` is declared but never called",
                    layer.span,
                    "never called",
                    ("remove it, or call it in forward",),
                )
            )
            continue
        if not trainable:
            continue
        uses = calls.get(id(layer), [])
        if not uses:  # a free tensor (made where declared) that forward never reads
            diagnostics.append(
                Diagnostic(
                    "E-UNUSED",
                    f"`{layer.path}` is declared but never read",
                    layer.span,
                    "never read",
                    ("remove it, or read it in forward",),
                )
            )
            continue
        if any(k in grad_live for f in uses for k in f.outputs if dtype[k].is_float):
            continue
        names = ", ".join(trainable)
        if not any(k in data_live for f in uses for k in f.outputs):
            diagnostics.append(
                Diagnostic(
                    "E-UNUSED",
                    f"the output of layer `{layer.path}` never reaches a result of the model",
                    uses[0].node.span,
                    "result unused",
                    (f"its parameters ({names}) would get no gradient",),
                )
            )
            continue
        cut = _first_cut(flat, uses, grad_live, data_live)
        if cut is None or cut.node.op == "stop_gradient":
            continue
        produced = cut.node.outputs[0].type.dtype if cut.node.outputs else None
        if (
            produced is not None
            and not produced.is_float
            and cut.node.op == "cast"
            or (
                REGISTRY[cut.node.op].differentiable
                and produced is not None
                and not produced.is_float
            )
        ):
            code, why = (
                "E-GRAD-DTYPE",
                (
                    f"`{cut.node.op}` turns it into {produced}; integer "
                    "and bool values carry no gradient"
                ),
            )
        else:
            code, why = "E-GRAD", f"`{cut.node.op}` is not differentiable"
        diagnostics.append(
            Diagnostic(
                code,
                f"parameters of `{layer.path}` ({names}) get no gradient: the path to the "
                f"results is cut here",
                cut.node.span,
                why,
                ("wrap the value in stop_gradient(...) if the cut is intended",),
            )
        )
    return diagnostics


def _differentiable(f: FlatNode, input_name: str) -> bool:
    return input_name.split(".")[0] in REGISTRY[f.node.op].differentiable


def _backward(flat: list[FlatNode], start: set, passes) -> set:
    live = set(start)
    for f in reversed(flat):
        if not any(k in live for k in f.outputs):
            continue
        for name, key in zip(f.node.input_names, f.inputs, strict=True):
            if passes(f, name, key):
                live.add(key)
    return live


def _first_cut(
    flat: list[FlatNode], uses: list[FlatNode], grad_live: set, data_live: set
) -> FlatNode | None:
    """The first node downstream of the layer where a dependent value stops being
    gradient-live while the node's result still reaches an output."""
    dep = {k for f in uses for k in f.outputs}
    for f in flat:
        hit = [k for k in f.inputs if k in dep]
        if not hit:
            continue
        dep.update(f.outputs)
        if (
            any(k not in grad_live for k in hit)
            and any(k in data_live for k in f.outputs)
            and not any(k in grad_live for k in hit)
        ):
            return f
    return None

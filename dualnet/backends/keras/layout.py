"""Where a tensor inside a generated Keras model is channels-last (pure; no Keras import).

dualnet's axis order is channels-first ([B, C, *spatial]); TensorFlow's fast convolutions,
pooling and normalisation want channels-last ([B, *spatial, C]). Every tensor the generated
code holds has a layout: `CF` (dualnet's order) or `CL` (axis 1 moved last; only for rank ≥ 3).
How each op treats layouts follows its registry entry (`OpDef.axes`):

- spatial ops ("channels": convolutions, pooling, BatchNorm, ...; rank ≥ 3) take and give CL;
- "pointwise" ops (element-wise, Dropout, Identity, zeros_like/ones_like/full_like) keep the
  layout of their inputs (all full-rank inputs brought to one layout; scalars broadcast either
  way);
- "attribute" ops (reductions, cumsum, softmax, concat, split, chunk, roll) run on a CL value with
  their axes remapped (`remap_axis`; roll's kept in the order of its shifts), as long as a
  reduction keeps the batch and channel axes;
- everything else (flatten, reshape, permute, indexing, Linear, LayerNorm, attention, RNNs,
  ...) sees dualnet's order: a CL input is transposed back first.

A sub-model's inputs come in the layout its body prefers (`prefers_channels_last`: the input
reaches a spatial op through layout-keeping ops), so consecutive blocks of a ResNet pass
channels-last tensors to each other with no transposes in between.
"""

from __future__ import annotations

from dualnet.ir.graph import Graph, Value
from dualnet.ops import REGISTRY

CF, CL = "cf", "cl"


def _ops(axes: str) -> frozenset[str]:
    return frozenset(name for name, op in REGISTRY.items() if op.axes == axes)


SPATIAL_OPS = _ops("channels")
KEEPING_OPS = _ops("pointwise")
AXIS_OPS = _ops("attribute")


def is_spatial(op: str, rank: int) -> bool:
    return op in SPATIAL_OPS and rank >= 3


def to_cl(rank: int) -> tuple[int, ...]:
    """The transpose from dualnet's order to channels-last."""
    return (0, *range(2, rank), 1)


def to_cf(rank: int) -> tuple[int, ...]:
    return (0, rank - 1, *range(1, rank - 1))


def remap_axis(axis: int, rank: int) -> int:
    """Where dualnet's axis `axis` (non-negative) is in a channels-last tensor."""
    return axis if axis == 0 else rank - 1 if axis == 1 else axis - 1


def remap_attrs(op: str, attrs: dict, rank: int) -> dict | None:
    """The attributes of an axis op applied to a CL value of rank `rank`, or None when the
    op cannot run channels-last (a reduction over the batch or channel axis)."""
    axis = attrs["axis"]
    if op in ("mean", "sum", "max", "min", "argmax", "argmin") and not attrs["keepdims"]:
        if {0, 1} & set(axis if isinstance(axis, tuple) else (axis,)):
            return None
    if isinstance(axis, tuple):  # roll's axes pair with its shifts: kept in order
        remapped = tuple(remap_axis(a, rank) for a in axis)
        return {**attrs, "axis": remapped if op == "roll" else tuple(sorted(remapped))}
    return {**attrs, "axis": remap_axis(axis, rank)}


def keeps_layout(op: str) -> bool:
    return op in KEEPING_OPS


def prefers_channels_last(graph: Graph, value: Value, seen: set | None = None) -> bool:
    """Whether `value` (an input of `graph`, rank ≥ 3) reaches a spatial op through
    layout-keeping ops and sub-model calls: then its producer should hand it over CL."""
    if len(value.type.shape) < 3:
        return False
    seen = set() if seen is None else seen
    frontier = [value]
    while frontier:
        v = frontier.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        for node in graph.nodes:
            if not any(x is v for x in node.inputs):
                continue
            if node.kind == "call":
                index = next(i for i, x in enumerate(node.inputs) if x is v)
                if prefers_channels_last(node.callee, node.callee.inputs[index], seen):
                    return True
            elif node.kind != "constant" and is_spatial(node.op, len(v.type.shape)):
                return True
            elif node.kind != "constant" and keeps_layout(node.op):
                frontier.extend(o for o in node.outputs if len(o.type.shape) == len(v.type.shape))
    return False

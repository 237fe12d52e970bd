"""The op × backend matrix (`dualnet ops`), read from the registry: an op is supported by a
backend when that backend's lowering table registered a row for it (`OpDef.lowerings`, read
through `rows.lowering_row`, as the emitters read it).

Importing the lowering tables imports ONNX's protobuf classes (for the ONNX rows) but
neither torch nor TensorFlow: the tables only write source.
"""

from __future__ import annotations

from dualnet.backends import BACKENDS
from dualnet.ops import REGISTRY


def matrix() -> list[list[str]]:
    """One row per op (registry order): name, kind, then one cell per backend."""
    return [
        [
            name,
            "layer" if op.is_layer else "function",
            *(b.support(name) for b in BACKENDS.values()),
        ]
        for name, op in REGISTRY.items()
    ]


def missing() -> list[tuple[str, str]]:
    """(op, backend) pairs without a lowering row."""
    return [(name, b.name) for name in REGISTRY for b in BACKENDS.values() if not b.supports(name)]

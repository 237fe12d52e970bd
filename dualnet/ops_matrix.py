"""The op × backend matrix (`dualnet ops`), read from the registry: an op is supported by a
backend when that backend's lowering table registered a row for it (`OpDef.lowerings`).

Importing the three lowering tables imports onnx (for the ONNX rows) but neither torch nor
TensorFlow: the tables only write source.
"""

from __future__ import annotations

from dualnet.ops import REGISTRY

BACKENDS = ("torch", "keras", "onnx")


def load_tables() -> None:
    """Import every backend's lowering table (each registers its rows on import)."""
    import dualnet.backends.keras.lowering  # noqa: F401
    import dualnet.backends.onnx.lowering  # noqa: F401
    import dualnet.backends.torch.lowering  # noqa: F401


def matrix() -> list[list[str]]:
    """One row per op (registry order): name, kind, then one cell per backend."""
    load_tables()
    from dualnet.backends.onnx.lowering import MIN_OPSET

    rows = []
    for name, op in REGISTRY.items():
        cells = [name, "layer" if op.is_layer else "function"]
        for backend in BACKENDS:
            if backend not in op.lowerings:
                cells.append("no: no lowering row")
            elif backend == "onnx":
                cells.append(f"yes (opset ≥ {MIN_OPSET[name]})")
            else:
                cells.append("yes")
        rows.append(cells)
    return rows


def missing() -> list[tuple[str, str]]:
    """(op, backend) pairs without a lowering row."""
    load_tables()
    return [(name, b) for name, op in REGISTRY.items() for b in BACKENDS
            if b not in op.lowerings]

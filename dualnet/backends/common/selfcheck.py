"""The compiler's check of its own output: a generated model holds exactly the parameters and
buffers of the checked model, by name and shape. Run wherever dualnet builds a generated model
(`dualnet.load(...).torch()` / `.keras()`, and so `run`, `parity`, `gradcheck` and the
fuzzer), so a generated class that serves an instance wrongly can never reach a user
silently."""

from __future__ import annotations

from dualnet.diagnostics import error
from dualnet.io.weights import state_specs


def check_parameters(summary, built: dict[str, tuple[int, ...]], backend: str) -> None:
    """`built`: the generated model's tensors (PyTorch names) and their shapes."""
    expected = {name: tuple(spec.shape) for name, spec in state_specs(summary.instance)}
    if built == expected:
        return
    layers = {layer.path: layer for layer in summary.instance.layers()}
    missing = [n for n in expected if n not in built]
    extra = [n for n in built if n not in expected]
    wrong = [n for n in expected if n in built and built[n] != expected[n]]
    first = (missing or wrong or extra)[0]
    detail = (
        f"`{first}` is missing"
        if first in missing
        else f"`{first}` is not in the checked model"
        if first in extra
        else f"`{first}` has the shape {list(built[first])}, the checked model "
        f"{list(expected[first])}"
    )
    layer = layers.get(first.rpartition(".")[0])
    raise error(
        "E-BACKEND",
        f"internal error: the generated {backend} model's parameters "
        f"differ from the checked model's: {detail} ({len(missing)} missing, "
        f"{len(wrong)} of another shape, {len(extra)} extra)",
        layer.span if layer is not None else summary.instance.span,
        notes=["please report this with the .dnet file"],
    )

"""Weight-for-weight comparison of a zoo model with its reference implementation.

A reference (a torchvision or transformers module) with random weights writes its
`state_dict()` unchanged to a safetensors file; the .dnet model loads that file strictly in
the generated PyTorch module, the Keras model and the ONNX graph, and the three outputs are
compared with the reference's on the same inputs.

- `torchvision_models()`, `transformers()`: the modules, importable beside the CPU build of
  torch.
- `randomize(module, seed)`: no trivially equal tensor left (BatchNorm statistics, tensors
  initialised to a constant such as zero biases, LayerNorm weights, ViT's head).
- `compare_with_reference(...)`: the three backends' errors, asserted within tolerance.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from dualnet.compiler import Program
from dualnet.verify.runner import run

MODELS = Path(__file__).resolve().parents[2] / "models"
BACKENDS = ("torch", "keras", "onnx")
TOLERANCE = 1e-5  # max |a - b| / (1 + max |b|)
RELATIVE = 1e-4  # max |a - b| / max |b|: small outputs (MobileNetV3's) are held to it too

_LIBRARY: list[torch.library.Library] = []  # kept alive: the schemas live as long as it does


def torchvision_models():
    """`torchvision.models`. The registry's torchvision wheel is a CUDA build whose import
    fails beside the CPU torch (`operator torchvision::nms does not exist`) unless the two
    op schemas it registers kernels for are declared first: done once per process."""
    _declare_torchvision_ops()
    import torchvision.models

    return torchvision.models


def transformers():
    """The `transformers` module (which imports torchvision where it is installed: the same
    op schemas are declared first)."""
    _declare_torchvision_ops()
    import transformers

    return transformers


def _declare_torchvision_ops() -> None:
    if _LIBRARY:
        return
    try:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    except RuntimeError:  # already declared (by torchvision itself, or another harness)
        return
    _LIBRARY.append(lib)


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Make `module`'s random initialisation non-trivial, deterministically from `seed`:
    BatchNorm running means ~ N(0, 0.1²) and variances in [0.5, 1.5]; every floating
    parameter or buffer holding one constant value (zero biases, LayerNorm weights, a head
    initialised to zero, a layer scale) drawn around its value (± 0.1 for a constant 0 or 1,
    ± 10 % otherwise). Tensors of other dtypes (counters, index tables) are left alone."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if not t.is_floating_point() or t.numel() == 0:
                continue
            noise = torch.rand(t.shape, generator=g, dtype=torch.float64).to(t.dtype) * 2 - 1
            if name.endswith("running_var"):
                t.copy_(1 + 0.5 * noise)
            elif name.endswith("running_mean"):
                t.copy_(0.1 * noise)
            elif bool((t == t.flatten()[0]).all()):
                value = float(t.flatten()[0])
                scale = 0.1 if value in (0.0, 1.0) else 0.1 * abs(value)
                t.copy_(value + scale * noise)
    return module.eval()


def save_state(reference: torch.nn.Module, path: str | Path) -> dict[str, torch.Tensor]:
    """The reference's state_dict, unchanged (names, shapes, dtypes), as a safetensors file;
    each tensor cloned so tied or shared tensors each save."""
    state = {k: v.detach().clone().contiguous() for k, v in reference.state_dict().items()}
    save_file(state, str(path))
    return state


def errors(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """(max |a-b| / (1 + max |b|), max |a-b| / max |b|)."""
    a, b = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    diff = float(np.max(np.abs(a - b), initial=0.0))
    top = float(np.max(np.abs(b), initial=0.0))
    return diff / (1 + top), diff / top if top else (0.0 if diff == 0 else math.inf)


def compare_with_reference(
    dnet_path: str | Path,
    reference: torch.nn.Module,
    inputs: Mapping[str, np.ndarray | torch.Tensor],
    *,
    model: str | None = None,
    hyper: Mapping[str, Any] | None = None,
    select: Callable[[Any], torch.Tensor] | None = None,
    backends: tuple[str, ...] = BACKENDS,
) -> dict[str, tuple[float, float]]:
    """Load `reference`'s state_dict unchanged into the .dnet model's backends, run each on
    `inputs` (the entry model's forward arguments by name, channels first) and the reference
    on the same tensors (as keyword arguments in the forward's order: positionally), and
    return `{backend: (error, relative error)}` after asserting both within tolerance.
    `select` picks the compared tensor from the reference's output (default: itself)."""
    reference.eval()
    given = {k: np.ascontiguousarray(np.asarray(v)) for k, v in inputs.items()}
    with torch.no_grad():
        out = reference(*(torch.from_numpy(x.copy()) for x in given.values()))
    want = (select(out) if select else out).detach().numpy()
    program = Program(str(dnet_path), hyper=dict(hyper or {}))
    found = {}
    with tempfile.TemporaryDirectory(prefix="dualnet-reference-") as tmp:
        weights = Path(tmp) / "reference.safetensors"
        save_state(reference, weights)
        for backend in backends:
            outputs, _ = run(program, model, backend, given, str(weights))
            found[backend] = errors(outputs[0], want)
    bad = {b: e for b, e in found.items() if e[0] > TOLERANCE or e[1] > RELATIVE}
    assert not bad, f"{Path(dnet_path).name} vs the reference: {found}"
    return found

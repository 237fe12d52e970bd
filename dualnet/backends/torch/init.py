"""Initial weights: draw every parameter and buffer of a model instance with PyTorch's own
initialisers (LANGUAGE.md §7: initialisation is part of the semantics).

`init_state(instance, seed)` walks the instance's layers depth first in declaration order,
each layer's parameters then its buffers, and draws each tensor from one
`torch.Generator().manual_seed(seed)` with exactly the formulas of `torch.nn.init`:

| scheme | draw |
|---|---|
| kaiming_uniform(a, fan_in) | U(-b, b), b = √3 · √(2 / (1 + a²)) / √fan_in |
| kaiming_normal(a, fan_in) | N(0, √(2 / (1 + a²)) / √fan_in) |
| xavier_uniform(fan_in, fan_out) | U(-b, b), b = √3 · √(2 / (fan_in + fan_out)) |
| xavier_normal(fan_in, fan_out) | N(0, √(2 / (fan_in + fan_out))) |
| uniform(bound) | U(-bound, bound) |
| uniform_range(a, b) | U(a, b) (a Parameter's init="uniform") |
| normal(std), normal(mean, std) | N(mean, std) |
| trunc_normal(mean, std, a, b) | torch.nn.init.trunc_normal_: N(mean, std) cut at a and b |
| zeros, ones, constant(value) | constants (draw nothing) |

The fans are the ones the registry stored in the `Init` (for Conv, Linear and ConvTranspose
they equal what `torch.nn.init` computes from the weight's own shape, ConvTranspose's
`weight.size(1)` included), so the result is what `torch.nn.init.*_(t, ..., generator=g)`
gives for the same generator state. Tensors are drawn directly in their dtype, as
`nn.Linear(..., dtype=...)` does. The same seed gives bit-identical tensors: this draw is
what `dualnet init --seed`, `dualnet.load(path).torch(seed=...)` and `.keras(seed=...)` load,
the one way to start both frameworks from the same weights.

For a single layer, the stream is also PyTorch's own: `torch.manual_seed(s)` followed by
`nn.Linear(7, 5)` (or Conv2d, LSTM, ...) draws the same numbers as `init_state(..., s)`.
Whole models differ from PyTorch's construction order only where PyTorch draws and then
overwrites (MultiheadAttention initialises `out_proj` as a Linear before its reset).
"""

from __future__ import annotations

import math

import torch

from dualnet.io.weights import state_specs
from dualnet.ir.graph import Init, ParamSpec
from dualnet.ir.types import DType

TORCH_DTYPES: dict[DType, torch.dtype] = {d: getattr(torch, d.framework) for d in DType}

SEED_RANGE = range(0, 2**64)  # what torch.Generator.manual_seed accepts, negatives excluded


def init_state(instance, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of `instance` (a `ModelInstance`) under its state_dict name,
    drawn from `torch.Generator().manual_seed(seed)` (CPU tensors)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed not in SEED_RANGE:
        raise ValueError(f"seed must be an int in [0, 2**64), found {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    return {name: draw(spec, generator) for name, spec in state_specs(instance)}


def draw(spec: ParamSpec, generator: torch.Generator) -> torch.Tensor:
    """One tensor of `spec`'s shape and dtype, initialised as its `Init` says."""
    tensor = torch.empty(spec.shape, dtype=TORCH_DTYPES[spec.dtype])
    init = spec.init
    if init.scheme == "zeros":
        return tensor.zero_()
    if init.scheme == "ones":
        return tensor.fill_(1)
    args = dict(init.args)
    if init.scheme == "constant":
        return tensor.fill_(args["value"])
    if init.scheme == "table":  # a Buffer(expr), computed when the model was checked
        return torch.tensor(args["values"], dtype=tensor.dtype).reshape(spec.shape)
    if not tensor.is_floating_point():
        raise ValueError(f"cannot draw {init} for a {spec.dtype} tensor")
    if tensor.numel() == 0:
        return tensor
    with torch.no_grad():
        if init.scheme == "trunc_normal":
            return torch.nn.init.trunc_normal_(tensor, **args, generator=generator)
        kind, first, second = _distribution(init)
        if kind == "uniform":
            return tensor.uniform_(first, second, generator=generator)
        return tensor.normal_(first, second, generator=generator)


def _distribution(init: Init) -> tuple[str, float, float]:
    """("uniform", low, high) or ("normal", mean, std), computed with torch.nn.init's float
    operations in the same order, so the bounds are bit-identical to PyTorch's."""
    args = dict(init.args)
    scheme = init.scheme
    if scheme == "uniform_range":
        return "uniform", args["a"], args["b"]
    if scheme == "uniform":
        return "uniform", -args["bound"], args["bound"]
    if scheme == "normal":
        return "normal", args.get("mean", 0.0), args.get("std", 1.0)
    if scheme in ("kaiming_uniform", "kaiming_normal"):
        std = _leaky_relu_gain(args.get("a", 0.0)) / math.sqrt(args["fan_in"])
    elif scheme in ("xavier_uniform", "xavier_normal"):
        std = args.get("gain", 1.0) * math.sqrt(2.0 / float(args["fan_in"] + args["fan_out"]))
    else:
        raise ValueError(f"unknown initialiser {init}")
    if scheme.endswith("_normal"):
        return "normal", 0.0, std
    bound = math.sqrt(3.0) * std
    return "uniform", -bound, bound


def _leaky_relu_gain(a: float) -> float:
    """torch.nn.init.calculate_gain("leaky_relu", a)."""
    return math.sqrt(2.0 / (1 + a**2))

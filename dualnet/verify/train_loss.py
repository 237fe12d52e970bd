"""The loss of a `dualnet parity --train-steps` run, one definition built in both frameworks
as a function of the model's outputs and the step's targets (lists) returning a 0-d tensor.

A file without a train declaration gets gradcheck's, L = Σ_k Σ output_k · R_k with fixed
standard-normal R_k and no targets (`SumLoss`). A file with one gets its loss model, applied
to the outputs and to targets drawn from the seed and the step (`ModelLoss`): integer class
labels uniform in 0..C − 1 (C the size of axis 1 of the model's first output, as
`training.data.expected` finds it), other integer targets 0 or 1, float targets standard
normal, bool targets random; their symbolic sizes are the outputs' (`f32[B, C]` logits bind
B and C).
"""

from __future__ import annotations

import numpy as np

from dualnet.backends.gradients import as_list
from dualnet.compiler import Program
from dualnet.diagnostics import error
from dualnet.ir.dims import Dim
from dualnet.training.codegen import roles
from dualnet.training.data import expected
from dualnet.training.spec import TrainSpec


def parity_loss(program: Program, training: TrainSpec | None, module, batch, seed: int, f64: bool):
    """The run's loss: `training`'s loss model, or gradcheck's without one; the outputs'
    shapes from one forward of the PyTorch `module` on `batch`."""
    import torch

    with torch.no_grad():
        outputs = as_list(module(*(torch.from_numpy(x) for x in batch)))
    shapes = [tuple(o.shape) for o in outputs]
    if training is None:
        return SumLoss(shapes, seed, f64)
    return ModelLoss(program, training, shapes, seed, f64)


class SumLoss:
    """gradcheck's loss: Σ output · R over the float outputs, R of their shapes."""

    name = "sum(output * R), R fixed standard normal (no train declaration)"
    short = "L = sum(output * R)"

    def __init__(self, shapes: list[tuple], seed: int, f64: bool) -> None:
        rng = np.random.default_rng([seed, 1])
        dtype = np.float64 if f64 else np.float32
        self.r = [rng.standard_normal(shape).astype(dtype) for shape in shapes]

    def targets(self, step: int) -> list[np.ndarray]:
        return []

    def torch(self):
        import torch

        r = [torch.from_numpy(x) for x in self.r]

        def loss(outputs, targets):
            return sum(
                (o * k).sum() for o, k in zip(outputs, r, strict=True) if o.is_floating_point()
            )

        return loss

    def keras(self):
        import keras

        r = [keras.ops.convert_to_tensor(x) for x in self.r]

        def loss(outputs, targets):
            return sum(
                keras.ops.sum(o * k)
                for o, k in zip(outputs, r, strict=True)
                if keras.backend.is_float_dtype(o.dtype)
            )

        return loss


class ModelLoss:
    """A train declaration's loss model over the outputs and each step's random targets."""

    def __init__(
        self, program: Program, training: TrainSpec, shapes: list[tuple], seed: int, f64: bool
    ) -> None:
        found = roles(program, training)
        # the loss is built as `roles` checks it: without the model's --hyper values
        self.program = Program(program.path, program.include_dirs, program.max_params)
        self.model, self.seed, self.f64 = training.loss, seed, f64
        n = len(found.outputs)
        sizes = {
            d.symbol: size
            for v, shape in zip(found.loss.graph.inputs[:n], shapes, strict=True)
            for d, size in zip(v.type.shape, shape, strict=True)
            if isinstance(d, Dim) and d.symbol is not None
        }
        self.wanted = expected(found)[len(found.inputs) :]
        self.shapes = [_shape(w, sizes, training.loss) for w in self.wanted]
        drawn = ", ".join(f"{w.name}: {w.type}{_range(w)}" for w in self.wanted)
        self.name = f"{training.loss} (the train declaration's) of the outputs and {drawn}"
        self.short = f"L = {training.loss}(outputs, random targets)"

    def targets(self, step: int) -> list[np.ndarray]:
        """Step `step`'s targets, the same whichever framework asks."""
        rng = np.random.default_rng([self.seed, 3, step])
        out = []
        for w, shape in zip(self.wanted, self.shapes, strict=True):
            dtype = w.type.dtype
            if dtype.name == "bool":
                out.append(rng.random(shape) < 0.5)
            elif not dtype.is_float:
                out.append(rng.integers(0, w.classes or 2, shape).astype(dtype.numpy))
            else:
                out.append(
                    rng.standard_normal(shape).astype(np.float64 if self.f64 else dtype.numpy)
                )
        return out

    def torch(self):
        module = self.program.torch(self.model)
        module = module.double() if self.f64 else module
        return lambda outputs, targets: module(*outputs, *targets)

    def keras(self):
        """Build under the run's float type (float64: inside `keras_float64`)."""
        model = self.program.keras(self.model)
        return lambda outputs, targets: model(*outputs, *targets)


def _shape(w, sizes: dict[str, int], loss: str) -> tuple[int, ...]:
    shape = []
    for d in w.type.shape:
        if isinstance(d, Dim):
            if d.symbol not in sizes:
                raise error(
                    "E-INPUT",
                    f"the size `{d}` of the target `{w.name}: {w.type}` of {loss} is not a "
                    "size of the model's outputs: parity cannot draw random targets for it",
                    w.span,
                )
            d = sizes[d.symbol]
        shape.append(d)
    return tuple(shape)


def _range(w) -> str:
    if w.type.dtype.name == "bool":
        return " random"
    if not w.type.dtype.is_float:
        return f" uniform in 0..{(w.classes or 2) - 1}"
    return " standard normal"

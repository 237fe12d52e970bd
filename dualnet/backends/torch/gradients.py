"""PyTorch's side of `dualnet gradcheck` (`backends.gradients`): the generated module in
float64 under autograd; also the reference whose gradient and directions the ONNX graph is
differenced against."""

from __future__ import annotations

import contextlib

import numpy as np

from dualnet.backends.gradients import INPUT, as_list, float64
from dualnet.backends.torch.backend import TORCH
from dualnet.io.weights import ignored


@contextlib.contextmanager
def torch_float64(on: bool = True):
    """PyTorch's default dtype float64 while `on`, then restored: the float literals the
    generated code leaves to the default dtype (`tensor`) follow the module's `.double()`."""
    import torch

    before = torch.get_default_dtype()
    if on:
        torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


class TorchSide:
    """The generated module in float64, inference mode, with the weights of `file`."""

    def __init__(
        self,
        program,
        model: str | None,
        file: str,
        inputs: dict,
        loss: tuple[np.ndarray, ...] | list[np.ndarray] = (),
    ):
        import torch

        self.module = program.torch(model).double().eval()
        TORCH.weights_io()[1](self.module, file)
        self.inputs = {n: torch.from_numpy(x) for n, x in float64(inputs).items()}
        self.params = {n: p for n, p in self.module.named_parameters() if p.requires_grad}
        self.tensors = {
            n + INPUT: x.numpy() for n, x in self.inputs.items() if x.is_floating_point()
        }
        self.tensors.update({n: p.detach().numpy().copy() for n, p in self.params.items()})
        self.loss = [torch.from_numpy(r) for r in loss]
        self.where = f"PyTorch {torch.__version__} autograd, float64"

    def calibrated(self) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        """The state with BatchNorm's running statistics set to the batch statistics of the
        inputs, and the outputs then."""
        import torch

        kinds = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
        with torch.no_grad(), torch_float64():
            for norm in [m for m in self.module.modules() if isinstance(m, kinds)]:
                norm.reset_running_stats()
                norm.momentum = None  # a cumulative average: after one batch, its statistics
                norm.train()
            self.module(*self.inputs.values())
        self.module.eval()
        state = {k: v.numpy() for k, v in self.module.state_dict().items() if not ignored(k)}
        return state, self.outputs()

    def outputs(self, name: str | None = None, value: np.ndarray | None = None) -> list:
        import torch

        args = dict(self.inputs)
        with torch.no_grad(), torch_float64():
            if name in self.params:
                saved = self.params[name].clone()
                self.params[name].copy_(torch.from_numpy(value))
            elif name is not None:
                args[name.removesuffix(INPUT)] = torch.from_numpy(value)
            try:
                return [o.numpy() for o in as_list(self.module(*args.values()))]
            finally:
                if name in self.params:
                    self.params[name].copy_(saved)

    def gradients(self) -> dict[str, np.ndarray]:
        import torch

        args = {n: x.clone().requires_grad_(x.is_floating_point()) for n, x in self.inputs.items()}
        with torch_float64():
            outputs = as_list(self.module(*args.values()))
        loss = sum((o * r).sum() for o, r in zip(outputs, self.loss, strict=True))
        watched = {n + INPUT: x for n, x in args.items() if x.requires_grad} | self.params
        grads = torch.autograd.grad(loss, list(watched.values()), allow_unused=True)
        return {
            name: np.zeros(t.shape) if g is None else g.numpy()
            for (name, t), g in zip(watched.items(), grads, strict=True)
        }

    def torch_named(self, gradients: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return gradients

    def aliases(self, summary) -> dict[str, str]:
        return {}

"""The PyTorch backend object (registered in `dualnet.backends`)."""

from __future__ import annotations

import sys

from dualnet.backends.backend import SourceBackend
from dualnet.diagnostics import error, option


class TorchBackend(SourceBackend):
    name = "torch"
    title = "PyTorch"
    package = "dualnet.backends.torch"
    runtime = "torch"
    imports = frozenset(
        {"__future__", "collections", "math", "torch", "torch.nn", "torch.nn.functional", "typing"}
    )
    registrations = frozenset({"torch.jit.unused"})  # a runtime helper TorchScript skips

    def emit(self, instance, file: str, layout: str) -> tuple[str, str]:
        if layout != self.layouts[0]:
            raise error(
                "E-BACKEND", "the PyTorch backend is channels-first only", option("--layout")
            )
        return self.module("emit").emit_torch(instance, file)

    def owns(self, obj: object) -> bool:
        torch = sys.modules.get("torch")  # not imported: obj cannot be a torch module
        return torch is not None and isinstance(obj, torch.nn.Module)

    def weights_io(self):
        weights = self.module("weights")
        return weights.save_torch, weights.load_torch

    def shapes(self, built, summary) -> dict[str, tuple[int, ...]]:
        """Its tensors, a tied one once (an untied copy would be an extra tensor)."""
        state = self.module("weights").module_state(built)
        return {name: tuple(t.shape) for name, t in state.items()}

    def gradient_side(self, program, model, file, state, inputs, loss):
        return self.module("gradients").TorchSide(program, model, file, inputs, loss)

    def run(self, program, model, summary, inputs, weights, probe):
        import numpy as np
        import torch

        module = program.torch(model)
        self.weights_io()[1](module, weights)
        module.train(probe.train)
        if probe.train:
            self.module("masks").dropout_off(module)
        with torch.no_grad(), self.module("probe").recording(module, probe.layers):
            out = module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        if probe.state is not None:
            probe.state.update({k: v.numpy() for k, v in module.state_dict().items()})
        out = out if isinstance(out, tuple) else (out,)
        return [o.numpy() for o in out], f"PyTorch {torch.__version__} (CPU)"


TORCH = TorchBackend()

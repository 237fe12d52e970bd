"""What a backend is: one object per framework, found by name in `dualnet.backends.BACKENDS`.

Every command, tool and test that names backends (the CLI's choices, `run`, `parity`,
`gradcheck`, the op matrix, the fuzzer, `save_weights`/`load_weights`) reads them from that
registry, so a fourth framework is one folder and one registration. A backend object never
imports its framework until a method that needs it runs: checking a model, listing the
backends or asking which ops one supports costs no framework import.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class Backend:
    """One framework. `kind` is "source" (dualnet writes Python source for it) or "graph"
    (a graph file: ONNX); `package` is its folder, whose `lowering` module registers one
    row per op (`OpDef.lowerings[name]`, read through `rows.lowering_row`)."""

    name: str
    title: str  # the framework's name, for people
    kind: str
    package: str
    runtime: str  # the Python package a model runs on (its absence: E-EXTRA naming it)
    layouts: tuple[str, ...] = ("channels_first",)  # the entry model's image layouts
    no_training: str = ""  # why it cannot run training mode (`parity --train`), if it cannot

    def module(self, name: str) -> ModuleType:
        """A module of the backend's folder (`lowering`, `emit`, ...), imported on demand."""
        return importlib.import_module(f"{self.package}.{name}")

    def require(self) -> None:
        """Import the runtime package now (ModuleNotFoundError: `needs_extras` names the
        extra to install), before work that other packages do for it."""
        importlib.import_module(self.runtime)

    def supports(self, op: str) -> bool:
        """Whether the backend has a lowering row for the registry op `op`
        (`rows.lowering_row`)."""
        from dualnet.backends.rows import lowering_row

        try:
            lowering_row(op, self.name)
        except KeyError:
            return False
        return True

    def owns(self, obj: object) -> bool:
        """Whether `obj` is a model this backend built (for `save_weights`/`load_weights`);
        False for every object while the framework is not imported."""
        return False

    def support(self, op: str) -> str:
        """The op matrix's cell for `op` (`dualnet ops`)."""
        return "yes" if self.supports(op) else "no: no lowering row"

    def gradient_side(self, program, model: str | None, file: str, state: dict, inputs: dict, loss):
        """The model in float64 for `dualnet gradcheck` (`backends.gradients.GradientSide`),
        with the weights of the safetensors file `file` (also given as arrays: `state`), its
        outputs weighted by the arrays `loss`."""
        raise NotImplementedError(self.name)

    def run(
        self, program, model: str | None, summary, inputs: list, weights: str, probe
    ) -> tuple[list, str]:
        """The outputs of the program's model (checked: `summary`) on `inputs` (in the
        forward's order) with the tensors of the safetensors file `weights`, and a line
        saying where it ran; `probe` (`runner.Probe`) asks for training mode, each layer's
        outputs, the state after the run."""
        raise NotImplementedError(self.name)


class SourceBackend(Backend):
    """A backend dualnet writes Python source for: the generated file may import only
    `imports` and decorate or register only with `registrations` (`source_code.validate`)."""

    kind = "source"
    imports: frozenset[str]
    registrations: frozenset[str] = frozenset()

    def emit(self, instance, file: str, layout: str) -> tuple[str, str]:
        """(source, entry class name) of a checked model instance."""
        raise NotImplementedError(self.name)

    def weights_io(self) -> tuple[Any, Any]:
        """(save, load): the functions writing a built model's tensors to a safetensors file
        and reading them back, in dualnet's names and layouts."""
        raise NotImplementedError(self.name)

    def shapes(self, built, summary) -> dict[str, tuple[int, ...]]:
        """A built model's tensors by dualnet (PyTorch) name, and their shapes."""
        raise NotImplementedError(self.name)

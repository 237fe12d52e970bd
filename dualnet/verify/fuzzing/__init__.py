"""Differential fuzzing: random valid .dnet programs, run in every backend and compared.

`programs()` is a hypothesis strategy of `Case`s: a program's files, the sizes of its
symbolic dimensions and the concrete shape of each output. The entry model `Fuzz` is a
chain of steps on one current value; each step is drawn from the families that accept the
value's shape: ops (`ops.py`) and composition (`blocks.py`: branches, sub-model templates
with several differently configured instances, nested Sequentials, conditional layers and
expressions, `if` and `for`). Numbers a program would make hyperparameters are drawn as
literals, file constants, hyperparameters, or constants in a model's body or forward
(`consts.py`). Shapes are tracked symbolically (with dualnet's `Dim` algebra) and at the
drawn sizes, so every program is valid by construction; every statement is annotated with
the type the generator expects, so a program that fails `check` is itself a finding. Inputs
are f32 or f64; one program in four runs in training mode (PyTorch and Keras: batch
statistics, running statistics compared; Keras also through its own train step; and three
steps of training with a drawn optimiser, `training.py`).

`run_case` writes a case to a temporary directory, compares all backends and counts the
ops of the checked graph. Only the fuzzing tests and `benchmarks/fuzz.py` use this
package; it imports hypothesis when a name of it is first used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    **dict.fromkeys(("Case", "case_text", "programs", "read_case", "write_case"), "program"),
    **dict.fromkeys(("BACKENDS", "Outcome", "count_ops", "loaded", "run_case"), "run"),
    "CONSTRUCTS": "steps",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """The fuzzer's names, imported on first use: hypothesis is a test tool (`dualnet[dev]`),
    not a dependency of the installed package."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    except ModuleNotFoundError as exc:
        if exc.name != "hypothesis":
            raise
        raise ModuleNotFoundError(
            "dualnet's fuzzer needs hypothesis: pip install 'dualnet[dev]'", name="hypothesis"
        ) from exc
    value = getattr(module, name)
    globals()[name] = value
    return value

"""dualnet: define a neural network once; get the same model in PyTorch, Keras and ONNX."""

from typing import TYPE_CHECKING

from dualnet.version import __version__

if TYPE_CHECKING:
    from dualnet.api import Program, Summary, check_file, load, load_weights, save_weights

__all__ = [
    "Program",
    "Summary",
    "__version__",
    "check_file",
    "load",
    "load_weights",
    "save_weights",
]


def __getattr__(name: str):
    """The API (`dualnet.api`), imported on first use: `dualnet check` runs without the
    compiler and the backends it imports (a third of the command's start-up)."""
    if name in __all__:
        from dualnet import api

        return getattr(api, name)
    raise AttributeError(f"module 'dualnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

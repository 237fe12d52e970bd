"""dualnet: define a neural network once; get the same model in PyTorch, Keras and ONNX."""

from dualnet.api import Program, Summary, check_file, load, load_weights, save_weights
from dualnet.version import __version__

__all__ = [
    "Program",
    "Summary",
    "__version__",
    "check_file",
    "load",
    "load_weights",
    "save_weights",
]

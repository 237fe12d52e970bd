"""dualnet: define a neural network once; get the same model in PyTorch, Keras and ONNX."""

__version__ = "0.1.0"

from dualnet.api import Summary, check_file  # noqa: E402

__all__ = ["Summary", "__version__", "check_file"]

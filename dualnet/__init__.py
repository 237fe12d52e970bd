"""dualnet: define a neural network once; get the same model in PyTorch, Keras and ONNX."""

__version__ = "0.1.0"

from dualnet.api import Summary, check_file  # noqa: E402

# Imported on first use, so that `import dualnet` stays free of ML frameworks.
_LAZY = {
    "save_weights": "dualnet.weights",
    "load_weights": "dualnet.weights",
    "load": "dualnet.compiler",
}

__all__ = ["Summary", "__version__", "check_file", "load", "load_weights", "save_weights"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dualnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

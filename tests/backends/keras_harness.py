"""Build one .dnet model in PyTorch and in Keras from the same weight file, and compare them.

Used by the Keras end-to-end and CONVENTIONS tests. Tolerance: max |a − b| / (1 + max |b|).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import torch
from zoo_data import random_inputs, random_weights

import dualnet
from dualnet.io.weights import write_state

TOL = 1e-4


def exact_float32() -> None:
    """No TF32 anywhere (CONVENTIONS: parity tests on GPUs turn it off)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tf.config.experimental.enable_tensor_float_32_execution(False)


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b), initial=0.0) / (1 + np.max(np.abs(b), initial=0.0)))


class Pair:
    """The PyTorch module and the Keras model of one .dnet model, loaded from one file."""

    def __init__(
        self,
        path: str | Path,
        tmp: Path,
        model: str | None = None,
        seed: int = 0,
        layout: str = "channels_first",
        **hyper,
    ):
        exact_float32()
        program = dualnet.load(str(path))
        self.summary = program.check(model, **hyper)
        rng = np.random.default_rng(seed)
        self.weights = random_weights(self.summary, rng)
        self.file = tmp / f"{Path(path).stem}-{seed}.safetensors"
        write_state(self.weights, self.file)
        self.torch = program.torch(model, **hyper).eval()
        dualnet.load_weights(self.torch, self.file)
        self.keras = program.keras(model, layout=layout, **hyper)
        self.keras_source = program.source("keras", model, layout=layout, **hyper)
        dualnet.load_weights(self.keras, self.file)
        self.rng = rng

    def inputs(self, sizes: int = 5) -> list[np.ndarray]:
        return random_inputs(self.summary, self.rng, sizes)

    def run_torch(self, inputs, train: bool = False) -> list[np.ndarray]:
        self.torch.train(train)
        with torch.no_grad():
            out = self.torch(*(torch.from_numpy(x) for x in inputs))
        return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]

    def run_keras(self, inputs, train: bool = False) -> list[np.ndarray]:
        out = self.keras(*(tf.constant(x) for x in inputs), training=train)
        return [np.asarray(o) for o in (out if isinstance(out, tuple | list) else (out,))]

    def worst_output_error(self, inputs, train: bool = False) -> float:
        got = self.run_keras(inputs, train)
        want = self.run_torch(inputs, train)
        assert len(got) == len(want)
        return max(relative_error(g, w) for g, w in zip(got, want, strict=True))


def run_tflite(flat: bytes, x: np.ndarray) -> np.ndarray:
    """The first output of a converted TFLite model of one input, run on `x`."""
    interpreter = tf.lite.Interpreter(model_content=flat)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

"""Keras's side of `dualnet gradcheck` (`backends.gradients`): the generated model built
under a float64 floatx and dtype policy, differentiated with GradientTape; its tensors are
the float inputs and its trainable variables, named `<dualnet layer>.<Keras weight path>`."""

from __future__ import annotations

import contextlib
import os

import numpy as np

from dualnet.backends.gradients import INPUT, as_list, float64
from dualnet.backends.keras.backend import KERAS
from dualnet.ops.free import FREE_TENSORS


@contextlib.contextmanager
def keras_float64():
    """Keras's float type and dtype policy float64, then restored (Keras derives the policy
    from floatx once, at its first use, and keeps it)."""
    import keras

    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


def _variable_name(prefix: str, layer, variable) -> str:
    """`<dualnet layer>.<Keras weight path>`; a Parameter's one weight: its dualnet name."""
    if getattr(layer, "dualnet_op", None) in FREE_TENSORS:
        return prefix[:-1]
    return prefix + variable.path.removeprefix(layer.path + "/")


class KerasSide:
    """The generated model built in float64 with the weights of `file`; its tensors are the
    float inputs and its trainable variables, named `<dualnet layer>.<Keras weight path>`."""

    def __init__(self, program, model: str | None, file: str, inputs: dict, loss: list[np.ndarray]):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log lines
        import keras
        import tensorflow as tf

        from dualnet.backends.keras.state import leaves

        with keras_float64():
            self.model = program.keras(model)
        KERAS.weights_io()[1](self.model, file)
        self.inputs = {n: tf.constant(x) for n, x in float64(inputs).items()}
        names = {
            id(v): _variable_name(prefix, layer, v)
            for prefix, layer in leaves(self.model)
            for v in layer.trainable_weights
        }
        self.variables = {names.get(id(v), v.path): v for v in self.model.trainable_variables}
        self.tensors = {n + INPUT: x.numpy() for n, x in self.inputs.items() if x.dtype.is_floating}
        self.tensors.update({n: v.numpy() for n, v in self.variables.items()})
        self.loss = [tf.constant(r) for r in loss]
        self.traced = tf.function(self._outputs, autograph=False)
        self.where = f"Keras {keras.__version__} ({keras.backend.backend()}) GradientTape, float64"

    def _outputs(self, *args) -> list:
        return as_list(self.model(*args, training=False))

    def outputs(self, name: str | None = None, value: np.ndarray | None = None) -> list:
        import tensorflow as tf

        args = dict(self.inputs)
        if name in self.variables:
            saved = self.variables[name].numpy()
            self.variables[name].assign(value)
        elif name is not None:
            args[name.removesuffix(INPUT)] = tf.constant(value)
        try:
            with keras_float64():
                return [o.numpy() for o in self.traced(*args.values())]
        finally:
            if name in self.variables:
                self.variables[name].assign(saved)

    def gradients(self) -> dict[str, np.ndarray]:
        import tensorflow as tf

        watched = {n + INPUT: x for n, x in self.inputs.items() if x.dtype.is_floating}
        with tf.GradientTape() as tape, keras_float64():
            tape.watch(list(watched.values()))
            outputs = self._outputs(*self.inputs.values())
            terms = [  # integer and bool outputs carry no gradient; a cast f32 one does
                tf.reduce_sum(tf.cast(o, r.dtype) * r)
                for o, r in zip(outputs, self.loss, strict=True)
                if o.dtype.is_floating
            ]
            loss = tf.add_n(terms) if terms else tf.constant(0.0, tf.float64)
        watched |= self.variables
        grads = tape.gradient(loss, list(watched.values()))
        return {
            name: np.zeros(t.shape) if g is None else tf.convert_to_tensor(g).numpy()
            for (name, t), g in zip(watched.items(), grads, strict=True)
        }

    def torch_named(self, gradients: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """These gradients in PyTorch's names and layouts (inputs keep theirs)."""
        from dualnet.backends.keras.state import torch_named

        by_variable = {id(v): gradients[n] for n, v in self.variables.items()}
        named = torch_named(self.model, lambda v: by_variable.get(id(v), np.zeros(v.shape)))
        return named | {n: g for n, g in gradients.items() if n not in self.variables}

    def aliases(self, summary) -> dict[str, str]:
        """PyTorch name → the PyTorch name Keras's gradient is under, where they differ: an
        LSTM's bias_hh is part of Keras's one bias, which `torch_named` gives as bias_ih."""
        return {
            f"{layer.path}.{name}": f"{layer.path}.bias_ih{name.removeprefix('bias_hh')}"
            for layer in summary.instance.layers()
            if layer.op == "LSTM"
            for name in layer.params
            if name.startswith("bias_hh")
        }

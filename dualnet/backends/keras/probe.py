"""What `dualnet parity` records while a generated Keras model runs: the outputs of every
layer and sub-model, by dualnet path, in dualnet's axis order; in training mode, the outputs
of the forward pass of Keras's own training step (`train_step`)."""

from __future__ import annotations

import contextlib
import functools

import keras
import numpy as np

from dualnet.backends.keras.layout import CL
from dualnet.backends.keras.state import layers_by_path


@contextlib.contextmanager
def recording(
    model: keras.layers.Layer,
    records: dict[str, list] | None,
    layouts: dict[str, tuple] | None = None,
):
    """While active, each call of a layer appends its outputs to `records[path]`, channels-
    last outputs (`layouts[path]`, from the Keras emitter) moved back to dualnet's order;
    None records nothing."""
    if records is None:
        yield
        return
    wrapped = [
        (layer, _wrap(layer, path, records, (layouts or {}).get(path, ())))
        for path, layer in layers_by_path(model)
    ]
    try:
        yield
    finally:
        for layer, own in wrapped:
            if own:
                layer.call = own
            else:
                del layer.call


def _wrap(layer, path: str, records: dict[str, list], layouts: tuple):
    """Replace `layer.call` by a recording one; return the instance's own `call`, if any."""
    own = vars(layer).get("call")
    call = layer.call

    @functools.wraps(call)
    def recording_call(*args, **kwargs):
        out = call(*args, **kwargs)
        arrays = [keras.ops.convert_to_numpy(t) for t in _tensors(out)]
        records.setdefault(path, []).append(
            [
                np.moveaxis(a, -1, 1)
                if i < len(layouts) and layouts[i] == CL and a.ndim >= 3
                else a
                for i, a in enumerate(arrays)
            ]
        )
        return out

    layer.call = recording_call
    return own


def _tensors(output) -> list:
    if isinstance(output, tuple | list):
        return [t for item in output for t in _tensors(item)]
    return [] if output is None else [output]


def train_step(model: keras.Model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The outputs of one step of Keras's own training step, compiled as `fit()` compiles it
    (`train_on_batch`), under an optimizer that changes no weight (SGD, learning rate 0): the
    model is called as `fit()` calls it, so its training-mode layers update what they update
    (BatchNorm's running statistics). The loss is 0 (every trainable weight gets a zero
    gradient); the outputs come back as the step's metrics."""
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))

    def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
        floats = [
            t
            for t in [*keras.tree.flatten(y_pred), *model.trainable_weights]
            if keras.backend.is_float_dtype(t.dtype)
        ]
        return 0.0 * sum(keras.ops.sum(keras.ops.cast(t, "float32")) for t in floats)

    def compute_metrics(x, y, y_pred, sample_weight=None):
        values = list(y_pred.values()) if isinstance(y_pred, dict) else keras.tree.flatten(y_pred)
        return {f"output_{i}": t for i, t in enumerate(values)}

    model.compute_loss, model.compute_metrics = compute_loss, compute_metrics
    logs = model.train_on_batch(tuple(inputs) if len(inputs) > 1 else inputs[0], return_dict=True)
    return [np.asarray(logs[f"output_{i}"]) for i in range(len(logs))]

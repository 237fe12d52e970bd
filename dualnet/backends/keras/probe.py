"""What `dualnet parity` records while a generated Keras model runs: the outputs of every
layer and sub-model, by dualnet path, in dualnet's axis order."""

from __future__ import annotations

import contextlib
import functools

import keras
import numpy as np

from dualnet.backends.keras.layout import CL
from dualnet.backends.keras.state import layers_by_path


@contextlib.contextmanager
def recording(model: keras.layers.Layer, records: dict[str, list] | None,
              layouts: dict[str, tuple] | None = None):
    """While active, each call of a layer appends its outputs to `records[path]`, channels-
    last outputs (`layouts[path]`, from the Keras emitter) moved back to dualnet's order;
    None records nothing."""
    if records is None:
        yield
        return
    wrapped = [(layer, _wrap(layer, path, records, (layouts or {}).get(path, ())))
               for path, layer in layers_by_path(model)]
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
            [np.moveaxis(a, -1, 1) if i < len(layouts) and layouts[i] == CL and a.ndim >= 3
             else a for i, a in enumerate(arrays)])
        return out

    layer.call = recording_call
    return own


def _tensors(output) -> list:
    if isinstance(output, tuple | list):
        return [t for item in output for t in _tensors(item)]
    return [] if output is None else [output]

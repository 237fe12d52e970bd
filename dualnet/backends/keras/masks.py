"""Given Dropout masks in a generated Keras model (`parity --same-dropout`;
`dualnet.verify.dropout_masks`), also inside Keras's compiled training step: each site
reads its mask from a variable that `feed` assigns before the step."""

from __future__ import annotations

import contextlib
import functools

import keras
import numpy as np

from dualnet.backends.keras.layout import CL
from dualnet.backends.keras.state import layers_by_path
from dualnet.verify.dropout_masks import Calls, Site


def dropout_off(model: keras.layers.Layer, sites: bool = True) -> None:
    """Switches off the attention dropout of every MultiHeadAttention in `model` and, with
    `sites`, every Dropout (StochasticDepth's `_StochasticDepth` is one): training-mode
    comparisons, where each framework would draw its own masks."""
    for _, layer in layers_by_path(model):
        if isinstance(layer, keras.layers.MultiHeadAttention):
            layer._dropout = 0.0  # read by its call; no public setter
        elif sites and isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0


@contextlib.contextmanager
def given_masks(model: keras.layers.Layer, sites: list[Site], layouts: dict, dtype):
    """While active, each site (a Dropout or `_StochasticDepth` by dualnet path) computes
    x · its given mask when called with training=True; yields `feed(masks)`, which sets the
    masks of the next step, moved to channels-last where the layer's input is (`layouts`:
    `emit.output_layouts`). On exit the layers are as they were."""
    held = {
        site.key: keras.Variable(
            _moved(np.zeros(site.shape), layouts, site.path), dtype=dtype, trainable=False
        )
        for site in sites
    }
    calls = Calls(sites)
    layers = [(p, layer) for p, layer in layers_by_path(model) if p in calls.per_pass]
    owns = [vars(layer).get("call") for _, layer in layers]
    for path, layer in layers:
        call = layer.call

        @functools.wraps(call)
        def masked(inputs, training=False, call=call, path=path):
            if not training:
                return call(inputs, training=training)
            return keras.ops.multiply(inputs, held[calls.next(path)])

        layer.call = masked

    def feed(masks: dict[tuple[str, int], np.ndarray]) -> None:
        for key, variable in held.items():
            variable.assign(_moved(masks[key], layouts, key[0]))

    try:
        yield feed
    finally:
        for (_, layer), own in zip(layers, owns, strict=True):
            if own:
                layer.call = own
            else:
                del layer.call


def _moved(mask: np.ndarray, layouts: dict, path: str) -> np.ndarray:
    """`mask` in the layout of the layer's input: channels-last moves axis 1 last."""
    return (
        np.moveaxis(mask, 1, -1) if layouts.get(path, ())[:1] == (CL,) and mask.ndim >= 3 else mask
    )

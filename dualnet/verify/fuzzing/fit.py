"""Keras trained as Keras users train it: one step of `train_on_batch` (the train step
`fit()` runs, compiled as `fit` compiles it) against PyTorch's forward in training mode.

The optimizer is SGD with a zero learning rate, so that only the running statistics move;
the loss is the sum over float outputs of mean(y²). Compared: the loss Keras reports with
the same loss of PyTorch's outputs, and every running statistic after the step. A model
whose `call` ignores Keras's training flag runs BatchNorm in inference mode here (its
statistics do not move and its outputs differ), which `model(x, training=True)` hides.
Dropout is off in both (its random masks differ per framework), as in `dualnet parity`.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from dualnet.backends.initial import initial_weights
from dualnet.compiler import Program
from dualnet.io.weights import write_state
from dualnet.ir.graph import state_key
from dualnet.verify import parity
from dualnet.verify.runner import Probe, ordered_inputs, run

PAIR = ("torch", "keras-fit")


def fit_rows(program: Program, dims: dict[str, int], seed: int = 0) -> list[parity.Difference]:
    """The loss and running-statistics rows of one Keras train step vs PyTorch."""
    summary = program.check()
    inputs = parity.random_inputs(summary, dims, seed)
    probe = Probe(train=True, state={})
    outputs, _ = run(program, None, "torch", inputs, None, seed, probe, vary=True)  # parity's
    floats = [v.type.dtype.is_float for v in summary.graph.outputs]
    expected = sum(
        float(np.mean(np.square(np.asarray(o, np.float64))))
        for o, f in zip(outputs, floats, strict=True)
        if f
    )
    with tempfile.TemporaryDirectory() as tmp:
        file = os.path.join(tmp, "init.safetensors")
        write_state(initial_weights(summary, None, seed, vary=True), file)
        loss, state = train_step(program, file, ordered_inputs(summary, inputs), outputs, floats)
    names = [
        state_key(layer.path, name)
        for layer in summary.instance.layers()
        for name, spec in layer.buffers.items()
        if spec.dtype.is_float
    ]
    return [parity._difference("fit loss", PAIR, expected, loss)] + [
        parity._difference(f"fit state {n}", PAIR, probe.state[n], state[n]) for n in names
    ]


def train_step(
    program: Program, weights: str, inputs: list, outputs: list, floats: list[bool]
) -> tuple[float, dict[str, np.ndarray]]:
    """Keras's loss and state (state_dict names) after one `train_on_batch`."""
    import keras

    from dualnet.backends.keras.masks import dropout_off
    from dualnet.backends.keras.state import load_keras, torch_named

    model = program.keras(None)
    load_keras(model, weights)
    dropout_off(model)

    def loss(y_true, y_pred):
        return keras.ops.mean(keras.ops.square(y_pred))

    losses = [loss if f else None for f in floats]
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.0),
        loss=losses if len(losses) > 1 else losses[0],
    )
    x = tuple(inputs) if len(inputs) > 1 else inputs[0]
    y = [np.zeros(np.shape(o), np.float32) for o in outputs]
    logs = model.train_on_batch(x, tuple(y) if len(y) > 1 else y[0], return_dict=True)
    return float(logs["loss"]), torch_named(model, lambda variable: variable.numpy())

"""The zoo's generated Keras models against Keras implementations of the same architecture.

The generated model (`dualnet.load(path).keras(layout="channels_last")`, holding the
reference's state_dict) and a Keras implementation of the same configuration (image size,
patch size, widths, depths, heads) run under `tf.function(training=False)` (jit_compile
off, as benchmarks/keras_latency.py), rotating order; ratio = generated / counterpart of
the medians, target <= 1.05. The counterparts: Keras's own
`keras.applications.EfficientNetB0` (which starts with its Rescaling and Normalization
layers), and the hand-written ones of benchmarks/handwritten_keras.py (ConvNeXt-T, ViT-B/16,
GPT-2 small; keras.applications' ConvNeXt-T writes its depthwise convolutions as grouped
`Conv2D`s, several times slower on TensorFlow's CPU kernels). Their weights are Keras's
random ones (a torchvision or transformers state_dict does not load into them), so their
outputs are not compared: the timing needs the same architecture, not the same numbers.
keras-hub, which has ViT, GPT-2 and EfficientNet, is not used: it requires tensorflow-text,
which pulls the `tensorflow` package beside the pinned `tensorflow-cpu` (docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keras_latency import bound, inference, rotated
from report import Row, ratio_row
from zoo_cases import Case

RATIO_TARGET = 1.05


# Per zoo model: the counterpart's kind, and a function of (keras, handwritten_keras) building it.
COUNTERPARTS = {
    "vit_b_16": ("hand-written", lambda keras, hand: hand.vit_b_16()),
    "convnext_tiny": ("hand-written", lambda keras, hand: hand.convnext_tiny()),
    "efficientnet_b0": (
        "keras.applications",
        lambda keras, hand: keras.applications.EfficientNetB0(weights=None),
    ),
    "gpt2": ("hand-written", lambda keras, hand: hand.gpt2_small()),
}
MODELS = tuple(COUNTERPARTS)


def keras_rows(
    torch: Any, tf: Any, case: Case, weights: Path, batches: list[int], budget: float
) -> list[Row]:
    import handwritten_keras
    import keras

    import dualnet

    generated = dualnet.load(str(case.path)).keras(layout="channels_last")
    dualnet.load_weights(generated, weights)
    kind, build = COUNTERPARTS[case.name]
    theirs = build(keras, handwritten_keras)
    fns = [inference(tf, generated), inference(tf, theirs)]
    rows = []
    for batch in batches:
        label = f"{case.name} b{batch}: Keras generated / {kind}"
        x = case.inputs(torch, batch).numpy()
        x = tf.constant(x.transpose(0, 2, 3, 1) if x.ndim == 4 else x)
        calls = [bound(fn, x) for fn in fns]
        shapes = [call().shape for call in calls]
        if shapes[0] != shapes[1]:
            rows.append(Row(label, f"output shapes differ: {shapes}", "-", "-", "ERROR"))
            continue
        ours_t, theirs_t = rotated(calls, 2, 200, 3, budget)
        rows.append(ratio_row(label, ours_t, theirs_t, RATIO_TARGET))
        print(f"  {label}: {rows[-1].value}  ratio {rows[-1].ratio}", flush=True)
    return rows

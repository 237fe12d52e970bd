"""Keras 3 layers for dualnet's built-in layers, and their weights (pure NumPy; Keras is
imported only by `make_layer`).

`attrs` is a layer's configuration as its shape rule completed it (`Ctx.config`: in_channels,
kernel/stride/dilation tuples, pads, normalized_shape, input_size, ...). `params` holds the
layer's parameters and buffers under the names its rule declares, in PyTorch layouts: what a
dualnet weight file stores under the layer's prefix.

- `keras_layer(op, attrs)`: the Keras layer (class in `keras.layers` and keyword arguments)
  that computes the op; spatial layers run channels-last ([B, *spatial, C]).
- `make_layer(op, attrs)`: that layer, unbuilt (imports keras; call it once, then
  `set_weights`).
- `to_keras(op, attrs, params)`: the layer's `get_weights()` list; `from_keras` inverts it
  bit-exactly, but for LSTM biases (below).
  Each of the three dispatches through the layer's rule (`keras.lowering.KerasLayerRule`:
  `layer`, `weights`); the conversions shared by several rules are the functions below.
- `flatten_permutation(c, *spatial)`: the Dense kernel rows for a Linear that reads a flattened
  channels-last tensor (`to_keras("Linear", ..., flattened=(c, h, w))` applies it).

Layer choices (op: Keras layer; its `get_weights()` list):
- Linear: Dense; kernel [in, out] = weight.T, bias.
- Conv1d/2d/3d: Conv1D/2D/3D(groups=g); kernel [*k, in/g, out] (OIHW → HWIO), bias.
- Conv1d/2d with groups = in_channels > 1: DepthwiseConv1D/2D(depth_multiplier=out/in);
  kernel [*k, in, mult] (weight [in·mult, 1, *k]), bias. (Keras has no DepthwiseConv3D.)
- ConvTranspose1d/2d/3d: Conv1D/2D/3DTranspose; kernel [*k, out, in] (weight [in, out/g, *k]
  transposed, no spatial flip: both frameworks define it as the gradient of Conv), bias.
- BatchNorm: BatchNormalization(axis=-1, epsilon, momentum=1 - m); gamma, beta, moving_mean,
  moving_variance.
- RMSNorm: RMSNormalization(axis=-1 or [-k, ..., -1], epsilon); scale = weight.
- LayerNorm: LayerNormalization(axis=-1 or [-k, ..., -1], epsilon); gamma, beta of the
  normalized shape, unchanged — for a value the emitter keeps in dualnet's layout (a LayerNorm
  over axes that a channels-last value holds in another order needs them permuted).
- GroupNorm: GroupNormalization(groups, axis=-1, epsilon); gamma, beta [C].
- LayerNorm2d: LayerNormalization(axis=-1, epsilon) on the channels-last value; gamma, beta
  [C] (state walking reads it as a LayerNorm over one axis: the same tensors).
- Embedding: Embedding(vocab, dim); embeddings [vocab, dim].
- LSTM / GRU: LSTM / GRU(reset_after=True), return_sequences=True; `layers` of them in
  sequence (`make_layer`: a keras.Sequential), each in Bidirectional(merge_mode="concat")
  when bidirectional. Weights: for each layer, for each direction (forward, then reverse):
  kernel [in, G·H], recurrent_kernel [H, G·H], bias ([4H] LSTM, [2, 3H] GRU).
- MultiHeadAttention: MultiHeadAttention(num_heads=heads, key_dim=dim/heads, use_bias=bias,
  dropout=dropout); query, key, value kernels [dim, heads, d] each followed by its bias
  [heads, d], then the output kernel [heads, d, dim] and bias [dim] (no biases when
  bias=false). Its
  attention_mask is [B, Tq, Tk], true = may attend (a [B, Tk] mask broadcast over Tq), and
  use_causal_mask is top-left aligned, as dualnet's; but a query that may attend no key gets
  a uniform average over all keys where dualnet gives zero weights (result out_proj.bias):
  the emitter selects out_proj.bias (or 0) for such queries.
- Dropout: Dropout(rate=p); StochasticDepth: the runtime's `_StochasticDepth(rate, mode)`, a
  Dropout; Identity: Identity (no weights).

Convolutions get Keras's "same" where it pads exactly as dualnet for every input size
(`keras_same`: dualnet's "same" is TensorFlow's rule, unresolved pads included — None, "same"
on a symbolic size with stride > 1 — and explicit pads match it at stride 1 when symmetric
with 2·p = dilation·(k − 1)); otherwise they are "valid" and the emitter pads the input with
`attrs["pads"]` (channels-last order) first. Conv*DTranspose is always "valid", its output
cropped by PyTorch's padding; its output_padding is None (Keras infers the size) where that
gives PyTorch's size. Keras refuses an output_padding not below the stride (PyTorch allows up to
the dilation): on such an axis the layer has output_padding 0 and the emitter appends zero rows
to its input and crops more (`backends.conv_transpose`). Keras refuses strides > 1 together
with dilation_rate > 1: such layers get the kernel dilated with zeros and dilation 1 — the
same sums, since the added taps are exact zeros. Grouped transposed convolutions
(Conv*DTranspose have no groups) get a block-diagonal kernel [*k, out, in] with zeros
outside the groups.

LSTM: Keras has one bias per gate, the sum bias_ih + bias_hh; `from_keras` cannot split it and
returns it as bias_ih with bias_hh = 0 (the same function). GRU: Keras orders the gates z, r, h
where PyTorch has r, z, n; with reset_after=True its bias is [2, 3H] = [input bias, recurrent
bias], which keeps PyTorch's two biases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from dualnet.ir.tagged import Tagged
from dualnet.ops.recurrent import param_names

TRANSPOSED = ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
CONVS = ("Conv1d", "Conv2d", "Conv3d", *TRANSPOSED)
RNNS = ("LSTM", "GRU")


@dataclass(frozen=True)
class KerasLayer:
    """A Keras layer: `keras.layers.<cls>(**kwargs)`; an RNN is `stack` of them in sequence,
    each wrapped in `keras.layers.Bidirectional(merge_mode="concat")` when `bidirectional`."""

    cls: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    stack: int = 1
    bidirectional: bool = False


# ---------------------------------------------------------------- layer choice


def is_depthwise(op: str, attrs: dict) -> bool:
    """A Conv1d/2d whose groups are its input channels (Keras has no DepthwiseConv3D), with
    one stride on every axis (TensorFlow's depthwise kernel takes no other): a grouped Conv2D
    otherwise."""
    if op not in ("Conv1d", "Conv2d"):
        return False
    strides = attrs["stride"]
    return 1 < attrs["groups"] == attrs["in_channels"] and all(s == strides[0] for s in strides)


def dilates_kernel(attrs: dict, transposed: bool = False) -> bool:
    """Whether the Keras kernel is the zero-dilated one (with dilation 1): Keras refuses
    strides > 1 with dilation_rate > 1, and TensorFlow's CPU kernel of a transposed
    convolution any dilation rate > 1."""
    return max(attrs["dilation"]) > 1 and (transposed or max(attrs["stride"]) > 1)


def spreads_input(attrs: dict) -> bool:
    """Whether a transposed convolution runs at stride 1 over its input spread out with zeros
    (the runtime's `_zero_upsample`; the same sums): one with a 1-tap kernel on every axis and
    a stride > 1, whose oneDNN gradient in TensorFlow corrupts memory
    (tests/backends/test_upstream_bugs.py)."""
    return all(k == 1 for k in attrs["kernel"]) and any(s != 1 for s in attrs["stride"])


def keras_kernel_size(attrs: dict, transposed: bool = False) -> tuple[int, ...]:
    if not dilates_kernel(attrs, transposed):
        return tuple(attrs["kernel"])
    return tuple(d * (k - 1) + 1 for k, d in zip(attrs["kernel"], attrs["dilation"], strict=True))


def _fixed(size) -> bool:
    """A size every instance of a generated class has: not one a hyperparameter sets (a
    block's `stride` is 1 in some instances and 2 in others)."""
    return not isinstance(size, Tagged) or isinstance(size.expr, int)


def same_misread(attrs: dict) -> bool:
    """Whether TensorFlow's (2.21) 3-D convolution or pooling with padding="same" may read
    from the wrong offset: where an axis's pad total, (ceil(n / s) − 1)·s + span − n, is
    negative (possible where the window's span is below its stride), it starts that many
    elements late instead of padding nothing (tests/backends/test_upstream_bugs.py). Such
    windows are padded explicitly, to TensorFlow's rule."""
    if len(attrs["kernel"]) != 3:
        return False
    dilation = attrs.get("dilation") or (1,) * 3
    if not all(_fixed(k) and _fixed(d) for k, d in zip(attrs["kernel"], dilation, strict=True)):
        return True
    return any(
        not _fixed(s) or span < s
        for span, s in zip(same_spans(attrs), attrs["stride"], strict=True)
    )


def same_crashes(attrs: dict) -> bool:
    """Whether TensorFlow's (2.21) oneDNN gradient of a 3-D convolution with padding="same"
    may crash (heap corruption: a segfault or "corrupted size vs. prev_size" in `fit()`): it
    does with a stride > 1 on an axis whose dilated kernel is longer than the input (kernel 7,
    stride 2, 5 or 6 inputs; kernel 9, stride 3, 7 inputs), never at stride 1 or in 2-D, and
    never with the same pads written out before a "valid" convolution. The input sizes are not
    those of every instance, so every strided one is padded explicitly."""
    return len(attrs["kernel"]) == 3 and any(not _fixed(s) or s > 1 for s in attrs["stride"])


def same_spans(attrs: dict) -> tuple:
    """The window spans TensorFlow's "same" rule pads for: the dilated kernel's."""
    dilation = attrs.get("dilation") or (1,) * len(attrs["kernel"])
    if all(_fixed(d) and d == 1 for d in dilation):
        return attrs["kernel"]
    return tuple(d * (k - 1) + 1 for k, d in zip(attrs["kernel"], dilation, strict=True))


def keras_same(attrs: dict) -> bool:
    """Whether Keras's padding="same" pads a convolution or pooling window exactly as `attrs`
    ("padding", "pads", "kernel", "stride", optional "dilation") say, for every input size."""
    if attrs.get("padding") == "same":  # TensorFlow's rule, also where pads are None
        return not same_misread(attrs) and not same_crashes(attrs)
    pads = attrs["pads"]
    if not any(before or after for before, after in pads):
        return False  # nothing to pad: "valid"
    dilation = attrs.get("dilation") or (1,) * len(pads)
    return all(
        _fixed(s) and s == 1 and before == after and before + after == d * (k - 1)
        for (before, after), k, s, d in zip(
            pads, attrs["kernel"], attrs["stride"], dilation, strict=True
        )
    )


def strides_for_same(attrs: dict) -> tuple:
    """The strides a hyperparameter sets (a block's `stride`) when Keras's "same" pads
    exactly as `attrs` in the instances where they are 1, and only there: symmetric pads of
    dilation·(k − 1) in total. () when the choice does not depend on them."""
    if (
        keras_same(attrs)
        or attrs.get("padding") == "same"
        or not any(before or after for before, after in attrs["pads"])
    ):
        return ()
    dilation = attrs.get("dilation") or (1,) * len(attrs["pads"])
    axes = list(zip(attrs["pads"], attrs["kernel"], attrs["stride"], dilation, strict=True))
    if all(
        before == after and before + after == d * (k - 1) and (not _fixed(s) or s == 1)
        for (before, after), k, s, d in axes
    ):
        return tuple(dict.fromkeys(s for _, _, s, _ in axes if not _fixed(s)))
    return ()


def _output_padding(attrs: dict, kernel: tuple, dilation: tuple) -> tuple | None:
    """Conv*DTranspose's output_padding: None where Keras's inferred size, n·s + max(k' − s, 0)
    (k' the dilated kernel), is PyTorch's (n − 1)·s + k' + output_padding."""
    pads = tuple(
        o if o < s else 0 for o, s in zip(attrs["output_padding"], attrs["stride"], strict=True)
    )
    spans = (d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    if not any(pads) and all(span >= s for span, s in zip(spans, attrs["stride"], strict=True)):
        return None
    return pads


def conv_layer(op: str, attrs: dict) -> KerasLayer:
    n = len(attrs["kernel"])
    transposed = op in TRANSPOSED
    kernel = keras_kernel_size(attrs, transposed)
    dilation = (1,) * n if dilates_kernel(attrs, transposed) else tuple(attrs["dilation"])
    same = op not in TRANSPOSED and keras_same(attrs)
    spread = transposed and spreads_input(attrs)
    kwargs: dict[str, Any] = {
        "kernel_size": kernel,
        "strides": (1,) * n if spread else tuple(attrs["stride"]),
        "padding": "same" if same else "valid",
        "dilation_rate": dilation,
        "use_bias": bool(attrs["bias"]),
        "data_format": "channels_last",
    }
    if op in TRANSPOSED:
        kwargs["output_padding"] = None if spread else _output_padding(attrs, kernel, dilation)
        return KerasLayer(f"Conv{n}DTranspose", {"filters": attrs["out"], **kwargs})
    if is_depthwise(op, attrs):
        mult = attrs["out"] // attrs["groups"]
        return KerasLayer(f"DepthwiseConv{n}D", {**kwargs, "depth_multiplier": mult})
    return KerasLayer(f"Conv{n}D", {"filters": attrs["out"], **kwargs, "groups": attrs["groups"]})


def rnn_layer(op: str, attrs: dict) -> KerasLayer:
    kwargs: dict[str, Any] = {
        "units": attrs["hidden"],
        "activation": "tanh",
        "recurrent_activation": "sigmoid",
        "use_bias": True,
        "return_sequences": True,
    }
    if op == "GRU":
        kwargs["reset_after"] = True
    return KerasLayer(op, kwargs, stack=attrs["layers"], bidirectional=attrs["bidirectional"])


def keras_rule(op: str):
    """The Keras layer rule of layer `op` (`keras.lowering.KerasLayerRule`): its Keras class
    and arguments, weight conversions and leaf deriver."""
    from dualnet.backends.rows import lowering_row

    return lowering_row(op, "keras", layer=True)


def keras_layer(op: str, attrs: dict) -> KerasLayer:
    """The Keras layer that computes `op` (channels-last for spatial layers)."""
    return keras_rule(op).layer(attrs)


def complement(m: float) -> float:
    """1 − m as the decimal the source wrote means it (1 − 0.7 is 0.3, not 0.30000000000000004)."""
    return float(1 - Decimal(repr(float(m))))


def make_layer(op: str, attrs: dict):
    """The Keras layer of `keras_layer` (a `keras.Sequential` for an RNN stack), unbuilt."""
    import keras

    spec = keras_layer(op, attrs)
    if op not in RNNS:
        return getattr(keras.layers, spec.cls)(**spec.kwargs)
    cls = getattr(keras.layers, spec.cls)
    layers = [
        keras.layers.Bidirectional(cls(**spec.kwargs), merge_mode="concat")
        if spec.bidirectional
        else cls(**spec.kwargs)
        for _ in range(spec.stack)
    ]
    return keras.Sequential(layers)


# ---------------------------------------------------------------- convolutions


def _spatial(kernel: tuple, dilation: tuple, prefix: int) -> tuple:
    """The index of the real taps in a zero-dilated kernel (spatial axes after `prefix`)."""
    return (slice(None),) * prefix + tuple(
        slice(0, d * (k - 1) + 1, d) for k, d in zip(kernel, dilation, strict=True)
    )


def _dilate(w: np.ndarray, attrs: dict, transposed: bool) -> np.ndarray:
    """PyTorch kernel [a, b, *k] → its zero-dilated form [a, b, *keras_kernel_size]."""
    out = np.zeros(w.shape[:2] + keras_kernel_size(attrs, transposed), w.dtype)
    out[_spatial(attrs["kernel"], attrs["dilation"], 2)] = w
    return out


def _block_diagonal(w: np.ndarray, groups: int) -> np.ndarray:
    """[in, out/g, *k] grouped transposed kernel → [in, out, *k], zero outside the groups."""
    cg, og = w.shape[0] // groups, w.shape[1]
    out = np.zeros((w.shape[0], og * groups, *w.shape[2:]), w.dtype)
    for g in range(groups):
        out[g * cg : (g + 1) * cg, g * og : (g + 1) * og] = w[g * cg : (g + 1) * cg]
    return out


def _diagonal_blocks(w: np.ndarray, groups: int) -> np.ndarray:
    cg, og = w.shape[0] // groups, w.shape[1] // groups
    return np.concatenate([w[g * cg : (g + 1) * cg, g * og : (g + 1) * og] for g in range(groups)])


def conv_kernel_to_keras(op: str, attrs: dict, w: np.ndarray) -> np.ndarray:
    """PyTorch conv kernel → the Keras layer's kernel."""
    n = w.ndim - 2
    if dilates_kernel(attrs, op in TRANSPOSED):
        w = _dilate(w, attrs, op in TRANSPOSED)
    spatial = tuple(range(2, n + 2))
    if op in TRANSPOSED:  # [in, out/g, *k] → [*k, out, in]
        return _block_diagonal(w, attrs["groups"]).transpose(*spatial, 1, 0)
    if is_depthwise(op, attrs):  # [C·mult, 1, *k] → [*k, C, mult]
        c = attrs["groups"]
        return w.reshape(c, w.shape[0] // c, *w.shape[2:]).transpose(*spatial, 0, 1)
    return w.transpose(*spatial, 1, 0)  # [out, in/g, *k] → [*k, in/g, out]


def conv_kernel_from_keras(op: str, attrs: dict, kernel: np.ndarray) -> np.ndarray:
    n = kernel.ndim - 2
    to_front = (n + 1, n, *range(n))  # [*k, a, b] → [b, a, *k]
    if op in TRANSPOSED:
        w = _diagonal_blocks(kernel.transpose(to_front), attrs["groups"])
    elif is_depthwise(op, attrs):
        w = kernel.transpose(n, n + 1, *range(n)).reshape(-1, 1, *kernel.shape[:n])
    else:
        w = kernel.transpose(to_front)
    if dilates_kernel(attrs, op in TRANSPOSED):
        w = w[_spatial(attrs["kernel"], attrs["dilation"], 2)]
    return w


# ---------------------------------------------------------------- recurrent


def _suffixes(attrs: dict) -> list[str]:
    """PyTorch's suffixes, layer by layer, forward then reverse: also Keras's weight order."""
    return [sfx for _, _, sfx in param_names(attrs["layers"], attrs["bidirectional"])]


def _gru_order(a: np.ndarray) -> np.ndarray:
    """Swap the first two gate blocks of axis 0: r, z, n ↔ z, r, h (its own inverse)."""
    r, z, n = np.split(a, 3, axis=0)
    return np.concatenate([z, r, n])


def _rnn_to(op: str, attrs: dict, params: dict) -> list[np.ndarray]:
    out = []
    for sfx in _suffixes(attrs):
        w_ih, w_hh = params[f"weight_ih{sfx}"], params[f"weight_hh{sfx}"]
        b_ih, b_hh = params[f"bias_ih{sfx}"], params[f"bias_hh{sfx}"]
        if op == "LSTM":
            out += [w_ih.T, w_hh.T, b_ih + b_hh]
        else:
            out += [
                _gru_order(w_ih).T,
                _gru_order(w_hh).T,
                np.stack([_gru_order(b_ih), _gru_order(b_hh)]),
            ]
    return out


def _rnn_from(op: str, attrs: dict, weights: list) -> dict[str, np.ndarray]:
    out = {}
    for i, sfx in enumerate(_suffixes(attrs)):
        kernel, recurrent, bias = weights[3 * i : 3 * i + 3]
        if op == "LSTM":
            w_ih, w_hh, b_ih, b_hh = kernel.T, recurrent.T, bias, np.zeros_like(bias)
        else:
            w_ih, w_hh = _gru_order(kernel.T), _gru_order(recurrent.T)
            b_ih, b_hh = _gru_order(bias[0]), _gru_order(bias[1])
        out.update(
            {
                f"weight_ih{sfx}": w_ih,
                f"weight_hh{sfx}": w_hh,
                f"bias_ih{sfx}": b_ih,
                f"bias_hh{sfx}": b_hh,
            }
        )
    return out


# ---------------------------------------------------------------- attention


def _mha_to(attrs: dict, params: dict) -> list[np.ndarray]:
    e, h = attrs["dim"], attrs["heads"]
    d = e // h
    out = []
    for i in range(3):  # query, key, value: rows i·E:(i+1)·E of the packed projection
        out.append(params["in_proj_weight"][i * e : (i + 1) * e].T.reshape(e, h, d))
        if attrs["bias"]:
            out.append(params["in_proj_bias"][i * e : (i + 1) * e].reshape(h, d))
    out.append(params["out_proj.weight"].T.reshape(h, d, e))
    if attrs["bias"]:
        out.append(params["out_proj.bias"])
    return out


def _mha_from(attrs: dict, weights: list) -> dict[str, np.ndarray]:
    e = attrs["dim"]
    step = 2 if attrs["bias"] else 1
    kernels = weights[0 : 3 * step : step]
    out = {"in_proj_weight": np.concatenate([k.reshape(e, e).T for k in kernels])}
    if attrs["bias"]:
        out["in_proj_bias"] = np.concatenate([b.reshape(e) for b in weights[1:6:2]])
    out["out_proj.weight"] = weights[3 * step].reshape(e, e).T
    if attrs["bias"]:
        out["out_proj.bias"] = weights[7]
    return out


# ---------------------------------------------------------------- dense


def flatten_permutation(c: int, *spatial: int) -> np.ndarray:
    """perm[i] = the channels-first (C·H·W) position of the i-th element of a channels-last
    (H·W·C) flatten; a Linear after `flatten` gets the Dense kernel `weight.T[perm]`."""
    return (
        np.arange(c * int(np.prod(spatial, dtype=np.int64)))
        .reshape(c, *spatial)
        .transpose(*range(1, len(spatial) + 1), 0)
        .reshape(-1)
    )


# ---------------------------------------------------------------- both directions
#
# Each layer rule holds a pair (to Keras, from Keras): `to(attrs, params)` is the layer's
# `get_weights()` list, `back(attrs, weights)` its PyTorch tensors by name.


def conv_weights(op: str) -> tuple[Callable, Callable]:
    """A convolution's kernel (`conv_kernel_to_keras`) and bias."""

    def to(attrs: dict, params: dict) -> list:
        bias = [params["bias"]] if attrs["bias"] else []
        return [conv_kernel_to_keras(op, attrs, params["weight"]), *bias]

    def back(attrs: dict, weights: list) -> dict:
        out = {"weight": conv_kernel_from_keras(op, attrs, weights[0])}
        return {**out, "bias": weights[1]} if attrs["bias"] else out

    return to, back


def linear_to(attrs: dict, params: dict, flattened: tuple[int, ...] | None = None) -> list:
    """Dense: kernel = weight.T (rows permuted for a channels-last flatten), bias."""
    kernel = params["weight"].T
    if flattened is not None:
        kernel = kernel[flatten_permutation(*flattened)]
    return [kernel] + ([params["bias"]] if attrs["bias"] else [])


def linear_from(attrs: dict, weights: list, flattened: tuple[int, ...] | None = None) -> dict:
    kernel = weights[0]
    if flattened is not None:
        kernel = kernel[np.argsort(flatten_permutation(*flattened))]
    out = {"weight": kernel.T}
    return {**out, "bias": weights[1]} if attrs["bias"] else out


def rnn_weights(op: str) -> tuple[Callable, Callable]:
    return (
        lambda attrs, params: _rnn_to(op, attrs, params),
        lambda attrs, weights: _rnn_from(op, attrs, weights),
    )


MHA_WEIGHTS = (_mha_to, _mha_from)


def in_order(*names: str) -> tuple[Callable, Callable]:
    """Tensors that Keras holds as they are, in the order `names`; a tensor a layer lacks
    (LayerNorm's bias with bias=false) is left out, the others keep their order."""

    def present(attrs) -> list[str]:
        return [n for n in names if n != "bias" or attrs.get("bias", True)]

    return (
        lambda attrs, params: [params[name] for name in present(attrs)],
        lambda attrs, weights: dict(zip(present(attrs), weights, strict=True)),
    )


def to_keras(
    op: str, attrs: dict, params: dict[str, np.ndarray], *, flattened: tuple[int, ...] | None = None
) -> list[np.ndarray]:
    """The `get_weights()` list of `make_layer(op, attrs)` holding `params` (PyTorch names and
    layouts). `flattened=(c, *spatial)`: a Linear reading a channels-last flatten of a
    [B, c, *spatial] value."""
    to = _weights(op)[0]
    out = to(attrs, params) if flattened is None else to(attrs, params, flattened=flattened)
    return [np.ascontiguousarray(w) for w in out]


def from_keras(
    op: str, attrs: dict, weights: list, *, flattened: tuple[int, ...] | None = None
) -> dict[str, np.ndarray]:
    """The inverse of `to_keras`: PyTorch names and layouts from a `get_weights()` list
    (LSTM: bias_ih = Keras's bias, bias_hh = 0)."""
    back = _weights(op)[1]
    weights = [np.asarray(w) for w in weights]
    out = back(attrs, weights) if flattened is None else back(attrs, weights, flattened=flattened)
    return {name: np.ascontiguousarray(w) for name, w in out.items()}


def _weights(op: str) -> tuple[Callable, Callable]:
    pair = keras_rule(op).weights
    if pair is None:
        raise KeyError(f"{op} is not a layer with Keras weights")
    return pair

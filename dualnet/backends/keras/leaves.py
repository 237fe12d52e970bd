"""How a Keras layer with weights reads as a registry op (`Leaf`): the op's attrs that
`weights.to_keras` needs and its PyTorch tensor shapes, derived from the layer's Keras config
and tensor shapes. Each layer rule of `keras.lowering` (`KerasLayerRule.leaf`) holds its
deriver; `state.py` walks a model and asks the rule of each leaf it meets.

Nothing here imports Keras: a deriver reads the layer it is given (its config, weights and
build method), never the Keras module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dualnet.backends.keras.weights import dilates_kernel, keras_kernel_size
from dualnet.ops.recurrent import param_names

_GATES = {"LSTM": 4, "GRU": 3}
Shape = tuple  # of sizes; None where neither the layer nor the file gives one


@dataclass(frozen=True)
class Leaf:
    """A layer with weights as a registry op: the attrs `to_keras` needs, its PyTorch tensor
    shapes by name (the registry's order), and how to build it unbuilt (None: Keras builds it
    at its first call, with the initializers of its rule's `first_call` returning the
    weights)."""

    op: str
    attrs: dict
    shapes: dict[str, Shape]
    build: Callable[[], object] | None


def built(layer) -> bool:
    return bool(layer.weights)  # a leaf has weights once built


# ---------------------------------------------------------------- sizes


def _size(layer, axis: int, from_file: int | None) -> int | None:
    """An input size: axis `axis` of the built layer's first weight, else `from_file`."""
    return int(layer.weights[0].shape[axis]) if built(layer) else from_file


def _dim(shape: Shape | None, axis: int, per: int = 1) -> int | None:
    """`shape[axis] // per` of a file tensor; None if absent, too short or not divisible."""
    if shape is None or len(shape) <= axis or shape[axis] % per:
        return None
    return shape[axis] // per


def _with_bias(shapes: dict[str, Shape], bias: bool, size: int | None) -> dict[str, Shape]:
    return {**shapes, "bias": (size,)} if bias else shapes


# ---------------------------------------------------------------- derivers


def dense_leaf(layer, found: dict[str, Shape]) -> Leaf:
    cfg = layer.get_config()
    out, fin = cfg["units"], _size(layer, 0, _dim(found.get("weight"), 1))
    return Leaf(
        "Linear",
        {"out": out, "bias": cfg["use_bias"]},
        _with_bias({"weight": (out, fin)}, cfg["use_bias"], out),
        lambda: layer.build((None, fin)),
    )


def conv_leaf(transposed: bool) -> Callable[[object, dict], Leaf]:
    """Conv1d/2d/3d (Conv1D/2D/3D, DepthwiseConv1D/2D) or, `transposed`, ConvTranspose1d/2d/3d
    (Conv1D/2D/3DTranspose)."""

    def derive(layer, found: dict[str, Shape]) -> Leaf:
        return _conv(layer, found, transposed)

    return derive


def _conv(layer, found: dict[str, Shape], transposed: bool) -> Leaf:
    cfg = layer.get_config()
    n, weight = len(cfg["kernel_size"]), found.get("weight")
    drawn = _drawn_as(layer)
    if transposed:  # Keras kernel [*k, out, in]
        op, out = f"ConvTranspose{n}d", cfg["filters"]
        cin = _size(layer, -1, _dim(weight, 0))
        per_group = _dim(weight, 1) if weight is not None else out // drawn.get("groups", 1)
        groups = _transposed_groups(out, cin, per_group)
        head = (cin, out // groups)
    elif "depth_multiplier" in cfg:  # Keras kernel [*k, C, mult]
        op, mult = f"Conv{n}d", cfg["depth_multiplier"]
        cin = groups = _size(layer, -2, _dim(weight, 0, per=mult))
        out = None if cin is None else cin * mult
        head = (out, 1)
    else:  # Keras kernel [*k, in / groups, out]
        op, out, groups = f"Conv{n}d", cfg["filters"], cfg["groups"]
        per_group = _size(layer, -2, _dim(weight, 1))
        cin = None if per_group is None else per_group * groups
        head = (out, per_group)
    attrs = {
        "out": out,
        "in_channels": cin,
        "groups": groups,
        "bias": cfg["use_bias"],
        "stride": tuple(cfg["strides"]),
    }
    size = tuple(weight[2:]) if weight is not None and len(weight) == n + 2 else drawn.get("kernel")
    attrs.update(_geometry(cfg, size, transposed))
    return Leaf(
        op,
        attrs,
        _with_bias({"weight": (*head, *attrs["kernel"])}, cfg["use_bias"], out),
        lambda: layer.build((None, *(None,) * n, cin)),
    )


def _drawn_as(layer) -> dict:
    """What the kernel initializer of a generated conv (the runtime's `_TorchKernelInit`)
    says of the PyTorch kernel it draws, where no weight file does: its `kernel` size (a
    zero-dilated Keras kernel) and `groups` (a grouped transposed one)."""
    initializer = getattr(layer, "kernel_initializer", None) or getattr(
        layer, "depthwise_initializer", None
    )
    if type(initializer).__name__ != "_TorchKernelInit":
        return {}
    drawn = {"groups": initializer.groups}
    if initializer.kernel is not None:
        drawn["kernel"] = tuple(initializer.kernel)
    return drawn


def _transposed_groups(out: int, cin: int | None, per_group: int | None) -> int:
    """A ConvTranspose's groups: out / the weight's second axis, where that divides both
    channel counts; else 1 (Conv*DTranspose have no groups)."""
    if per_group and out % per_group == 0 and cin is not None and cin % (out // per_group) == 0:
        return out // per_group
    return 1


def per_channel_leaf(op: str, names: tuple[str, ...]) -> Callable[[object, dict], Leaf]:
    """BatchNorm or GroupNorm: tensors `names`, each [C]; built at the first call (see
    `state.py`)."""

    def derive(layer, found: dict[str, Shape]) -> Leaf:
        c = _size(layer, 0, _dim(found.get("weight"), 0))
        return Leaf(op, {}, dict.fromkeys(names, (c,)), None)

    return derive


def normalized_leaf(op: str, names: tuple[str, ...]) -> Callable[[object, dict], Leaf]:
    """LayerNorm or RMSNorm: tensors `names` of the normalized shape, one size per axis of
    the layer's `axis`."""

    def derive(layer, found: dict[str, Shape]) -> Leaf:
        cfg = layer.get_config()
        axis = cfg["axis"]
        bias = "bias" in names and cfg.get("center", True)  # LayerNorm(bias=false): center=False
        kept = tuple(n for n in names if n != "bias" or bias)
        rank = len(axis) if isinstance(axis, list | tuple) else 1
        weight = found.get("weight")
        if built(layer):
            shape = tuple(int(d) for d in layer.weights[0].shape)
        else:
            shape = weight if weight is not None and len(weight) == rank else (None,) * rank
        attrs = {"bias": bias} if "bias" in names else {}
        return Leaf(op, attrs, dict.fromkeys(kept, shape), lambda: layer.build((None, *shape)))

    return derive


def embedding_leaf(layer, found: dict[str, Shape]) -> Leaf:
    cfg = layer.get_config()
    return Leaf("Embedding", {}, {"weight": (cfg["input_dim"], cfg["output_dim"])}, layer.build)


def attention_leaf(layer, found: dict[str, Shape]) -> Leaf:
    cfg = layer.get_config()
    heads, bias = cfg["num_heads"], cfg["use_bias"]
    dim = heads * cfg["key_dim"]
    shapes = {"in_proj_weight": (3 * dim, dim)}
    if bias:
        shapes["in_proj_bias"] = (3 * dim,)
    shapes["out_proj.weight"] = (dim, dim)
    if bias:
        shapes["out_proj.bias"] = (dim,)
    return Leaf(
        "MultiHeadAttention",
        {"dim": dim, "heads": heads, "bias": bias, "dropout": cfg["dropout"]},
        shapes,
        lambda: layer.build((None, None, dim), (None, None, dim)),
    )


def free_leaf(layer, found: dict[str, Shape]) -> Leaf:
    """A Parameter or Buffer (the runtime's `_Parameter`): its one tensor is itself, ""."""
    return Leaf(layer.dualnet_op, {}, {"": tuple(layer.weight.shape)}, lambda: None)


def rnn_leaf(layer, found: dict[str, Shape]) -> Leaf:
    op, hidden, layers, bi = layer.dualnet_op, layer.hidden, layer.num_layers, layer.bidirectional
    features = _size(layer, 0, _dim(found.get("weight_ih_l0"), 1))
    rows, dirs = _GATES[op] * hidden, 2 if bi else 1
    shapes = {}
    for k, _, sfx in param_names(layers, bi):
        shapes.update(
            {
                f"weight_ih{sfx}": (rows, features if k == 0 else dirs * hidden),
                f"weight_hh{sfx}": (rows, hidden),
                f"bias_ih{sfx}": (rows,),
                f"bias_hh{sfx}": (rows,),
            }
        )
    return Leaf(
        op,
        {"hidden": hidden, "layers": layers, "bidirectional": bi},
        shapes,
        lambda: layer(np.zeros((1, 1, features), "float32")),
    )


# ---------------------------------------------------------------- conv geometry


def _geometry(cfg: dict, size: tuple[int, ...] | None, transposed: bool) -> dict:
    """kernel and dilation of the conv whose PyTorch kernel size is `size` (the file's; None:
    unknown): the Keras layer's own where the sizes agree, else the zero-dilated kernel
    reading (one dilation per axis) that gives the layer's kernel size and dilation rate. No
    reading: its own (so that the file's weight shows as mis-shaped)."""
    keras_size, rate = tuple(cfg["kernel_size"]), tuple(cfg["dilation_rate"])
    own = {"kernel": keras_size, "dilation": rate}
    if size is None or size == keras_size:
        return own
    if any(k > 1 and (n - 1) % (k - 1) for n, k in zip(keras_size, size, strict=True)):
        return own
    dilation = tuple(
        (n - 1) // (k - 1) if k > 1 else 1 for n, k in zip(keras_size, size, strict=True)
    )
    reading = {"kernel": size, "dilation": dilation}
    stride = tuple(cfg["strides"])
    geometry = _keras_geometry({**reading, "stride": stride}, transposed)
    return reading if geometry == (keras_size, rate) else own


def _keras_geometry(attrs: dict, transposed: bool) -> tuple[tuple, tuple]:
    """The Keras kernel size and dilation rate of a conv with these attrs (a zero-dilated
    kernel has dilation 1: `keras.weights`)."""
    zero_dilated = dilates_kernel(attrs, transposed)
    dilation = (1,) * len(attrs["kernel"]) if zero_dilated else attrs["dilation"]
    return keras_kernel_size(attrs, transposed), tuple(dilation)

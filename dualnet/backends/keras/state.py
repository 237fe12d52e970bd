"""Weight files for generated Keras models: `load_keras(model, path)` and `save_keras(model,
path)`, what `dualnet.load_weights` / `save_weights` call for a Keras layer or model. The file
holds dualnet's state_dict names and PyTorch layouts; `keras.weights.to_keras` / `from_keras`
convert each layer.

The structure the Keras generator writes, and nothing more, is relied on:
- A generated class (the entry model a `keras.Model`, the others `keras.layers.Layer`) holds
  its dualnet children, and no other layer, in attributes (read in `vars()` order); each is a
  Keras layer named `keras_name(n)` for its dualnet name `n` (`names.py`: the attribute's own
  name does not matter).
- A `keras.Sequential` holds its dualnet child `i` as its i-th step, not counting the
  steps the generator inserts around dualnet's: `Permute` (layout conversions), and
  `ZeroPadding1D/2D/3D` / `Cropping2D/3D` (a convolution's explicit padding and cropping,
  its call in forward).
- Leaves with weights, by Keras class: Dense (Linear), Conv1D/2D/3D, DepthwiseConv1D/2D
  (Conv1d/2d with groups = in_channels), Conv2DTranspose (ConvTranspose2d), BatchNormalization,
  LayerNormalization, GroupNormalization, Embedding, MultiHeadAttention, and the generated RNN
  helper: a layer with `dualnet_op` ("LSTM" or "GRU"), `hidden`, `num_layers` and
  `bidirectional`, whose `get_weights()` list is `to_keras`'s. Any other layer is walked into
  (a generated class; a built-in layer without weights has no children).

A leaf's attrs for the conversions come from its Keras config and from tensor shapes: input
sizes from its built weights or, unbuilt, from the file. A conv's PyTorch kernel size comes from
the file: a Keras kernel larger than it is the zero-dilated kernel of `keras.weights`, which
gives the dilation; a ConvTranspose2d's groups come from its weight's second axis. Without a
file (saving a model as built), both come from the generated kernel initializer
(`_TorchKernelInit`), which records them to keep the zeros of such kernels.

Loading is strict and all or nothing, like `load_torch`: every tensor is checked (names,
shapes, dtypes; one E-WEIGHTS error names them) before any layer changes. Then unbuilt leaves
are built from the file's shapes and every leaf gets its weights. BatchNormalization and
GroupNormalization are the exception: their build fixes the input rank, which no weight file
holds, so Keras builds them at the model's first call, and until then their initializers
return the loaded tensors (that build may run in a symbolic trace, where assignments are lost).

A loaded leaf keeps in plain attributes what Keras cannot hold, for `save_keras`:
`dualnet_shapes`, its PyTorch shapes (a conv's kernel size, hence its dilation, and a
ConvTranspose2d's groups), and for an LSTM `dualnet_biases`, bias_ih and bias_hh, of which
Keras keeps only the sum. Saving writes that pair back while its float32 sum is still the Keras
bias, else bias_hh and bias_ih = bias - bias_hh (bias_hh = 0 if never loaded), so load then save
gives the same file. Saving needs every leaf built, and refuses Keras weights that no PyTorch
tensor can hold (non-zero values between a dilated kernel's taps or outside a grouped
transposed kernel's groups: training in Keras changed them).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import keras
import numpy as np

from dualnet.backends.keras.names import dualnet_name
from dualnet.backends.keras.weights import (
    RNNS,
    dilates_kernel,
    from_keras,
    keras_kernel_size,
    to_keras,
)
from dualnet.diagnostics import error, whole_file
from dualnet.io.weights import (
    SHOWN,
    PathLike,
    Stored,
    mismatch_error,
    mismatches,
    read_tensors,
    write_state,
)
from dualnet.ir.types import DType
from dualnet.ops.recurrent import param_names

SHAPES, BIASES = "dualnet_shapes", "dualnet_biases"  # what a load records on a leaf
PENDING = "dualnet_pending"  # an unbuilt leaf's own initializers, while they are replaced
_DTYPES = {d.framework: d.value for d in DType if d.is_float}
_GATES = {"LSTM": 4, "GRU": 3}
_UNBUILT = (
    "call the model once, or load a weight file into it, first (BatchNormalization and "
    "GroupNormalization take loaded weights at the first call)"
)

Shape = tuple  # of sizes; None where neither the layer nor the file gives one


@dataclass(frozen=True)
class Leaf:
    """A layer with weights as a registry op: the attrs `to_keras` needs, its PyTorch tensor
    shapes by name (the registry's order), and how to build it unbuilt (None: Keras builds it
    at its first call, with its initializers `_PER_CHANNEL[op]` returning the weights)."""

    op: str
    attrs: dict
    shapes: dict[str, Shape]
    build: Callable[[], object] | None


# ---------------------------------------------------------------- loading and saving


def load_keras(model: keras.layers.Layer, path: PathLike) -> None:
    stored = read_tensors(path)
    plan = [
        (prefix, layer, _derive(layer, _local(stored, prefix))) for prefix, layer in leaves(model)
    ]
    expected = {
        prefix + name: (_dtype(layer), shape)
        for prefix, layer, leaf in plan
        for name, shape in leaf.shapes.items()
    }
    problems = mismatches(
        expected, {n: (t.dtype, t.shape) for n, t in stored.items()}, os.fspath(path)
    )
    if problems:
        raise mismatch_error(problems, os.fspath(path))
    converted = []
    for prefix, layer, leaf in plan:
        params = _arrays(stored, prefix, leaf, np.dtype(layer.variable_dtype))
        weights = to_keras(leaf.op, leaf.attrs, params)
        _check_fit(prefix, layer, weights, path)
        converted.append((layer, leaf, params, weights))
    for layer, leaf, params, weights in converted:
        _assign(layer, leaf, params, weights)


def save_keras(model: keras.layers.Layer, path: PathLike) -> None:
    found = list(leaves(model))
    unbuilt = [_where(prefix, layer) for prefix, layer in found if not _built(layer)]
    if unbuilt:
        more = f" and {len(unbuilt) - SHOWN} more" if len(unbuilt) > SHOWN else ""
        raise error(
            "E-WEIGHTS",
            "cannot save the weights of unbuilt layers: " + ", ".join(unbuilt[:SHOWN]) + more,
            whole_file(path),
            notes=(_UNBUILT,),
        )
    state = {}
    for prefix, layer in found:
        state.update({prefix + name: v for name, v in _torch_params(prefix, layer, path).items()})
    write_state(state, path)


def held_shapes(model: keras.layers.Layer, expected: dict[str, Shape]) -> dict[str, Shape]:
    """The PyTorch names and shapes of the tensors `model` holds, as a weight file of the
    `expected` names and shapes would read them (they settle what a Keras layer alone leaves
    open: a dilated kernel's size); a built layer whose weights would not take them is an
    E-WEIGHTS error."""
    out = {}
    for prefix, layer in leaves(model):
        leaf = _derive(layer, _local_shapes(expected, prefix))
        out.update({prefix + name: shape for name, shape in leaf.shapes.items()})
        if all(None not in shape for shape in leaf.shapes.values()):
            zeros = {name: np.zeros(shape, "float32") for name, shape in leaf.shapes.items()}
            _check_fit(
                prefix, layer, to_keras(leaf.op, leaf.attrs, zeros), "the checked model's tensors"
            )
    return out


def _local_shapes(shapes: dict[str, Shape], prefix: str) -> dict[str, Shape]:
    return {name[len(prefix) :]: shape for name, shape in shapes.items() if name.startswith(prefix)}


def torch_named(model: keras.layers.Layer, value_of: Callable) -> dict[str, np.ndarray]:
    """A quantity held per Keras variable of a loaded model (`value_of(variable)`: its
    gradient, say) in PyTorch names and layouts, by the same conversions as `save_keras`.
    An LSTM's one Keras bias gives bias_ih (bias_hh: zeros)."""
    out = {}
    for prefix, layer in leaves(model):
        leaf = _derive(layer, getattr(layer, SHAPES, {}))
        params = from_keras(leaf.op, leaf.attrs, [value_of(v) for v in layer.weights])
        out.update({prefix + name: value for name, value in params.items()})
    return out


def _local(stored: dict[str, Stored], prefix: str) -> dict[str, Shape]:
    """The file's tensor shapes under `prefix`, by name within it."""
    return {name[len(prefix) :]: t.shape for name, t in stored.items() if name.startswith(prefix)}


def _arrays(stored: dict[str, Stored], prefix: str, leaf: Leaf, dtype) -> dict[str, np.ndarray]:
    return {
        name: np.frombuffer(stored[prefix + name].data, dtype).reshape(shape)
        for name, shape in leaf.shapes.items()
    }


def _check_fit(prefix: str, layer, weights: list[np.ndarray], source) -> None:
    """A built leaf must hold Keras weights of the converted shapes (it does when it is the
    layer `keras_layer` makes); `source`: where the tensors come from."""
    have = [tuple(v.shape) for v in layer.weights]
    if have and have != [w.shape for w in weights]:
        raise error(
            "E-WEIGHTS",
            f"the Keras layer {_where(prefix, layer)} holds weights of "
            f"shapes {have}, where the file's tensors give {[w.shape for w in weights]}",
            whole_file(source),
            notes=("it is not the layer dualnet's Keras generator writes",),
        )


def _assign(layer, leaf: Leaf, params: dict[str, np.ndarray], weights: list) -> None:
    """Build the leaf if needed, set its weights and record what Keras cannot hold."""
    if not _built(layer) and leaf.build is None:
        _set_at_build(layer, _PER_CHANNEL[leaf.op].values(), weights)
    else:
        if not _built(layer):
            leaf.build()
        layer.set_weights(weights)
    setattr(layer, SHAPES, dict(leaf.shapes))
    if leaf.op == "LSTM":
        setattr(layer, BIASES, {n: v for n, v in params.items() if n.startswith("bias")})


def _set_at_build(layer, initializers: Iterable[str], weights: list) -> None:
    """Make the first build of `layer` create its weights with these values: its initializers
    return them until that build, which puts the layer's own back."""
    initializers = tuple(initializers)
    if PENDING not in vars(layer):  # else a load before the first call already wrapped build
        setattr(layer, PENDING, {name: getattr(layer, name) for name in initializers})
        build = layer.build

        @functools.wraps(build)  # Keras reads build's signature
        def build_then_restore(*args, **kwargs):
            build(*args, **kwargs)
            layer.build = build
            for name, initializer in getattr(layer, PENDING).items():
                setattr(layer, name, initializer)
            delattr(layer, PENDING)

        layer.build = build_then_restore
    for name, value in zip(initializers, weights, strict=True):
        setattr(layer, name, _constant(value))


def _constant(value: np.ndarray):
    """A Keras initializer giving `value` (and refusing another shape, which the first input
    of an unbuilt layer may ask for)."""

    def initializer(shape, dtype=None):
        if tuple(shape) != value.shape:
            raise ValueError(
                f"the loaded weights have shape {value.shape}; the layer's first "
                f"input makes them {tuple(shape)}"
            )
        return value

    return initializer


def _torch_params(prefix: str, layer, path="the Keras model") -> dict[str, np.ndarray]:
    """A built leaf's tensors in PyTorch names and layouts."""
    leaf = _derive(layer, getattr(layer, SHAPES, {}))
    weights = layer.get_weights()
    params = from_keras(leaf.op, leaf.attrs, weights)
    back = to_keras(leaf.op, leaf.attrs, params)
    if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(back, weights, strict=True)):
        raise error(
            "E-WEIGHTS",
            f"cannot save {_where(prefix, layer)}: its Keras kernel has "
            f"non-zero values where `{prefix}weight` has no entries",
            whole_file(path),
            notes=(
                "those are the zeros between the taps of a dilated kernel or outside "
                "the groups of a grouped transposed kernel; training in Keras "
                "changed them",
            ),
        )
    if leaf.op == "LSTM":
        _restore_biases(params, getattr(layer, BIASES, {}))
    return params


def _restore_biases(params: dict[str, np.ndarray], loaded) -> None:
    """`from_keras` gives an LSTM's bias_ih = the Keras bias (b_ih + b_hh) and bias_hh = 0: put
    the loaded pair back while its sum is still the Keras bias, else keep the loaded bias_hh."""
    for hh in [n for n in params if n.startswith("bias_hh")]:
        ih = "bias_ih" + hh.removeprefix("bias_hh")
        if hh in loaded:
            b_ih, b_hh, total = loaded[ih], loaded[hh], params[ih]
            params[ih] = b_ih if np.array_equal(b_ih + b_hh, total) else total - b_hh
            params[hh] = b_hh


# ---------------------------------------------------------------- the model's structure


def leaves(model: keras.layers.Layer, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(state_dict prefix, layer) for every leaf with weights, in declaration order; a prefix
    is empty (the model itself is a leaf) or ends with '.'."""
    if _deriver(model) is not None:
        yield prefix, model
        return
    for name, child in _children(model):
        yield from leaves(child, f"{prefix}{name}.")


def layers_by_path(model: keras.layers.Layer, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dualnet path, layer) for every dualnet layer and sub-model below `model`, each before
    the layers it holds."""
    for name, child in _children(model):
        yield prefix + name, child
        if _deriver(child) is None:
            yield from layers_by_path(child, f"{prefix}{name}.")


# Steps of a Sequential that the generator inserts around dualnet's (not dualnet layers).
_INSERTED_STEPS = (
    keras.layers.Permute,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
)


# Inserted steps that are classes of the generated file (runtime helpers), by name.
_INSERTED_HELPERS = ("_BatchAxis", "_PadSame")


def _children(layer) -> list[tuple[str, keras.layers.Layer]]:
    if isinstance(layer, keras.Sequential):
        steps = [
            s
            for s in layer.layers
            if not isinstance(s, _INSERTED_STEPS) and type(s).__name__ not in _INSERTED_HELPERS
        ]
        return [(str(i), step) for i, step in enumerate(steps)]
    return [
        (dualnet_name(value.name), value)
        for value in vars(layer).values()
        if isinstance(value, keras.layers.Layer)
    ]


def _deriver(layer) -> Callable[[object, dict], Leaf] | None:
    if getattr(layer, "dualnet_op", None) in RNNS:
        return _rnn
    for cls, derive in _LEAVES:
        if isinstance(layer, getattr(keras.layers, cls)):
            return derive
    return None


def _derive(layer, found: dict[str, Shape]) -> Leaf:
    """The leaf's op, attrs and PyTorch shapes, given the file's shapes `found` under its
    prefix (or, on save, the ones recorded by the last load)."""
    return _deriver(layer)(layer, found)


def _where(prefix: str, layer) -> str:
    return f"`{prefix[:-1] or layer.name}` ({type(layer).__name__})"


def _built(layer) -> bool:
    return bool(layer.weights)  # a leaf has weights once built


def _dtype(layer) -> str:
    return _DTYPES.get(layer.variable_dtype, layer.variable_dtype)


# ---------------------------------------------------------------- sizes


def _size(layer, axis: int, from_file: int | None) -> int | None:
    """An input size: axis `axis` of the built layer's first weight, else `from_file`."""
    return int(layer.weights[0].shape[axis]) if _built(layer) else from_file


def _dim(shape: Shape | None, axis: int, per: int = 1) -> int | None:
    """`shape[axis] // per` of a file tensor; None if absent, too short or not divisible."""
    if shape is None or len(shape) <= axis or shape[axis] % per:
        return None
    return shape[axis] // per


def _with_bias(shapes: dict[str, Shape], bias: bool, size: int | None) -> dict[str, Shape]:
    return {**shapes, "bias": (size,)} if bias else shapes


# ---------------------------------------------------------------- leaves


def _dense(layer, found: dict[str, Shape]) -> Leaf:
    cfg = layer.get_config()
    out, fin = cfg["units"], _size(layer, 0, _dim(found.get("weight"), 1))
    return Leaf(
        "Linear",
        {"out": out, "bias": cfg["use_bias"]},
        _with_bias({"weight": (out, fin)}, cfg["use_bias"], out),
        lambda: layer.build((None, fin)),
    )


def _conv(layer, found: dict[str, Shape]) -> Leaf:
    cfg = layer.get_config()
    n, weight = len(cfg["kernel_size"]), found.get("weight")
    drawn = _drawn_as(layer)
    if isinstance(layer, keras.layers.Conv2DTranspose):  # Keras kernel [*k, out, in]
        op, out = "ConvTranspose2d", cfg["filters"]
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
    attrs.update(_geometry(cfg, size, op == "ConvTranspose2d"))
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
    """A ConvTranspose2d's groups: out / the weight's second axis, where that divides both
    channel counts; else 1 (Conv2DTranspose has no groups)."""
    if per_group and out % per_group == 0 and cin is not None and cin % (out // per_group) == 0:
        return out // per_group
    return 1


# BatchNorm and GroupNorm: their tensors [C], with the Keras initializers that create them
_PER_CHANNEL = {
    "BatchNorm": {
        "weight": "gamma_initializer",
        "bias": "beta_initializer",
        "running_mean": "moving_mean_initializer",
        "running_var": "moving_variance_initializer",
    },
    "GroupNorm": {"weight": "gamma_initializer", "bias": "beta_initializer"},
}


def _per_channel(op: str):
    """BatchNorm or GroupNorm; built at the first call (see the module docstring)."""

    def derive(layer, found: dict[str, Shape]) -> Leaf:
        c = _size(layer, 0, _dim(found.get("weight"), 0))
        return Leaf(op, {}, dict.fromkeys(_PER_CHANNEL[op], (c,)), None)

    return derive


def _layernorm(layer, found: dict[str, Shape]) -> Leaf:
    axis = layer.get_config()["axis"]
    rank = len(axis) if isinstance(axis, list | tuple) else 1
    weight = found.get("weight")
    if _built(layer):
        shape = tuple(int(d) for d in layer.weights[0].shape)
    else:
        shape = weight if weight is not None and len(weight) == rank else (None,) * rank
    return Leaf(
        "LayerNorm", {}, {"weight": shape, "bias": shape}, lambda: layer.build((None, *shape))
    )


def _embedding(layer, found: dict[str, Shape]) -> Leaf:
    cfg = layer.get_config()
    return Leaf("Embedding", {}, {"weight": (cfg["input_dim"], cfg["output_dim"])}, layer.build)


def _attention(layer, found: dict[str, Shape]) -> Leaf:
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
        {"dim": dim, "heads": heads, "bias": bias},
        shapes,
        lambda: layer.build((None, None, dim), (None, None, dim)),
    )


def _rnn(layer, found: dict[str, Shape]) -> Leaf:
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


_LEAVES = (
    ("Dense", _dense),
    ("Conv1D", _conv),
    ("Conv2D", _conv),
    ("Conv3D", _conv),
    ("DepthwiseConv1D", _conv),
    ("DepthwiseConv2D", _conv),
    ("Conv2DTranspose", _conv),
    ("BatchNormalization", _per_channel("BatchNorm")),
    ("GroupNormalization", _per_channel("GroupNorm")),
    ("LayerNormalization", _layernorm),
    ("Embedding", _embedding),
    ("MultiHeadAttention", _attention),
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

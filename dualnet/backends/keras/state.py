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
  `ZeroPadding1D/2D/3D` / `Cropping1D/2D/3D` (a convolution's explicit padding and cropping,
  its call in forward).
- Leaves with weights, by Keras class (each layer rule's `classes` and `leaf`:
  `keras.lowering.KerasLayerRule`, `leaves.py`): Dense (Linear), Conv1D/2D/3D, DepthwiseConv1D/2D
  (Conv1d/2d with groups = in_channels), Conv1D/2D/3DTranspose (ConvTranspose1d/2d/3d),
  BatchNormalization,
  LayerNormalization, RMSNormalization, GroupNormalization, Embedding, MultiHeadAttention,
  and the generated RNN
  helper: a layer with `dualnet_op` ("LSTM" or "GRU"), `hidden`, `num_layers` and
  `bidirectional`, whose `get_weights()` list is `to_keras`'s. Any other layer is walked into
  (a generated class; a built-in layer without weights has no children).

A leaf's attrs for the conversions come from its Keras config and from tensor shapes: input
sizes from its built weights or, unbuilt, from the file. A conv's PyTorch kernel size comes from
the file: a Keras kernel larger than it is the zero-dilated kernel of `keras.weights`, which
gives the dilation; a ConvTranspose's groups come from its weight's second axis. Without a
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
ConvTranspose's groups), and for an LSTM `dualnet_biases`, bias_ih and bias_hh, of which
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

import keras
import numpy as np

from dualnet.backends.keras.leaves import Leaf, Shape, built
from dualnet.backends.keras.names import dualnet_name
from dualnet.backends.keras.weights import from_keras, keras_rule, to_keras
from dualnet.diagnostics import error, whole_file
from dualnet.io.weights import (
    SHOWN,
    PathLike,
    Stored,
    mismatch_error,
    mismatches,
    read_tensors,
    without_aliases,
    write_state,
)
from dualnet.ir.types import DType
from dualnet.ops import REGISTRY

SHAPES, BIASES = "dualnet_shapes", "dualnet_biases"  # what a load records on a leaf
PENDING = "dualnet_pending"  # an unbuilt leaf's own initializers, while they are replaced
_DTYPES = {d.framework: d.value for d in DType}
_UNBUILT = (
    "call the model once, or load a weight file into it, first (BatchNormalization and "
    "GroupNormalization take loaded weights at the first call)"
)


# ---------------------------------------------------------------- loading and saving


def load_keras(model: keras.layers.Layer, path: PathLike) -> None:
    stored = without_aliases(read_tensors(path), tied(model), os.fspath(path))
    plan = [
        (prefix, layer, _derive(layer, _local(stored, prefix))) for prefix, layer in leaves(model)
    ]
    expected = {
        _key(prefix, name): (_dtype(layer), shape)
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
    unbuilt = [_where(prefix, layer) for prefix, layer in found if not built(layer)]
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
        state.update(
            {_key(prefix, name): v for name, v in _torch_params(prefix, layer, path).items()}
        )
    write_state(state, path)


def held_shapes(model: keras.layers.Layer, expected: dict[str, Shape]) -> dict[str, Shape]:
    """The PyTorch names and shapes of the tensors `model` holds, as a weight file of the
    `expected` names and shapes would read them (they settle what a Keras layer alone leaves
    open: a dilated kernel's size); a built layer whose weights would not take them is an
    E-WEIGHTS error."""
    out = {}
    for prefix, layer in leaves(model):
        leaf = _derive(layer, _local_shapes(expected, prefix))
        out.update({_key(prefix, name): shape for name, shape in leaf.shapes.items()})
        if all(None not in shape for shape in leaf.shapes.values()):
            zeros = {name: np.zeros(shape, "float32") for name, shape in leaf.shapes.items()}
            _check_fit(
                prefix, layer, to_keras(leaf.op, leaf.attrs, zeros), "the checked model's tensors"
            )
    return out


def _key(prefix: str, name: str) -> str:
    """The state_dict name of a leaf's tensor `name` under `prefix` (which ends with '.'); a
    Parameter's or Buffer's one tensor, "", is named by the prefix itself."""
    return prefix + name if name else prefix[:-1]


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
        out.update({_key(prefix, name): value for name, value in params.items()})
    return out


def _local(stored: dict[str, Stored], prefix: str) -> dict[str, Shape]:
    """The file's tensor shapes under `prefix`, by name within it."""
    return {name[len(prefix) :]: t.shape for name, t in stored.items() if name.startswith(prefix)}


def _arrays(stored: dict[str, Stored], prefix: str, leaf: Leaf, dtype) -> dict[str, np.ndarray]:
    return {
        name: np.frombuffer(stored[_key(prefix, name)].data, dtype).reshape(shape)
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
    rule = keras_rule(leaf.op)
    if not built(layer) and leaf.build is None:
        _set_at_build(layer, rule.first_call.values(), weights)
    else:
        if not built(layer):
            leaf.build()
        layer.set_weights(weights)
    setattr(layer, SHAPES, dict(leaf.shapes))
    if rule.summed_biases:
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
    if keras_rule(leaf.op).summed_biases:
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


def tied(model: keras.layers.Layer, prefix: str = "") -> dict[str, str]:
    """`{alias: owner}` state_dict names of the tied layers below `model` (the generated
    `_Tied`, whose `dualnet_tied` names its owner's tensor below the class holding it)."""
    out = {}
    for name, child in _children(model):
        owner = getattr(child, "dualnet_tied", None)
        if owner is not None:
            out[f"{prefix}{name}.weight"] = prefix + owner
        elif _deriver(child) is None:
            out.update(tied(child, f"{prefix}{name}."))
    return out


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
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
)


# Inserted steps that are classes of the generated file (runtime helpers), by name.
_INSERTED_HELPERS = ("_BatchAxis", "_PadSame", "_Shaped", "_ReadPart", "_ZeroUpsample")


def _children(layer) -> list[tuple[str, keras.layers.Layer]]:
    if isinstance(layer, keras.Sequential):
        steps = [
            s
            for s in layer.layers
            if not isinstance(s, _INSERTED_STEPS) and type(s).__name__ not in _INSERTED_HELPERS
        ]
        if type(layer).__name__ == "_NamedSequential":
            return [(dualnet_name(step.name), step) for step in steps]
        return [(str(i), step) for i, step in enumerate(steps)]
    return [
        (dualnet_name(value.name), value)
        for value in vars(layer).values()
        if isinstance(value, keras.layers.Layer)
    ]


def _deriver(layer) -> Callable[[object, dict], Leaf] | None:
    """The `leaf` of the layer rule whose Keras classes `layer` is an instance of (a
    generated helper layer names its op: `dualnet_op`); None for a layer to walk into."""
    op = getattr(layer, "dualnet_op", None)
    if op is not None:
        return keras_rule(op).leaf
    for classes, derive in _leaf_classes():
        if isinstance(layer, classes):
            return derive
    return None


@functools.cache
def _leaf_classes() -> tuple[tuple[tuple[type, ...], Callable[[object, dict], Leaf]], ...]:
    """(Keras classes, deriver) of every layer rule with weights, in registry order."""
    rules = (keras_rule(name) for name, op in REGISTRY.items() if op.is_layer)
    return tuple(
        (tuple(getattr(keras.layers, cls) for cls in rule.classes), rule.leaf)
        for rule in rules
        if rule.classes
    )


def _derive(layer, found: dict[str, Shape]) -> Leaf:
    """The leaf's op, attrs and PyTorch shapes, given the file's shapes `found` under its
    prefix (or, on save, the ones recorded by the last load)."""
    return _deriver(layer)(layer, found)


def _where(prefix: str, layer) -> str:
    return f"`{prefix[:-1] or layer.name}` ({type(layer).__name__})"


def _dtype(layer) -> str:
    return _DTYPES.get(layer.variable_dtype, layer.variable_dtype)

"""How generated Keras code names a dualnet layer (no Keras import).

A layer `conv1` of a .dnet model is the attribute `self.conv1` of the generated Keras class.
A name that would shadow an attribute of `keras.Model` / `keras.layers.Layer` (`name`,
`call`, `weights`, private ones such as `_layers`), a Python keyword or builtin, a name
starting with `_` (Keras keeps its own state there), or such a name followed by underscores,
gets one more trailing `_`: `self.weights_`, and a layer really named `weights_` becomes
`weights__`.

The Keras layer itself is named as in the .dnet file (`keras_name`), the steps of a
Sequential by position ("0", "1", ... as in PyTorch's nn.Sequential), so `summary()`, variable
paths (`res_net18/layer1/0/conv1/kernel`) and checkpoints read as the state_dict names. A name
TensorFlow's scope rules refuse (a leading `_` or `-`: names must start with a letter, digit
or `.`) gets a leading `.`, which no .dnet name has: `_proj` is `._proj`; so does a child
named by an f-string that starts with an expression (its first character is known only at
run time). A quoted name that is no Python identifier (`` `block1-0` ``) is an attribute set
and read with `setattr`/`getattr`. The weight loader finds each layer's state_dict prefix
from its Keras name with `dualnet_name`, whatever the attribute.
"""

from __future__ import annotations

from dualnet.backends.common.naming import PYTHON_RESERVED
from dualnet.backends.keras.base_attrs import KERAS_BASE_ATTRS


def _reserved(name: str) -> bool:
    stem = name.rstrip("_")
    return not stem or stem in KERAS_BASE_ATTRS or stem in PYTHON_RESERVED or name.startswith("_")


def keras_attr(name: str) -> str:
    """The attribute holding dualnet layer `name` in a generated Keras class."""
    return name + "_" if _reserved(name) else name


def keras_name(name: str) -> str:
    """The Keras layer name of dualnet layer (or Sequential step) `name`."""
    return "." + name if name.startswith(("_", "-")) else name


def dualnet_name(layer_name: str) -> str:
    """The dualnet layer name of a Keras layer named by `keras_name`."""
    return layer_name[1:] if layer_name.startswith(".") else layer_name


def keras_name_source(key: str, first: str | None) -> str:
    """Python source of the Keras name of a child named at run time by the f-string source
    `key`, whose text starts with `first` (None: with an expression)."""
    if first is not None and keras_name(first) == first:
        return key
    return 'f".' + key[2:]

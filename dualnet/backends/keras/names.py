"""How generated Keras code names a dualnet layer (no Keras import).

A layer `conv1` of a .dnet model is the attribute `self.conv1` of the generated Keras class.
A name that would shadow an attribute of `keras.Model` / `keras.layers.Layer` (`name`,
`call`, `weights`, private ones such as `_layers`), a Python keyword or builtin, a name
starting with `_` (Keras keeps its own state there), or such a name followed by underscores,
gets one more trailing `_`: `self.weights_`, and a layer really named `weights_` becomes
`weights__`. The rule is one-to-one, and the weight loader inverts it with `dualnet_name` to
find each layer's state_dict prefix.
"""

from __future__ import annotations

from dualnet.backends.keras.base_attrs import KERAS_BASE_ATTRS
from dualnet.backends.naming import PYTHON_RESERVED


def _reserved(name: str) -> bool:
    stem = name.rstrip("_")
    return (not stem or stem in KERAS_BASE_ATTRS or stem in PYTHON_RESERVED
            or name.startswith("_"))


def keras_attr(name: str) -> str:
    """The attribute holding dualnet layer `name` in a generated Keras class."""
    return name + "_" if _reserved(name) else name


def dualnet_name(attr: str) -> str | None:
    """The dualnet layer name an attribute of a generated class holds, or None when the
    attribute cannot hold one (Keras's own `_state`)."""
    if attr.endswith("_") and _reserved(attr[:-1]):
        return attr[:-1]
    return None if _reserved(attr) else attr

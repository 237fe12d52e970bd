"""How generated Keras code names a dualnet layer (no Keras import).

A layer `conv1` of a .dnet model is the attribute `self.conv1` of the generated Keras class.
Names that would shadow an attribute of `keras.Model` / `keras.layers.Layer` (`name`, `call`,
`weights`, `layers`, ...), Python keywords, and names starting with `_` (Keras keeps its own
state there) get a trailing `_`: `self.weights_`.

The Keras layer itself is named as in the .dnet file (`keras_name`), the steps of a
Sequential by position ("0", "1", ... as in PyTorch's nn.Sequential), so `summary()`, variable
paths (`res_net18/layer1/0/conv1/kernel`) and checkpoints read as the state_dict names. A name
TensorFlow's scope rules refuse (a leading `_`: names must start with a letter, digit or `.`)
gets a leading `.`, which no .dnet name has: `_proj` is `._proj`. The weight loader finds each
layer's state_dict prefix from its Keras name with `dualnet_name`.
"""

from __future__ import annotations

import keyword

# Public attributes of keras.Model and keras.layers.Layer (class and instance), Keras 3.
KERAS_ATTRS = frozenset({
    "activity_regularizer", "add_loss", "add_metric", "add_variable", "add_weight", "autocast",
    "build", "build_from_config", "built", "call", "call_signature_parameters", "compile",
    "compile_from_config", "compiled", "compiled_loss", "compiled_metrics", "compute_dtype",
    "compute_loss", "compute_mask", "compute_metrics", "compute_output_shape",
    "compute_output_spec", "count_params", "distribute_reduction_method",
    "distribute_strategy", "dtype", "dtype_policy", "evaluate", "export", "fit", "from_config",
    "get_build_config", "get_compile_config", "get_config", "get_layer", "get_metrics_result",
    "get_quantization_layer_structure", "get_state_tree", "get_weights", "input",
    "input_dtype", "input_spec", "jit_compile", "layers", "load_own_variables", "load_weights",
    "loss", "losses", "make_predict_function", "make_test_function", "make_train_function",
    "metrics", "metrics_names", "metrics_variables", "name", "non_trainable_variables",
    "non_trainable_weights", "optimizer", "output", "path", "predict", "predict_function",
    "predict_on_batch", "predict_step", "quantization_mode", "quantize", "quantized_build",
    "quantized_call", "rematerialized_call", "reset_metrics", "run_eagerly", "save",
    "save_own_variables", "save_weights", "set_state_tree", "set_weights", "stateless_call",
    "stateless_compute_loss", "steps_per_execution", "summary", "supports_jit",
    "supports_masking", "symbolic_call", "test_function", "test_on_batch", "test_step",
    "to_json", "train_function", "train_on_batch", "train_step", "trainable",
    "trainable_variables", "trainable_weights", "unrolled_steps_per_execution",
    "variable_dtype", "variables", "weights",
})


def _reserved(name: str) -> bool:
    return (name in KERAS_ATTRS or name.startswith("_") or keyword.iskeyword(name)
            or keyword.issoftkeyword(name))


def keras_attr(name: str) -> str:
    """The attribute holding dualnet layer `name` in a generated Keras class."""
    return name + "_" if _reserved(name) else name


def keras_name(name: str) -> str:
    """The Keras layer name of dualnet layer (or Sequential step) `name`."""
    return "." + name if name.startswith("_") else name


def dualnet_name(layer_name: str) -> str:
    """The dualnet layer name of a Keras layer named by `keras_name`."""
    return layer_name[1:] if layer_name.startswith("._") else layer_name

"""The Keras 3 (TensorFlow) backend.

`dualnet.backends.keras.weights` maps each built-in layer to the Keras layer that implements
its meaning channels-last, and converts its parameters between dualnet's weight files
(PyTorch names and layouts) and that layer's `get_weights()` list, in pure NumPy.

Nothing here imports TensorFlow or Keras at module level (the runtime helpers of
`backends/runtime/keras_helpers.py` are read as text).
"""

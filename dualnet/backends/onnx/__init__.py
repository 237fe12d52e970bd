"""The ONNX backend: one ONNX graph emitted directly from the IR (no tracing)."""

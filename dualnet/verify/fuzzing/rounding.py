"""When a float32 difference between frameworks is rounding, not semantics: the measures
`run.excuse_rounding` (outputs) and `training` (training runs) hold differences to."""

ROUNDING_FACTOR = 8  # two float32 results differ by up to twice the error of each, and one
# framework's error (PyTorch's, measured) says only roughly what the other's is (seed 6001: 5.5x)
NOISE = 1e-2  # a float32 result this far from its float64 one is rounding noise, not a value

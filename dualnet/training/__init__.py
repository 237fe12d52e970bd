"""Training in both frameworks from one description: `spec.OptimizerSpec` (PyTorch's
optimisers, schedules and clipping), built by `torch_optim` and `keras_optim`."""

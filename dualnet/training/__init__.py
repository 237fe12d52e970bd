"""Training in both frameworks from one description: `spec.OptimizerSpec` (PyTorch's
optimisers, schedules and clipping), built by `torch_optim` and `keras_optim`; `spec.TrainSpec`
(model, loss, optimiser, metrics, accumulation), written out as training code by `codegen`
(`torch_code`, `keras_code`) and run by `dualnet train` (`loop`, with `data`, `engines`,
`checkpoint`, `report`)."""

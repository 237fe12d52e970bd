"""The two frameworks behind `dualnet train`'s loop, each running the generated training file
(`codegen.training_source`) on the generated model: one batch of training or evaluation,
the weights in dualnet's names, and the optimiser's state as tensors by name plus JSON."""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path

import numpy as np

from dualnet.compiler import Program, execute
from dualnet.io.files import temporary_directory
from dualnet.training.codegen import Roles
from dualnet.training.distributed import (
    global_logs,
    keras_strategy,
    keras_workers,
    shard,
    torch_group,
)
from dualnet.training.files import training_source
from dualnet.training.spec import TrainSpec


def generated(program: Program, spec: TrainSpec, target: str) -> dict:
    """The generated training file's namespace."""
    source = training_source(program, spec, target)
    stem = Path(program.path).stem
    return execute(source, f"{stem}_{target}_train.py", f"dualnet_generated.{stem}_train")


class TorchEngine:
    """The generated PyTorch module and training file."""

    name = "torch"

    def __init__(
        self, program: Program, roles: Roles, spec: TrainSpec, weights: str, processes: int = 1
    ):
        import torch

        from dualnet.backends.torch.backend import TORCH

        self.torch = torch
        self.code = generated(program, spec, "torch")
        self.model = program.torch(spec.model)
        self.save, self.load = TORCH.weights_io()
        self.load(self.model, weights)
        self.joined = processes > 1 and not torch.distributed.is_initialized()
        self.rank, self.world = torch_group(processes) if processes > 1 else (0, 1)
        self.stepped = self.model  # what train_step runs: the model, or it in DDP
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.stepped = DistributedDataParallel(self.model)
        self.optimizer = self.code["make_optimizer"](self.model)
        self.roles = roles
        self.where = f"PyTorch {torch.__version__} (CPU)"
        if self.world > 1:
            self.where += f", DistributedDataParallel over {self.world} gloo processes"

    def close(self) -> None:
        """In a group: free DDP, and leave the group when this engine joined it, while Python
        is alive. DDP holds the group in a reference cycle, and a gloo thread still releasing
        the last all-reduce needs the GIL, which interpreter shutdown denies it: the process
        would abort ("terminate called without an active exception") after a finished run."""
        if self.world == 1:
            return
        self.stepped = self.model
        gc.collect()
        if self.joined:
            self.torch.distributed.destroy_process_group()

    def _tensors(self, batch, names):
        return [self.torch.from_numpy(np.ascontiguousarray(batch[n])) for n in names]

    def train(self, batch) -> dict[str, float]:
        """One global batch; in a group, the rank's share of it, its logs averaged over
        the group."""
        if self.world > 1:
            batch = shard(batch, self.rank, self.world)
        logs = self.code["train_step"](
            self.stepped,
            self.optimizer,
            self._tensors(batch, self.roles.inputs),
            self._tensors(batch, [n for n, _ in self.roles.targets]),
        )
        logs = {k: float(v) for k, v in logs.items()}
        if self.world > 1:
            logs = global_logs(logs, len(batch[self.roles.inputs[0]]))
        return logs

    def evaluate(self, batch) -> dict[str, float]:
        logs = self.code["eval_step"](
            self.model,
            self._tensors(batch, self.roles.inputs),
            self._tensors(batch, [n for n, _ in self.roles.targets]),
        )
        return {k: float(v) for k, v in logs.items()}

    def any_rank(self, flag: bool) -> bool:
        """Whether `flag` holds on any rank (a Ctrl-C that reached one stops all alike)."""
        if self.world == 1:
            return flag
        value = self.torch.tensor([int(flag)])
        self.torch.distributed.all_reduce(value, op=self.torch.distributed.ReduceOp.MAX)
        return bool(value)

    @property
    def lr(self) -> float:
        return float(self.optimizer.lr)

    def save_weights(self, path: str) -> None:
        self.save(self.model, path)

    def load_weights(self, path: str) -> None:
        self.load(self.model, path)

    def optimizer_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Each state tensor as `<parameter>.<key>` (`cnn.conv1.weight.exp_avg`), the rest
        (parameter groups, scheduler, batch count) as JSON."""
        state = self.optimizer.state_dict()
        names = self._parameter_names()
        tensors, rest = {}, dict(state)
        inner = dict(state["optimizer"])
        for index, values in inner.pop("state").items():
            for key, value in values.items():
                tensors[f"{names[index]}.{key}"] = value.detach().cpu().numpy()
        rest["optimizer"] = inner
        return tensors, rest

    def load_optimizer_state(self, tensors: dict[str, np.ndarray], rest: dict) -> None:
        names = self._parameter_names()
        shapes = self.expected_state()
        state: dict = {}
        for key, value in tensors.items():
            name, _, what = key.rpartition(".")
            value = value if value.shape == shapes[name] else value.reshape(())  # a step
            state.setdefault(names.index(name), {})[what] = self.torch.from_numpy(value.copy())
        self.optimizer.load_state_dict({**rest, "optimizer": {**rest["optimizer"], "state": state}})

    def expected_state(self) -> dict[str, tuple]:
        """name → shape of every parameter a state tensor may belong to."""
        return {n: tuple(p.shape) for n, p in self.model.named_parameters() if p.requires_grad}

    def _parameter_names(self) -> list[str]:
        """The parameters in the optimiser's order (its state's indices)."""
        by_id = {id(p): n for n, p in self.model.named_parameters()}
        groups = self.optimizer.optimizer.param_groups
        return [by_id[id(p)] for g in groups for p in g["params"]]


class KerasEngine:
    """The generated Keras model, compiled by the generated training file: `train_on_batch`
    is the train step `fit()` runs."""

    name = "keras"

    rank = 0  # one process, whatever the devices
    custom_loop = False  # under a strategy: `fit`'s step, unless accumulating (it fails then)

    def __init__(
        self, program: Program, roles: Roles, spec: TrainSpec, weights: str, replicas: int = 1
    ):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        from dualnet.backends.keras.backend import KERAS

        self.code = generated(program, spec, "keras")
        self.save, self.load = KERAS.weights_io()
        self.where = f"Keras {keras.__version__} ({keras.backend.backend()})"
        self.program, self.spec, self.roles = program, spec, roles
        self.strategy = self.step = None
        if replicas > 1:
            self.strategy = self._strategy(replicas)
        with self.strategy.scope() if self.strategy else contextlib.nullcontext():
            self.model = self._compiled(weights)
        if self.strategy and (self.custom_loop or spec.accumulate > 1):
            self.step = self.code["make_distributed_step"](self.model, self.strategy)

    def close(self) -> None:
        """Nothing to release."""

    def _strategy(self, replicas: int):
        strategy = keras_strategy(replicas)
        self.where += f", MirroredStrategy over {', '.join(strategy.extended.worker_devices)}"
        return strategy

    def _compiled(self, weights: str):
        """The generated model from `weights`, compiled by the generated training file."""
        model = self.program.keras(self.spec.model)
        self.load(model, weights)
        self.code["compile_for_training"](model)
        model.optimizer.build(model.trainable_variables)
        return model

    def _split(self, batch):
        x = [batch[n] for n in self.roles.inputs]
        y = [batch[n] for n, _ in self.roles.targets]
        return (x[0] if len(x) == 1 else tuple(x)), (y[0] if len(y) == 1 else tuple(y))

    def train(self, batch) -> dict[str, float]:
        if self.step:
            logs = self.step(*self._split(batch))
        else:
            logs = self.model.train_on_batch(*self._split(batch), return_dict=True)
        return {k: float(v) for k, v in logs.items()}

    def evaluate(self, batch) -> dict[str, float]:
        logs = self.model.test_on_batch(*self._split(batch), return_dict=True)
        return {k: float(v) for k, v in logs.items()}

    @staticmethod
    def any_rank(flag: bool) -> bool:
        return flag  # one process

    @property
    def lr(self) -> float:
        return float(np.asarray(self.model.optimizer.learning_rate))

    def save_weights(self, path: str) -> None:
        self.save(self.model, path)

    def load_weights(self, path: str) -> None:
        self.load(self.model, path)

    def optimizer_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Each optimizer variable by `_names`'s name."""
        return {n: np.asarray(v.numpy()) for n, v in self._named()}, {}

    def load_optimizer_state(self, tensors: dict[str, np.ndarray], rest: dict) -> None:
        for name, v in self._named():
            v.assign(tensors[name].reshape(v.shape))

    def expected_state(self) -> dict[str, tuple]:
        return {n: tuple(v.shape) for n, v in self._named()}

    def _named(self) -> list[tuple]:
        """The optimizer's variables by their path without the optimizer's and the model's
        names, which Keras numbers per process (`iteration`, `fc_kernel_exp_avg`)."""
        prefix = self.model.name + "_"
        return [
            (v.path.split("/", 1)[-1].removeprefix(prefix), v)
            for v in self.model.optimizer.variables
        ]


class KerasWorkerEngine(KerasEngine):
    """`--backend keras --distributed N --multi-worker`: this process is one of N workers of
    a MultiWorkerMirroredStrategy (its TF_CONFIG), training on its share of each global
    batch with the generated `make_distributed_step` (Keras's `fit` fails under that
    strategy); rank 0 validates on a copy of the model outside the strategy (inside it, the
    workers would wait for each other)."""

    custom_loop = True

    def __init__(self, program, roles, spec, weights, workers: int):
        super().__init__(program, roles, spec, weights, workers)
        import tensorflow as tf

        self.evaluator, self.copied = None, False
        strategy = self.strategy

        @tf.function
        def any_worker(flag):
            flags = strategy.run(lambda f: f, (flag,))
            return strategy.reduce("SUM", flags, axis=None)

        self._any_worker = any_worker

    def _strategy(self, replicas: int):
        strategy, self.rank, self.world = keras_workers(replicas)
        self.where += f", MultiWorkerMirroredStrategy over {self.world} worker processes"
        return strategy

    def train(self, batch) -> dict[str, float]:
        self.copied = False
        logs = self.step(*self._split(shard(batch, self.rank, self.world)))
        return {k: float(v) for k, v in logs.items()}

    def evaluate(self, batch) -> dict[str, float]:
        if not self.copied:  # the weights trained since the last evaluation
            with temporary_directory() as tmp:
                file = os.path.join(tmp, "weights.safetensors")
                self.save(self.model, file)
                if self.evaluator is None:
                    self.evaluator = self._compiled(file)
                else:
                    self.load(self.evaluator, file)
            self.copied = True
        logs = self.evaluator.test_on_batch(*self._split(batch), return_dict=True)
        return {k: float(v) for k, v in logs.items()}

    def any_rank(self, flag: bool) -> bool:
        return bool(self._any_worker(np.int32(flag)) > 0)


ENGINES = {"torch": TorchEngine, "keras": KerasEngine}

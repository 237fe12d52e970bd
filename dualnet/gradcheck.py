"""`dualnet gradcheck`: finite differences in float64 against each backend's autodiff, and
the gradients of one loss compared across backends; the worst tensor of each is reported.

The loss is L = Σ_k Σ output_k · R_k with fixed standard-normal R_k, the same in every
backend, in inference mode (Dropout off, BatchNorm on its running statistics), on the random
inputs of `dualnet parity` (B=1 unless `dims` say otherwise). Everything runs in float64.

Finite differences, as torch.autograd.gradcheck's fast mode: per tensor — each trainable
parameter, each float input — one standard-normal direction v; the difference quotient of L
along v is compared with ⟨∇L, v⟩. Decisions, each measured on the zoo:
- The error is |quotient − ⟨∇L, v⟩| / max(‖∇L‖, ν): relative to the gradient's norm, since
  E⟨∇L, v⟩² = ‖∇L‖² and a v nearly orthogonal to ∇L would inflate |⟨∇L, v⟩|. Below
  ν = u·S / (ε·TOLERANCE), with u float64's epsilon and S = Σ |output · R|, the quotient's
  rounding error alone would exceed the tolerance: a gradient that is zero in exact
  arithmetic (the key bias of attention, which softmax cancels) is compared with ν.
- Step ε = 1e-8, and the best of three quotients: central, forward and backward; where
  all three miss, the same at ε / 10. ReLU, max pooling and clamp have kinks, and in a CNN
  at 224x224 some unit lies within any step of one; a kink crossed on one side of θ spoils
  the central quotient and that side's, not the other side's (ResNet-18, central quotient
  only: errors to 3e-2 at ε = 1e-6, 4e-3 at 1e-8; the best of three at 1e-8: 3e-7).
  MobileNetV2's first layers move so many units that at 1e-8 kinks lie on both sides (its
  stem: 3e-3); at 1e-9, 1e-8. A wrong gradient spoils every quotient at every step.
- BatchNorm's running statistics are first set to the batch statistics of the inputs (one
  calibration pass in PyTorch); the parameters are the given ones. At a seeded
  initialisation (mean 0, variance 1) a deep network's activations shrink layer by layer in
  inference mode — MobileNetV2's to 3e-7 — its kinks lie closer than any step and some of
  its gradients are 1e-8: no difference quotient resolves them.

Per backend: PyTorch runs the generated module `.double()` (autograd); Keras the generated
model built under a float64 floatx and dtype policy from a float64 weight file
(GradientTape), with directions per Keras variable, named by the dualnet layer and the Keras
weight (`encoder.0.attention.query/kernel`). ONNX has no autodiff, and ONNX Runtime no
float64 Conv, ConvTranspose, LSTM or GRU kernels: the model's float64 ONNX graph
(`backends/onnx/float64.py`), run by ONNX's reference runtime, is differenced along
PyTorch's directions against PyTorch's gradient, so the graph is checked to have the
reference gradient (its float32 numerics in ONNX Runtime are `dualnet parity`'s).

Across backends, PyTorch's and Keras's gradients per tensor in PyTorch's names and layouts
(`torch_named`; Keras's one LSTM bias, b_ih + b_hh, against both PyTorch biases), error
max |a − b| / max |b|. In float64 only: in float32 a unit whose pre-activation rounds to
the other side of a ReLU in one framework changes the weight gradient of a 7x7 map by about
1/49 (ResNet-18's layer4: 5.6e-2 between PyTorch and Keras in float32, 1.4e-14 in float64).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import numpy as np

from dualnet.compiler import Program, initial_weights
from dualnet.diagnostics import error, option
from dualnet.extras import needs_extras
from dualnet.files import temporary_directory
from dualnet.parity import random_inputs
from dualnet.table import render_table
from dualnet.weights import ignored, write_state

EPS = 1e-8
TOLERANCE = 1e-5  # finite differences; the zoo's worst is 1.2e-6 (U-Net, Keras)
GRADIENT_TOLERANCE = 1e-7  # across backends; the zoo's worst is 6.6e-9 (BERT: Keras's gelu)
_INPUT = " (input)"


@dataclass(frozen=True)
class Check:
    """One tensor's finite-difference check in one backend."""

    backend: str
    tensor: str
    error: float

    @property
    def ok(self) -> bool:
        return self.error <= TOLERANCE


@dataclass(frozen=True)
class Agreement:
    """One tensor's gradient in two backends."""

    pair: tuple[str, str]
    tensor: str
    error: float

    @property
    def ok(self) -> bool:
        return self.error <= GRADIENT_TOLERANCE


@needs_extras
def gradcheck(
    program: Program,
    model: str | None,
    backends: list[str],
    weights: str | None = None,
    seed: int = 0,
    dims: dict[str, int] | None = None,
    eps: float = EPS,
) -> tuple[list[Check], list[Agreement], list[str]]:
    """The checks of every tensor in every backend, the agreements of every tensor's
    gradient across backends, and how each backend was checked."""
    if not 0 < eps < 1:
        raise error("E-INPUT", f"the step {eps:g} is not in (0, 1)", option("--eps"))
    summary = program.check(model)
    inputs = random_inputs(summary, {"B": 1, **(dims or {})}, seed, program.max_params)
    checks, where, agreements = [], [], []
    with temporary_directory() as tmp:
        file = os.path.join(tmp, "float64.safetensors")
        write_state(_float64(initial_weights(summary, weights, seed, program.max_params)), file)
        state, outputs = _Torch(program, model, file, inputs).calibrated()
        write_state(state, file)
        rng = np.random.default_rng([seed, 1])
        loss = [rng.standard_normal(o.shape) for o in outputs]
        reference = _Torch(program, model, file, inputs, loss)
        gradients = reference.gradients()
        directions = _directions(reference.tensors, seed, 2)
        if "torch" in backends:
            checks += _checks("torch", reference, loss, gradients, directions, eps)
            where.append(f"torch: {reference.where}")
        if "keras" in backends:
            keras = _Keras(program, model, file, inputs, loss)
            own = keras.gradients()
            checks += _checks("keras", keras, loss, own, _directions(keras.tensors, seed, 3), eps)
            where.append(f"keras: {keras.where}")
            if "torch" in backends:
                theirs, aliases = keras.torch_named(own), _keras_aliases(summary)
                agreements = [
                    Agreement(
                        ("torch", "keras"), name, _relative(theirs[aliases.get(name, name)], ours)
                    )
                    for name, ours in gradients.items()
                ]
        if "onnx" in backends:
            onnx = _Onnx(program, model, state, inputs, reference.tensors)
            checks += _checks("onnx", onnx, loss, gradients, directions, eps)
            where.append(f"onnx: {onnx.where}, differenced against PyTorch's gradient")
    return checks, agreements, where


def check_table(model: str, checks: list[Check], eps: float) -> str:
    """Per backend: the worst tensor's finite-difference check."""
    return _worst_table(
        f"{model}: finite differences in float64 (step {eps:g}) against "
        f"autodiff; |quotient - <grad, v>| / |grad|, tolerance {TOLERANCE:g}",
        "backend",
        checks,
        lambda c: c.backend,
        "FAIL",
    )


def agreement_table(model: str, agreements: list[Agreement]) -> str:
    """Per backend pair: the worst tensor's gradient difference."""
    if not agreements:
        return (
            f"{model}: no gradients compared across backends (that needs torch and keras; "
            "ONNX has no autodiff)"
        )
    return _worst_table(
        f"{model}: float64 gradients across backends; max |a-b| / max |b| "
        f"per tensor, tolerance {GRADIENT_TOLERANCE:g}",
        "backends",
        agreements,
        lambda a: " vs ".join(a.pair),
        "MISMATCH",
    )


def _worst_table(title: str, by: str, rows: list, key, failed: str) -> str:
    table = [
        [k, str(len(mine)), worst.tensor, f"{worst.error:.3g}", "ok" if worst.ok else failed]
        for k, mine, worst in _worst(rows, key)
    ]
    return render_table(
        title, [by, "tensors", "worst tensor", "error", "verdict"], table, right={1, 3}
    )


def _worst(rows: list, key) -> list[tuple]:
    """(key, its rows, the worst of them: a failing one first, then the largest error)."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return [(k, mine, max(mine, key=lambda r: (not r.ok, r.error))) for k, mine in groups.items()]


def _checks(
    backend: str,
    side,
    loss: list[np.ndarray],
    gradients: dict[str, np.ndarray],
    directions: dict[str, np.ndarray],
    eps: float,
) -> list[Check]:
    """Per tensor of `side`: the best difference quotient of the loss along its direction
    (step `eps`, and `eps` / 10 where that misses) against ⟨gradient, direction⟩, relative
    to max(‖gradient‖, the rounding floor ν of the step)."""
    outputs = side.outputs()
    base = _loss_value(outputs, loss)
    terms = sum(float(np.sum(np.abs(o * r))) for o, r in zip(outputs, loss, strict=True))
    out = []
    for name, value in side.tensors.items():
        v, g = directions[name], gradients[name]
        slope, norm = float(np.vdot(g, v)), float(np.linalg.norm(g))
        error = math.inf
        for step in (eps, eps / 10):
            up, down = (
                _loss_value(side.outputs(name, value + sign * step * v), loss) for sign in (1, -1)
            )
            miss = min(
                abs(q - slope)
                for q in ((up - down) / (2 * step), (up - base) / step, (base - down) / step)
            )
            scale = max(norm, np.finfo(np.float64).eps * terms / (step * TOLERANCE))
            error = min(error, miss / scale if scale else 0.0 if miss == 0 else math.inf)
            if error <= TOLERANCE:
                break
        out.append(Check(backend, name, error))
    return out


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max |b| (0 when both are zero)."""
    diff = float(np.max(np.abs(a - b), initial=0.0))
    scale = float(np.max(np.abs(b), initial=0.0))
    return diff / scale if scale else 0.0 if diff == 0 else math.inf


def _keras_aliases(summary) -> dict[str, str]:
    """PyTorch name → the PyTorch name Keras's gradient is under, where they differ: an
    LSTM's bias_hh is part of Keras's one bias, which `torch_named` gives as bias_ih."""
    return {
        f"{layer.path}.{name}": f"{layer.path}.bias_ih{name.removeprefix('bias_hh')}"
        for layer in summary.instance.layers()
        if layer.op == "LSTM"
        for name in layer.params
        if name.startswith("bias_hh")
    }


def _directions(tensors: dict[str, np.ndarray], seed: int, stream: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, stream])
    return {name: rng.standard_normal(value.shape) for name, value in tensors.items()}


def _float64(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in arrays.items()}


def _loss_value(outputs: list[np.ndarray], loss: list[np.ndarray]) -> float:
    return sum(float(np.sum(o * r)) for o, r in zip(outputs, loss, strict=True))


# ---------------------------------------------------------------- backends
# Each has `tensors` (a float input under its name + " (input)", then the parameters:
# float64 arrays by name), `outputs(name, value)` (the outputs with one tensor replaced)
# and, but ONNX, `gradients()` of the loss by tensor.


class _Torch:
    """The generated module in float64, inference mode, with the weights of `file`."""

    def __init__(
        self,
        program: Program,
        model: str | None,
        file: str,
        inputs: dict,
        loss: tuple[np.ndarray, ...] | list[np.ndarray] = (),
    ):
        import torch

        from dualnet.weights import load_weights

        self.module = program.torch(model).double().eval()
        load_weights(self.module, file)
        self.inputs = {n: torch.from_numpy(x) for n, x in _float64(inputs).items()}
        self.params = {n: p for n, p in self.module.named_parameters() if p.requires_grad}
        self.tensors = {
            n + _INPUT: x.numpy() for n, x in self.inputs.items() if x.is_floating_point()
        }
        self.tensors.update({n: p.detach().numpy().copy() for n, p in self.params.items()})
        self.loss = [torch.from_numpy(r) for r in loss]
        self.where = f"PyTorch {torch.__version__} autograd, float64"

    def calibrated(self) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        """The state with BatchNorm's running statistics set to the batch statistics of the
        inputs, and the outputs then."""
        import torch

        kinds = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
        with torch.no_grad():
            for norm in [m for m in self.module.modules() if isinstance(m, kinds)]:
                norm.reset_running_stats()
                norm.momentum = None  # a cumulative average: after one batch, its statistics
                norm.train()
            self.module(*self.inputs.values())
        self.module.eval()
        state = {k: v.numpy() for k, v in self.module.state_dict().items() if not ignored(k)}
        return state, self.outputs()

    def outputs(self, name: str | None = None, value: np.ndarray | None = None) -> list:
        import torch

        args = dict(self.inputs)
        with torch.no_grad():
            if name in self.params:
                saved = self.params[name].clone()
                self.params[name].copy_(torch.from_numpy(value))
            elif name is not None:
                args[name.removesuffix(_INPUT)] = torch.from_numpy(value)
            try:
                return [o.numpy() for o in _as_list(self.module(*args.values()))]
            finally:
                if name in self.params:
                    self.params[name].copy_(saved)

    def gradients(self) -> dict[str, np.ndarray]:
        import torch

        args = {n: x.clone().requires_grad_(x.is_floating_point()) for n, x in self.inputs.items()}
        loss = sum(
            (o * r).sum()
            for o, r in zip(_as_list(self.module(*args.values())), self.loss, strict=True)
        )
        watched = {n + _INPUT: x for n, x in args.items() if x.requires_grad} | self.params
        grads = torch.autograd.grad(loss, list(watched.values()), allow_unused=True)
        return {
            name: np.zeros(t.shape) if g is None else g.numpy()
            for (name, t), g in zip(watched.items(), grads, strict=True)
        }


def _as_list(out) -> list:
    return list(out) if isinstance(out, tuple | list) else [out]


@contextlib.contextmanager
def _keras_float64():
    """Keras's float type and dtype policy float64, then restored (Keras derives the policy
    from floatx once, at its first use, and keeps it)."""
    import keras

    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


class _Keras:
    """The generated model built in float64 with the weights of `file`; its tensors are the
    float inputs and its trainable variables, named `<dualnet layer>.<Keras weight path>`."""

    def __init__(
        self, program: Program, model: str | None, file: str, inputs: dict, loss: list[np.ndarray]
    ):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log lines
        import keras
        import tensorflow as tf

        from dualnet.backends.keras.state import leaves
        from dualnet.weights import load_weights

        with _keras_float64():
            self.model = program.keras(model)
        load_weights(self.model, file)
        self.inputs = {n: tf.constant(x) for n, x in _float64(inputs).items()}
        names = {
            id(v): prefix + v.path.removeprefix(layer.path + "/")
            for prefix, layer in leaves(self.model)
            for v in layer.trainable_weights
        }
        self.variables = {names.get(id(v), v.path): v for v in self.model.trainable_variables}
        self.tensors = {
            n + _INPUT: x.numpy() for n, x in self.inputs.items() if x.dtype.is_floating
        }
        self.tensors.update({n: v.numpy() for n, v in self.variables.items()})
        self.loss = [tf.constant(r) for r in loss]
        self.traced = tf.function(self._outputs, autograph=False)
        self.where = f"Keras {keras.__version__} ({keras.backend.backend()}) GradientTape, float64"

    def _outputs(self, *args) -> list:
        return _as_list(self.model(*args, training=False))

    def outputs(self, name: str | None = None, value: np.ndarray | None = None) -> list:
        import tensorflow as tf

        args = dict(self.inputs)
        if name in self.variables:
            saved = self.variables[name].numpy()
            self.variables[name].assign(value)
        elif name is not None:
            args[name.removesuffix(_INPUT)] = tf.constant(value)
        try:
            with _keras_float64():
                return [o.numpy() for o in self.traced(*args.values())]
        finally:
            if name in self.variables:
                self.variables[name].assign(saved)

    def gradients(self) -> dict[str, np.ndarray]:
        import tensorflow as tf

        watched = {n + _INPUT: x for n, x in self.inputs.items() if x.dtype.is_floating}
        with tf.GradientTape() as tape, _keras_float64():
            tape.watch(list(watched.values()))
            loss = tf.add_n(
                [
                    tf.reduce_sum(o * r)
                    for o, r in zip(self._outputs(*self.inputs.values()), self.loss, strict=True)
                ]
            )
        watched |= self.variables
        grads = tape.gradient(loss, list(watched.values()))
        return {
            name: np.zeros(t.shape) if g is None else tf.convert_to_tensor(g).numpy()
            for (name, t), g in zip(watched.items(), grads, strict=True)
        }

    def torch_named(self, gradients: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """These gradients in PyTorch's names and layouts (inputs keep theirs)."""
        from dualnet.backends.keras.state import torch_named

        by_variable = {id(v): gradients[n] for n, v in self.variables.items()}
        named = torch_named(self.model, lambda v: by_variable.get(id(v), np.zeros(v.shape)))
        return named | {n: g for n, g in gradients.items() if n not in self.variables}


class _Onnx:
    """The model's float64 ONNX graph on ONNX's reference runtime, with PyTorch's tensors. A
    parameter the graph holds as an initializer under its own name is fed (the initializer
    made a graph input); one it re-lays out (LSTM/GRU gates, packed attention projections)
    is re-emitted."""

    def __init__(
        self,
        program: Program,
        model: str | None,
        state: dict[str, np.ndarray],
        inputs: dict[str, np.ndarray],
        tensors: dict[str, np.ndarray],
    ):
        import onnx
        from onnx import helper

        from dualnet.backends.onnx.float64 import evaluator, float64_model, widened

        self.evaluator, self.emit = evaluator, float64_model
        self.summary, self.state = widened(program, model), state
        proto = float64_model(self.summary, state)
        graph = proto.graph
        self.fed = {t.name for t in graph.initializer} & set(tensors)
        graph.input.extend(
            helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
            for t in graph.initializer
            if t.name in self.fed
        )
        self.session = evaluator(proto)
        self.inputs, self.tensors = _float64(inputs), tensors
        self.where = f"ONNX reference runtime (onnx {onnx.__version__}), float64"

    def outputs(self, name: str | None = None, value: np.ndarray | None = None) -> list:
        feed, session = dict(self.inputs), self.session
        if name in self.fed:
            feed[name] = value
        elif name is not None and name.endswith(_INPUT):
            feed[name.removesuffix(_INPUT)] = value
        elif name is not None:
            session = self.evaluator(self.emit(self.summary, self.state | {name: value}))
        return session.run(None, feed)

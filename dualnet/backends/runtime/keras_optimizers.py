"""Keras optimizers and learning-rate schedules with PyTorch's update formulas and defaults.

Keras's built-in optimizers differ from `torch.optim` where no setting reaches (Adam adds
epsilon before the bias correction, SGD's momentum form, Adagrad's initial accumulator;
docs/training.md lists every difference). These classes are `keras.optimizers.Optimizer`
subclasses computing what `torch.optim` computes, step for step: `TorchSGD`, `TorchAdam`,
`TorchAdamW`, `TorchRMSprop`, `TorchAdagrad`, with PyTorch's argument names and defaults.
Gradient clipping is `torch.nn.utils.clip_grad_norm_`'s / `clip_grad_value_`'s (`clip_norm`,
`clip_value`), weight decay PyTorch's (`weight_decay`; `no_decay`: variables it spares, a
parameter group with weight_decay 0). The schedules are `torch.optim.lr_scheduler`'s, per
optimizer step: `TorchStepLR`, `TorchCosineLR`, `TorchWarmup` (`LinearLR`, then another
schedule, as `SequentialLR` chains them), `TorchOneCycleLR` (which also cycles SGD's momentum
and Adam's beta1, as PyTorch's does). Scalars (learning rate, bias corrections) are computed
in float64, as PyTorch computes them in Python floats, then cast to each variable's dtype.
`replica_share` scales a loss as Keras's own losses are under a `tf.distribute` strategy.

dualnet never imports this file: `runtime_source.helper_sources` reads its definitions,
which a generated Keras file may carry (they use only `math` and `keras`).
"""

from __future__ import annotations

import math

import keras
from keras import ops


def _as(value, dtype):
    """`value` (a Python number or a tensor) as a tensor of `dtype`: a Python float becomes
    one directly, never through float32."""
    if isinstance(value, int | float):
        return ops.convert_to_tensor(value, dtype=dtype)
    return ops.cast(value, dtype)


def _dense(gradient):
    """The gradient as a dense tensor, as PyTorch's: TensorFlow gives a gather's (an
    Embedding's) as IndexedSlices, which the update formulas cannot square."""
    if type(gradient).__name__ == "IndexedSlices":
        import tensorflow as tf

        return tf.convert_to_tensor(gradient)
    return gradient


def _summed(variable):
    """How many PyTorch tensors a generated model's Keras variable sums (`_SummedBias`)."""
    return getattr(variable.constraint, "terms", 1)


def _tapped(gradient, variable):
    """The gradient where the variable's `_KernelTaps` hold PyTorch's weights, else 0."""
    gradient = _dense(gradient)
    taps = variable.constraint.taps(variable.shape)
    return ops.where(taps, gradient, ops.zeros_like(gradient))


def replica_share(loss):
    """`loss`, a mean over this replica's share of the batch, divided by the replicas of
    the `tf.distribute` strategy in use (as Keras's own losses are): their gradients are
    summed, so the step takes their mean, as DistributedDataParallel's does."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            return loss / replicas
    return loss


class _TorchOptimizer(keras.optimizers.Optimizer):
    """What the PyTorch-exact optimizers share: coupled (L2) weight decay unless
    `_decoupled()`, PyTorch's gradient clipping, momentum a one-cycle schedule may drive."""

    def __init__(
        self,
        learning_rate,
        weight_decay=0.0,
        no_decay=None,
        clip_norm=None,
        clip_value=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.torch_weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.exclude_from_weight_decay(var_list=no_decay)

    def build(self, var_list):
        super().build(var_list)
        self._sums_of = {self._var_key(v): _summed(v) for v in var_list}

    def _terms(self, variable):
        """How many PyTorch tensors the Keras variable sums (an LSTM's one bias: bias_ih +
        bias_hh, marked by the generated model's `_SummedBias`): each gets the variable's
        gradient and, from the same state, the same step, so the sum moves `terms` steps
        (exactly so without coupled weight decay, which steps the tensors apart: their
        mean stands for both). update_step may be given the backend's variable, which
        has no constraint: looked up by key."""
        return self._sums_of.get(self._var_key(variable), 1)

    def _scalar(self, value):
        """A hyperparameter (a number or a float tensor) as a float64 tensor."""
        return _as(value, "float64")

    def _momentum(self, value):
        """`value`, or the momentum a one-cycle learning-rate schedule sets at this step."""
        schedule = self._learning_rate
        if getattr(schedule, "cycle_momentum", False):
            return schedule.momentum(self.iterations)
        return self._scalar(value)

    def _decoupled(self):
        """Whether weight decay scales the weights (AdamW) rather than adds to g."""
        return False

    def _cycles_momentum(self):
        return getattr(self._learning_rate, "cycle_momentum", False)

    def _decay(self, variable):
        """The weight decay applied to `variable` (0.0 where `no_decay` spares it)."""
        if self.torch_weight_decay and self._use_weight_decay(variable):
            return self.torch_weight_decay
        return 0.0

    def _coupled(self, gradient, variable):
        """The gradient plus weight_decay × the variable (PyTorch's L2 form; of a sum of
        PyTorch tensors, `_terms`, their mean)."""
        decay = self._decay(variable)
        gradient = ops.cast(_dense(gradient), variable.dtype)
        if decay and not self._decoupled():
            return (
                gradient + _as(decay / self._terms(variable), variable.dtype) * variable
            )
        return gradient

    def _step(self, variable, step):
        """variable −= step, once per PyTorch tensor the variable sums (`_terms`)."""
        terms = self._terms(variable)
        self.assign_sub(
            variable, step if terms == 1 else _as(terms, variable.dtype) * step
        )

    def _get_current_learning_rate(self):
        """A schedule's rate at the optimizer step: Keras passes its count of batches,
        which under `gradient_accumulation_steps` is not PyTorch's count of steps."""
        if isinstance(
            self._learning_rate, keras.optimizers.schedules.LearningRateSchedule
        ):
            return self._learning_rate(self.iterations)
        return super()._get_current_learning_rate()

    def apply(self, grads, trainable_variables=None):
        """Keras's step, with no gradient where a kernel holds no PyTorch weight (the
        generated model's `_KernelTaps`), so that clipping by norm sees PyTorch's."""
        variables = (
            self._trainable_variables
            if trainable_variables is None
            else trainable_variables
        )
        grads = [
            g if g is None or not hasattr(v.constraint, "taps") else _tapped(g, v)
            for g, v in zip(grads, variables, strict=True)
        ]
        # for clipping by norm (the Keras variables, before a first apply builds the state)
        self._grad_terms = [_summed(v) for v in variables]
        return super().apply(grads, trainable_variables)

    def _clip_gradients(self, grads):
        grads = [None if g is None else _dense(g) for g in grads]
        if self.clip_value is not None:
            v = self.clip_value
            grads = [None if g is None else ops.clip(g, -v, v) for g in grads]
        if self.clip_norm is not None:
            terms = getattr(self, "_grad_terms", None) or [1] * len(grads)
            norms = [  # PyTorch's norm over its tensors: a sum of k tensors' gradient k times
                ops.sqrt(ops.sum(ops.square(g)) * k)
                for g, k in zip(grads, terms, strict=True)
                if g is not None
            ]
            total = ops.sqrt(ops.sum(ops.square(ops.stack(norms))))
            coef = ops.minimum(self.clip_norm / (total + 1e-6), 1.0)
            grads = [None if g is None else g * ops.cast(coef, g.dtype) for g in grads]
        return grads

    def get_config(self):
        config = super().get_config()
        config.update(
            weight_decay=self.torch_weight_decay,
            clip_norm=self.clip_norm,
            clip_value=self.clip_value,
        )
        return config


@keras.saving.register_keras_serializable(package="dualnet")
class TorchSGD(_TorchOptimizer):
    """`torch.optim.SGD`: buf = g on the first step, then momentum·buf + (1 − dampening)·g;
    the step is lr·buf (nesterov: lr·(g + momentum·buf)). Keras's SGD keeps
    momentum·v − lr·g instead, which differs once the learning rate changes."""

    def __init__(
        self,
        learning_rate=1e-3,
        momentum=0.0,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
        name="torch_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate, weight_decay, name=name, **kwargs)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov

    def _uses_momentum(self):
        return self.momentum != 0 or self._cycles_momentum()

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        if self._uses_momentum():
            self._buffers = self.add_optimizer_variables(var_list, "momentum_buffer")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(self._scalar(learning_rate), dtype)
        g = self._coupled(gradient, variable)
        if self._uses_momentum():
            momentum = ops.cast(self._momentum(self.momentum), dtype)
            buf = self._buffers[self._get_variable_index(variable)]
            if self.dampening:
                later = buf * momentum + _as(1 - self.dampening, dtype) * g
                self.assign(buf, ops.where(ops.equal(self.iterations, 0), g, later))
            else:  # the buffer starts at 0: exactly g on the first step
                self.assign(buf, buf * momentum + g)
            g = g + momentum * buf if self.nesterov else buf
        self._step(variable, lr * g)

    def get_config(self):
        config = super().get_config()
        config.update(
            momentum=self.momentum, dampening=self.dampening, nesterov=self.nesterov
        )
        return config


@keras.saving.register_keras_serializable(package="dualnet")
class TorchAdam(_TorchOptimizer):
    """`torch.optim.Adam`: m ← m + (1 − β₁)(g − m), v ← β₂v + (1 − β₂)g², then
    θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + eps): epsilon after the bias correction
    (Keras's Adam adds it to √v before, and defaults it to 1e-7)."""

    def __init__(
        self,
        learning_rate=1e-3,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        name="torch_adam",
        **kwargs,
    ):
        super().__init__(learning_rate, weight_decay, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._m, self._v = self.add_optimizer_variables(
            var_list, ["exp_avg", "exp_avg_sq"]
        )
        if self.amsgrad:
            self._v_max = self.add_optimizer_variables(var_list, "max_exp_avg_sq")

    def update_step(self, gradient, variable, learning_rate):
        dtype, index = variable.dtype, self._get_variable_index(variable)
        lr64 = self._scalar(learning_rate)
        beta_1 = self._momentum(self.beta_1)
        step = ops.cast(self.iterations + 1, "float64")
        step_size = ops.cast(lr64 / (1 - ops.power(beta_1, step)), dtype)
        root = ops.cast(ops.sqrt(1 - ops.power(self._scalar(self.beta_2), step)), dtype)
        decay = self._decay(variable)
        if decay and self._decoupled():
            self.assign(variable, variable * ops.cast(1 - lr64 * decay, dtype))
        g = self._coupled(gradient, variable)
        m, v = self._m[index], self._v[index]
        self.assign(m, m + ops.cast(1 - beta_1, dtype) * (g - m))
        self.assign(
            v, v * _as(self.beta_2, dtype) + _as(1 - self.beta_2, dtype) * g * g
        )
        if self.amsgrad:
            v_max = self._v_max[index]
            self.assign(v_max, ops.maximum(v_max, v))
            v = v_max
        denom = ops.sqrt(v) / root + _as(self.epsilon, dtype)
        self._step(variable, step_size * (m / denom))

    def get_config(self):
        config = super().get_config()
        config.update(
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            amsgrad=self.amsgrad,
        )
        return config


@keras.saving.register_keras_serializable(package="dualnet")
class TorchAdamW(TorchAdam):
    """`torch.optim.AdamW`: θ ← θ·(1 − lr·weight_decay) before Adam's step, weight decay
    0.01 by default (Keras's AdamW: 0.004)."""

    def __init__(
        self, learning_rate=1e-3, weight_decay=1e-2, name="torch_adamw", **kwargs
    ):
        super().__init__(learning_rate, weight_decay=weight_decay, name=name, **kwargs)

    def _decoupled(self):
        return True


@keras.saving.register_keras_serializable(package="dualnet")
class TorchRMSprop(_TorchOptimizer):
    """`torch.optim.RMSprop`: s ← αs + (1 − α)g²; centered: ḡ ← ḡ + (1 − α)(g − ḡ) and
    s − ḡ² under the root; the step lr·g / (√s + eps), through a momentum buffer
    b ← momentum·b + g / (√s + eps) when momentum > 0. Defaults lr 0.01, α 0.99, eps 1e-8
    (Keras's: 0.001, 0.9, 1e-7, and eps inside the root)."""

    def __init__(
        self,
        learning_rate=1e-2,
        alpha=0.99,
        epsilon=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        name="torch_rmsprop",
        **kwargs,
    ):
        super().__init__(learning_rate, weight_decay, name=name, **kwargs)
        self.alpha = alpha
        self.epsilon = epsilon
        self.momentum = momentum
        self.centered = centered

    def _uses_momentum(self):
        return self.momentum > 0 or self._cycles_momentum()

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._square_avg = self.add_optimizer_variables(var_list, "square_avg")
        if self._uses_momentum():
            self._buffers = self.add_optimizer_variables(var_list, "momentum_buffer")
        if self.centered:
            self._grad_avg = self.add_optimizer_variables(var_list, "grad_avg")

    def update_step(self, gradient, variable, learning_rate):
        dtype, index = variable.dtype, self._get_variable_index(variable)
        lr = ops.cast(self._scalar(learning_rate), dtype)
        alpha = _as(self.alpha, dtype)
        g = self._coupled(gradient, variable)
        square = self._square_avg[index]
        self.assign(square, square * alpha + _as(1 - self.alpha, dtype) * g * g)
        if self.centered:
            mean = self._grad_avg[index]
            self.assign(mean, mean + _as(1 - self.alpha, dtype) * (g - mean))
            avg = ops.sqrt(square - mean * mean)
        else:
            avg = ops.sqrt(square)
        avg = avg + _as(self.epsilon, dtype)
        if self._uses_momentum():
            buf = self._buffers[index]
            momentum = ops.cast(self._momentum(self.momentum), dtype)
            self.assign(buf, buf * momentum + g / avg)
            self._step(variable, lr * buf)
        else:
            self._step(variable, lr * (g / avg))

    def get_config(self):
        config = super().get_config()
        config.update(
            alpha=self.alpha,
            epsilon=self.epsilon,
            momentum=self.momentum,
            centered=self.centered,
        )
        return config


@keras.saving.register_keras_serializable(package="dualnet")
class TorchAdagrad(_TorchOptimizer):
    """`torch.optim.Adagrad`: s ← s + g², θ ← θ − lr/(1 + (t − 1)·lr_decay) · g / (√s + eps);
    s starts at initial_accumulator_value 0 and eps is 1e-10 (Keras's: 0.1 and 1e-7)."""

    def __init__(
        self,
        learning_rate=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        epsilon=1e-10,
        name="torch_adagrad",
        **kwargs,
    ):
        super().__init__(learning_rate, weight_decay, name=name, **kwargs)
        self.lr_decay = lr_decay
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._sums = self.add_optimizer_variables(var_list, "sum")
        for total in self._sums:
            total.assign(
                ops.full(total.shape, self.initial_accumulator_value, total.dtype)
            )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        step = ops.cast(self.iterations, "float64")
        clr = self._scalar(learning_rate) / (1 + step * self.lr_decay)
        g = self._coupled(gradient, variable)
        total = self._sums[self._get_variable_index(variable)]
        self.assign(total, total + g * g)
        std = ops.sqrt(total) + _as(self.epsilon, dtype)
        self._step(variable, ops.cast(clr, dtype) * (g / std))

    def get_config(self):
        config = super().get_config()
        config.update(
            lr_decay=self.lr_decay,
            initial_accumulator_value=self.initial_accumulator_value,
            epsilon=self.epsilon,
        )
        return config


@keras.saving.register_keras_serializable(package="dualnet")
class TorchStepLR(keras.optimizers.schedules.LearningRateSchedule):
    """`StepLR`: lr · gamma^⌊step / step_size⌋."""

    def __init__(self, learning_rate, step_size, gamma=0.1):
        self.learning_rate = learning_rate
        self.step_size = step_size
        self.gamma = gamma

    def __call__(self, step):
        k = ops.floor_divide(ops.cast(step, "int64"), self.step_size)
        return self.learning_rate * ops.power(
            _as(self.gamma, "float64"), ops.cast(k, "float64")
        )

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "step_size": self.step_size,
            "gamma": self.gamma,
        }


@keras.saving.register_keras_serializable(package="dualnet")
class TorchCosineLR(keras.optimizers.schedules.LearningRateSchedule):
    """`CosineAnnealingLR`: eta_min + (lr − eta_min)·(1 + cos(π·step / t_max)) / 2
    (periodic past t_max, as PyTorch's)."""

    def __init__(self, learning_rate, t_max, eta_min=0.0):
        self.learning_rate = learning_rate
        self.t_max = t_max
        self.eta_min = eta_min

    def __call__(self, step):
        angle = math.pi * ops.cast(step, "float64") / self.t_max
        return (
            self.eta_min
            + (self.learning_rate - self.eta_min) * (1 + ops.cos(angle)) / 2
        )

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "t_max": self.t_max,
            "eta_min": self.eta_min,
        }


@keras.saving.register_keras_serializable(package="dualnet")
class TorchWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """`LinearLR(start_factor, total_iters=steps)` for `steps` steps: lr·(start_factor +
    (1 − start_factor)·step / steps); then `after` from its own step 0 (`SequentialLR`),
    or lr."""

    def __init__(self, learning_rate, steps, start_factor=1.0 / 3, after=None):
        self.learning_rate = learning_rate
        self.steps = steps
        self.start_factor = start_factor
        self.after = after

    def __call__(self, step):
        t = ops.cast(step, "float64")
        warm = self.learning_rate * (
            self.start_factor
            + (1 - self.start_factor) * ops.minimum(t, self.steps) / self.steps
        )
        if self.after is None:
            return warm
        return ops.where(
            t < self.steps, warm, self.after(ops.maximum(t - self.steps, 0))
        )

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "steps": self.steps,
            "start_factor": self.start_factor,
            "after": None
            if self.after is None
            else keras.saving.serialize_keras_object(self.after),
        }

    @classmethod
    def from_config(cls, config):
        after = config.pop("after")
        if after is not None:
            after = keras.saving.deserialize_keras_object(after)
        return cls(after=after, **config)


@keras.saving.register_keras_serializable(package="dualnet")
class TorchOneCycleLR(keras.optimizers.schedules.LearningRateSchedule):
    """`OneCycleLR` over `total_steps`: from max_lr / div_factor up to max_lr in the first
    pct_start of the steps, then down to that / final_div_factor (three_phase: back to the
    start first), cosine or linear; `momentum(step)` cycles the other way between
    max_momentum and base_momentum (SGD's momentum, Adam's beta1) when cycle_momentum."""

    def __init__(
        self,
        max_lr,
        total_steps,
        pct_start=0.3,
        anneal_strategy="cos",
        div_factor=25.0,
        final_div_factor=1e4,
        three_phase=False,
        cycle_momentum=True,
        base_momentum=0.85,
        max_momentum=0.95,
    ):
        self.max_lr = max_lr
        self.total_steps = total_steps
        self.pct_start = pct_start
        self.anneal_strategy = anneal_strategy
        self.div_factor = div_factor
        self.final_div_factor = final_div_factor
        self.three_phase = three_phase
        self.cycle_momentum = cycle_momentum
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum

    def _phases(self):
        """(end step, start lr, end lr, start momentum, end momentum) per phase."""
        start = self.max_lr / self.div_factor
        low, high = self.base_momentum, self.max_momentum
        first = float(self.pct_start * self.total_steps) - 1
        if self.three_phase:
            return [
                (first, start, self.max_lr, high, low),
                (2 * first, self.max_lr, start, low, high),
                (
                    self.total_steps - 1,
                    start,
                    start / self.final_div_factor,
                    high,
                    high,
                ),
            ]
        return [
            (first, start, self.max_lr, high, low),
            (
                self.total_steps - 1,
                self.max_lr,
                start / self.final_div_factor,
                low,
                high,
            ),
        ]

    def _anneal(self, step, which):
        t = ops.cast(step, "float64")
        value, begin, phases = None, 0.0, self._phases()
        for phase in phases:
            end, first, last = phase[0], phase[1 + 2 * which], phase[2 + 2 * which]
            pct = (t - begin) / (end - begin)
            if self.anneal_strategy == "cos":
                here = last + (first - last) / 2 * (ops.cos(math.pi * pct) + 1)
            else:
                here = (last - first) * pct + first
            value = here if value is None else ops.where(t <= begin, value, here)
            begin = end
        return value

    def __call__(self, step):
        return self._anneal(step, 0)

    def momentum(self, step):
        return self._anneal(step, 1)

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "anneal_strategy": self.anneal_strategy,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "three_phase": self.three_phase,
            "cycle_momentum": self.cycle_momentum,
            "base_momentum": self.base_momentum,
            "max_momentum": self.max_momentum,
        }

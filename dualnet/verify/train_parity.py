"""`dualnet parity --train-steps N`: N training steps of the generated PyTorch module and
of the generated Keras model (through Keras's own training step, `train_on_batch`, as
`fit()` takes it), from one weight file, on the same random batches, with the optimiser of
one `OptimizerSpec` (PyTorch's formulas in both: `dualnet.training`), or the optimiser,
loss and gradient accumulation of a file's train declaration (a `TrainSpec`).

The loss (`train_loss`) is the declaration's loss model on the outputs and random targets,
or, without a declaration, gradcheck's, L = Σ_k Σ output_k · R_k with fixed standard-normal
R_k; batch t holds `parity`'s random inputs drawn from the seed and t. With `accumulate`
> 1, every batch's gradient of L / accumulate adds up and the optimiser steps after every
`accumulate`-th batch (in Keras: `gradient_accumulation_steps`), as the generated training
code does; the losses compared are the batches'. Both models run in training mode
(BatchNorm on batch statistics, updating its running ones). Dropout is switched off in
both, since each framework draws its own masks, and said so; with `same_dropout`
(`--same-dropout`) it stays on, and every Dropout/StochasticDepth call site gets one mask
per step, drawn from the seed and the step (`dropout_masks`), in both frameworks.
MultiHeadAttention's dropout on its weights is always off (no mask can be given inside it).
`vary` starts from parity's weights instead of the seeded initialisation (its constant
tensors redrawn: `initial.varied`). `--f64` runs both in float64 (the PyTorch module
`.double()`, the Keras model under a float64 floatx and dtype policy), which separates
round-off from semantics.

Compared: the loss of every step, and at the end every tensor of the state (parameters
and running statistics) in PyTorch's names and layouts, as max |a − b| / max |b|; the
tolerance is 1e-10 in float64, in float32 1e-5 for SGD and 1e-4 for the adaptive
optimisers. With `per_layer`, the state after every step (and PyTorch's gradient sizes at
every optimiser step), and the first (step, tensor) beyond the tolerance is named.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, replace

import numpy as np

from dualnet.backends.gradients import as_list, float64
from dualnet.backends.initial import initial_weights
from dualnet.compiler import Program
from dualnet.diagnostics import DualnetError, error, option
from dualnet.extras import needs_extras
from dualnet.io.files import temporary_directory
from dualnet.io.weights import ignored, write_state
from dualnet.ir.graph import state_key
from dualnet.training.spec import OptimizerSpec, TrainSpec, f32_tolerance
from dualnet.verify.dropout_masks import Site, draw
from dualnet.verify.parity import random_inputs
from dualnet.verify.table import render_table
from dualnet.verify.train_loss import parity_loss

F64_TOLERANCE = 1e-10
NOISE = 1e3  # rounding-level gradients: ≤ NOISE · epsilon · the largest (`_compared`)
NOISE_F64 = 1e4  # in float64: a sum of thousands of terms (BatchNorm's backward) errs more


@dataclass(frozen=True)
class Divergence:
    """One tensor's difference after `step` steps (1-based)."""

    step: int
    tensor: str
    error: float
    noise: bool = False  # a running statistic within what the left-out elements differ by


@dataclass
class TrainRun:
    """What one framework's run gave: the loss per step, the final state, and (per_layer)
    the state after every step."""

    where: str
    losses: list[float]
    state: dict[str, np.ndarray]
    history: list[dict[str, np.ndarray]]
    peaks: dict[str, np.ndarray] | None = None  # PyTorch: each gradient element's largest |g|
    gradients: list[dict[str, np.ndarray]] | None = None  # PyTorch, per_layer: |g| per step


@dataclass
class TrainParity:
    spec: OptimizerSpec
    steps: int
    f64: bool
    torch: TrainRun
    keras: TrainRun
    tensors: list[Divergence]  # after the last step, one per tensor, in state order
    first: Divergence | None  # per_layer: the first tensor beyond the tolerance
    notes: list[str]
    loss: str = ""  # the loss, in words
    short: str = ""  # the loss table's name for it
    accumulate: int = 1

    @property
    def tolerance(self) -> float:
        return F64_TOLERANCE if self.f64 else f32_tolerance(self.spec)

    @property
    def ok(self) -> bool:
        return all(d.error <= self.tolerance or d.noise for d in self.tensors)


@needs_extras
def train_parity(
    program: Program,
    model: str | None,
    spec: OptimizerSpec | TrainSpec,
    steps: int,
    weights: str | None = None,
    seed: int = 0,
    dims: dict[str, int] | None = None,
    f64: bool = False,
    per_layer: bool = False,
    same_dropout: bool = False,
    vary: bool = False,
) -> TrainParity:
    """Train in both frameworks and compare (module doc); `steps` counts batches."""
    from dualnet.backends.torch.masks import call_sites

    training = spec if isinstance(spec, TrainSpec) else None
    spec = training.optimizer if training else spec
    accumulate = training.accumulate if training else 1
    summary = program.check(model)
    if not summary.trainable_params:
        raise _nothing_to_train(summary.instance.definition, "has no trainable parameters")
    dims = dims or {}
    batches = [_batch(summary, dims, seed, t, program.max_params, f64) for t in range(steps)]
    dropouts = [
        layer.path
        for layer in summary.instance.layers()
        if layer.op in ("Dropout", "StochasticDepth") and float(layer.attrs.get("p", 0) or 0) > 0
    ]
    attention = [  # inside the frameworks' attention layers: no mask can be given
        layer.path
        for layer in summary.instance.layers()
        if layer.op == "MultiHeadAttention" and float(layer.attrs.get("dropout", 0) or 0) > 0
    ]
    notes = []
    if dropouts and not same_dropout:
        notes.append(
            f"Dropout off in both frameworks ({', '.join(dropouts)}): each draws its own "
            "masks (--same-dropout shares them)"
        )
    if attention:
        notes.append(
            f"attention dropout off in both frameworks ({', '.join(attention)}): each "
            "draws its own masks"
        )
    lstm = [layer.path for layer in summary.instance.layers() if layer.op == "LSTM"]
    aliases = {  # a tied layer's name for its owner's tensor (one tensor in Keras)
        state_key(layer.path, name) for layer in summary.instance.layers() for name in layer.tied
    }
    with temporary_directory() as tmp:
        file = os.path.join(tmp, "weights.safetensors")
        state = initial_weights(summary, weights, seed, program.max_params, vary=vary)
        write_state(float64(state) if f64 else state, file)
        module = _torch_module(program, model, file, f64, same_dropout)
        loss = parity_loss(program, training, module, batches[0], seed, f64)
        masks = Masks(call_sites(module, batches[0]) if same_dropout else [], seed, f64)
        if masks.sites:
            notes.append(
                f"Dropout shared: one mask per step for each of {len(masks.sites)} call "
                f"sites ({', '.join(sorted({s.path for s in masks.sites}))}), the same in "
                "both frameworks"
            )
        run = Run(batches, loss, spec, accumulate, masks, per_layer)
        ran_torch = _torch_run(program, model, file, run)
        ran_keras = _keras_run(program, model, file, run)
    compared = _compared(spec, ran_torch.peaks, f64, notes)
    ran_torch.history = [_merged(state, lstm, aliases) for state in ran_torch.history]
    torch_state = _merged(ran_torch.state, lstm, aliases)
    tensors = [
        Divergence(steps, name, relative(ran_keras.state[name], value, compared.get(name)))
        for name, value in torch_state.items()
    ]
    result = TrainParity(
        spec,
        steps,
        f64,
        ran_torch,
        ran_keras,
        tensors,
        None,
        notes,
        loss.name,
        loss.short,
        accumulate,
    )
    result.tensors = _noise_fed(
        tensors, ran_torch, ran_keras.state, compared, result.tolerance, notes
    )
    for t, (ours, theirs) in enumerate(zip(ran_keras.history, ran_torch.history, strict=True)):
        bad = [
            Divergence(t + 1, name, e)
            for name, value in theirs.items()
            if (e := relative(ours[name], value, compared.get(name))) > result.tolerance
        ]
        if bad:
            result.first = bad[0]
            break
    return result


def _compared(spec, peaks, f64: bool, notes: list[str]) -> dict[str, np.ndarray]:
    """Per parameter, the elements held to the tolerance. An element whose gradient is
    rounding noise at every step (zero in exact arithmetic: attention's key bias, which
    softmax cancels; a bias before BatchNorm) moves in a direction that differs in every
    framework: by full-size steps under an adaptive optimiser, which divides each gradient
    element by its own running scale (in float32, so does one whose gradient has fewer
    correct digits than the tolerance asks), and under SGD by noise that, in a tensor
    starting at zero, is all its value, so that its relative difference is of order 1.
    Those elements — |g| ≤ NOISE · u · G at every step (NOISE_F64 in float64), u the
    dtype's epsilon, G the largest gradient element of the run, in float64 at least 1 (the
    scale of the loss's own gradient, so that a run whose every gradient is noise, a lone
    parameter that a normalisation cancels, is not held to that noise) — are left out, and
    said so."""
    if not peaks:
        return {}
    floor = noise_floor(peaks, f64)
    masks = {name: p > floor for name, p in peaks.items()}
    left = [f"{n} ({int((~m).sum())} of {m.size})" for n, m in masks.items() if not m.all()]
    if left:
        moves = "moves by noise alone" if spec.name == "SGD" else "scales up to full steps"
        notes.append(
            f"left out: gradient elements at rounding level in every step (|g| ≤ {floor:.3g}),"
            f" which {spec.name} {moves}: {', '.join(left)}"
        )
    return {name: m for name, m in masks.items() if not m.all()}


def _noise_fed(tensors, ran_torch, keras_state, compared, tolerance, notes) -> list[Divergence]:
    """The tensors, a running statistic beyond the tolerance marked `noise` where it differs
    by no more than the left-out elements do (`_compared`): a bias before a BatchNorm that
    an adaptive optimiser moves by rounding noise is in the batch mean that the running
    mean averages, while the normalisation takes it out of everything downstream."""
    if not compared:
        return tensors
    spread = max(
        float(np.max(np.abs(keras_state[n] - ran_torch.state[n])[~m], initial=0.0))
        for n, m in compared.items()
    )
    fed = [
        d
        for d in tensors
        if d.error > tolerance
        and d.tensor not in ran_torch.peaks
        and float(np.max(np.abs(keras_state[d.tensor] - ran_torch.state[d.tensor]))) <= spread
    ]
    if not fed:
        return tensors
    notes.append(
        f"noise: running statistics that differ by no more than the left-out elements do "
        f"(≤ {spread:.3g}), which they average: {', '.join(d.tensor for d in fed)}"
    )
    return [replace(d, noise=True) if d in fed else d for d in tensors]


def noise_floor(peaks: dict[str, np.ndarray], f64: bool) -> float:
    """The largest |g| at rounding level: NOISE · u · G (`_compared`)."""
    largest = max((float(p.max(initial=0.0)) for p in peaks.values()), default=0.0)
    largest = max(largest, 1.0) if f64 else largest
    floor = (NOISE_F64 if f64 else NOISE) * float(np.finfo(np.float64 if f64 else np.float32).eps)
    return floor * largest


def _batch(summary, dims, seed: int, step: int, max_params, f64: bool) -> list[np.ndarray]:
    """Batch `step`: `parity`'s random inputs from the seed and the step, in signature
    order."""
    given = random_inputs(summary, {"B": 2, **dims}, [seed, 2, step], max_params)
    given = float64(given) if f64 else given
    return [np.ascontiguousarray(given[v.name]) for v in summary.graph.inputs]


@dataclass(frozen=True)
class Run:
    """What both frameworks train on and with."""

    batches: list[list[np.ndarray]]
    loss: object  # train_loss.SumLoss | train_loss.ModelLoss
    spec: OptimizerSpec
    accumulate: int
    masks: Masks
    per_layer: bool


@dataclass(frozen=True)
class Masks:
    """The Dropout call sites whose masks both runs share (none: Dropout is off), and what
    they are drawn from and in."""

    sites: list[Site]
    seed: int
    f64: bool

    def at(self, step: int) -> dict[tuple[str, int], np.ndarray]:
        return draw(self.sites, self.seed, step, np.float64 if self.f64 else np.float32)


def _torch_module(program, model, file, f64: bool, dropout: bool):
    """The module in training mode, Dropout off unless `dropout`."""
    from dualnet.backends.torch.backend import TORCH
    from dualnet.backends.torch.masks import dropout_off

    module = program.torch(model)
    module = module.double() if f64 else module
    TORCH.weights_io()[1](module, file)
    module.train()
    dropout_off(module, sites=not dropout)
    return module


def _torch_run(program, model, file, run: Run) -> TrainRun:
    import torch

    from dualnet.backends.torch.gradients import torch_float64
    from dualnet.backends.torch.masks import given_masks
    from dualnet.training.torch_optim import build_torch

    masks, f64 = run.masks, run.masks.f64
    module = _torch_module(program, model, file, f64, bool(masks.sites))
    training = build_torch(run.spec, module.named_parameters())
    loss = run.loss.torch()
    losses, history, gradients = [], [], []
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    peaks = {n: np.zeros(tuple(p.shape)) for n, p in named}
    with given_masks(module, masks.sites) as feed, torch_float64(f64):
        for t, batch in enumerate(run.batches):
            feed(masks.at(t))
            outputs = as_list(module(*(torch.from_numpy(x) for x in batch)))
            value = loss(outputs, [torch.from_numpy(y) for y in run.loss.targets(t)])
            if not value.requires_grad:
                raise _nothing_to_train(program.check(model).instance.definition, "trains nothing")
            (value / run.accumulate).backward()
            if (t + 1) % run.accumulate == 0:
                sizes = {n: np.abs(p.grad.numpy()) for n, p in named if p.grad is not None}
                for n, size in sizes.items():
                    np.maximum(peaks[n], size, out=peaks[n])
                if run.per_layer:
                    gradients.append(sizes)
                training.step()
                training.optimizer.zero_grad()
            losses.append(float(value.detach()))
            if run.per_layer:
                history.append(_torch_state(module))
    where = f"PyTorch {torch.__version__} (CPU), {'float64' if f64 else 'float32'}"
    return TrainRun(where, losses, _torch_state(module), history, peaks, gradients)


def _nothing_to_train(model: str, what: str) -> DualnetError:
    return error(
        "E-INPUT",
        f"{model} {what}: no gradient of the loss reaches a trainable parameter",
        option("--train-steps"),
        notes=["training parity compares the parameters after training steps"],
    )


def _torch_state(module) -> dict[str, np.ndarray]:
    return {
        k: v.detach().numpy().copy()
        for k, v in module.state_dict().items()
        if not ignored(k) and v.is_floating_point()
    }


def _keras_run(program, model, file, run: Run) -> TrainRun:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log lines
    import keras

    from dualnet.backends.keras.backend import KERAS
    from dualnet.backends.keras.emit import output_layouts
    from dualnet.backends.keras.gradients import keras_float64
    from dualnet.backends.keras.masks import dropout_off, given_masks
    from dualnet.backends.keras.state import torch_named
    from dualnet.training.keras_optim import build_keras, vector_variables

    masks, f64, spec = run.masks, run.masks.f64, run.spec
    summary = program.check(model)
    layouts = output_layouts(summary.instance, summary.file) if masks.sites else {}
    with keras_float64() if f64 else contextlib.nullcontext(), _reads_before_updates():
        built = program.keras(model)
        KERAS.weights_io()[1](built, file)
        dropout_off(built, sites=not masks.sites)
        no_decay = vector_variables(built) if spec.no_decay_vectors else ()
        optimizer = build_keras(spec, no_decay, accumulate=run.accumulate)
        loss = run.loss.keras()
        names = summary.graph.output_names  # a dict of named outputs, in signature order

        def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
            outputs = [y_pred[n] for n in names] if isinstance(y_pred, dict) else as_list(y_pred)
            return loss(outputs, [] if y is None else as_list(y))

        def compute_metrics(x, y, y_pred, sample_weight=None):
            return {"step_loss": compute_loss(y=y, y_pred=y_pred)}

        built.compile(optimizer=optimizer)
        built.compute_loss, built.compute_metrics = compute_loss, compute_metrics
        losses, history = [], []
        state = lambda: torch_named(built, lambda v: np.array(v.numpy()))  # noqa: E731
        dtype = "float64" if f64 else "float32"
        with given_masks(built, masks.sites, layouts, dtype) as feed:
            for t, batch in enumerate(run.batches):
                feed(masks.at(t))
                targets = run.loss.targets(t)
                logs = built.train_on_batch(
                    tuple(batch) if len(batch) > 1 else batch[0],
                    (tuple(targets) if len(targets) > 1 else targets[0]) if targets else None,
                    return_dict=True,
                )
                losses.append(float(logs["step_loss"]))
                if run.per_layer:
                    history.append(state())
        final = state()
    where = (
        f"Keras {keras.__version__} ({keras.backend.backend()}) train_on_batch, "
        f"{'float64' if f64 else 'float32'}"
    )
    return TrainRun(where, losses, final, history)


@contextlib.contextmanager
def _reads_before_updates():
    """Grappler's dependency optimizer off while Keras compiles and runs its training step,
    then as it was. The optimizer drops the control edge that orders a variable's read before
    the step's update of it when another path seems to order them, then removes that path's
    IdentityN (the gradients Keras's optimizer groups): TensorFlow's bug,
    tests/backends/test_upstream_bugs.py. Under the linear loss no update waits for the
    forward pass (∂L/∂output is R), so a read may then see the step's update: a wrong loss
    and gradients in some runs (docs/training.md). The pass only prunes dependencies and
    identities: Keras's arithmetic stays `fit()`'s."""
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options().get("dependency_optimization", True)
    tf.config.optimizer.set_experimental_options({"dependency_optimization": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"dependency_optimization": before})


def _merged(
    state: dict[str, np.ndarray], lstm: list[str], aliases: set[str]
) -> dict[str, np.ndarray]:
    """PyTorch's state as Keras holds it: an LSTM's bias_ih + bias_hh is Keras's one bias
    (compared under bias_ih; `state.torch_named`); a tied tensor under its owner's name
    only."""
    out = {k: v for k, v in state.items() if k not in aliases}
    for path in lstm:
        for name in [k for k in state if k.startswith(path + ".bias_hh")]:
            out[name.replace(".bias_hh", ".bias_ih", 1)] = state[
                name.replace(".bias_hh", ".bias_ih", 1)
            ] + out.pop(name)
    return out


def relative(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """max |a − b| / max |b| (0 when both are zero), the difference over the elements
    `where` only, if given."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    gap = np.abs(a64 - b64)
    diff = float(np.max(gap if where is None else gap[where], initial=0.0))
    scale = float(np.max(np.abs(b64), initial=0.0))
    return diff / scale if scale else 0.0 if diff == 0 else math.inf


def loss_table(result: TrainParity, rows: int = 12) -> str:
    """The loss of each step in both frameworks (at most `rows` steps shown: the first
    ones, evenly spaced ones, the last and the worst)."""
    pairs = list(zip(result.torch.losses, result.keras.losses, strict=True))
    gaps = [abs(a - b) for a, b in pairs]
    shown = set(range(min(3, len(pairs))))
    shown |= set(range(0, len(pairs), max(1, len(pairs) // (rows - 5))))
    shown |= {len(pairs) - 1, int(np.argmax(gaps))}
    table = [
        [
            str(t + 1),
            f"{a:.10g}",
            f"{b:.10g}",
            f"{gaps[t]:.3g}",
            f"{gaps[t] / max(abs(a), abs(b), 1e-300):.3g}",
        ]
        for t, (a, b) in enumerate(pairs)
        if t in shown
    ]
    worst = max(gaps, default=0.0)
    return render_table(
        f"loss per step ({result.short}), {len(pairs) - len(table)} of {len(pairs)} "
        f"steps not shown; largest |difference| {worst:.3g}",
        ["step", "PyTorch", "Keras", "|diff|", "rel"],
        table,
        right={0, 1, 2, 3, 4},
    )


def weight_table(result: TrainParity) -> str:
    """Each tensor's max relative difference after the last step, then the verdict."""
    tol = result.tolerance
    table = [[d.tensor, f"{d.error:.3g}", _verdict(d, tol)] for d in result.tensors]
    s = result.spec
    title = (
        f"{s.name} (lr {s.lr:g}, schedule {s.schedule.kind}"
        f"{f' after {s.schedule.warmup_steps} warmup steps' if s.schedule.warmup_steps else ''}"
        f"), {result.steps} steps"
        f"{f' (one optimiser step per {result.accumulate})' if result.accumulate > 1 else ''}, "
        f"{'float64' if result.f64 else 'float32'}: max |keras - torch| / max |torch| per "
        f"tensor, tolerance {tol:g}"
    )
    text = render_table(title, ["tensor", "max rel", "verdict"], table, right={1})
    worst = max(result.tensors, key=lambda d: d.error, default=None)
    if worst is not None:
        text += f"\nworst: `{worst.tensor}` {worst.error:.3g}"
    return text


def _verdict(d: Divergence, tolerance: float) -> str:
    if d.error <= tolerance:
        return "ok"
    return "noise" if d.noise else "MISMATCH"


def divergence_line(result: TrainParity) -> str:
    """`--per-layer`'s answer: the first (step, tensor) beyond the tolerance."""
    first = result.first
    if first is None:
        return f"no tensor diverges in {result.steps} steps (tolerance {result.tolerance:g})"
    return (
        f"first divergence: `{first.tensor}` after step {first.step}, max rel "
        f"{first.error:.3g} (tolerance {result.tolerance:g})"
    )

"""The generated Keras training file: the PyTorch-exact optimizer and schedule classes it
uses (`backends/runtime/keras_optimizers.py`'s text), the loss and metrics models,
`make_optimizer` and `compile_for_training`, after which `model.fit(x, y)` trains as the
PyTorch file's `train_step` does, and `make_distributed_step`, a custom loop's step under a
tf.distribute strategy. It imports keras (and math) only; tensorflow inside the functions
that need a strategy."""

from __future__ import annotations

import textwrap

from dualnet.backends.common.source_code import global_names
from dualnet.backends.common.source_helpers import helpers_used
from dualnet.backends.runtime_source import helper_sources
from dualnet.training.codegen import (
    Roles,
    assemble,
    constants,
    headline,
    import_block,
    role_sources,
)
from dualnet.training.keras_optim import MODULE, optimizer_source
from dualnet.training.spec import TrainSpec
from dualnet.training.torch_code import describe


def keras_training(roles: Roles, spec: TrainSpec) -> str:
    imports, definitions = role_sources(roles, "keras")
    steps = _functions(roles, spec)
    runtime = dict(helper_sources(MODULE))
    used = [runtime[name].strip() for name in helpers_used(steps, runtime)]
    ours = {
        "import keras",
        "from keras import ops",
        *(["import math"] if "math" in global_names("\n".join(used)) else []),
    }
    return assemble(
        [
            _docstring(roles, spec),
            "from __future__ import annotations",
            import_block({*imports, *ours}),
            constants(roles, spec.accumulate),
        ],
        [*definitions, *used, steps],
    )


def _docstring(roles: Roles, spec: TrainSpec) -> str:
    head = headline(roles, spec, "Keras", f"{describe(spec.optimizer)}, as PyTorch computes them")
    return (
        f'"""{head}\n\n'
        "    compile_for_training(model)  # a generated model, its weights loaded\n"
        "    model.fit(x, y, batch_size=32)\n\n"
        "`x` holds the inputs in the order of INPUTS (one array, or a tuple), `y` the targets\n"
        "in the order of TARGETS (one array, a tuple, or a dict by name).\n"
        'Edit the .dnet source and regenerate rather than editing this file.\n"""'
    )


def _functions(roles: Roles, spec: TrainSpec) -> str:
    if roles.named_outputs:
        outputs = "[y_pred[name] for name in OUTPUTS]"
    else:
        outputs = "[y_pred]" if len(roles.outputs) == 1 else "list(y_pred)"
    targets = "[y]" if len(roles.targets) == 1 else "list(y)"
    metrics = _metrics(roles, spec)
    what = textwrap.fill(
        f"{describe(spec.optimizer)}, as torch.optim computes it, over `model`'s trainable "
        "variables (those holding PyTorch vectors, rank ≤ 1 there, are its no_decay group)",
        80,
        subsequent_indent="    ",
    )
    extra = ["gradient_accumulation_steps=ACCUMULATE"] if spec.accumulate > 1 else []
    return (
        "def make_optimizer(model: keras.Model) -> keras.optimizers.Optimizer:\n"
        f'    """{what}."""\n'
        "    no_decay = [\n"
        "        v\n"
        "        for v in model.trainable_variables\n"
        '        if len(v.shape) <= 1 or v.name == "bias"  # attention biases: (heads, size)\n'
        "    ]\n"
        f"    return {optimizer_source(spec.optimizer, 'no_decay', 4, extra)}\n\n\n"
        "def _outputs(y_pred) -> list:\n"
        '    """The model\'s outputs in the order of OUTPUTS."""\n'
        f"    return {outputs}\n\n\n"
        "def _targets(y) -> list:\n"
        '    """The targets in the order of TARGETS."""\n'
        "    if isinstance(y, dict):\n"
        "        return [y[name] for name in TARGETS]\n"
        f"    return {targets}\n\n\n"
        "def compile_for_training(model: keras.Model, **options) -> keras.Model:\n"
        '    """Compile `model` (`options`: the others of `model.compile`) so that `fit` and\n'
        "    `train_on_batch` train it as the PyTorch training file does (BatchNorm and\n"
        "    Dropout in training mode, its loss, optimiser and accumulation) and `evaluate`\n"
        '    reports its loss and metrics, averaged over the examples."""\n'
        f"    loss = {spec.loss}()\n"
        f"{metrics}"
        "    model.compile(optimizer=make_optimizer(model), **options)\n"
        "    model.compute_loss = compute_loss\n"
        "    model.compute_metrics = compute_metrics\n"
        "    model.reset_metrics = reset_metrics\n"
        "    return model\n\n\n" + DISTRIBUTED_STEP
    )


DISTRIBUTED_STEP = '''def make_distributed_step(model: keras.Model, strategy):
    """A training step for a custom loop under `strategy` (a tf.distribute strategy, such as
    MultiWorkerMirroredStrategy, under which Keras 3's `fit` fails), `model` compiled by
    `compile_for_training` inside `strategy.scope()`: `step(x, y)` trains on this worker's
    share of the global batch and returns the global batch's loss and metrics (with equal
    shares), as `train_on_batch` does. Without `accumulate`: Keras's accumulation does not
    run under a strategy."""
    import tensorflow as tf

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x, y, y_pred, training=True)
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply(gradients, model.trainable_variables)
        metrics = model.compute_metrics(x, y, y_pred)  # this replica's share
        return loss, {k: v for k, v in metrics.items() if k != "loss"}

    @tf.function
    def distributed_step(x, y):
        loss, metrics = strategy.run(replica_step, (x, y))
        logs = {k: strategy.reduce("MEAN", v, axis=None) for k, v in metrics.items()}
        return {"loss": strategy.reduce("SUM", loss, axis=None), **logs}

    def step(x, y):
        model.reset_metrics()
        return distributed_step(x, y)

    return step'''


def _metrics(roles: Roles, spec: TrainSpec) -> str:
    """compile_for_training's inner functions."""
    loss = (
        "\n    def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):\n"
        "        return replica_share(loss(*_outputs(y_pred), *_targets(y)))\n"
    )
    if not spec.metrics:
        return (
            loss + "\n    def compute_metrics(x, y, y_pred, sample_weight=None):\n"
            "        return {m.name: m.result() for m in model.metrics}\n\n"
            "    reset_metrics = model.reset_metrics\n\n"
        )
    values = "metric_model(*_outputs(y_pred), *_targets(y))"
    if not roles.named_metrics:
        values = (
            f"{{METRICS[0]: {values}}}"
            if len(roles.metric_names) == 1
            else f"dict(zip(METRICS, {values}))"
        )
    return (
        f"    metric_model = {spec.metrics}()\n"
        "    trackers = [keras.metrics.Mean(name=name) for name in METRICS]\n"
        "    reset = model.reset_metrics\n"
        f"{loss}\n"
        "    def compute_metrics(x, y, y_pred, sample_weight=None):\n"
        f"        values = {values}\n"
        "        batch = ops.shape(_targets(y)[0])[0]\n"
        "        for tracker in trackers:\n"
        "            tracker.update_state(values[tracker.name], sample_weight=batch)\n"
        "        return {m.name: m.result() for m in [*model.metrics, *trackers]}\n\n"
        "    def reset_metrics():\n"
        "        reset()\n"
        "        for tracker in trackers:\n"
        "            tracker.reset_state()\n\n"
    )

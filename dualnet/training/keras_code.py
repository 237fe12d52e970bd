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
        "    return model\n\n\n" + _distributed_step(spec.accumulate)
    )


def _distributed_step(accumulate: int) -> str:
    """`make_distributed_step`'s source; with `accumulate` > 1 it sums each batch's gradients
    in per-replica variables and steps the optimiser every ACCUMULATE-th call."""
    each = accumulate > 1
    accumulating = (
        "\n    Every ACCUMULATE-th call steps the optimiser with the batches' mean gradient:"
        "\n    Keras's own accumulation does not run under a strategy (it all-reduces inside a"
        "\n    conditional), so this step accumulates in its place; a run resumed from the"
        "\n    weights and optimizer state starts at an optimiser step."
    )
    doc = (
        '    """A training step for a custom loop under `strategy` (a tf.distribute strategy,\n'
        "    such as MultiWorkerMirroredStrategy, under which Keras 3's `fit` fails), `model`\n"
        "    compiled by `compile_for_training` inside `strategy.scope()`: `step(x, y)` trains on\n"
        "    this worker's share of the global batch, split equally among the worker's\n"
        "    replicas, and returns the global batch's loss and metrics (with equal shares), as\n"
        "    `train_on_batch` does." + (accumulating if each else "") + '"""'
    )
    lines = [
        "def make_distributed_step(model: keras.Model, strategy):",
        doc,
        "    import tensorflow as tf",
        "",
        "    replicas = len(strategy.extended.worker_devices)  # this worker's",
    ]
    if each:
        lines += [
            "    model.optimizer.gradient_accumulation_steps = None  # accumulated here",
            "    with strategy.scope():  # each replica's sum of its gradients / ACCUMULATE",
            "        sums = [",
            "            tf.Variable(",
            "                tf.zeros_like(v),",
            "                trainable=False,",
            "                synchronization=tf.VariableSynchronization.ON_READ,",
            "                aggregation=tf.VariableAggregation.SUM,",
            "            )",
            "            for v in model.trainable_variables",
            "        ]",
            "    reached = []  # whether each variable has a gradient (found when traced)",
            "    done = int(ops.convert_to_numpy(model.optimizer.iterations))",
            "    calls = [done * ACCUMULATE]  # batches, from the optimiser steps taken",
        ]
    lines += [
        "",
        "    def share(values, context):",
        '        """This replica\'s equal part of the worker\'s share."""',
        "        index = context.replica_id_in_sync_group % replicas",
        "        return tf.nest.map_structure(lambda v: tf.split(v, replicas)[index], values)",
        "",
        "    def replica_step(x, y):",
        "        with tf.GradientTape() as tape:",
        "            y_pred = model(x, training=True)",
        "            loss = model.compute_loss(x, y, y_pred, training=True)",
        "        gradients = tape.gradient(loss, model.trainable_variables)",
    ]
    if each:
        lines += [
            "        reached[:] = [g is not None for g in gradients]",
            "        for total, g in zip(sums, gradients, strict=True):",
            "            if g is not None:",
            "                total.assign_add(tf.convert_to_tensor(g) / ACCUMULATE)",
        ]
    else:
        lines += ["        model.optimizer.apply(gradients, model.trainable_variables)"]
    lines += [
        "        metrics = model.compute_metrics(x, y, y_pred)  # this replica's share",
        '        return loss, {k: v for k, v in metrics.items() if k != "loss"}',
        "",
    ]
    if each:
        lines += [
            "    def replica_update():",
            "        gradients = [",
            "            tf.identity(total) if has else None",
            "            for total, has in zip(sums, reached, strict=True)",
            "        ]",
            "        model.optimizer.apply(gradients, model.trainable_variables)",
            "        for total in sums:",
            "            total.assign(tf.zeros_like(total))",
            "",
            "    @tf.function",
            "    def update():",
            "        strategy.run(replica_update)",
            "",
        ]
    lines += [
        "    @tf.function",
        "    def distributed_step(x, y):",
        "        inputs = strategy.experimental_distribute_values_from_function(",
        "            lambda context: share((x, y), context)",
        "        )",
        "        loss, metrics = strategy.run(replica_step, inputs)",
        '        logs = {k: strategy.reduce("MEAN", v, axis=None) for k, v in metrics.items()}',
        '        return {"loss": strategy.reduce("SUM", loss, axis=None), **logs}',
        "",
        "    def step(x, y):",
        "        model.reset_metrics()",
    ]
    if each:
        lines += [
            "        logs = distributed_step(x, y)",
            "        calls[0] += 1",
            "        if calls[0] % ACCUMULATE == 0:",
            "            update()",
            "        return logs",
        ]
    else:
        lines += ["        return distributed_step(x, y)"]
    lines += ["", "    return step"]
    return "\n".join(lines)


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

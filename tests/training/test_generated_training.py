"""The generated training files (`dualnet compile --train`): PyTorch's `train_step` against
`build_torch` and a hand loop with torch.nn.functional's loss; Keras's `fit()` after
`compile_for_training` against the generated PyTorch step, in float64 and float32;
gradient accumulation against one batch of twice the size; the files ruff-clean."""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dualnet.compiler import load
from dualnet.training.files import write_training
from dualnet.training.spec import OptimizerSpec, ScheduleSpec, TrainSpec
from dualnet.verify.train_parity import relative
from tests.backends.generated_source import assert_ruff_clean

torch = pytest.importorskip("torch")

HERE = Path(__file__).parent
PROGRAM = load(str(HERE / "cnn_train.dnet"))
SGD = OptimizerSpec(
    "SGD", lr=0.05, momentum=0.9, nesterov=True, schedule=ScheduleSpec("step", step_size=2)
)
ADAM = OptimizerSpec(
    "AdamW",
    lr=0.01,
    no_decay_vectors=True,
    clip_norm=1.0,
    schedule=ScheduleSpec("cosine", t_max=6, warmup_steps=2),
)
STEPS, BATCH = 6, 4


def cnn_spec(optimizer: OptimizerSpec) -> TrainSpec:
    return TrainSpec("Net", "CrossEntropy", optimizer, (("labels", "i64[B]"),), "Accuracy")


def generated(spec: TrainSpec, target: str, directory: Path):
    """The generated training file of `target`, written and imported as a module."""
    path = write_training(PROGRAM, spec, target, str(directory))
    module_spec = importlib.util.spec_from_file_location(f"{path.stem}_{id(spec)}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def cnn_data(f64: bool):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEPS * BATCH, 3, 12, 12)).astype(np.float64 if f64 else np.float32)
    return x, rng.integers(0, 5, STEPS * BATCH)


def torch_model(weights: Path, f64: bool, model: str = "Net"):
    from dualnet.backends.torch.backend import TORCH

    module = PROGRAM.torch(model)
    module = module.double() if f64 else module
    TORCH.weights_io()[1](module, str(weights))
    for sub in module.modules():
        if isinstance(sub, torch.nn.Dropout):
            sub.p = 0.0  # each framework draws its own masks
    return module


def torch_state(module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in module.state_dict().items() if v.is_floating_point()}


def weight_file(model: str, f64: bool, directory: Path) -> Path:
    """dualnet's seeded initialisation of `model` (float64: cast), as a file."""
    from dualnet.backends.gradients import float64
    from dualnet.backends.initial import initial_weights
    from dualnet.io.weights import write_state

    path = directory / f"{model}_{'f64' if f64 else 'f32'}.safetensors"
    state = initial_weights(PROGRAM.check(model), None, 0)
    write_state(float64(state) if f64 else state, path)
    return path


def run_generated_torch(spec, f64, tmp_path, batch=BATCH, data=None, model="Net"):
    gen = generated(spec, "torch", tmp_path)
    module = torch_model(weight_file(model, f64, tmp_path), f64, model)
    optimizer = gen.make_optimizer(module)
    x, y = data if data is not None else cnn_data(f64)
    logs = [
        gen.train_step(
            module,
            optimizer,
            (torch.from_numpy(x[i : i + batch]),),
            (torch.from_numpy(y[i : i + batch]),),
        )
        for i in range(0, len(x), batch)
    ]
    return module, logs, optimizer


@pytest.mark.parametrize("optimizer", [SGD, ADAM], ids=["sgd", "adamw"])
def test_torch_train_step_is_build_torch_with_cross_entropy(optimizer, tmp_path):
    from dualnet.training.torch_optim import build_torch

    spec = cnn_spec(optimizer)
    module, logs, _ = run_generated_torch(spec, True, tmp_path)
    reference = torch_model(weight_file("Net", True, tmp_path), True)
    training = build_torch(optimizer, reference.named_parameters())
    x, y = cnn_data(True)
    for t, i in enumerate(range(0, len(x), BATCH)):
        training.optimizer.zero_grad()
        xb, yb = torch.from_numpy(x[i : i + BATCH]), torch.from_numpy(y[i : i + BATCH])
        out = reference(xb)
        loss = torch.nn.functional.cross_entropy(out, yb)
        loss.backward()
        training.step()
        loss = loss.detach()
        assert abs(float(logs[t]["loss"]) - float(loss)) <= 1e-12 * abs(float(loss))
        accuracy = (out.argmax(1) == yb).float().mean()
        assert float(logs[t]["accuracy"]) == pytest.approx(float(accuracy))
    ours, theirs = torch_state(module), torch_state(reference)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert relative(ours[name], theirs[name]) <= 1e-12, name


def keras_fit(spec, f64: bool, tmp_path, data, batch, model="Net"):
    """The generated Keras file's fit over `data` (one epoch, no shuffling), the final
    state in PyTorch's names, and fit's history."""
    import keras

    from dualnet.backends.keras.backend import KERAS
    from dualnet.backends.keras.gradients import keras_float64
    from dualnet.backends.keras.state import layers_by_path, torch_named

    with keras_float64() if f64 else contextlib.nullcontext():
        gen = generated(spec, "keras", tmp_path)
        built = PROGRAM.keras(model)
        KERAS.weights_io()[1](built, str(weight_file(model, f64, tmp_path)))
        for _, layer in layers_by_path(built):
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
        gen.compile_for_training(built)
        x, y = data
        history = built.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        return torch_named(built, lambda v: np.array(v.numpy())), history.history


@pytest.mark.parametrize("f64", [True, False], ids=["f64", "f32"])
@pytest.mark.parametrize("optimizer", [SGD, ADAM], ids=["sgd", "adamw"])
def test_keras_fit_trains_as_torch_train_step(optimizer, f64, tmp_path):
    spec = cnn_spec(optimizer)
    module, logs, _ = run_generated_torch(spec, f64, tmp_path)
    state, history = keras_fit(spec, f64, tmp_path, cnn_data(f64), BATCH)
    tolerance = 1e-10 if f64 else (1e-5 if optimizer.name == "SGD" else 1e-4)
    for name, value in torch_state(module).items():
        assert relative(state[name], value) <= tolerance, name
    losses = [float(log["loss"]) for log in logs]
    accuracy = [float(log["accuracy"]) for log in logs]
    assert history["loss"][0] == pytest.approx(np.mean(losses), rel=1e-6)
    assert history["accuracy"][0] == pytest.approx(np.mean(accuracy), rel=1e-6)


def regressor_data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((24, 4)), rng.standard_normal((24, 2))


def regressor_spec(accumulate: int) -> TrainSpec:
    sgd = OptimizerSpec(
        "SGD", lr=0.1, momentum=0.5, schedule=ScheduleSpec("step", step_size=1, gamma=0.5)
    )
    return TrainSpec("Regressor", "Mse", sgd, accumulate=accumulate)


def test_accumulation_is_one_batch_of_twice_the_size(tmp_path):
    data = regressor_data()
    whole, _, _ = run_generated_torch(regressor_spec(1), True, tmp_path, 8, data, "Regressor")
    halves, _, optimizer = run_generated_torch(
        regressor_spec(2), True, tmp_path, 4, data, "Regressor"
    )
    assert optimizer.batches == 6 and optimizer.lr == pytest.approx(0.1 * 0.5**3)
    keras_state, _ = keras_fit(regressor_spec(2), True, tmp_path, data, 4, "Regressor")
    start = torch_state(torch_model(weight_file("Regressor", True, tmp_path), True, "Regressor"))
    for name, value in torch_state(whole).items():
        assert relative(torch_state(halves)[name], value) <= 1e-12, name
        assert relative(keras_state[name], value) <= 1e-10, name
        assert relative(start[name], value) > 1e-3, name  # it trained


def test_generated_files_are_ruff_clean_and_deterministic(tmp_path):
    files = []
    for target in ("torch", "keras"):
        for spec in (cnn_spec(ADAM), regressor_spec(2)):
            path = write_training(PROGRAM, spec, target, str(tmp_path / f"{target}{spec.model}"))
            files.append(path)
            assert (
                path.read_text()
                == write_training(PROGRAM, spec, target, str(tmp_path / "again")).read_text()
            )
    assert_ruff_clean(files)


def test_compile_with_a_loss_writes_the_training_file_beside_the_model(tmp_path, capsys):
    import subprocess
    import sys

    from dualnet.cli import main

    argv = ["compile", str(HERE / "cnn_train.dnet"), "--target", "torch", "-o", str(tmp_path)]
    assert main([*argv, "--loss", "CrossEntropy", "--metrics", "Accuracy", "--lr", "0.1"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {
        "cnn_train_torch.py",
        "cnn_train_torch_train.py",
    }
    script = (
        "import torch\n"
        "from cnn_train_torch import Net\n"
        "from cnn_train_torch_train import make_optimizer, train_step, eval_step, TARGETS\n"
        "model = Net()\n"
        "optimizer = make_optimizer(model)\n"
        "x, y = torch.randn(4, 3, 12, 12), torch.tensor([0, 1, 2, 3])\n"
        "logs = train_step(model, optimizer, (x,), (y,))\n"
        "print(TARGETS, sorted(logs), optimizer.lr, sorted(eval_step(model, (x,), (y,))))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert ran.stdout.strip() == "('labels',) ['accuracy', 'loss'] 0.1 ['accuracy', 'loss']"
    assert main([*argv, "--metrics", "Accuracy"]) == 1
    assert "--metrics needs --loss MODEL" in capsys.readouterr().err


def test_keras_no_decay_group_is_the_pytorch_vectors(tmp_path):
    """The generated rule (rank ≤ 1, or a variable named bias) picks the variables that hold
    PyTorch tensors of rank ≤ 1, as `vector_variables` finds them through the weight
    conversion, on a Transformer encoder (attention biases are (heads, size) in Keras)."""
    from dualnet.training.keras_optim import vector_variables

    spec = TrainSpec("SmallEncoder", "PooledMse", replace(ADAM, weight_decay=0.1))
    gen = generated(spec, "keras", tmp_path)
    model = PROGRAM.keras("SmallEncoder")
    optimizer = gen.make_optimizer(model)
    spared = {id(v) for v in model.trainable_variables if not optimizer._use_weight_decay(v)}
    assert spared == {id(v) for v in vector_variables(model)}
    assert any(len(v.shape) == 2 and id(v) in spared for v in model.trainable_variables)


def test_two_inputs_two_outputs_train_alike(tmp_path):
    """The encoder (ids and mask in, two outputs to the loss): Keras `fit` after
    `compile_for_training` against the generated PyTorch step, float64."""
    spec = TrainSpec("SmallEncoder", "PooledMse", SGD)
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 50, (8, 6))
    mask = np.ones((8, 6), bool)
    mask[::2, 4:] = False
    target = rng.standard_normal((8, 16))
    gen = generated(spec, "torch", tmp_path)
    module = torch_model(weight_file("SmallEncoder", True, tmp_path), True, "SmallEncoder")
    optimizer = gen.make_optimizer(module)
    for i in range(0, 8, 2):
        inputs = (torch.from_numpy(ids[i : i + 2]), torch.from_numpy(mask[i : i + 2]))
        gen.train_step(module, optimizer, inputs, (torch.from_numpy(target[i : i + 2]),))
    state, _ = keras_fit(spec, True, tmp_path, ((ids, mask), target), 2, "SmallEncoder")
    for name, value in torch_state(module).items():
        assert relative(state[name], value) <= 1e-10, name


def test_a_loss_that_does_not_take_the_outputs_then_targets(tmp_path):
    from dualnet.diagnostics import DualnetError

    with pytest.raises(DualnetError) as caught:
        write_training(PROGRAM, TrainSpec("SmallEncoder", "Mse", SGD), "torch", str(tmp_path))
    d = caught.value.diagnostics[0]
    assert d.code == "E-TYPE" and "`Mse` does not take the outputs of `SmallEncoder`" in d.message
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("target", ["torch", "keras"])
def test_a_hostile_file_name_stays_inside_the_docstring(target, tmp_path):
    """The file name reaches the training file's docstring escaped: it can neither end the
    docstring nor add a statement (the model file's emitters already escape it)."""
    import ast

    from dualnet.frontend import check_file
    from dualnet.training.files import training_source

    text = (HERE / "small_cnn_train.dnet").read_text()
    texts = []
    for name in ("plain.dnet", 'x"""\nraise SystemExit(3)\n"""\\.dnet'):
        path = tmp_path / name
        path.write_text(text)
        spec = check_file(str(path)).training
        texts.append(training_source(load(str(path)), spec, target))
    plain, hostile = (ast.parse(t) for t in texts)
    assert [type(s) for s in hostile.body] == [type(s) for s in plain.body]
    assert "SystemExit(3)" in ast.get_docstring(hostile)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_train_step_leaves_the_step_gradient_on_the_parameters(accumulate, tmp_path):
    """Gradients are zeroed at an optimiser step's first batch, as in the usual loop: after
    the step's last train_step each parameter holds the step's gradient (the mean over its
    batches), computed again here from the weights the step started at."""
    import copy

    gen = generated(regressor_spec(accumulate), "torch", tmp_path)
    module = torch_model(weight_file("Regressor", True, tmp_path), True, "Regressor")
    optimizer = gen.make_optimizer(module)
    x, y = (torch.from_numpy(a) for a in regressor_data())
    batches = [(x[i : i + 4], y[i : i + 4]) for i in range(0, len(x), 4)]
    for start in range(0, len(batches), accumulate):
        before = copy.deepcopy(module)
        for xb, yb in batches[start : start + accumulate]:
            (gen.LOSS(before(xb), yb) / accumulate).backward()
            gen.train_step(module, optimizer, (xb,), (yb,))
        for (name, p), q in zip(module.named_parameters(), before.parameters(), strict=True):
            assert relative(p.grad.numpy(), q.grad.numpy()) <= 1e-12, (start, name)
    assert optimizer.batches == len(batches)

"""The `train` block (docs/language.md, "Training"): parsing, the TrainSpec it checks into,
every diagnostic (code and place), the desugared loss model in each backend, and `check`'s
training summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dualnet.frontend import check_file
from dualnet.syntax import ast
from dualnet.syntax.parser import parse
from dualnet.training.spec import OptimizerSpec, ScheduleSpec

HERE = Path(__file__).parent
CNN = HERE / "small_cnn_train.dnet"

MODEL = """\
const LR = 0.05

model Net(width: int = 10) {
    fc = Linear(width)
    forward(x: f32[B, 4]) -> f32[B, width] {
        return fc(x)
    }
}
"""
LOSS = """\
    loss(logits: f32[B, C], labels: i64[B]) -> f32[] {
        return -mean(gather(log_softmax(logits, axis=1), 1, unsqueeze(labels, 1)), axis=(0, 1))
    }
"""


def _program(tmp_path, body: str, loss: str = LOSS, model: str = MODEL) -> str:
    path = tmp_path / "net.dnet"
    path.write_text(f"{model}\ntrain Net {{\n{body}\n{loss}}}\n")
    return str(path)


def _check(tmp_path, body: str, **kw):
    return check_file(_program(tmp_path, body, **kw))


def _only(summary, code: str, line: int, column: int):
    """The one diagnostic, with its code and place."""
    assert [(d.code, d.span.line, d.span.column) for d in summary.diagnostics] == [
        (code, line, column)
    ], [str(d) for d in summary.diagnostics]
    return summary.diagnostics[0]


# ---------------------------------------------------------------- syntax


def test_a_train_block_parses_into_settings_and_functions():
    module = parse(CNN.read_text(), "f")
    block = module.decls[-1]
    assert isinstance(block, ast.Train) and block.model.id == "SmallCNN"
    assert [s.name.id for s in block.settings] == [
        "optimizer",
        "schedule",
        "clip_grad_norm",
        "accumulate",
    ]
    assert [f.name.id for f in block.functions] == ["loss", "metrics"]


def test_train_is_still_a_name_everywhere_else(tmp_path):
    path = tmp_path / "m.dnet"
    path.write_text(
        "model M(train: int = 2) {\n    forward(x: f32[B]) -> f32[B] {\n"
        "        train2 = x * train\n        return train2\n    }\n}\n"
    )
    assert check_file(str(path)).ok


def test_a_misspelt_train_is_a_syntax_error(tmp_path):
    path = tmp_path / "m.dnet"
    path.write_text("trian Net {\n}\n")
    d = _only(check_file(str(path)), "E-SYNTAX", 1, 1)
    assert "expected `const`, `from`, `import`, `model`, `train`" in d.message
    assert d.notes == ("did you mean `train`?",)


def test_a_name_starting_a_declaration_is_reported_at_the_name(tmp_path):
    """`train` is read at a declaration's start, and only there: another word is the error
    (not the token after it)."""
    path = tmp_path / "m.dnet"
    path.write_text("foo = 3\n")
    d = _only(check_file(str(path)), "E-SYNTAX", 1, 1)
    assert d.message.startswith("unexpected `foo`, expected `const`")


# ---------------------------------------------------------------- the spec


def test_the_cnn_block_checks_into_its_train_spec():
    summary = check_file(str(CNN))
    assert summary.ok, summary.diagnostics
    spec = summary.training
    assert spec.model == "SmallCNN" and summary.model == "SmallCNN"  # the default entry
    assert spec.loss == "SmallCNNLoss" and spec.metrics == "SmallCNNMetrics"
    assert spec.metric_names == ("accuracy", "top3")
    assert spec.targets == (("labels", "i64[B]"),)
    assert spec.accumulate == 2
    schedule = ScheduleSpec("cosine", t_max=500, warmup_steps=10)  # 100 * classes, WARMUP
    assert spec.optimizer == OptimizerSpec(
        "SGD",
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        no_decay_vectors=True,
        clip_norm=1.0,
        schedule=schedule,
    )


def test_defaults_and_every_optimizer_and_schedule(tmp_path):
    summary = _check(tmp_path, "    optimizer = adamw")
    assert summary.ok and summary.training.optimizer == OptimizerSpec("AdamW")
    assert summary.training.accumulate == 1 and summary.training.metrics is None
    cases = {
        "Adam(lr=LR, betas=(0.8, 0.9), amsgrad=true, eps=1e-6)": OptimizerSpec(
            "Adam", lr=0.05, betas=(0.8, 0.9), amsgrad=True, eps=1e-6
        ),
        "RMSprop(alpha=0.9, centered=true, momentum=0.5)": OptimizerSpec(
            "RMSprop", alpha=0.9, centered=True, momentum=0.5
        ),
        "Adagrad(lr_decay=0.01, initial_accumulator_value=0.1)": OptimizerSpec(
            "Adagrad", lr_decay=0.01, initial_accumulator_value=0.1
        ),
    }
    for text, want in cases.items():
        summary = _check(tmp_path, f"    optimizer = {text}")
        assert summary.ok and summary.training.optimizer == want, text
    schedules = {
        "step(step_size=width, gamma=0.5)": ScheduleSpec("step", step_size=10, gamma=0.5),
        "one_cycle(total_steps=100, max_lr=0.3, three_phase=true)": ScheduleSpec(
            "one_cycle", total_steps=100, max_lr=0.3, three_phase=True
        ),
        "constant": ScheduleSpec(),
    }
    for text, want in schedules.items():
        summary = _check(tmp_path, f"    optimizer = SGD(momentum=0.9)\n    schedule = {text}")
        assert summary.ok and summary.training.optimizer.schedule == want, text


def test_only_the_entry_model_gets_its_training(tmp_path):
    path = _program(tmp_path, "    optimizer = SGD(lr=0.1)")
    assert check_file(path, model="NetLoss").training is None
    assert check_file(path, model="NetLoss").input_types == [
        "logits: f32[B, C]",
        "labels: i64[B]",
    ]


# ---------------------------------------------------------------- diagnostics

# (block body, loss, code, line, column): the train block starts on line 10, its first
# setting on line 11, the loss on the line after the body
DIAGNOSTICS = {
    "unknown optimizer": ("    optimizer = Adma(lr=0.1)", LOSS, "E-NAME", 11, 17),
    "unknown option": ("    optimizer = SGD(lr=0.1, momentun=0.9)", LOSS, "E-ARGS", 11, 29),
    "option of another optimizer": ("    optimizer = Adam(alpha=0.9)", LOSS, "E-ARGS", 11, 22),
    "option of another schedule": (
        "    optimizer = SGD()\n    schedule = step(t_max=5)",
        LOSS,
        "E-ARGS",
        12,
        21,
    ),
    "positional option": ("    optimizer = SGD(0.1)", LOSS, "E-ARGS", 11, 21),
    "option type": ("    optimizer = SGD(nesterov=1)", LOSS, "E-TYPE", 11, 30),
    "negative weight decay": (
        "    optimizer = SGD(lr=0.1, weight_decay=-1)",
        LOSS,
        "E-VALUE",
        11,
        29,
    ),
    "invalid combination": ("    optimizer = SGD(nesterov=true)", LOSS, "E-VALUE", 11, 21),
    "no momentum": ("    optimizer = Adam(momentum=0.9)", LOSS, "E-ARGS", 11, 22),
    "unknown schedule": (
        "    optimizer = SGD()\n    schedule = cosin(t_max=5)",
        LOSS,
        "E-NAME",
        12,
        16,
    ),
    "schedule value": (
        "    optimizer = SGD()\n    schedule = cosine(t_max=0)",
        LOSS,
        "E-VALUE",
        12,
        23,
    ),
    "both clippings": (
        "    optimizer = SGD()\n    clip_grad_norm = 1.0\n    clip_grad_value = 0.5",
        LOSS,
        "E-ARGS",
        13,
        5,
    ),
    "accumulate": ("    optimizer = SGD()\n    accumulate = 0", LOSS, "E-VALUE", 12, 18),
    "unknown setting": ("    optimizer = SGD()\n    acumulate = 2", LOSS, "E-NAME", 12, 5),
    "setting twice": ("    optimizer = SGD()\n    optimizer = Adam()", LOSS, "E-REDEFINED", 12, 5),
    "no optimizer": ("    accumulate = 2", LOSS, "E-MODEL", 10, 7),
    "no loss": ("    optimizer = SGD()", "", "E-MODEL", 10, 7),
    "loss not scalar": (
        "    optimizer = SGD()",
        "    loss(logits: f32[B, C], labels: i64[B]) -> f32[B, C] {\n"
        "        return logits\n    }\n",
        "E-TYPE",
        12,
        48,
    ),
    "loss type": (
        "    optimizer = SGD()",
        "    loss(logits: f32[B, 3], labels: i64[B]) -> f32[] {\n"
        "        return mean(logits, axis=(0, 1))\n    }\n",
        "E-TYPE",
        12,
        18,
    ),
    "no gradient": (
        "    optimizer = SGD()",
        "    loss(logits: f32[B, C], labels: i64[B]) -> f32[] {\n"
        '        return mean(cast(argmax(logits, axis=1) == labels, "f32"), axis=0)\n    }\n',
        "E-GRAD",
        12,
        5,
    ),
    "unknown function": (
        "    optimizer = SGD()\n"
        "    los(x: f32[B]) -> f32[] {\n        return sum(x, axis=0)\n    }",
        LOSS,
        "E-NAME",
        12,
        5,
    ),
}


@pytest.mark.parametrize("case", DIAGNOSTICS)
def test_each_mistake_is_a_located_diagnostic(tmp_path, case):
    body, loss, code, line, column = DIAGNOSTICS[case]
    _only(_check(tmp_path, body, loss=loss), code, line, column)


def test_the_option_suggests_a_spelling(tmp_path):
    d = _check(tmp_path, "    optimizer = SGD(lr=0.1, momentun=0.9)").diagnostics[0]
    assert "did you mean `momentum`?" in d.notes
    d = _check(tmp_path, "    optimizer = Adma()").diagnostics[0]
    assert "did you mean `Adam`?" in d.notes


def test_a_train_block_for_an_unknown_model(tmp_path):
    path = tmp_path / "m.dnet"
    path.write_text(MODEL + "\ntrain Nett {\n    optimizer = SGD()\n" + LOSS + "}\n")
    d = _only(check_file(str(path)), "E-MODEL", 10, 7)
    assert d.notes[0] == "did you mean `Net`?"


def test_two_train_blocks_for_one_model(tmp_path):
    block = "train Net {\n    optimizer = SGD()\n" + LOSS + "}\n"
    path = tmp_path / "m.dnet"
    path.write_text(MODEL + "\n" + block + block)
    _only(check_file(str(path)), "E-REDEFINED", 16, 7)


def test_a_model_named_like_the_loss_collides(tmp_path):
    extra = "\nmodel NetLoss() {\n    forward(x: f32[B]) -> f32[B] {\n        return x\n    }\n}\n"
    path = tmp_path / "m.dnet"
    path.write_text(MODEL + "\ntrain Net {\n    optimizer = SGD()\n" + LOSS + "}\n" + extra)
    _only(check_file(str(path)), "E-REDEFINED", 17, 7)


def test_metrics_take_the_loss_targets_and_return_named_scalars(tmp_path):
    metrics = (
        "    metrics(logits: f32[B, C], y: i64[B]) -> (hit: f32[]) {\n"
        '        return mean(cast(argmax(logits, axis=1) == y, "f32"), axis=0)\n    }\n'
    )
    _only(_check(tmp_path, "    optimizer = SGD()", loss=LOSS + metrics), "E-TYPE", 15, 5)
    unnamed = metrics.replace("(hit: f32[])", "f32[]").replace(" y", " labels")
    unnamed = unnamed.replace("== y", "== labels")
    _only(_check(tmp_path, "    optimizer = SGD()", loss=LOSS + unnamed), "E-TYPE", 15, 51)


# ---------------------------------------------------------------- backends and the CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dualnet", *args], capture_output=True, text=True, check=False
    )


def test_check_prints_the_training_summary():
    run = _cli("check", str(CNN))
    assert run.returncode == 0, run.stderr
    assert "training SmallCNN:" in run.stdout
    assert (
        "optimizer: SGD(lr=0.1, momentum=0.9, dampening=0, nesterov=true, "
        "weight_decay=0.0005, no_decay_vectors=true)" in run.stdout
    )
    assert "schedule: cosine(t_max=500, eta_min=0, warmup_steps=10" in run.stdout
    assert "gradient clipping: by norm 1; accumulate: 2 batches per step" in run.stdout
    assert "targets: labels: i64[B]" in run.stdout
    assert "metrics: SmallCNNMetrics -> accuracy, top3" in run.stdout
    # conv1, conv2 and fc weights decay; the BatchNorm scales and shifts and fc's bias do not
    assert "trains 667 parameters in 8 tensors; no weight decay on 5 tensors" in run.stdout


def test_check_json_has_the_training():
    run = _cli("check", str(CNN), "--json")
    training = json.loads(run.stdout)["training"]
    assert training["optimizer"]["name"] == "SGD" and training["loss"] == "SmallCNNLoss"
    assert training["trained_tensors"] == 8 and training["no_weight_decay_tensors"] == 5


@pytest.mark.parametrize("model", ["SmallCNNLoss", "SmallCNNMetrics"])
def test_the_desugared_models_run_alike_in_every_backend(model):
    run = _cli("parity", str(CNN), "--model", model)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count(" ok ") == 3 * (1 if model.endswith("Loss") else 2)


@pytest.mark.parametrize("model", ["ClassLosses", "PairLosses"])
def test_loss_gradients_agree_with_finite_differences_in_every_backend(model):
    """The losses' gradients: each backend's autodiff against finite differences (float64),
    and PyTorch's against Keras's."""
    run = _cli("gradcheck", str(HERE / "losses.dnet"), "--model", model, "--dims", "B=4")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "torch vs keras" in run.stdout and "FAIL" not in run.stdout


def test_the_loss_model_is_torchs_cross_entropy():
    torch = pytest.importorskip("torch")
    from dualnet.compiler import load

    program = load(str(CNN))
    loss, metrics = program.torch(model="SmallCNNLoss"), program.torch(model="SmallCNNMetrics")
    logits = torch.randn(6, 5, dtype=torch.float32)
    labels = torch.randint(0, 5, (6,))
    want = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss(logits, labels), want)
    hits = (logits.argmax(1) == labels).float().mean()
    torch.testing.assert_close(metrics(logits, labels).accuracy, hits)


def test_a_train_block_for_an_imported_model(tmp_path):
    (tmp_path / "lib.dnet").write_text(MODEL)
    path = tmp_path / "main.dnet"
    path.write_text(
        'from "lib.dnet" import Net\n\nmodel Other() {\n    forward(x: f32[B]) -> f32[B] {\n'
        "        return x\n    }\n}\n\ntrain Net {\n    optimizer = Adam\n" + LOSS + "}\n"
    )
    assert check_file(str(path)).training is None  # the entry model is Other
    summary = check_file(str(path), model="Net")
    assert summary.ok and summary.training.optimizer == OptimizerSpec("Adam")

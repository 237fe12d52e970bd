"""`dualnet parity --train-steps`: training runs in PyTorch and Keras (its fit() step) from
one weight file compared step by step; the spec's text form; the no-decay group of a
generated Keras model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dualnet import cli
from dualnet.compiler import Program
from dualnet.training.spec import OptimizerSpec, ScheduleSpec, parse_optimizer

pytest.importorskip("torch")
pytest.importorskip("keras")

HERE = Path(__file__).parent
CNN = str(HERE / "small_cnn.dnet")
ENCODER = str(HERE / "small_encoder.dnet")
CONV_LINEAR = str(HERE / "conv_linear.dnet")
ZEROED = str(HERE / "zeroed_kernels.dnet")
RECURRENT = str(HERE / "recurrent.dnet")
TIED = str(HERE.parent / "programs" / "tied_weights_and_child_reads.dnet")
BIAS_BEFORE_NORM = str(HERE / "bias_before_batchnorm.dnet")


def test_float64_sgd_with_a_schedule_matches_and_says_dropout_is_off(capsys):
    argv = ["parity", CNN, "--train-steps", "4", "--optimizer", "SGD:momentum=0.9"]
    argv += ["--lr", "0.05", "--schedule", "cosine:warmup_steps=2", "--f64", "--per-layer"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Dropout off in both frameworks (drop)" in out
    assert "tolerance 1e-10" in out and "no tensor diverges in 4 steps" in out
    assert "MISMATCH" not in out and "bn1.running_var" in out


def test_float64_adamw_with_a_no_decay_group_matches():
    from dualnet.verify.train_parity import train_parity

    spec = parse_optimizer("AdamW:weight_decay=0.1,no_decay_vectors=True", 1e-2, None, 3)
    result = train_parity(Program(CNN), None, spec, 3, f64=True)
    assert result.ok, [(d.tensor, d.error) for d in result.tensors]
    losses = result.torch.losses
    assert len(losses) == 3 and len(set(losses)) == 3  # it trained: the loss moved
    assert result.torch.history == [] and result.first is None


def test_a_running_mean_fed_by_left_out_elements_is_noise_not_a_mismatch(capsys):
    """Adam moves a bias before a BatchNorm by full steps in directions rounding decides:
    the bias is left out, and the running mean that averages it, differing by no more than
    the bias does, is `noise`; every other tensor is held to 1e-10."""
    argv = ["parity", BIAS_BEFORE_NORM, "--train-steps", "4", "--optimizer", "Adam", "--f64"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "left out: gradient elements at rounding level" in out and "conv.bias" in out
    assert "noise: running statistics" in out and "norm.running_mean" in out
    assert "MISMATCH" not in out


@pytest.mark.parametrize(
    "optimizer", ["SGD:momentum=0.9,clip_norm=0.01", "AdamW"], ids=["sgd-clipped", "adamw"]
)
def test_kernels_with_zeros_around_the_taps_train_as_pytorchs(optimizer):
    """A grouped transposed convolution and a strided dilated one are Keras kernels with
    zeros where PyTorch has no weight: no gradient reaches them (so clipping by norm sees
    PyTorch's norm) and they stay zero (found by fuzzing training runs)."""
    from dualnet.verify.train_parity import train_parity

    spec = parse_optimizer(optimizer, 0.1, None, 3)
    result = train_parity(Program(ZEROED), None, spec, 3, f64=True)
    assert result.ok, [(d.tensor, d.error) for d in result.tensors]
    gaps = [abs(a - b) for a, b in zip(result.torch.losses, result.keras.losses, strict=True)]
    assert max(gaps) < 1e-10 * max(map(abs, result.torch.losses)), gaps


@pytest.mark.parametrize(
    "optimizer",
    ["SGD:momentum=0.9,weight_decay=0.01,clip_norm=0.01", "Adam", "AdamW", "RMSprop"],
    ids=["sgd", "adam", "adamw", "rmsprop"],
)
def test_an_lstms_summed_bias_steps_as_pytorchs_two(optimizer):
    """Keras's one LSTM bias is PyTorch's bias_ih + bias_hh, each of which PyTorch steps:
    the sum moves two steps (found by fuzzing training runs)."""
    from dualnet.verify.train_parity import train_parity

    spec = parse_optimizer(optimizer, 0.05, None, 3)
    result = train_parity(Program(RECURRENT), None, spec, 3, f64=True)
    assert result.ok, [(d.tensor, d.error) for d in result.tensors]


def test_tied_weights_are_one_tensor_in_both():
    """A tied layer's name for its owner's tensor is PyTorch's alias in state_dict, one
    tensor in Keras: compared once, under the owner's name (found by fuzzing)."""
    from dualnet.verify.train_parity import train_parity

    result = train_parity(Program(TIED), None, parse_optimizer("AdamW", 0.01, None, 2), 2, f64=True)
    assert result.ok, [(d.tensor, d.error) for d in result.tensors]
    names = {d.tensor for d in result.tensors}
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names


def test_keras_reads_every_weight_before_its_update_in_every_run():
    """Each run compiles a new Keras step; with grappler's dependency optimizer on, about
    half of them read a weight after the step's update (TensorFlow's bug,
    tests/backends/test_upstream_bugs.py): all ten runs must match."""
    from dualnet.verify.train_parity import train_parity

    spec = parse_optimizer("SGD", 0.1, None, 3)
    for _ in range(10):
        result = train_parity(Program(CONV_LINEAR), None, spec, 3, f64=True)
        gaps = [abs(a - b) for a, b in zip(result.torch.losses, result.keras.losses, strict=True)]
        assert result.ok and max(gaps) < 1e-10 * max(map(abs, result.torch.losses)), gaps


def test_keras_builtin_adam_is_caught_with_the_first_divergence(monkeypatch, capsys):
    """The check can fail: Keras's own Adam (eps before the bias correction) diverges."""
    import keras

    from dualnet.training import keras_optim

    monkeypatch.setattr(
        keras_optim,
        "build_keras",
        lambda spec, no_decay=(), accumulate=1: keras.optimizers.Adam(1e-2),
    )
    argv = ["parity", CNN, "--train-steps", "3", "--optimizer", "Adam", "--lr", "0.01"]
    assert cli.main([*argv, "--f64", "--per-layer"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "first divergence: `" in out and "after step 1" in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--lr", "0.1"], 2, "--lr: only with --train-steps"),
        (["--train-steps", "2", "--train"], 2, "--train-steps trains"),
        (["--train-steps", "2", "--optimizer", "Adamx"], 1, "is not a valid optimizer"),
        (["--train-steps", "2", "--schedule", "cosine:t_max=0"], 1, "needs t_max > 0"),
        (["--train-steps", "2", "--optimizer", "SGD:nesterov=True"], 1, "nesterov needs"),
        (["--train-steps", "0"], 2, "expected a positive int"),
    ],
)
def test_bad_training_options(argv, code, message, capsys):
    try:
        got = cli.main(["parity", CNN, *argv])
    except SystemExit as exc:  # argparse's own usage errors
        got = exc.code
    captured = capsys.readouterr()
    assert got == code and message in captured.err + captured.out


def test_the_text_form_of_a_spec():
    spec = parse_optimizer("sgd:momentum=0.9,nesterov=True", 0.1, "cosine:warmup_steps=3", 50)
    assert spec == OptimizerSpec(
        "SGD",
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        schedule=ScheduleSpec("cosine", t_max=50, warmup_steps=3),
    )
    adam = parse_optimizer("AdamW:betas=(0.8, 0.99)", None, "one_cycle", 20)
    assert adam.betas == (0.8, 0.99) and adam.weight_decay == 1e-2 and adam.lr == 1e-3
    assert adam.eps == 1e-8 and adam.schedule.total_steps == 20 and adam.max_lr == 1e-3
    assert OptimizerSpec("Adagrad").eps == 1e-10 and OptimizerSpec("RMSprop").lr == 1e-2


def test_the_no_decay_group_of_a_generated_keras_model():
    """Rank ≤ 1 in PyTorch's layout, whatever Keras's shape: attention's bias is
    (heads, head size) in Keras, in_proj_bias (3·hidden,) in PyTorch."""
    from dualnet.training.keras_optim import vector_variables

    model = Program(ENCODER).keras(None)
    model(np.zeros((1, 4), np.int64), np.ones((1, 4), bool))
    spared = {v.path for v in vector_variables(model)}
    ranks = {v.path: len(v.shape) for v in model.trainable_variables}
    assert any(ranks[p] == 2 for p in spared)  # a Keras attention bias
    assert all(ranks[p] <= 2 for p in spared) and len(spared) < len(ranks)
    assert not any(p.endswith("kernel") or "embeddings" in p for p in spared)

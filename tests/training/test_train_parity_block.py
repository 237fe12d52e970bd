"""`dualnet parity FILE --train-steps N` with FILE's train declaration: its optimiser,
schedule, clipping and gradient accumulation, its loss model on the outputs and random
targets drawn per step, the same in PyTorch and in Keras's train step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dualnet import cli
from dualnet.compiler import Program
from dualnet.frontend import check_file
from dualnet.verify import train_loss
from dualnet.verify.train_parity import train_parity

torch = pytest.importorskip("torch")
pytest.importorskip("keras")

HERE = Path(__file__).parent
CNN = str(HERE / "small_cnn_train.dnet")  # accumulate = 2, cosine, clipping
REGRESSOR = str(HERE / "regressor_train.dnet")  # named outputs; float and bool targets


def _spec():
    return check_file(CNN).training


def test_float64_training_with_the_declaration_matches(capsys):
    argv = ["parity", CNN, "--train-steps", "10", "--f64", "--per-layer"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "loss: SmallCNNLoss (the train declaration's)" in out
    assert "labels: i64[B] uniform in 0..4" in out
    assert "optimizer: torch.optim.SGD (lr 0.1), cosine schedule, 10 warmup steps" in out
    assert "one step per 2 batches" in out and "no tensor diverges in 10 steps" in out
    assert "MISMATCH" not in out and "tolerance 1e-10" in out


def test_the_losses_are_the_declared_loss_of_the_same_targets_with_shared_dropout():
    spec = _spec()
    result = train_parity(Program(CNN), None, spec, 4, f64=True, same_dropout=True)
    assert result.ok, [(d.tensor, d.error) for d in result.tensors]
    assert any("Dropout shared" in note for note in result.notes)
    assert result.accumulate == 2 and result.spec == spec.optimizer
    gaps = [abs(a - b) for a, b in zip(result.torch.losses, result.keras.losses, strict=True)]
    assert max(gaps) < 1e-12 and len(set(result.torch.losses)) == 4


def test_targets_are_class_labels_drawn_from_the_seed_and_the_step():
    loss = train_loss.ModelLoss(Program(CNN), _spec(), [(6, 5)], seed=3, f64=True)
    first = loss.targets(0)
    assert [t.dtype for t in first] == [np.int64] and first[0].shape == (6,)
    assert np.array_equal(first[0], loss.targets(0)[0])  # both frameworks get these
    drawn = np.concatenate([loss.targets(t)[0] for t in range(50)])
    assert drawn.min() == 0 and drawn.max() == 4  # the model's 5 classes
    assert not np.array_equal(first[0], loss.targets(1)[0])


def test_the_loss_is_pytorch_cross_entropy_with_label_smoothing():
    """The PyTorch side computes the declared loss: torch's own cross_entropy."""
    loss = train_loss.ModelLoss(Program(CNN), _spec(), [(4, 5)], seed=0, f64=True)
    logits = torch.randn(4, 5, dtype=torch.float64)
    labels = torch.from_numpy(loss.targets(0)[0])
    want = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    assert torch.allclose(loss.torch()([logits], [labels]), want, rtol=1e-14, atol=0)


def test_other_targets_in_keras_make_the_check_fail(monkeypatch):
    """The check can fail: Keras trained on other labels than PyTorch diverges (PyTorch's
    run is over when Keras's loss is built, and only then are the targets shifted)."""
    targets = train_loss.ModelLoss.targets
    keras_side = train_loss.ModelLoss.keras

    def shifted(self):
        self.targets = lambda step: [(y + 1) % 5 for y in targets(self, step)]
        return keras_side(self)

    monkeypatch.setattr(train_loss.ModelLoss, "keras", shifted)
    result = train_parity(Program(CNN), None, _spec(), 4, f64=True)
    assert not result.ok
    assert result.torch.losses[0] != pytest.approx(result.keras.losses[0], rel=1e-6)


@pytest.mark.parametrize("flag", [["--optimizer", "Adam"], ["--lr", "0.1"], ["--schedule", "step"]])
def test_optimizer_options_beside_a_declaration_are_refused(flag, capsys):
    assert cli.main(["parity", CNN, "--train-steps", "2", *flag]) == 1
    err = capsys.readouterr().err
    assert "E-INPUT" in err and f"{flag[0]}: SmallCNN has a train declaration" in err


def test_named_outputs_and_float_and_bool_targets_match_in_float64():
    """Keras's y_pred a dict, y a tuple of a float and a bool target."""
    program = Program(REGRESSOR)
    result = train_parity(program, None, check_file(REGRESSOR).training, 5, f64=True)
    assert result.ok, [(d.tensor, d.error) for d in result.tensors]
    assert "target: f32[B, K] standard normal, mask: bool[B, K] random" in result.loss
    gaps = [abs(a - b) for a, b in zip(result.torch.losses, result.keras.losses, strict=True)]
    assert max(gaps) < 1e-12 and len(set(result.torch.losses)) == 5


def test_a_target_size_the_outputs_do_not_bind_is_refused(tmp_path, capsys):
    text = Path(REGRESSOR).read_text().replace("target: f32[B, K]", "target: f32[N, K]")
    text = text.replace("mse(y * gate, target)", "mse(y, y) + mse(target, target)")
    path = tmp_path / "unbound.dnet"
    path.write_text(text)
    assert cli.main(["parity", str(path), "--train-steps", "2"]) == 1
    err = capsys.readouterr().err
    assert "E-INPUT" in err and "the size `N` of the target `target: f32[N, K]`" in err

"""`dualnet parity --train-steps N --same-dropout`: one mask per step and Dropout /
StochasticDepth call site, fed to the generated PyTorch module and to the generated Keras
model (inside Keras's compiled training step), so models with dropout train identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dualnet import cli
from dualnet.compiler import Program
from dualnet.training.spec import parse_optimizer
from dualnet.verify.dropout_masks import Site, draw
from dualnet.verify.train_parity import train_parity

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

CNN = str(Path(__file__).parent / "dropout_cnn.dnet")  # Dropout, StochasticDepth row/batch


def _inputs(seed: int = 0) -> list[np.ndarray]:
    return [np.random.default_rng(seed).standard_normal((2, 3, 12, 12)).astype(np.float32)]


@pytest.mark.parametrize("optimizer", ["SGD:momentum=0.9", "Adam"])
def test_shared_masks_train_identically_in_float64(optimizer):
    spec = parse_optimizer(optimizer, 1e-2, None, 6)
    result = train_parity(Program(CNN), None, spec, 6, f64=True, same_dropout=True)
    assert result.ok, [(d.tensor, d.error) for d in result.tensors]
    gaps = [
        abs(a - b) / abs(a) for a, b in zip(result.torch.losses, result.keras.losses, strict=True)
    ]
    assert max(gaps) < 1e-10 and any("Dropout shared" in n for n in result.notes)


def test_the_check_fails_when_keras_draws_its_own_masks(monkeypatch):
    """Without the masks in Keras (its layers draw their own) the losses part at step 1."""
    import contextlib

    from dualnet.backends.keras import masks

    monkeypatch.setattr(
        masks, "given_masks", lambda *args: contextlib.nullcontext(lambda step_masks: None)
    )
    spec = parse_optimizer("SGD", 1e-2, None, 3)
    result = train_parity(Program(CNN), None, spec, 3, f64=True, same_dropout=True)
    first = abs(result.torch.losses[0] - result.keras.losses[0]) / abs(result.torch.losses[0])
    assert first > 1e-3 and not result.ok


def test_the_cli_shares_masks_or_says_dropout_is_off(capsys):
    argv = ["parity", CNN, "--train-steps", "2", "--f64"]
    assert cli.main([*argv, "--same-dropout"]) == 0
    out = capsys.readouterr().out
    assert "Dropout shared: one mask per step for each of 5 call sites" in out
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Dropout off in both frameworks (stem.2, first.drop, second.drop, drop)" in out
    assert cli.main(["parity", CNN, "--same-dropout"]) == 2
    assert "--same-dropout: only with --train-steps" in capsys.readouterr().err


def test_each_call_site_and_its_mask_shape():
    """Dropout: the input's shape; row mode [N, 1, 1, 1]; batch mode a scalar; a layer
    called twice has two sites."""
    from dualnet.backends.torch.masks import call_sites

    sites = call_sites(Program(CNN).torch(seed=0).train(), _inputs())
    assert sites == [
        Site("stem.2", 0, (2, 8, 12, 12), 0.2),
        Site("first.drop", 0, (2, 1, 1, 1), 0.3),
        Site("second.drop", 0, (), 0.4),
        Site("drop", 0, (2, 8), 0.25),
        Site("drop", 1, (2, 8), 0.25),
    ]
    masks = draw(sites, 0, 0, np.float32)
    assert {k: m.shape for k, m in masks.items()} == {s.key: s.shape for s in sites}
    assert not np.array_equal(masks["drop", 0], masks["drop", 1])
    assert not np.array_equal(masks["drop", 0], draw(sites, 0, 1, np.float32)["drop", 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mask_values_are_pytorchs_scaled_keep(dtype):
    """A kept element is what torch's own dropout makes of a 1 (its 1 / (1 - p) rounding)."""
    for p in (0.1, 0.3, 0.37, 0.7):
        ours = draw([Site("d", 0, (4096,), p)], 0, 0, np.dtype(str(dtype).split(".")[1]))
        theirs = torch.nn.functional.dropout(torch.ones(4096, dtype=dtype), p).numpy()
        assert set(np.unique(ours["d", 0])) == set(np.unique(theirs))


def test_torch_sites_compute_x_times_the_given_mask_and_nothing_else_changes():
    from dualnet.backends.torch.masks import call_sites, given_masks

    module, fresh = (Program(CNN).torch(seed=0) for _ in range(2))
    x = torch.from_numpy(_inputs()[0])
    sites = call_sites(module.train(), _inputs())
    seen = []
    hook = module.stem[2].register_forward_hook(lambda m, args, out: seen.append((args, out)))
    with given_masks(module, sites) as feed:
        masks = draw(sites, 0, 0, np.float32)
        feed(masks)
        module(x)
        (given,), out = seen[0]
        assert torch.equal(out, given * torch.from_numpy(masks["stem.2", 0]))
        fresh.load_state_dict(module.state_dict())  # BatchNorm's running statistics moved
        with torch.no_grad():
            assert torch.equal(module.eval()(x), fresh.eval()(x))  # eval: untouched
    hook.remove()
    for mode in (False, True):
        module.train(mode), fresh.train(mode)
        torch.manual_seed(1)
        ours = module(x)
        torch.manual_seed(1)
        assert torch.equal(ours, fresh(x))  # unset: the module's own draws again
    assert not any("forward" in vars(sub) for sub in module.modules())


def test_keras_layers_are_as_they_were_after_the_masks():
    from dualnet.backends.keras.emit import output_layouts
    from dualnet.backends.keras.masks import given_masks
    from dualnet.backends.keras.state import layers_by_path
    from dualnet.backends.torch.masks import call_sites

    program, x = Program(CNN), _inputs()[0]
    summary = program.check()
    sites = call_sites(program.torch(seed=0).train(), [x])
    built = []
    for _ in range(2):
        keras.utils.set_random_seed(3)
        built.append(program.keras(seed=0))
    model, fresh = built
    layouts = output_layouts(summary.instance, summary.file)
    with given_masks(model, sites, layouts, "float32") as feed:
        feed(draw(sites, 0, 0, np.float32))
        masked = model(x, training=True)
        assert not np.array_equal(masked, fresh(x, training=False))
    assert not any("call" in vars(layer) for _, layer in layers_by_path(model))
    fresh.set_weights(model.get_weights())  # BatchNorm's running statistics moved
    for training in (False, True):
        np.testing.assert_array_equal(model(x, training=training), fresh(x, training=training))

"""`init=` with arguments (issue 13): `normal(std=0.02)`, `trunc_normal(...)` and the other
torch.nn.init calls on Linear, convolutions and Embedding, and `bias_init=`. dualnet's
seeded draw is torch.nn.init's function with those arguments, bit for bit; the generated
PyTorch module applies torch.nn.init, the generated Keras model draws the same
distribution (moments at six standard errors, and the truncation bounds)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import torch  # noqa: E402

import dualnet  # noqa: E402
from dualnet.backends.keras.state import torch_named  # noqa: E402
from dualnet.backends.torch.init import init_state  # noqa: E402


def _write(tmp_path, layer: str, input_type: str = "f32[B, 10]", name: str = "m.dnet"):
    path = tmp_path / name
    path.write_text(
        f"model M() {{\n    l = {layer}\n    forward(x: {input_type}) {{ return l(x) }}\n}}\n"
    )
    return path


@pytest.mark.parametrize(
    ("written", "reference"),
    [
        ("normal(std=0.02)", lambda t, g: torch.nn.init.normal_(t, std=0.02, generator=g)),
        ("normal(0.5, 2.0)", lambda t, g: torch.nn.init.normal_(t, 0.5, 2.0, generator=g)),
        (
            "trunc_normal(std=0.02)",
            lambda t, g: torch.nn.init.trunc_normal_(t, std=0.02, generator=g),
        ),
        (
            "trunc_normal(mean=1.0, std=0.5, a=0.0, b=1.5)",
            lambda t, g: torch.nn.init.trunc_normal_(t, 1.0, 0.5, 0.0, 1.5, generator=g),
        ),
        ("uniform(-0.1, 0.3)", lambda t, g: torch.nn.init.uniform_(t, -0.1, 0.3, generator=g)),
        ("constant(0.25)", lambda t, g: torch.nn.init.constant_(t, 0.25)),
        (
            "kaiming_uniform(a=0.1)",
            lambda t, g: torch.nn.init.kaiming_uniform_(t, a=0.1, generator=g),
        ),
        (
            "kaiming_normal(a=1.0)",
            lambda t, g: torch.nn.init.kaiming_normal_(t, a=1.0, generator=g),
        ),
        ("xavier_uniform(gain=2.0)", lambda t, g: torch.nn.init.xavier_uniform_(t, 2.0, g)),
        ("xavier_normal(gain=0.5)", lambda t, g: torch.nn.init.xavier_normal_(t, 0.5, g)),
    ],
)
def test_seeded_draw_is_torch_nn_init_with_the_arguments(tmp_path, written, reference):
    path = _write(tmp_path, f'Linear(24, init={written}, bias_init="zeros")')
    ours = init_state(dualnet.check_file(str(path)).instance, 6)
    weight = reference(torch.empty(24, 10), torch.Generator().manual_seed(6))
    assert torch.equal(ours["l.weight"], weight)
    assert torch.equal(ours["l.bias"], torch.zeros(24))


def test_bias_init_ones_and_a_conv_and_an_embedding(tmp_path):
    path = _write(tmp_path, 'Conv1d(4, 3, init=normal(std=0.1), bias_init="ones")', "f32[B, 2, 8]")
    state = init_state(dualnet.check_file(str(path)).instance, 1)
    g = torch.Generator().manual_seed(1)
    assert torch.equal(state["l.weight"], torch.empty(4, 2, 3).normal_(0.0, 0.1, generator=g))
    assert torch.equal(state["l.bias"], torch.ones(4))
    path = _write(tmp_path, "Embedding(50, 8, init=trunc_normal(std=0.02))", "i64[B]", "e.dnet")
    state = init_state(dualnet.check_file(str(path)).instance, 2)
    g = torch.Generator().manual_seed(2)
    expected = torch.nn.init.trunc_normal_(torch.empty(50, 8), std=0.02, generator=g)
    assert torch.equal(state["l.weight"], expected)


SCHEMES = {  # written: (mean, std, low, high) of the weight [300, 400] (fan_in 400, fan_out 300)
    "trunc_normal(std=0.02)": (0.0, 0.02, -2.0, 2.0),  # torch's absolute bounds: ±100 std
    # cut at ±1 std: the variance of N(0, 1) on [-1, 1] is 1 - 2 φ(1) / (2 Φ(1) - 1)
    "trunc_normal(std=0.5, a=-0.5, b=0.5)": (0.0, 0.5 * math.sqrt(0.291125), -0.5, 0.5),
    "normal(mean=1.0, std=0.5)": (1.0, 0.5, None, None),
    "uniform(-0.1, 0.3)": (0.1, 0.4 / math.sqrt(12), -0.1, 0.3),
    "kaiming_normal(a=1.0)": (0.0, 1 / math.sqrt(400), None, None),
    "xavier_uniform(gain=2.0)": (0.0, 2 * math.sqrt(2 / 700), None, None),
}


def _check_moments(name: str, w: np.ndarray, scheme: str) -> None:
    mean, std, low, high = SCHEMES[scheme]
    n = w.size
    assert abs(w.mean() - mean) < 6 * std / math.sqrt(n), (name, scheme, w.mean())
    assert abs(w.std() - std) < 6 * std / math.sqrt(2 * n), (name, scheme, w.std())
    if low is not None:
        assert w.min() >= low - 1e-7 and w.max() <= high + 1e-7, (name, scheme)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_generated_modules_draw_the_distribution(tmp_path, scheme):
    """The generated PyTorch module (torch.nn.init after construction) and the Keras model
    built without weights: the distribution of `init=`, and `bias_init="zeros"`."""
    path = _write(tmp_path, f'Linear(300, init={scheme}, bias_init="zeros")', "f32[B, 400]")
    program = dualnet.load(str(path))
    module = program.torch()
    _check_moments("torch", module.l.weight.detach().numpy(), scheme)
    assert not module.l.bias.detach().numpy().any()
    state = torch_named(program.keras(), lambda v: np.asarray(v.numpy()))
    _check_moments("keras", state["l.weight"], scheme)
    assert not state["l.bias"].any()


@pytest.mark.parametrize(
    ("layer", "code", "text"),
    [
        ("Linear(4, init=normal(std=0.0))", "E-VALUE", "`std` must be positive"),
        ("Linear(4, init=uniform(1.0, 0.5))", "E-VALUE", "a < b"),
        ("Linear(4, init=normal(sd=1.0))", "E-ARGS", "no argument `sd`"),
        ('Linear(4, bias_init="normal")', "E-TYPE", 'one of "default", "zeros", "ones"'),
        ('Linear(4, init="trunc_normal")', "E-TYPE", "trunc_normal(mean=0.0"),
        ("Linear(4, init=constant())", "E-ARGS", "missing argument `value`"),
    ],
)
def test_bad_initialisers_are_diagnostics(tmp_path, layer, code, text):
    found = dualnet.check_file(str(_write(tmp_path, layer))).diagnostics
    assert found and found[0].code == code and text in found[0].message, found
    assert found[0].span is not None

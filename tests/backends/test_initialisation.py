"""PyTorch's initialisation (LANGUAGE.md §7) in both generated modules and in dualnet's seeded
draw: the generated PyTorch module (PyTorch's layers, `init=` applied by torch.nn.init), the
generated Keras model built without a weight file (`_TorchInit`) and `init_state` give every
tensor PyTorch's distribution with PyTorch's fans. The expectations below are PyTorch's
rules, read from its source (`reset_parameters` of each layer, torch.nn.init); the fans come
from PyTorch itself (`_calculate_fan_in_and_fan_out` of the PyTorch tensor), and the tensors
PyTorch's own constructors draw pass the same checks. Each check can fail: bounds and moments
of tensors of hundreds to hundreds of thousands of elements, at six standard errors.

And the one way to get bit-identical initial weights in both frameworks from one seed:
`dualnet.load(path).torch(seed=S)` / `.keras(seed=S)`, both `dualnet init --seed S`'s file.
"""

from __future__ import annotations

import math
import re

import keras
import numpy as np
import pytest
import torch

import dualnet
from dualnet import cli
from dualnet.backends.keras.state import torch_named
from dualnet.backends.torch.init import init_state

PROGRAM = """
model Dense(scheme: str = "kaiming_normal") {
    fc = Linear(300)
    fc_kaiming_uniform = Linear(300, init="kaiming_uniform")
    fc_kaiming_normal = Linear(300, init="kaiming_normal")
    fc_xavier_uniform = Linear(300, init="xavier_uniform")
    fc_xavier_normal = Linear(300, init="xavier_normal")
    fc_normal = Linear(300, init="normal")
    fc_zeros = Linear(300, init="zeros", bias=false)
    fc_ones = Linear(300, init="ones")
    fc_hyper = Linear(300, init=scheme)
    embed = Embedding(4000, 16)
    embed_kaiming_uniform = Embedding(4000, 16, init="kaiming_uniform")
    forward(x: f32[B, 256], ids: i64[B]) -> (f32[B, 300], f32[B, 16]) {
        y = fc(x) + fc_kaiming_uniform(x) + fc_kaiming_normal(x) + fc_xavier_uniform(x)
        y = y + fc_xavier_normal(x) + fc_normal(x) + fc_zeros(x) + fc_ones(x) + fc_hyper(x)
        return y, embed(ids) + embed_kaiming_uniform(ids)
    }
}

model Convs() {
    conv = Conv2d(96, kernel=3, padding=1)
    grouped = Conv2d(96, kernel=3, padding=1, groups=4)
    depthwise = Conv2d(128, kernel=5, padding=2, groups=64)
    dilated = Conv2d(64, kernel=3, stride=2, dilation=2, padding=2)
    dilated_ones = Conv2d(64, kernel=3, stride=2, dilation=2, padding=2, init="ones")
    up = ConvTranspose2d(64, kernel=4, stride=2, padding=1, groups=2)
    line = Conv1d(64, kernel=7, groups=2)
    line_xavier_uniform = ConvTranspose1d(64, kernel=4, stride=2, dilation=2, init="xavier_uniform")
    up_volume = ConvTranspose3d(32, kernel=3, stride=2, groups=4)
    bn = BatchNorm()
    group = GroupNorm(4)
    forward(x: f32[B, 64, 8, 8], s: f32[B, 64, 16], v: f32[B, 32, 4, 4, 4]) -> (
        f32[B, 96, 8, 8], f32[B, 128, 8, 8], f32[B, 64, 4, 4], f32[B, 64, 16, 16],
        f32[B, 64, 10], f32[B, 64, 37], f32[B, 32, 9, 9, 9]
    ) {
        a = bn(conv(x)) + grouped(x)
        b = dilated(x) + dilated_ones(x)
        return a, depthwise(x), b, group(up(x)), line(s), line_xavier_uniform(s), up_volume(v)
    }
}

model Sequences() {
    lstm = LSTM(128, layers=2, bidirectional=true)
    gru = GRU(128)
    attention = MultiHeadAttention(128, 4)
    norm = LayerNorm()
    forward(x: f32[B, T, 32], h: f32[B, T, 128]) -> (f32[B, T, 256], f32[B, T, 128],
                                                      f32[B, T, 128]) {
        return lstm(x), gru(x), norm(attention(h, h, h))
    }
}
"""

MODELS = ("Dense", "Convs", "Sequences")


# ---------------------------------------------------------------- PyTorch's rules


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    return torch.nn.init._calculate_fan_in_and_fan_out(weight)


def _scheme(scheme: str, weight: torch.Tensor) -> tuple[str, float]:
    """torch.nn.init's `scheme` for `weight`: ("uniform", bound), ("normal", std) or
    ("constant", value); "default" is kaiming_uniform(a=√5): U(±1/√fan_in)."""
    fan_in, fan_out = _fans(weight)
    return {
        "default": ("uniform", 1 / math.sqrt(fan_in)),
        "kaiming_uniform": ("uniform", math.sqrt(6 / fan_in)),
        "kaiming_normal": ("normal", math.sqrt(2 / fan_in)),
        "xavier_uniform": ("uniform", math.sqrt(6 / (fan_in + fan_out))),
        "xavier_normal": ("normal", math.sqrt(2 / (fan_in + fan_out))),
        "normal": ("normal", 1.0),
        "zeros": ("constant", 0.0),
        "ones": ("constant", 1.0),
    }[scheme]


def expected(name: str, module: torch.nn.Module, scheme: str) -> tuple[str, float]:
    """The distribution PyTorch gives tensor `name` of the generated PyTorch `module`
    (`scheme`: the Dense model's hyperparameter)."""
    layer, _, tensor = name.rpartition(".")
    if name.startswith(("lstm.", "gru.")):  # RNNBase.reset_parameters: U(±1/√hidden)
        return "uniform", 1 / math.sqrt(128)
    if name.startswith("attention."):  # MultiheadAttention._reset_parameters
        if tensor.endswith("bias"):
            return "constant", 0.0
        if name == "attention.in_proj_weight":
            return _scheme("xavier_uniform", module.get_parameter(name))
        return _scheme("default", module.get_parameter(name))  # out_proj: a Linear's
    if layer in ("bn", "group", "norm"):  # norms: ones, zeros; running statistics 0, 1
        return "constant", float(tensor in ("weight", "running_var"))
    weight = module.get_parameter(f"{layer}.weight")
    if tensor == "bias":  # Linear and _ConvNd: U(±1/√fan_in of the weight)
        return _scheme("default", weight)
    if layer.startswith("embed"):  # Embedding.reset_parameters: N(0, 1)
        return _scheme(layer.removeprefix("embed").removeprefix("_") or "normal", weight)
    chosen = scheme if layer == "fc_hyper" else re.sub(r"^(fc|dilated|line)_?", "", layer)
    return _scheme(
        chosen
        if chosen
        in (
            "kaiming_uniform",
            "kaiming_normal",
            "xavier_uniform",
            "xavier_normal",
            "normal",
            "zeros",
            "ones",
        )
        else "default",
        weight,
    )


def assert_distributed(values: np.ndarray, kind: str, scale: float, what: str) -> None:
    """`values` drawn i.i.d. from U(±scale) ("uniform"), N(0, scale) ("normal"), the sum of
    two U(±scale) ("uniform2"), or all `scale` ("constant"): bounds, and the mean and the
    variance within six standard errors."""
    v = np.asarray(values, np.float64).ravel()
    n = v.size
    if kind == "constant":
        assert np.all(v == scale), what
        return
    assert abs(v.mean()) < 6 * math.sqrt(v.var() / n) + 1e-12, what
    if kind == "normal":
        assert abs(v.std() / scale - 1) < 6 * math.sqrt(0.5 / n), (what, v.std(), scale)
        assert n < 1000 or np.abs(v).max() > 2.5 * scale, (what, "a truncated normal?")
        return
    terms, kurtosis = (2, 2.4) if kind == "uniform2" else (1, 1.8)
    assert np.abs(v).max() <= terms * scale * (1 + 1e-6), (what, np.abs(v).max(), scale)
    if terms == 1:
        assert np.abs(v).max() >= scale * (1 - 8 / n), (what, np.abs(v).max(), scale)
    variance = terms * scale**2 / 3
    assert abs(v.var() / variance - 1) < 6 * math.sqrt((kurtosis - 1) / n), (
        what,
        v.var(),
        variance,
    )


def _check(
    state: dict[str, np.ndarray], module, scheme: str, source: str, keras_biases: bool = False
) -> None:
    """Every tensor as `expected`; an LSTM's two biases also as their sum, which is all
    Keras holds (as bias_ih, bias_hh being 0: `keras_biases`)."""
    for name, values in state.items():
        if not (keras_biases and name.startswith("lstm.bias_")):
            assert_distributed(values, *expected(name, module, scheme), f"{source}: {name}")
    for name in [n for n in state if n.startswith("lstm.bias_ih")]:
        total = state[name] + state[name.replace("bias_ih", "bias_hh")]
        assert_distributed(total, "uniform2", 1 / math.sqrt(128), f"{source}: {name} + hh")


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    path = tmp_path_factory.mktemp("init") / "inits.dnet"
    path.write_text(PROGRAM)
    return dualnet.load(str(path))


# ---------------------------------------------------------------- distributions


@pytest.mark.parametrize(
    "model,scheme",
    [
        ("Dense", "kaiming_normal"),
        ("Dense", "xavier_uniform"),
        ("Convs", None),
        ("Sequences", None),
    ],
)
def test_every_tensor_has_pytorchs_distribution(program, model, scheme, tmp_path):
    """(`scheme`: the Dense model's hyperparameter, an `init=` known only at run time.)"""
    hyper = {"scheme": scheme} if scheme else {}
    torch.manual_seed(0)
    module = program.torch(model, **hyper)
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    _check(state, module, scheme, "PyTorch")
    ours = init_state(program.check(model, **hyper).instance, 0)
    assert list(ours) == list(state)
    _check({k: v.numpy() for k, v in ours.items()}, module, scheme, "init_state")
    keras.utils.set_random_seed(0)
    built = program.keras(model, **hyper)
    drawn = torch_named(built, lambda variable: variable.numpy())
    assert set(drawn) == set(state)
    _check(drawn, module, scheme, "Keras", keras_biases=True)
    # the zeros between a zero-dilated kernel's taps and outside a grouped transposed
    # kernel's blocks are exact (else saving refuses the kernel)
    dualnet.save_weights(built, tmp_path / "keras.safetensors")


def test_the_checks_fail_on_keras_defaults():
    """Glorot kernels, zero biases, U(±0.05) embeddings are not PyTorch's initialisation."""
    weight = torch.empty(300, 256)
    kind, scale = _scheme("default", weight)
    glorot = keras.initializers.GlorotUniform(seed=1)((256, 300)).numpy()
    with pytest.raises(AssertionError):
        assert_distributed(glorot, kind, scale, "glorot")
    with pytest.raises(AssertionError):
        assert_distributed(np.zeros(300), kind, scale, "zero bias")
    truncated = keras.initializers.TruncatedNormal(stddev=1.0, seed=1)((4000, 16)).numpy()
    with pytest.raises(AssertionError):
        assert_distributed(truncated, "normal", 1.0, "truncated")
    single = np.random.default_rng(1).uniform(-0.1, 0.1, 512)
    with pytest.raises(AssertionError):
        assert_distributed(single, "uniform2", 0.1, "one uniform")


# ---------------------------------------------------------------- one seed, both frameworks


@pytest.mark.parametrize("model", MODELS)
def test_one_seed_gives_bit_identical_weights_in_both_frameworks(program, model, tmp_path):
    init = tmp_path / "init.safetensors"
    assert cli.main(["init", program.path, "--model", model, "--seed", "7", "-o", str(init)]) == 0
    files = {}
    for name, built in (
        ("torch", program.torch(model, seed=7)),
        ("keras", program.keras(model, seed=7)),
    ):
        files[name] = tmp_path / f"{name}.safetensors"
        dualnet.save_weights(built, files[name])
    assert files["torch"].read_bytes() == init.read_bytes()
    assert files["keras"].read_bytes() == init.read_bytes()
    other = tmp_path / "other.safetensors"
    dualnet.save_weights(program.torch(model, seed=8), other)
    assert other.read_bytes() != init.read_bytes()

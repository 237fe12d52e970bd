"""Initial weights drawn by `dualnet.backends.torch.init.init_state` (LANGUAGE.md §7).

Beyond the distribution checks, the draws are compared bit for bit with PyTorch itself:
`torch.manual_seed(s)` followed by constructing `nn.Linear`, `nn.Conv2d`, `nn.LSTM`, ...
consumes the default generator exactly as `init_state(..., s)` consumes its own, and
`torch.nn.init.*_(t, generator=g)` gives the same tensors for the other schemes.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import dualnet  # noqa: E402
from dualnet.backends.torch.init import TORCH_DTYPES, draw, init_state  # noqa: E402
from dualnet.io.weights import state_specs  # noqa: E402
from dualnet.ir.graph import Init, ParamSpec  # noqa: E402
from dualnet.ir.types import DType  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
SQRT5 = math.sqrt(5)


def instance_of(path: Path, model: str | None = None):
    summary = dualnet.check_file(str(path), model)
    assert summary.ok, [d.message for d in summary.diagnostics]
    return summary.instance


@pytest.fixture
def build(tmp_path):
    """Check a one-file model and return its instance."""

    def run(text: str):
        path = tmp_path / "m.dnet"
        path.write_text(textwrap.dedent(text))
        return instance_of(path)

    return run


def one_layer(layer: str, input_type: str) -> str:
    return f"model M() {{\n    l = {layer}\n    forward(x: {input_type}) {{ return l(x) }}\n}}\n"


def torch_state(make, seed: int) -> dict:
    """The state_dict of `make()` constructed after `torch.manual_seed(seed)`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = make()
    return {k: v for k, v in module.state_dict().items() if "num_batches_tracked" not in k}


def assert_same(ours: dict, theirs: dict) -> None:
    assert list(ours) == list(theirs)
    for name, t in theirs.items():
        assert ours[name].dtype == t.dtype and ours[name].shape == t.shape, name
        assert torch.equal(ours[name], t), name


# ---------------------------------------------------------------- names, shapes, dtypes


def test_lenet_names_shapes_dtypes_in_order():
    instance = instance_of(MODELS / "lenet5.dnet")
    state = init_state(instance, 0)
    specs = list(state_specs(instance))
    assert (
        list(state)
        == [name for name, _ in specs]
        == [
            f"{layer}.{p}"
            for layer in ("conv1", "conv2", "fc1", "fc2", "fc3")
            for p in ("weight", "bias")
        ]
    )
    for name, spec in specs:
        assert tuple(state[name].shape) == spec.shape, name
        assert state[name].dtype == TORCH_DTYPES[spec.dtype], name
        assert state[name].device.type == "cpu" and not state[name].requires_grad
    assert sum(t.numel() for t in state.values()) == 61_706


@pytest.mark.parametrize(
    "model", ["bert_encoder", "gru_classifier", "lstm_classifier", "mobilenetv2", "unet", "mlp"]
)
def test_every_spec_of_the_zoo_is_drawn(model):
    instance = instance_of(MODELS / f"{model}.dnet")
    state = init_state(instance, 3)
    specs = dict(state_specs(instance))
    assert list(state) == list(specs)
    for name, spec in specs.items():
        assert tuple(state[name].shape) == spec.shape, name
        assert state[name].dtype == TORCH_DTYPES[spec.dtype], name
        assert torch.isfinite(state[name]).all(), name
    assert sum(t.numel() for t in state.values()) == instance.param_count + instance.buffer_count


def resnet18_keys() -> list[str]:
    """torchvision's resnet18 state_dict keys minus num_batches_tracked, by rule."""
    bn = ("weight", "bias", "running_mean", "running_var")
    keys = ["conv1.weight", *(f"bn1.{p}" for p in bn)]
    for stage in (1, 2, 3, 4):
        for block in (0, 1):
            pre = f"layer{stage}.{block}"
            keys += [
                f"{pre}.conv1.weight",
                *(f"{pre}.bn1.{p}" for p in bn),
                f"{pre}.conv2.weight",
                *(f"{pre}.bn2.{p}" for p in bn),
            ]
            if stage > 1 and block == 0:
                keys += [f"{pre}.downsample.0.weight", *(f"{pre}.downsample.1.{p}" for p in bn)]
    return keys + ["fc.weight", "fc.bias"]


def test_resnet18_is_torchvisions_state():
    state = init_state(instance_of(MODELS / "resnet18.dnet"), 0)
    assert list(state) == resnet18_keys()
    assert sum(t.numel() for t in state.values()) == 11_689_512 + 9_600
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert state["fc.weight"].shape == (1000, 512)
    for name, t in state.items():  # BatchNorm: weight 1, bias 0, mean 0, var 1
        if ".bn" in name or name.startswith("bn1.") or "downsample.1." in name:
            value = 1.0 if name.endswith(("weight", "running_var")) else 0.0
            assert torch.equal(t, torch.full_like(t, value)), name


# ---------------------------------------------------------------- determinism


def test_same_seed_is_bit_identical_and_seeds_differ():
    instance = instance_of(MODELS / "lenet5.dnet")
    a, b, c = init_state(instance, 7), init_state(instance, 7), init_state(instance, 8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a)
    assert init_state(instance).keys() == a.keys()  # seed 0 by default
    default, zero = init_state(instance), init_state(instance, 0)
    assert all(torch.equal(default[k], zero[k]) for k in zero)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True, "3"])
def test_bad_seeds_are_refused(seed):
    with pytest.raises(ValueError, match="seed"):
        init_state(instance_of(MODELS / "mlp.dnet"), seed)


def test_largest_seed_is_accepted():
    state = init_state(instance_of(MODELS / "mlp.dnet"), 2**64 - 1)
    assert state


# ---------------------------------------------------------------- equal to PyTorch's own draws


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_linear_is_pytorchs_linear(build, seed):
    ours = init_state(build(one_layer("Linear(5)", "f32[B, 7]")), seed)
    assert_same(
        ours, {f"l.{k}": v for k, v in torch_state(lambda: torch.nn.Linear(7, 5), seed).items()}
    )


def test_conv_is_pytorchs_conv(build):
    ours = init_state(build(one_layer("Conv2d(4, kernel=3, groups=2)", "f32[B, 6, 9, 9]")), 5)
    theirs = torch_state(lambda: torch.nn.Conv2d(6, 4, 3, groups=2), 5)
    assert_same(ours, {f"l.{k}": v for k, v in theirs.items()})


def test_conv1d_without_bias_is_pytorchs(build):
    ours = init_state(build(one_layer("Conv1d(8, kernel=5, bias=false)", "f32[B, 3, 20]")), 2)
    theirs = torch_state(lambda: torch.nn.Conv1d(3, 8, 5, bias=False), 2)
    assert_same(ours, {f"l.{k}": v for k, v in theirs.items()})


def test_conv_transpose_uses_pytorchs_fan_in(build):
    """ConvTranspose2d's weight is [in, out/groups, kh, kw]; PyTorch's fan_in is
    weight.size(1) * kh * kw, and so is the Init's."""
    instance = build(
        one_layer("ConvTranspose2d(6, kernel=3, stride=2, groups=2)", "f32[B, 4, 5, 5]")
    )
    [layer] = instance.layers()
    assert dict(layer.params["weight"].init.args)["fan_in"] == 3 * 9
    ours = init_state(instance, 9)
    theirs = torch_state(lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), 9)
    assert_same(ours, {f"l.{k}": v for k, v in theirs.items()})


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_is_pytorchs(build, kind):
    ours = init_state(
        build(one_layer(f"{kind}(6, layers=2, bidirectional=true)", "f32[B, T, 4]")), 4
    )
    cls = getattr(torch.nn, kind)
    theirs = torch_state(lambda: cls(4, 6, num_layers=2, bidirectional=True, batch_first=True), 4)
    assert_same(ours, {f"l.{k}": v for k, v in theirs.items()})


def test_embedding_and_batchnorm_are_pytorchs(build):
    instance = build("""
        model M() {
            emb = Embedding(11, 4)
            bn = BatchNorm()
            forward(ids: i64[B, 4]) { return bn(emb(ids)) }
        }
    """)
    ours = init_state(instance, 21)

    def make():
        m = torch.nn.Module()
        m.emb = torch.nn.Embedding(11, 4)
        m.bn = torch.nn.BatchNorm1d(4)
        return m

    assert_same(ours, torch_state(make, 21))


@pytest.mark.parametrize(
    "choice,reference",
    [
        ("kaiming_uniform", torch.nn.init.kaiming_uniform_),
        ("xavier_normal", torch.nn.init.xavier_normal_),
    ],
)
def test_embedding_init_choices_use_pytorchs_fans(build, choice, reference):
    """The weight [vocab, dim] has fan_in = dim and fan_out = vocab (`size(1)`, `size(0)`),
    as torch.nn.init computes them."""
    ours = init_state(build(one_layer(f'Embedding(11, 4, init="{choice}")', "i64[B]")), 3)
    theirs = reference(torch.empty(11, 4), generator=torch.Generator().manual_seed(3))
    assert_same(ours, {"l.weight": theirs})


def test_layernorm_and_groupnorm_constants(build):
    instance = build("""
        model M() {
            ln = LayerNorm()
            gn = GroupNorm(2)
            forward(x: f32[B, 4, 6]) { return gn(ln(x)) }
        }
    """)
    state = init_state(instance, 0)
    for name, t in state.items():
        value = 1.0 if name.endswith("weight") else 0.0
        assert torch.equal(t, torch.full_like(t, value)), name


def test_multi_head_attention_schemes(build):
    """in_proj xavier_uniform, out_proj kaiming_uniform(√5), biases zero: each as
    torch.nn.init draws it from the same generator position."""
    instance = build("""
        model M() {
            attn = MultiHeadAttention(8, heads=2)
            forward(x: f32[B, T, 8]) { return attn(x, x, x) }
        }
    """)
    ours = init_state(instance, 13)
    g = torch.Generator().manual_seed(13)
    expected = {
        "attn.in_proj_weight": torch.nn.init.xavier_uniform_(torch.empty(24, 8), generator=g),
        "attn.in_proj_bias": torch.zeros(24),
        "attn.out_proj.weight": torch.nn.init.kaiming_uniform_(
            torch.empty(8, 8), a=SQRT5, generator=g
        ),
        "attn.out_proj.bias": torch.zeros(8),
    }
    assert_same(ours, expected)


@pytest.mark.parametrize(
    "choice,reference",
    [
        ("kaiming_uniform", lambda t, g: torch.nn.init.kaiming_uniform_(t, generator=g)),
        ("kaiming_normal", lambda t, g: torch.nn.init.kaiming_normal_(t, generator=g)),
        ("xavier_uniform", lambda t, g: torch.nn.init.xavier_uniform_(t, generator=g)),
        ("xavier_normal", lambda t, g: torch.nn.init.xavier_normal_(t, generator=g)),
        ("normal", lambda t, g: torch.nn.init.normal_(t, generator=g)),
        ("zeros", lambda t, g: torch.nn.init.zeros_(t)),
        ("ones", lambda t, g: torch.nn.init.ones_(t)),
    ],
)
def test_init_choices_are_torch_nn_init(build, choice, reference):
    """`init=` choices on a Linear [24, 10] weight (the bias keeps its default)."""
    ours = init_state(build(one_layer(f'Linear(24, init="{choice}")', "f32[B, 10]")), 6)
    g = torch.Generator().manual_seed(6)
    weight = reference(torch.empty(24, 10), g)
    bias = torch.nn.init.uniform_(
        torch.empty(24), -1 / math.sqrt(10), 1 / math.sqrt(10), generator=g
    )
    assert_same(ours, {"l.weight": weight, "l.bias": bias})


# ---------------------------------------------------------------- distributions


def test_default_bounds_and_moments(build):
    """kaiming_uniform(a=√5) is U(±1/√fan_in), as is the bias."""
    instance = build("""
        model M() {
            fc = Linear(300)
            conv = Conv2d(64, kernel=3)
            forward(x: f32[B, 200], y: f32[B, 16, 8, 8]) { return fc(x), conv(y) }
        }
    """)
    state = init_state(instance, 0)
    for name, fan_in in (("fc", 200), ("conv", 16 * 9)):
        bound = 1 / math.sqrt(fan_in)
        for part in ("weight", "bias"):
            t = state[f"{name}.{part}"]
            assert t.abs().max() <= bound, name
        w = state[f"{name}.weight"].double()
        assert abs(w.mean()) < 0.05 * bound
        assert abs(w.std() - bound / math.sqrt(3)) < 0.03 * bound  # std of U(±b) is b/√3
        assert w.abs().max() > 0.99 * bound  # the whole range is used


def test_normal_moments():
    g = torch.Generator().manual_seed(0)
    t = draw(
        ParamSpec((400, 500), DType.f32, Init("kaiming_normal", (("a", 0.0), ("fan_in", 500)))), g
    )
    std = math.sqrt(2 / 500)
    assert abs(t.double().std() - std) < 0.01 * std and abs(t.double().mean()) < 0.01 * std


@pytest.mark.parametrize("dtype", [DType.f16, DType.bf16, DType.f64])
def test_other_float_dtypes_are_drawn_directly(dtype):
    spec = ParamSpec((5, 7), dtype, Init("kaiming_uniform", (("a", SQRT5), ("fan_in", 7))))
    ours = draw(spec, torch.Generator().manual_seed(1))
    theirs = torch.nn.init.kaiming_uniform_(
        torch.empty(5, 7, dtype=TORCH_DTYPES[dtype]),
        a=SQRT5,
        generator=torch.Generator().manual_seed(1),
    )
    assert ours.dtype == TORCH_DTYPES[dtype] and torch.equal(ours, theirs)


def test_integer_tensors_take_only_constants():
    g = torch.Generator().manual_seed(0)
    assert torch.equal(
        draw(ParamSpec((3,), DType.i64, Init("zeros"), False), g), torch.zeros(3, dtype=torch.int64)
    )
    assert torch.equal(
        draw(ParamSpec((2,), DType.bool, Init("ones"), False), g), torch.ones(2, dtype=torch.bool)
    )
    with pytest.raises(ValueError, match="cannot draw"):
        draw(ParamSpec((3,), DType.i32, Init("uniform", (("bound", 1.0),))), g)


def test_unknown_scheme_is_a_bug_not_a_silent_default():
    with pytest.raises(ValueError, match="unknown initialiser"):
        draw(ParamSpec((3,), DType.f32, Init("orthogonal")), torch.Generator())

"""The PyTorch backend end to end: generated source for the zoo compiles, is clean and
deterministic, has dualnet's parameter names, and computes what the IR's NumPy reference
computes from the same weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from generated_source import assert_matches_golden, assert_ruff_clean, compile_elsewhere
from zoo_data import random_inputs, random_weights

import dualnet
from dualnet.compiler import compile_file
from dualnet.diagnostics import DualnetError
from dualnet.verify.reference import run_reference

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
ZOO = [
    "lenet5",
    "mlp",
    "resnet18",
    "mobilenetv2",
    "bert_encoder",
    "lstm_classifier",
    "gru_classifier",
    "unet",
]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    return {name: compile_file(str(MODELS / f"{name}.dnet"), "torch", str(out)) for name in ZOO}


@pytest.mark.parametrize("name", ZOO)
def test_generated_module_matches_the_reference(name):
    program = dualnet.load(str(MODELS / f"{name}.dnet"))
    summary = program.check()
    module = program.torch().eval()
    rng = np.random.default_rng(0)
    weights = random_weights(summary, rng)
    state = module.state_dict()
    assert sorted(state) == sorted(weights)  # dualnet's names, nothing more
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    inputs = random_inputs(summary, rng)
    with torch.no_grad():
        got = module(*(torch.from_numpy(x) for x in inputs))
    got = got if isinstance(got, tuple) else (got,)
    expected = run_reference(summary.instance, summary.graph, inputs, weights)
    for g, e in zip(got, expected, strict=True):
        g = g.numpy()
        assert g.shape == e.shape
        assert np.max(np.abs(g - e)) / (1 + np.max(np.abs(e))) < 1e-4


def test_sources_are_ruff_clean_and_deterministic(generated, tmp_path):
    assert_ruff_clean(list(generated.values()))
    again = compile_file(str(MODELS / "resnet18.dnet"), "torch", str(tmp_path))
    assert again.read_bytes() == generated["resnet18"].read_bytes()
    other = compile_elsewhere(MODELS / "resnet18.dnet", "torch", tmp_path / "other", "123")
    assert other.read_bytes() == generated["resnet18"].read_bytes()


def test_generated_classes_take_the_hyperparameters(generated):
    namespace: dict = {}
    exec(compile(generated["resnet18"].read_text(), "resnet18_torch.py", "exec"), namespace)
    net = namespace["ResNet18"](classes=10).eval()
    assert net.fc.out_features == 10
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 10)
    block = namespace["BasicBlock"]
    assert net.layer2[0].conv1.stride == (2, 2)
    assert isinstance(namespace["ResNet18"]().layer2[0].downsample, torch.nn.Sequential)
    assert isinstance(block(64, C=64).downsample, torch.nn.Identity)
    assert isinstance(block(64, stride=2, C=64).downsample, torch.nn.Sequential)


def test_generated_module_trains():
    program = dualnet.load(str(MODELS / "lenet5.dnet"))
    torch.manual_seed(0)
    net = program.torch().train()
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3  # SGD on a fixed batch: the loss must fall


def test_tracebacks_show_generated_lines():
    program = dualnet.load(str(MODELS / "lenet5.dnet"))
    net = program.torch()
    with pytest.raises(RuntimeError) as info:
        net(torch.randn(2, 3, 28, 28))  # three channels where one is declared
    frames = [f for f in info.traceback if "lenet5_torch.py" in str(f.path)]
    assert frames and "self.conv1" in str(frames[-1].statement)


def test_compile_errors_are_diagnostics(tmp_path):
    bad = tmp_path / "bad.dnet"
    bad.write_text("model M() { forward(x: f32[B]) { return y } }\n")
    with pytest.raises(DualnetError):
        compile_file(str(bad), "torch", str(tmp_path))
    assert not list(tmp_path.glob("*_torch.py"))
    blocked = tmp_path / "file.txt"
    blocked.write_text("")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dualnet",
            "compile",
            str(MODELS / "lenet5.dnet"),
            "--target",
            "torch",
            "-o",
            str(blocked / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "E-IO" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "bert_encoder"])
def test_generated_source_matches_golden(generated, name):
    assert_matches_golden(generated[name].read_text(), f"{name}_torch")


def test_bert_class_is_generic_in_its_hyperparameters(generated):
    namespace: dict = {}
    exec(compile(generated["bert_encoder"].read_text(), "bert_torch.py", "exec"), namespace)
    net = namespace["BertEncoder"](hidden=64, heads=4, intermediate=96, layers=3).eval()
    summary = dualnet.load(str(MODELS / "bert_encoder.dnet")).check(
        hidden=64, heads=4, intermediate=96, layers=3
    )
    expected = {
        f"{layer.path}.{name}": spec.shape
        for layer in summary.instance.layers()
        for name, spec in {**layer.params, **layer.buffers}.items()
    }
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == expected
    ids = torch.zeros(2, 6, dtype=torch.int64)
    with torch.no_grad():
        h, pooled = net(ids, ids, torch.ones(2, 6, dtype=torch.bool))
    assert h.shape == (2, 6, 64) and pooled.shape == (2, 64)


def test_names_never_shadow_python_or_torch(tmp_path):
    """Layers, hyperparameters and locals named like keywords, builtins, torch, nn, F or
    self; a string that looks like code stays a string."""
    source = tmp_path / "names.dnet"
    source.write_text(
        'model Tricky(lambda: int = 4, F: int = 3, input: str = "none") {\n'
        "    torch = Linear(lambda)\n"
        "    eval = Linear(F)\n"
        "    nn = Linear(F)\n"
        "    forward(self: f32[B, 4]) -> f32[B, 3] {\n"
        "        list = torch(self)\n"
        "        return eval(gelu(list, approximate=input)) + nn(list)\n"
        "    }\n"
        "}\n"
    )
    out = compile_file(str(source), "torch", str(tmp_path))
    text = out.read_text()
    namespace: dict = {}
    exec(compile(text, str(out), "exec"), namespace)
    net = namespace["Tricky"]().eval()
    assert sorted(net.state_dict()) == sorted(
        f"{layer}.{p}" for layer in ("torch", "eval", "nn") for p in ("weight", "bias")
    )
    with torch.no_grad():
        assert net(torch.randn(2, 4)).shape == (2, 3)
    assert callable(net.eval)  # the layer named `eval` did not replace the method


@pytest.mark.parametrize("name", ZOO)
def test_torch_export(name):
    """torch.export.export traces every zoo model; the exported program computes the same."""
    program = dualnet.load(str(MODELS / f"{name}.dnet"))
    summary, net = program.check(), program.torch().eval()
    inputs = tuple(torch.from_numpy(x) for x in random_inputs(summary, np.random.default_rng(1)))
    exported = torch.export.export(net, inputs)
    with torch.no_grad():
        got, want = exported.module()(*inputs), net(*inputs)
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-5)


def test_torch_compile():
    """torch.compile through Dynamo and AOTAutograd (no C++ toolchain needed)."""
    net = dualnet.load(str(MODELS / "lenet5.dnet")).torch().eval()
    x = torch.randn(2, 1, 28, 28)
    compiled = torch.compile(net, backend="aot_eager")
    with torch.no_grad():
        assert torch.allclose(compiled(x), net(x), atol=1e-6)


def test_batch_norm_gradient_whatever_the_incoming_layout(tmp_path):
    """A BatchNorm's gradients do not depend on the layout of the gradient its backward
    receives (PyTorch's own do: test_upstream_bugs.py); the module still scripts and saves
    with torch.jit, which runs it without the workaround."""
    source = tmp_path / "bn.dnet"
    source.write_text(
        "model Net() {\n    norm = BatchNorm()\n"
        "    forward(x: f32[B, 3, H, 1]) -> f32[B, 3, H, 1] { return norm(x) }\n}\n"
    )
    net = dualnet.load(str(source)).torch().double()
    x = torch.randn(2, 3, 4, 1, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 3, 4, 1, dtype=torch.float64)
    channels_last = torch.empty_strided(grad.shape, (12, 1, 3, 1), dtype=grad.dtype)
    channels_last.copy_(grad)
    for training in (True, False):
        net.train(training)
        wanted, got = (
            torch.autograd.grad(net(x), (x, *net.parameters()), g) for g in (grad, channels_last)
        )
        for w, g in zip(wanted, got, strict=True):
            assert torch.equal(w, g)
    scripted = torch.jit.script(net.eval())
    torch.jit.save(scripted, str(tmp_path / "bn.pt"))
    assert torch.equal(scripted(x), net(x))


def test_init_file_loads_into_the_generated_module_and_torchvision_names(tmp_path):
    """`dualnet init` writes what the generated module loads strictly; its names are
    torchvision's (the hand-written torchvision-style ResNet-18 of test_weights.py)."""
    from test_weights import ResNet18 as TorchvisionStyle

    weights = tmp_path / "w.safetensors"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dualnet",
            "init",
            str(MODELS / "resnet18.dnet"),
            "--seed",
            "3",
            "-o",
            str(weights),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    net = dualnet.load(str(MODELS / "resnet18.dnet")).torch().eval()
    dualnet.load_weights(net, str(weights))
    dualnet.load_weights(TorchvisionStyle(), str(weights))  # strict: same names and shapes
    saved = tmp_path / "again.safetensors"
    dualnet.save_weights(net, str(saved))
    assert saved.read_bytes() == weights.read_bytes()


def test_tensors_made_in_forward_follow_the_input_device():
    """Position ids (arange) are created on the input's device: on the `meta` device, a tensor
    left on the CPU would fail exactly as it would next to CUDA inputs."""
    bert = dualnet.load(str(MODELS / "bert_encoder.dnet")).torch().to("meta")
    ids = torch.zeros(2, 8, dtype=torch.int64, device="meta")
    h, pooled = bert(ids, ids, torch.ones(2, 8, dtype=torch.bool, device="meta"))
    assert h.device.type == "meta" and h.shape == (2, 8, 128)


@pytest.mark.parametrize(
    ("name", "model", "size", "activation"),
    [
        ("resnet18", "ResNet18", 64, "F.relu"),
        ("efficientnet_b0", "EfficientNetB0", 32, "nn.SiLU"),
        ("mobilenetv3_small", "MobileNetV3Small", 32, "nn.Hardswish"),
    ],
)
def test_in_place_ops_keep_gradients_right(name, model, size, activation):
    """Activations (ReLU, SiLU, Hardswish) and the residual add run in place where the emitter
    proved it safe; autograd would raise if one overwrote a tensor it saved, and the
    gradients equal those of the same module with every in-place op made out of place."""
    source = dualnet.load(str(MODELS / f"{name}.dnet")).source("torch")
    assert f"{activation}(" in source and "inplace=True" in source
    plain = source.replace(", inplace=True", "").replace("(inplace=True)", "()")
    plain = plain.replace(".add_(", ".add(")
    grads = []
    for text in (source, plain):
        namespace: dict = {}
        exec(compile(text, f"{name}_torch.py", "exec"), namespace)
        torch.manual_seed(0)
        net = namespace[model](classes=5).train()
        x = torch.randn(2, 3, size, size, requires_grad=True)
        net(x).square().sum().backward()
        grads.append([x.grad.clone(), *(p.grad.clone() for p in net.parameters())])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_an_unchecked_branch_is_refused_not_guessed(tmp_path):
    source = tmp_path / "branch.dnet"
    source.write_text(
        "model Head(deep: bool = false) {\n"
        "    fc = Sequential(Linear(8), relu, Linear(2)) if deep else Linear(2)\n"
        "    forward(x: f32[B, 4]) { return fc(x) }\n"
        "}\n"
    )
    namespace: dict = {}
    exec(
        compile(compile_file(str(source), "torch", str(tmp_path)).read_text(), "b.py", "exec"),
        namespace,
    )
    assert namespace["Head"]().fc.out_features == 2
    with pytest.raises(ValueError, match="checked no configuration"):
        namespace["Head"](deep=True)
    deep = dualnet.load(str(source)).torch(deep=True)  # the API checks what it builds
    assert isinstance(deep.fc, torch.nn.Sequential)


def test_no_in_place_write_to_a_value_a_loop_reads_again(tmp_path):
    """`y` is fresh and read once in the text, but the loop reads it on every iteration:
    writing `y.add_(h)` would change what the second iteration sees."""
    source = tmp_path / "loop.dnet"
    source.write_text(
        "model Loop() {\n"
        "    fc = Linear(4)\n"
        "    forward(x: f32[B, 4]) {\n"
        "        y = fc(x)\n"
        "        h = x\n"
        "        for i in range(3) { h = y + h }\n"
        "        return h\n"
        "    }\n"
        "}\n"
    )
    program = dualnet.load(str(source))
    summary, net = program.check(), program.torch().eval()
    assert ".add_(" not in program.source("torch")
    rng = np.random.default_rng(0)
    weights = random_weights(summary, rng)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    x = rng.standard_normal((2, 4)).astype(np.float32)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    (want,) = run_reference(summary.instance, summary.graph, [x], weights)
    assert np.allclose(got, want, atol=1e-5)


def test_a_copy_of_a_module_runs_its_own_weights(tmp_path):
    """A convolution padded first (`_pad_first`: "same" with a stride, in a Sequential)
    copied with copy.deepcopy (an EMA model, say) runs the copy's weights, not the
    original's."""
    import copy

    (tmp_path / "net.dnet").write_text(
        'model Net() {\n    seq = Sequential(Conv2d(4, kernel=3, stride=2, padding="same"))\n'
        "    forward(x: f32[B, 2, 8, 8]) { return seq(x) }\n}\n",
        encoding="utf-8",
    )
    module = dualnet.load(str(tmp_path / "net.dnet")).torch(seed=0)
    assert "_pad_first" in dualnet.load(str(tmp_path / "net.dnet")).source("torch")
    twin = copy.deepcopy(module)
    with torch.no_grad():
        for p in twin.parameters():
            p.zero_()
        x = torch.ones(1, 2, 8, 8)
        assert torch.count_nonzero(twin(x)) == 0
        assert torch.count_nonzero(module(x)) > 0


def test_an_unrolled_element_is_written_from_its_own_branch_and_values():
    """A Sequential generator whose elements differ is written element by element: each as
    the branch of its conditional it took, a constant table indexed by the loop variable as
    the entry it reads (EfficientNet-B0's stages)."""
    source = dualnet.load(str(MODELS / "efficientnet_b0.dnet")).source("torch")
    assert "MBConv(6, 5, 2 if j == 0 else 1, 40, C=(24 if j == 0 else 40))" in source
    assert "_unchecked" not in source and "(1, 3, 1, 16, 1)" not in source
    assert max(len(line) for line in source.splitlines()) <= 100


def test_folded_constant_expressions():
    from dualnet.backends.common.python_class import folded

    assert folded("((1, 16), (6, 24))[2 - 1][1]") == "24"
    assert folded('(("RE", 3), ("HS", 5))[-1 + 1][0]') == '"RE"'
    for code in ("row[0]", "(1, 2)[5]", "(1, 2)[i]", "(1, 2)[0.5]", "f(1)[0]"):
        assert folded(code) == code

"""Weight files: `dualnet.save_weights` / `load_weights` (torch), `write_state`, `dualnet init`.

The generated modules are not needed here: small `nn.Module`s written by hand have the same
state_dict names as the dualnet models (LeNet5: conv1, conv2, fc1, fc2, fc3; ResNet-18:
torchvision's names). E-WEIGHTS is never reported by `dualnet check`, so this file is where
it is tested (see NOT_FROM_CHECK in tests/test_diagnostics.py), docs example included.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402

import dualnet  # noqa: E402
from dualnet import cli  # noqa: E402
from dualnet.backends.torch.init import init_state  # noqa: E402
from dualnet.backends.torch.weights import (  # noqa: E402
    load_torch,
    save_torch,
    write_tensors,  # noqa: E402
)
from dualnet.diagnostics import DualnetError, SourceCache, render  # noqa: E402
from dualnet.io.weights import write_state  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LENET = ROOT / "models" / "lenet5.dnet"
RESNET = ROOT / "models" / "resnet18.dnet"


# ---------------------------------------------------------------- hand-written modules


class LeNet5(nn.Module):
    """The state_dict of models/lenet5.dnet."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )


class ResNet18(nn.Module):
    """torchvision.models.resnet18's parameters and buffers (num_batches_tracked included)."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths = [64, 64, 128, 256, 512]
        for i in range(1, 5):
            stride = 1 if i == 1 else 2
            setattr(
                self,
                f"layer{i}",
                nn.Sequential(
                    BasicBlock(widths[i - 1], widths[i], stride), BasicBlock(widths[i], widths[i])
                ),
            )
        self.fc = nn.Linear(512, classes)


def snapshot(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_unchanged(module: nn.Module, before: dict) -> None:
    after = module.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def weights_error(module: nn.Module, path) -> DualnetError:
    before = snapshot(module)
    with pytest.raises(DualnetError) as info:
        dualnet.load_weights(module, path)
    assert_unchanged(module, before)
    return info.value


@pytest.fixture(scope="module")
def lenet_instance():
    summary = dualnet.check_file(str(LENET))
    assert summary.ok
    return summary.instance


@pytest.fixture
def lenet_file(tmp_path, lenet_instance):
    path = tmp_path / "lenet.safetensors"
    write_tensors(init_state(lenet_instance, 0), path)
    return path


# ---------------------------------------------------------------- round trips


def test_init_file_loads_into_the_hand_written_module(lenet_file, lenet_instance):
    model = LeNet5()
    dualnet.load_weights(model, lenet_file)
    state = init_state(lenet_instance, 0)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_round_trip_is_byte_identical(tmp_path, lenet_file):
    model = LeNet5()
    dualnet.load_weights(model, lenet_file)
    again = tmp_path / "again.safetensors"
    dualnet.save_weights(model, again)
    assert again.read_bytes() == lenet_file.read_bytes()
    other = LeNet5()
    dualnet.load_weights(other, again)
    third = tmp_path / "third.safetensors"
    save_torch(other, third)
    assert third.read_bytes() == lenet_file.read_bytes()


def test_save_is_deterministic_and_plain_safetensors(tmp_path):
    torch.manual_seed(0)
    model = LeNet5()
    dualnet.save_weights(model, tmp_path / "a.safetensors")
    dualnet.save_weights(model, tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    loaded = load_file(tmp_path / "a.safetensors")
    assert list(sorted(loaded)) == sorted(model.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def test_shared_and_non_contiguous_tensors_save(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(6, 4)
            self.out = nn.Linear(4, 6, bias=False)
            self.out.weight = self.emb.weight  # tied: one tensor under two names
            self.register_buffer("table", torch.arange(12.0).reshape(3, 4).t())  # strided
            self.conv = nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)

    model = Tied()
    assert not model.table.is_contiguous()
    path = tmp_path / "tied.safetensors"
    dualnet.save_weights(model, path)
    loaded = load_file(path)
    # a tied tensor is written once, under its first name (issue 13: weight tying)
    assert set(loaded) == {"emb.weight", "table", "conv.weight", "conv.bias"}
    assert torch.equal(loaded["table"], model.table)
    assert torch.equal(loaded["emb.weight"], model.emb.weight)
    other = Tied()
    dualnet.load_weights(other, path)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------- strict loading (E-WEIGHTS)


def test_missing_tensor(tmp_path, lenet_file):
    tensors = load_file(lenet_file)
    del tensors["fc2.bias"]
    save_file(tensors, tmp_path / "w.safetensors")
    err = weights_error(LeNet5(), tmp_path / "w.safetensors")
    [d] = err.diagnostics
    assert d.code == "E-WEIGHTS" and d.span.file == str(tmp_path / "w.safetensors")
    assert d.message == f"`fc2.bias` (f32[84]) is missing from {tmp_path / 'w.safetensors'}"


def test_extra_tensor(tmp_path, lenet_file):
    tensors = load_file(lenet_file)
    tensors["fc4.weight"] = torch.zeros(2, 2)
    save_file(tensors, tmp_path / "w.safetensors")
    [d] = weights_error(LeNet5(), tmp_path / "w.safetensors").diagnostics
    assert d.code == "E-WEIGHTS"
    assert "`fc4.weight` (f32[2, 2]) that the model does not have" in d.message


def test_mis_shaped_tensors_from_other_hyperparameters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_torch(LeNet5(classes=5), "lenet5_5classes.safetensors")
    [d] = weights_error(LeNet5(), "lenet5_5classes.safetensors").diagnostics
    assert d.message == (
        "`fc3.weight` in lenet5_5classes.safetensors is f32[5, 84]; the model expects f32[10, 84]"
    )
    assert d.notes == (
        "`fc3.bias` in lenet5_5classes.safetensors is f32[5]; the model expects f32[10]",
    )


def test_docs_example_is_real_output(tmp_path, monkeypatch):
    """docs/diagnostics.md § E-WEIGHTS shows exactly what load_weights raises."""
    monkeypatch.chdir(tmp_path)
    save_torch(LeNet5(classes=5), "lenet5_5classes.safetensors")
    err = weights_error(LeNet5(), "lenet5_5classes.safetensors")
    doc = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    section = doc.split("\n### E-WEIGHTS\n", 1)[1].split("\n### ", 1)[0]
    shown = re.search(r"renders as:\n\n```\n(.*?)\n```", section, re.S).group(1)
    assert shown == render(err.diagnostics[0], SourceCache())


def test_mis_typed_tensor(tmp_path, lenet_file):
    tensors = load_file(lenet_file)
    tensors["conv1.bias"] = tensors["conv1.bias"].double()
    save_file(tensors, tmp_path / "w.safetensors")
    [d] = weights_error(LeNet5(), tmp_path / "w.safetensors").diagnostics
    assert d.message.startswith("`conv1.bias` in ") and d.message.endswith(
        "is f64[6]; the model expects f32[6]"
    )


def test_many_problems_are_listed_with_a_count(tmp_path):
    save_file({"x": torch.zeros(1)}, tmp_path / "w.safetensors")  # all 10 missing + 1 extra
    [d] = weights_error(LeNet5(), tmp_path / "w.safetensors").diagnostics
    assert d.message.startswith("`conv1.weight` (f32[6, 1, 5, 5]) is missing from ")
    assert len(d.notes) == 5 and d.notes[-1] == "and 6 more"
    assert d.notes[0].startswith("`conv1.bias` (f32[6]) is missing")


def test_not_a_safetensors_file(tmp_path):
    torch.save(LeNet5().state_dict(), tmp_path / "w.pt")  # a pickle: never unpickled
    for path in (tmp_path / "w.pt", tmp_path / "empty.safetensors"):
        path.touch()
        [d] = weights_error(LeNet5(), path).diagnostics
        assert d.code == "E-WEIGHTS" and "is not a valid safetensors file" in d.message
        assert "never pickled checkpoints" in d.notes[0]


def test_unreadable_file_is_e_io(tmp_path):
    [d] = weights_error(LeNet5(), tmp_path / "absent.safetensors").diagnostics
    assert d.code == "E-IO" and "No such file or directory" in d.message
    [d] = weights_error(LeNet5(), tmp_path).diagnostics
    assert d.code == "E-IO" and d.message.endswith("it is a directory")


# ---------------------------------------------------------------- num_batches_tracked, ResNet-18


def test_torchvision_like_state_dict_loads(tmp_path):
    """A ResNet-18 state_dict (num_batches_tracked included) saved with safetensors loads
    as is into a module, and the `dualnet init` file of resnet18.dnet fits the same module."""
    torch.manual_seed(0)
    source = ResNet18()
    for m in source.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.num_batches_tracked.fill_(17)
            m.running_var.uniform_(0.5, 2.0)
    sd = source.state_dict()
    assert sum(k.endswith("num_batches_tracked") for k in sd) == 20
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "tv.safetensors")
    target = ResNet18()
    dualnet.load_weights(target, tmp_path / "tv.safetensors")
    for k, v in target.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert v.item() == 0, k  # the module's own counter is left alone
        else:
            assert torch.equal(v, sd[k]), k
    dualnet.save_weights(target, tmp_path / "saved.safetensors")
    saved = load_file(tmp_path / "saved.safetensors")
    assert set(saved) == {k for k in sd if not k.endswith("num_batches_tracked")}

    summary = dualnet.check_file(str(RESNET))
    write_tensors(init_state(summary.instance, 0), tmp_path / "init.safetensors")
    dualnet.load_weights(target, tmp_path / "init.safetensors")  # strict: same key set
    assert (tmp_path / "init.safetensors").stat().st_size > 46_000_000


def test_num_batches_tracked_in_a_state_is_not_written(tmp_path):
    write_tensors(
        {"bn.weight": torch.ones(2), "bn.num_batches_tracked": torch.tensor(3)},
        tmp_path / "w.safetensors",
    )
    assert list(load_file(tmp_path / "w.safetensors")) == ["bn.weight"]


# ---------------------------------------------------------------- atomic writes


def test_failed_replace_keeps_the_old_file(tmp_path, lenet_file, monkeypatch):
    old = lenet_file.read_bytes()

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(DualnetError) as info:
        dualnet.save_weights(LeNet5(classes=3), lenet_file)
    [d] = info.value.diagnostics
    assert d.code == "E-IO" and d.message == f"cannot write {lenet_file}: Permission denied"
    assert lenet_file.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.safetensors"]  # no temp file


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        dualnet.save_weights(LeNet5(), tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destinations(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    for path, reason in (
        (tmp_path / "file.txt" / "w.safetensors", "Not a directory"),
        (tmp_path / "absent" / "w.safetensors", "No such file or directory"),
        (tmp_path, "it is a directory"),
    ):
        with pytest.raises(DualnetError) as info:
            dualnet.save_weights(LeNet5(), path)
        [d] = info.value.diagnostics
        assert d.code == "E-IO" and d.message == f"cannot write {path}: {reason}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_written_file_has_ordinary_permissions(tmp_path):
    dualnet.save_weights(LeNet5(), tmp_path / "w.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------- the front door


def test_unsupported_objects_are_e_weights(tmp_path):
    for verb in (dualnet.save_weights, dualnet.load_weights):
        with pytest.raises(DualnetError) as info:
            verb({"w": torch.zeros(1)}, tmp_path / "w.safetensors")
        [d] = info.value.diagnostics
        assert d.code == "E-WEIGHTS" and "of type builtins.dict" in d.message
    assert list(tmp_path.iterdir()) == []


def test_write_state_takes_numpy_arrays(tmp_path):
    import numpy as np

    write_state({"a": np.arange(6, dtype=np.float32).reshape(2, 3).T}, tmp_path / "n.safetensors")
    assert torch.equal(
        load_file(tmp_path / "n.safetensors")["a"], torch.arange(6.0).reshape(2, 3).T
    )


def test_load_torch_direct(tmp_path, lenet_file):
    model = LeNet5()
    load_torch(model, str(lenet_file))  # str paths too
    assert torch.equal(model.fc3.bias, load_file(lenet_file)["fc3.bias"])


def test_import_dualnet_stays_framework_free():
    code = (
        "import sys, dualnet\n"
        "assert 'torch' not in sys.modules\n"
        "f = dualnet.load_weights; g = dualnet.save_weights\n"
        "assert 'load_weights' in dir(dualnet) and 'torch' not in sys.modules\n"
        "try:\n    g(object(), 'x.safetensors')\n"
        "except dualnet.diagnostics.DualnetError as e:\n"
        "    print(e.diagnostics[0].code)\n"
        "    print(e.diagnostics[0].notes[0])\n"
        "assert 'torch' not in sys.modules and 'safetensors' not in sys.modules\n"
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [
        "E-WEIGHTS",
        "dualnet saves the weights of a torch.nn.Module or a Keras layer or model "
        "(keras.layers.Layer)",
    ]


# ---------------------------------------------------------------- dualnet init


def run_init(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = cli.main(["init", *args])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_init_writes_the_seeded_state(tmp_path, capsys, lenet_instance):
    out = tmp_path / "w.safetensors"
    code, stdout, stderr = run_init(capsys, str(LENET), "--seed", "5", "-o", str(out))
    assert code == 0, stderr
    assert stdout == (
        f"wrote 10 tensors to {out}: 61,706 trainable parameters, 0 buffer elements (seed 5)\n"
    )
    loaded = load_file(out)
    expected = init_state(lenet_instance, 5)
    assert list(sorted(loaded)) == sorted(expected)
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())


def test_init_same_seed_same_bytes(tmp_path, capsys):
    paths = [tmp_path / f"{n}.safetensors" for n in "abcd"]
    for path, seed in zip(paths, ("0", "0", "1", None), strict=True):
        args = [str(LENET), "-o", str(path)] + (["--seed", seed] if seed else [])
        assert run_init(capsys, *args)[0] == 0
    a, b, c, d = (p.read_bytes() for p in paths)
    assert a == b == d and a != c  # the default seed is 0


def test_init_resnet18_file(tmp_path, capsys):
    out = tmp_path / "r18.safetensors"
    code, stdout, _ = run_init(capsys, str(RESNET), "-o", str(out))
    assert code == 0
    assert "102 tensors" in stdout and "11,689,512 trainable parameters, 9,600 buffer" in stdout
    loaded = load_file(out)
    torchvision_keys = [k for k in ResNet18().state_dict() if "num_batches_tracked" not in k]
    assert sorted(loaded) == sorted(torchvision_keys)  # the rule is in test_torch_init.py
    assert sum(t.numel() for t in loaded.values()) == 11_689_512 + 9_600


def test_init_model_and_include_options(tmp_path, capsys):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "blocks.dnet").write_text(
        "model Lin() {\n  fc = Linear(3)\n  forward(x: f32[B, F]) { return fc(x) }\n}\n"
    )
    (tmp_path / "main.dnet").write_text(
        'import "blocks.dnet"\nmodel M() {\n  l = Lin()\n'
        "  forward(x: f32[B, 2]) { return l(x) }\n}\nmodel N() {\n  z = Linear(4)\n"
        "  forward(x: f32[B, 2]) { return z(x) }\n}\n"
    )
    out = tmp_path / "w.safetensors"
    args = [str(tmp_path / "main.dnet"), "-I", str(lib), "--model", "M", "-o", str(out)]
    assert run_init(capsys, *args)[0] == 0
    assert sorted(load_file(out)) == ["l.fc.bias", "l.fc.weight"]


@pytest.mark.parametrize(
    "args",
    [
        [str(LENET)],
        [str(LENET), "-o"],
        ["-o", "w.safetensors"],
        [str(LENET), "-o", "w.safetensors", "--seed", "-1"],
        [str(LENET), "-o", "w.safetensors", "--seed", "x"],
    ],
)
def test_init_usage_errors_exit_2(tmp_path, capsys, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_init(capsys, *args)
    assert code == 2 and "dualnet: error:" in stderr
    assert list(tmp_path.iterdir()) == []


def test_init_check_errors_exit_1_and_write_nothing(tmp_path, capsys):
    (tmp_path / "bad.dnet").write_text("model M() {\n    forward(x: f32[B]) { return y }\n}\n")
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"old")
    code, _, stderr = run_init(capsys, str(tmp_path / "bad.dnet"), "-o", str(out))
    assert code == 1 and stderr.startswith("error[E-NAME]: `y` is not defined")
    assert out.read_bytes() == b"old"


def test_init_refuses_to_overwrite_the_source(tmp_path, capsys):
    src = tmp_path / "m.dnet"
    src.write_text(LENET.read_text())
    code, _, stderr = run_init(capsys, str(src), "-o", str(src))
    assert code == 1 and stderr.startswith(
        f"error[E-IO]: refusing to overwrite {src}: it is a .dnet source"
    )
    assert src.read_text() == LENET.read_text()


def test_init_unwritable_output_cli(tmp_path):
    """End to end: an output under a regular file is E-IO, exit 1, no traceback, no file."""
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / "out.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "dualnet", "init", str(LENET), "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"error[E-IO]: cannot write {out}: Not a directory\n --> {out}\n\n1 error in {LENET}\n"
    )
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
    assert (tmp_path / "file.txt").read_text() == "x"

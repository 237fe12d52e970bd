"""The command line: table, JSON, exit codes, and a checking path free of ML frameworks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from runcli import assert_clean, run_cli

import dualnet
import dualnet.compiler
from dualnet.diagnostics import DualnetError

ROOT = Path(__file__).resolve().parents[1]
LENET = str(ROOT / "models" / "lenet5.dnet")


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dualnet", *args], capture_output=True, text=True, cwd=cwd
    )


def test_check_prints_table_and_totals():
    out = run("check", LENET)
    assert out.returncode == 0, out.stderr
    assert "conv1" in out.stdout and "Conv2d" in out.stdout and "f32[B, 6, 28, 28]" in out.stdout
    assert "trainable parameters: 61,706" in out.stdout
    assert "\x1b[" not in out.stdout  # no colour when not a terminal


def test_check_json():
    out = run("check", LENET, "--json")
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["ok"] and data["trainable_params"] == 61706
    assert data["layers"][0] == {
        "path": "conv1",
        "op": "Conv2d",
        "output": "f32[B, 6, 28, 28]",
        "params": 156,
    }


def test_errors_exit_1_with_rendered_diagnostic(tmp_path):
    (tmp_path / "bad.dnet").write_text("model M() {\n    forward(x: f32[B]) { return y }\n}\n")
    out = run("check", "bad.dnet", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith("error[E-NAME]: `y` is not defined\n --> bad.dnet:2:33\n")
    assert "Traceback" not in out.stderr
    data = json.loads(run("check", "bad.dnet", "--json", cwd=tmp_path).stdout)
    assert data["diagnostics"][0]["line"] == 2 and data["diagnostics"][0]["column"] == 33


def test_usage_errors_exit_2():
    assert run().returncode == 2
    assert run("check").returncode == 2
    assert run("check", LENET, "--bogus").returncode == 2


def test_version():
    import dualnet

    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"dualnet {dualnet.__version__}"


def test_include_dirs(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "blocks.dnet").write_text(
        "model Lin() {\n  fc = Linear(3)\n  forward(x: f32[B, F]) { return fc(x) }\n}\n"
    )
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.dnet").write_text(
        'import "blocks.dnet"\nmodel M() {\n  l = Lin()\n'
        "  forward(x: f32[B, 2]) { return l(x) }\n}\n"
    )
    assert run("check", "main.dnet", cwd=src).returncode == 1
    assert run("check", "main.dnet", "-I", str(lib), cwd=src).returncode == 0


def test_checking_never_imports_frameworks():
    model = str(ROOT / "models" / "resnet18.dnet")
    code = (
        f"import sys, dualnet; s = dualnet.check_file({model!r}); assert s.ok; "
        "from dualnet.ir.printer import print_ir; print_ir(s.instance); "
        "print(sorted(m for m in ('torch', 'tensorflow', 'onnx', 'onnxruntime', 'keras') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- --hyper

HYPER_MODEL = """\
model Net(width: int, k: (int, int) = (3, 3), act: str = "relu", scale: float = 1.0) {
    conv = Conv2d(width, k)
    fc = Linear(4)
    forward(x: f32[B, 3, 12, 12]) {
        h = conv(x) * scale
        h = relu(h) if act == "relu" else gelu(h)
        return fc(mean(h, (2, 3)))
    }
}
"""


@pytest.fixture
def hyper_file(tmp_path):
    (tmp_path / "net.dnet").write_text(HYPER_MODEL)
    return tmp_path


def test_hyper_gives_and_overrides_entry_hyperparameters(hyper_file):
    out = run("check", "net.dnet", cwd=hyper_file)
    assert out.returncode == 1 and "--hyper width=VALUE" in out.stderr
    out = run(
        "check",
        "net.dnet",
        "--hyper",
        "width=5",
        "--hyper",
        "k=(1, 1)",
        "--hyper",
        'act="gelu"',
        "--hyper",
        "scale=2",
        "--json",
        cwd=hyper_file,
    )
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["layers"][0]["output"] == "f32[B, 5, 12, 12]"
    assert data["trainable_params"] == 3 * 5 + 5 + 5 * 4 + 4
    out = run("ir", "net.dnet", "--hyper", "width=7", "--hyper", "k=(3, 1)", cwd=hyper_file)
    assert out.returncode == 0 and "f32[B, 7, 10, 12]" in out.stdout


@pytest.mark.parametrize(
    "value,code,expected",
    [
        ("widht=3", "E-ARGS", ["Net has no hyperparameter `widht`", "did you mean `width`?"]),
        ("bogus=3", "E-ARGS", ["no hyperparameter `bogus`", "Net(width, k, act, scale)"]),
        ("width", "E-SYNTAX", ["`--hyper width` is not NAME=VALUE"]),
        ("3=width", "E-SYNTAX", ["is not NAME=VALUE"]),
        ("width=", "E-SYNTAX", ["`--hyper width=` is not NAME=VALUE"]),
        ("width=2*3", "E-VALUE", ["--hyper width: `2*3` is not a .dnet literal"]),
        ("width=(3,", "E-VALUE", ["is not a .dnet literal", "unexpected end of file"]),
        ("act=gelu", "E-VALUE", ["a string is written in quotes: --hyper 'act=\"gelu\"'"]),
        ("width=4.0", "E-TYPE", ["hyperparameter `width` expects int, found float"]),
        ("k=3", "E-TYPE", ["hyperparameter `k` expects (int, int), found int 3"]),
    ],
)
def test_hyper_errors_are_diagnostics(hyper_file, value, code, expected):
    width = [] if value.startswith("width") else ["--hyper", "width=4"]
    out = run_cli(["check", "net.dnet", *width, "--hyper", value], hyper_file)
    assert_clean(out, 1)
    assert out.stderr.startswith(f"error[{code}]"), out.stderr
    assert "--> command line: --hyper" in out.stderr
    for text in expected:
        assert text in out.stderr, out.stderr


def test_hyper_given_twice_and_with_several_parity_files(hyper_file):
    out = run_cli(["check", "net.dnet", "--hyper", "width=4", "--hyper", "width=5"], hyper_file)
    assert_clean(out, 1)
    assert "hyperparameter `width` given twice" in out.stderr
    out = run("parity", "net.dnet", "net.dnet", "--hyper", "width=4", cwd=hyper_file)
    assert out.returncode == 2 and "--hyper take one FILE" in out.stderr


def test_api_refuses_unknown_hyperparameters(hyper_file):
    summary = dualnet.check_file(str(hyper_file / "net.dnet"), hyper={"width": 4, "widht": 3})
    [d] = summary.diagnostics
    assert d.code == "E-ARGS" and d.message == "Net has no hyperparameter `widht`"
    with pytest.raises(DualnetError, match="no hyperparameter `bogus`"):
        dualnet.load(str(hyper_file / "net.dnet")).check(width=4, bogus=1)


def test_compile_hyper_writes_the_values_as_constructor_defaults(hyper_file):
    args = ["--hyper", "width=6", "--hyper", "k=(5, 5)", "--hyper", 'act="gelu"', "-o", "out"]
    for target in ("torch", "keras"):
        out = run("compile", "net.dnet", "--target", target, *args, cwd=hyper_file)
        assert out.returncode == 0, out.stderr
        source = (hyper_file / "out" / f"net_{target}.py").read_text()
        assert "width: int = 6," in source and "k: tuple = (5, 5)," in source, source
        assert "act: str = 'gelu'," in source or 'act: str = "gelu",' in source, source


def test_compile_hyper_to_onnx(hyper_file):
    """ONNX with --hyper (its seeded weights need PyTorch)."""
    pytest.importorskip("torch")
    args = ["--hyper", "width=6", "--hyper", "k=(5, 5)", "-o", "out"]
    out = run("compile", "net.dnet", "--target", "onnx", *args, cwd=hyper_file)
    assert out.returncode == 0 and (hyper_file / "out" / "Net.onnx").is_file(), out.stderr


def test_compiled_module_with_hyper_is_the_checked_instance(hyper_file):
    """The generated PyTorch class built without arguments has the checked parameters."""
    torch = pytest.importorskip("torch")
    hyper = {"width": 6, "k": (5, 5)}
    path = dualnet.compiler.compile_file(
        str(hyper_file / "net.dnet"), "torch", str(hyper_file / "out"), **hyper
    )
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - our output
    module = namespace["Net"]()
    assert module.conv.weight.shape == (6, 3, 5, 5)
    assert module(torch.zeros(2, 3, 12, 12)).shape == (2, 4)
    built = dualnet.load(str(hyper_file / "net.dnet")).torch(**hyper)
    assert built.conv.weight.shape == (6, 3, 5, 5)


def test_init_run_parity_gradcheck_take_hyper(hyper_file):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    hyper = ["--hyper", "width=2", "--hyper", "k=(1, 1)"]
    out = run("init", "net.dnet", *hyper, "-o", "w.safetensors", cwd=hyper_file)
    assert out.returncode == 0 and "20 trainable parameters" in out.stdout, out.stderr
    np = pytest.importorskip("numpy")
    np.save(hyper_file / "x.npy", np.ones((1, 3, 12, 12), np.float32))
    out = run(
        "run", "net.dnet", *hyper, "--backend", "torch", "--input", "x=x.npy",
        "--weights", "w.safetensors", "-o", "y.npz", cwd=hyper_file,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert np.load(hyper_file / "y.npz")["output"].shape == (1, 4)
    out = run("parity", "net.dnet", *hyper, "--backends", "torch,onnx", cwd=hyper_file)
    assert out.returncode == 0 and "2x4" in out.stdout, out.stdout + out.stderr
    out = run("gradcheck", "net.dnet", *hyper, "--backends", "torch,onnx", cwd=hyper_file)
    assert out.returncode == 0, out.stdout + out.stderr

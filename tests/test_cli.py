"""The command line: table, JSON, exit codes, and a checking path free of ML frameworks."""

import json
import subprocess
import sys
from pathlib import Path

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

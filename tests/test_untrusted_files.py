"""Untrusted files and sizes (issue 12): sources, weights and inputs are read only when they
are regular files, with sizes checked before reading; a checked model too large to build is
refused before anything is allocated; a missing optional dependency is E-EXTRA (exit 1),
never exit 3 or a bare ModuleNotFoundError; malformed .npy/.npz inputs are E-INPUT;
temporary files never outlive a run (not even a killed one, past the next run), never have
names past the file system's limit, and no command writes over a .dnet source or one of its
own inputs.

E-EXTRA is never reported by `dualnet check` (NOT_FROM_CHECK in tests/test_diagnostics.py):
this file is where it is tested.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from runcli import assert_clean, assert_located, run_cli, show

import dualnet
from dualnet.backends import BACKENDS
from dualnet.diagnostics import DualnetError
from dualnet.extras import missing
from dualnet.io import files
from dualnet.io.npy import read_npy
from dualnet.io.weights import read_tensors

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "models" / "mlp.dnet"
LENET = ROOT / "models" / "lenet5.dnet"
MEMORY_MB = 300
# Checks, then parameters that no machine holds: 1,000 × Linear(100000) = 10**13 weights.
HUGE = (
    "model Huge() {\n    s = Sequential(Linear(100000) for i in range(1000))\n"
    "    forward(x: f32[B, 100000]) { return s(x) }\n}\n"
)
# Imports of the optional dependencies fail, as in an environment without the extras.
WITHOUT_EXTRAS = """
import sys
class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"torch", "tensorflow", "keras", "onnx", "onnxruntime",
                                      "safetensors"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Missing())
"""


def _rss_mb() -> float:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _safetensors(path: Path, header: dict, data_size: int) -> None:
    """A safetensors file with `header` and `data_size` bytes of (sparse) data."""
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + data_size)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory with mlp.dnet, a matching input x.npy and weights w.safetensors."""
    (tmp_path / "mlp.dnet").write_text(MLP.read_text(encoding="utf-8"), encoding="utf-8")
    np.save(tmp_path / "x.npy", np.zeros((2, 784), np.float32))
    shapes = {
        "fc1.weight": (512, 784),
        "fc1.bias": (512,),
        "fc2.weight": (256, 512),
        "fc2.bias": (256,),
        "fc3.weight": (10, 256),
        "fc3.bias": (10,),
    }
    offset, header = 0, {}
    for name, shape in shapes.items():
        size = 4 * int(np.prod(shape))
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    _safetensors(tmp_path / "w.safetensors", header, offset)
    return tmp_path


# ---------------------------------------------------------------- regular files only


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_sources_must_be_regular_files(tmp_path: Path, kind: str) -> None:
    path = {
        "fifo": tmp_path / "pipe.dnet",
        "device": Path("/dev/zero"),
        "directory": tmp_path / "dir.dnet",
    }[kind]
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    name = str(path) if kind == "device" else path.name
    r = run_cli(["check", name], tmp_path)
    assert_clean(r)
    expected = {
        "fifo": "a FIFO (named pipe)",
        "device": "a character device",
        "directory": "a directory",
    }[kind]
    assert r.stderr.startswith(f"error[E-IO]: cannot read {name}: it is {expected}"), show(r)


def test_an_imported_fifo_is_refused_at_the_import(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "lib.dnet")
    (tmp_path / "main.dnet").write_text(
        'import "lib.dnet"\nmodel N() {\n    forward(x: f32[B, 8]) { return x }\n}\n'
    )
    r = run_cli(["check", "main.dnet"], tmp_path)
    assert_clean(r)
    assert_located(r, "main.dnet", "E-IO")
    assert "it is a FIFO" in r.stderr, show(r)


@pytest.mark.parametrize("role", ["weights", "input"])
def test_fifo_weights_and_inputs_do_not_hang(work: Path, role: str) -> None:
    os.mkfifo(work / "pipe")
    args = [
        "run",
        "mlp.dnet",
        "--backend",
        "onnx",
        "-o",
        "out.npz",
        "--input",
        "x=pipe" if role == "input" else "x=x.npy",
    ]
    args += ["--weights", "pipe"] if role == "weights" else []
    r = run_cli(args, work)
    assert not r.killed and r.code == 1, show(r)
    assert r.stderr.startswith("error[E-IO]: cannot read pipe: it is a FIFO"), show(r)


def test_source_size_is_checked_before_reading(tmp_path: Path) -> None:
    with open(tmp_path / "big.dnet", "wb") as f:
        f.truncate(6 * 2**30)  # sparse: nothing is written
    r = run_cli(["check", "big.dnet"], tmp_path)
    assert_clean(r)
    assert r.stderr.startswith(
        "error[E-LIMIT]: big.dnet is larger than the 16 MiB a source file may have"
    ), show(r)


def test_six_gib_weight_file_is_not_read_to_be_refused(tmp_path: Path) -> None:
    """A valid header of a 6 GiB file is read and checked; the data is not."""
    _safetensors(
        tmp_path / "big.safetensors",
        {"w": {"dtype": "F32", "shape": [3 * 2**29], "data_offsets": [0, 6 * 2**30]}},
        6 * 2**30,
    )
    before, start = _rss_mb(), time.process_time()
    stored = read_tensors(tmp_path / "big.safetensors")
    assert stored["w"].shape == (3 * 2**29,) and len(stored["w"].data) == 6 * 2**30
    assert time.process_time() - start < 1.0 and _rss_mb() - before < 50


def test_six_gib_weight_file_that_does_not_fit_is_refused_quickly(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    _safetensors(
        tmp_path / "big.safetensors",
        {"fc.weight": {"dtype": "F32", "shape": [3 * 2**29], "data_offsets": [0, 6 * 2**30]}},
        6 * 2**30,
    )
    module = torch.nn.Linear(4, 2)
    module.register_module("fc", torch.nn.Linear(4, 2))
    before, start = _rss_mb(), time.process_time()
    with pytest.raises(DualnetError) as info:
        dualnet.load_weights(module, tmp_path / "big.safetensors")
    assert info.value.diagnostics[0].code == "E-WEIGHTS"
    assert time.process_time() - start < 1.0 and _rss_mb() - before < 50


def test_weights_load_one_tensor_at_a_time(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    path = tmp_path / "w.safetensors"
    dualnet.save_weights(module, path)
    copy = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    dualnet.load_weights(copy, path)
    for a, b in zip(module.state_dict().values(), copy.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "content, why",
    [
        (b"", "the file is too short"),
        (struct.pack("<Q", 10**12) + b"{}", "the header length does not fit the file"),
        (struct.pack("<Q", 4) + b"nope", "the header is not JSON"),
        (struct.pack("<Q", 2) + b"[]", "the header is not a JSON object"),
    ],
)
def test_malformed_safetensors_files(tmp_path: Path, content: bytes, why: str) -> None:
    (tmp_path / "w.safetensors").write_bytes(content)
    with pytest.raises(DualnetError) as info:
        read_tensors(tmp_path / "w.safetensors")
    d = info.value.diagnostics[0]
    assert d.code == "E-WEIGHTS" and why in d.message, d.message


@pytest.mark.parametrize(
    "entries, data, why",
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 4, "tensors hold 8 bytes"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, 4, "entry of `a`"),
        ({"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, 1, "entry of `a`"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, 4, "entry of `a`"),
        (
            {
                "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]},
            },
            6,
            "overlap or leave gaps",
        ),
        ({"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}, 4, "overlap or leave gaps"),
    ],
)
def test_inconsistent_safetensors_headers(tmp_path: Path, entries, data: int, why: str) -> None:
    _safetensors(tmp_path / "w.safetensors", entries, data)
    with pytest.raises(DualnetError) as info:
        read_tensors(tmp_path / "w.safetensors")
    assert why in info.value.diagnostics[0].message, info.value.diagnostics[0].message


# ---------------------------------------------------------------- .npy inputs


def _npy_header(path: Path, shape: tuple, data: bytes) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        f.write(data)


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "is not a .npy array file"),
        ("npz", "is an .npz archive, not one .npy array"),
        ("truncated", "its header promises float32[1000000000000] (4,000,000,000,000 bytes)"),
        ("extra", "the file holds 12 bytes of data"),
        ("pickle", "Python objects"),
        ("text", "is not a .npy array file"),
    ],
)
def test_malformed_npy_inputs(tmp_path: Path, case: str, message: str) -> None:
    path = tmp_path / "x.npy"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "npz":
        with open(path, "wb") as f:
            np.savez(f, x=np.zeros(3))
    elif case == "truncated":
        _npy_header(path, (10**12,), b"1234")
    elif case == "extra":
        _npy_header(path, (2,), b"x" * 12)
    elif case == "pickle":
        with open(path, "wb") as f:
            np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_text("1 2 3\n")
    with pytest.raises(DualnetError) as info:
        read_npy(str(path))
    d = info.value.diagnostics[0]
    assert d.code == "E-INPUT" and message in d.message, d.message


def test_malformed_input_on_the_command_line(work: Path) -> None:
    (work / "empty.npy").write_bytes(b"")
    r = run_cli(
        ["run", "mlp.dnet", "--backend", "onnx", "--input", "x=empty.npy", "-o", "out.npz"], work
    )
    assert_clean(r)
    assert r.stderr.startswith("error[E-INPUT]: empty.npy is not a .npy array file"), show(r)


# ---------------------------------------------------------------- sizes before allocation


@pytest.mark.parametrize(
    "command",
    [
        ["init", "huge.dnet", "-o", "w.safetensors"],
        ["compile", "huge.dnet", "--target", "onnx", "--seed", "0", "-o", "out"],
        ["run", "huge.dnet", "--backend", "torch", "--input", "x=x.npy", "-o", "out.npz"],
        ["parity", "huge.dnet"],
        ["gradcheck", "huge.dnet"],
    ],
)
def test_models_too_large_to_allocate_are_refused_up_front(tmp_path: Path, command) -> None:
    (tmp_path / "huge.dnet").write_text(HUGE, encoding="utf-8")
    np.save(tmp_path / "x.npy", np.zeros((1, 100000), np.float32))
    r = run_cli(command, tmp_path)
    assert_clean(r, 1, MEMORY_MB)
    assert_located(r, "huge.dnet", "E-LIMIT")
    first = r.stderr.splitlines()[0]
    assert (
        "`Huge` has 10,000,100,000,000 parameters and buffer elements (40.0 TB as f32)" in first
        and "more than the limit of" in first
    ), show(r)
    assert "--max-params N or the environment variable DUALNET_MAX_PARAMS=N" in r.stderr


def test_python_api_refuses_too_large_models(tmp_path: Path) -> None:
    (tmp_path / "huge.dnet").write_text(HUGE, encoding="utf-8")
    for build in BACKENDS:
        with pytest.raises(DualnetError) as info:
            getattr(dualnet.load(str(tmp_path / "huge.dnet")), build)()
        assert info.value.diagnostics[0].code == "E-LIMIT", build


def test_the_limit_is_set_by_option_and_environment(tmp_path: Path) -> None:
    (tmp_path / "lenet5.dnet").write_text(LENET.read_text(encoding="utf-8"), encoding="utf-8")
    r = run_cli(["init", "lenet5.dnet", "-o", "w.safetensors", "--max-params", "1000"], tmp_path)
    assert r.code == 1 and "more than the limit of 1,000 (4.0 KB)" in r.stderr, show(r)
    r = run_cli(
        ["init", "lenet5.dnet", "-o", "w.safetensors"], tmp_path, env={"DUALNET_MAX_PARAMS": "1000"}
    )
    assert r.code == 1 and "more than the limit of 1,000" in r.stderr, show(r)
    r = run_cli(
        ["init", "lenet5.dnet", "-o", "w.safetensors"], tmp_path, env={"DUALNET_MAX_PARAMS": "lots"}
    )
    assert r.code == 1 and "DUALNET_MAX_PARAMS='lots' is not a positive integer" in r.stderr
    r = run_cli(
        ["init", "lenet5.dnet", "-o", "w.safetensors", "--max-params", "61_706"],
        tmp_path,
        env={"DUALNET_MAX_PARAMS": "1000"},
    )
    assert r.code == 0, show(r)  # the option wins; LeNet-5 has 61,706 elements


# ---------------------------------------------------------------- missing extras

COMMANDS_NEEDING_EXTRAS = [
    (["init", "mlp.dnet", "-o", "n.safetensors"], "torch"),
    (["compile", "mlp.dnet", "--target", "onnx", "-o", "out"], "torch"),
    (
        ["compile", "mlp.dnet", "--target", "onnx", "--weights", "w.safetensors", "-o", "out"],
        "onnx",
    ),
    (["run", "mlp.dnet", "--backend", "onnx", "--input", "x=x.npy", "-o", "o.npz"], "onnx"),
    (
        [
            "run",
            "mlp.dnet",
            "--backend",
            "keras",
            "--weights",
            "w.safetensors",
            "--input",
            "x=x.npy",
            "-o",
            "o.npz",
        ],
        "keras",
    ),
    (["run", "mlp.dnet", "--backend", "torch", "--input", "x=x.npy", "-o", "o.npz"], "torch"),
    (
        [
            "run",
            "mlp.dnet",
            "--backend",
            "torch",
            "--weights",
            "w.safetensors",
            "--input",
            "x=x.npy",
            "-o",
            "o.npz",
        ],
        "torch",
    ),
    (["parity", "mlp.dnet"], "torch"),
    (["parity", "mlp.dnet", "--weights", "w.safetensors"], "torch"),
    (["gradcheck", "mlp.dnet", "--weights", "w.safetensors"], "torch"),
    (["ops"], "onnx"),
]


@pytest.mark.parametrize(
    "command, extra",
    COMMANDS_NEEDING_EXTRAS,
    ids=[" ".join(c[:2]) + f" [{e}]" for c, e in COMMANDS_NEEDING_EXTRAS],
)
def test_commands_name_the_missing_extra(work: Path, command, extra: str) -> None:
    r = run_cli(command, work, prelude=WITHOUT_EXTRAS)
    assert r.code == 1 and "Traceback" not in r.stderr, show(r)
    assert r.stderr.startswith("error[E-EXTRA]: this needs "), show(r)
    assert f"pip install 'dualnet[{extra}]'" in r.stderr, show(r)


def test_missing_extra_diagnostic() -> None:
    error = missing(
        ModuleNotFoundError("No module named 'onnxruntime.capi'", name="onnxruntime.capi")
    )
    [d] = error.diagnostics
    assert d.code == "E-EXTRA" and d.span.file.startswith("the Python environment")
    assert d.message == (
        "this needs ONNX Runtime (the Python package `onnxruntime`), which is not installed"
    )
    assert d.notes == ("install it with `pip install 'dualnet[onnx]'`",)
    assert missing(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None


def test_check_and_source_compilation_need_no_extras(work: Path) -> None:
    for command in (
        ["check", "mlp.dnet"],
        ["compile", "mlp.dnet", "--target", "torch", "-o", "out"],
        ["compile", "mlp.dnet", "--target", "keras", "-o", "out"],
    ):
        r = run_cli(command, work, prelude=WITHOUT_EXTRAS)
        assert r.code == 0, show(r)


def test_python_api_raises_dualnet_error_for_missing_extras(work: Path) -> None:
    code = (
        WITHOUT_EXTRAS
        + """
import dualnet
from dualnet.diagnostics import DualnetError
from dualnet.backends import BACKENDS
program = dualnet.load("mlp.dnet")
for build in BACKENDS:
    try:
        getattr(program, build)()
    except DualnetError as exc:
        print(build, exc.diagnostics[0].code, exc.diagnostics[0].notes[0])
"""
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "torch E-EXTRA install it with `pip install 'dualnet[torch]'`",
        "keras E-EXTRA install it with `pip install 'dualnet[keras]'`",
        "onnx E-EXTRA install it with `pip install 'dualnet[torch]'`",  # the seeded weights
    ], proc.stdout


# ---------------------------------------------------------------- outputs


def test_no_command_writes_over_its_inputs(work: Path) -> None:
    cases = [
        (
            ["run", "mlp.dnet", "--backend", "onnx", "--input", "x=x.npy", "-o", "mlp.dnet"],
            "refusing to overwrite mlp.dnet: it is a .dnet source",
        ),
        (
            ["run", "mlp.dnet", "--backend", "onnx", "--input", "x=x.npy", "-o", "x.npy"],
            "refusing to overwrite x.npy: it is one of this command's inputs (x.npy)",
        ),
        (
            [
                "run",
                "mlp.dnet",
                "--backend",
                "onnx",
                "--input",
                "x=x.npy",
                "--weights",
                "w.safetensors",
                "-o",
                "w.safetensors",
            ],
            "refusing to overwrite w.safetensors",
        ),
        (
            ["init", "mlp.dnet", "-o", "other.dnet"],
            "refusing to write other.dnet: dualnet never writes .dnet files",
        ),
        (
            ["compile", "mlp.dnet", "--target", "onnx", "--weights", "MLP.onnx", "-o", "."],
            "refusing to overwrite MLP.onnx: it is one of this command's inputs",
        ),
    ]
    os.link(work / "w.safetensors", work / "MLP.onnx")
    before = {p.name: p.read_bytes() for p in work.iterdir()}
    for command, message in cases:
        r = run_cli(command, work)
        assert r.code == 1 and r.stderr.startswith(f"error[E-IO]: {message}"), show(r)
    assert {p.name: p.read_bytes() for p in work.iterdir()} == before


def test_outputs_never_replace_an_imported_source(tmp_path: Path) -> None:
    (tmp_path / "lib_torch.py").write_text(
        "model Lib() {\n    forward(x: f32[B, 8]) { return x }\n}\n"
    )
    (tmp_path / "lib.dnet").write_text(
        'import "lib_torch.py"\nmodel N() {\n    l = Lib()\n'
        "    forward(x: f32[B, 8]) { return l(x) }\n}\n"
    )
    r = run_cli(["compile", "lib.dnet", "--target", "torch", "-o", "."], tmp_path)
    assert r.code == 1 and "refusing to overwrite lib_torch.py" in r.stderr, show(r)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_killed_runs_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    stale_file = out / f".dualnet-tmp-{dead}-0123456789ab.tmp"
    stale_dir = out / f".dualnet-tmp-{dead}-ba9876543210"
    old = out / f".dualnet-tmp-{os.getppid()}-00000000aaaa.tmp"  # a live process, but old
    live = out / f".dualnet-tmp-{os.getppid()}-00000000bbbb.tmp"
    other = out / ".something-else.tmp"
    for path in (stale_file, old, live, other):
        path.write_bytes(b"partial")
    stale_dir.mkdir()
    (stale_dir / "Net.onnx.data").write_bytes(b"partial")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    r = run_cli(["compile", str(MLP), "--target", "torch", "-o", "out"], tmp_path)
    assert r.code == 0, show(r)
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, other.name, "mlp_torch.py"])


def test_killed_runs_leave_nothing_after_the_next_run(tmp_path: Path) -> None:
    """kill -9 at random moments of `dualnet init` (a 46 MB file): whatever a killed run
    left, the next run into the directory removes it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "dualnet",
        "init",
        str(ROOT / "models" / "resnet18.dnet"),
        "-o",
        "w.safetensors",
    ]
    for delay in (2.0, 2.6, 3.2):
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_temporaries_are_removed_on_every_exit_path(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.bin"
    for failure in (KeyboardInterrupt, OSError(28, "No space left on device")):

        def replace(src, dst, failure=failure):
            raise failure

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises((KeyboardInterrupt, DualnetError)):
            files.atomic_write(target, b"data")
        monkeypatch.undo()
        assert list(tmp_path.iterdir()) == []
    with files.temporary_directory(tmp_path) as tmp:
        (Path(tmp) / "x").write_bytes(b"data")
        assert len(list(tmp_path.iterdir())) == 1
    assert list(tmp_path.iterdir()) == []


def test_temporary_names_stay_short(tmp_path: Path) -> None:
    """A target name of 250 bytes (the limit is 255) is written: the temporary name does not
    grow with it."""
    long = "n" * 246 + ".npz"
    files.atomic_write(tmp_path / long, b"data")
    assert (tmp_path / long).read_bytes() == b"data" and len(list(tmp_path.iterdir())) == 1
    stem = "m" * 236
    (tmp_path / f"{stem}.dnet").write_text(MLP.read_text(encoding="utf-8"), encoding="utf-8")
    r = run_cli(["compile", f"{stem}.dnet", "--target", "torch", "-o", "."], tmp_path)
    assert r.code == 0 and (tmp_path / f"{stem}_torch.py").exists(), show(r)


def test_no_temporaries_left_after_successful_commands(work: Path) -> None:
    r = run_cli(
        ["run", "mlp.dnet", "--backend", "onnx", "--input", "x=x.npy", "-o", "out.npz"], work
    )
    assert r.code == 0, show(r)
    assert not [p for p in work.iterdir() if p.name.startswith(files.TEMP_PREFIX)]

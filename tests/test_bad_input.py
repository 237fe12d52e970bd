"""Malformed and hostile input: `dualnet check` must answer with a located diagnostic and exit
status 1 (2 for usage errors), within CPU_LIMIT seconds of CPU time and MEMORY_LIMIT_MB of
peak memory per run (interpreter start-up included), and never with a traceback.

Every case runs the CLI in a subprocess on input generated in `tmp_path` (`runcli.run_cli`
measures the child's CPU time, not wall time: a loaded machine must not fail these tests).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from runcli import assert_clean, assert_located, run_cli
from runcli import show as _show

# ---------------------------------------------------------------- inputs

N = 5000


def fwd(expr: str) -> str:
    """A model whose forward returns EXPR."""
    return f"model Net() {{\n    forward(x: f32[B, 8]) {{\n        return {expr}\n    }}\n}}\n"


def nested_ifs(n: int) -> str:
    lines = ["model Net() {", "    forward(x: f32[B, 8]) {"]
    lines += ["if true {"] * n + ["return x"] + ["}"] * n + ["    }", "}"]
    return "\n".join(lines) + "\n"


def random_bytes(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(n))


MODEL = "model {name}() {{\n    forward(x: f32[B, 8]) {{ return relu(x) }}\n}}\n"

# name: (files to write {relative path: text or bytes}, expected code; None: the input is
# valid and may either check (exit 0) or be refused with a located diagnostic)
SOURCES: dict[str, tuple[dict[str, str | bytes], str]] = {
    # syntax errors
    "missing_paren": ({"main.dnet": fwd("relu(x")}, "E-SYNTAX"),
    "stray_brace": ({"main.dnet": fwd("x") + "}\n"}, "E-SYNTAX"),
    "bad_token": ({"main.dnet": fwd("x $ x")}, "E-SYNTAX"),
    "unterminated_string": ({"main.dnet": fwd('gelu(x, approximate="tanh)')}, "E-SYNTAX"),
    "model_without_name": ({"main.dnet": "model (n: int = 3) {\n}\n"}, "E-SYNTAX"),
    # bytes and empty files
    "invalid_utf8": ({"main.dnet": b"# caf\xe9\n" + fwd("x").encode()}, "E-ENCODING"),
    "empty_file": ({"main.dnet": ""}, "E-MODEL"),
    "only_comments": ({"main.dnet": "# nothing\n# but comments\n\n   # here\n"}, "E-MODEL"),
    "binary_random": ({"main.dnet": random_bytes(65536, seed=1)}, "E-ENCODING"),
    "binary_ascii_controls": ({"main.dnet": bytes(range(32)) * 64}, "E-SYNTAX"),
    # semantic errors
    "unknown_names": ({"main.dnet": fwd("relu(y) + foo(x)")}, "E-NAME"),
    "wrong_arg_types": ({"main.dnet": fwd('softmax(x, axis="last")')}, "E-TYPE"),
    "shape_mismatch": ({"main.dnet": fwd("x + concat([x, x], 1)")}, "E-SHAPE"),
    # deep nesting
    "deep_parens": ({"main.dnet": fwd("(" * N + "x" + ")" * N)}, "E-DEPTH"),
    "deep_unary_minus": ({"main.dnet": fwd("- " * N + "x")}, "E-DEPTH"),
    "deep_calls": ({"main.dnet": fwd("relu(" * N + "x" + ")" * N)}, "E-DEPTH"),
    "deep_lists": ({"main.dnet": fwd("concat(" + "[" * N + "x" + "]" * N + ", 1)")}, "E-DEPTH"),
    "deep_ifs": ({"main.dnet": nested_ifs(N)}, "E-DEPTH"),
    # long and big
    "sum_20000_terms": ({"main.dnet": fwd(" + ".join(["x"] * 20_000))}, None),
    "sum_200000_terms": ({"main.dnet": fwd(" + ".join(["x"] * 200_000))}, None),
    "range_1e9_for": (
        {
            "main.dnet": "model Net() {\n    forward(x: f32[B, 8]) {\n"
            "        for i in range(10**9) { x = relu(x) }\n        return x\n"
            "    }\n}\n"
        },
        "E-LIMIT",
    ),
    "range_1e9_sequential": (
        {
            "main.dnet": "model Net() {\n"
            "    s = Sequential(Linear(8) for i in range(10**9))\n"
            "    forward(x: f32[B, 8]) { return s(x) }\n}\n"
        },
        "E-LIMIT",
    ),
    "power_tower": (
        {"main.dnet": "const BIG = 10**10**10\n" + MODEL.format(name="Net")},
        "E-VALUE",
    ),
    "huge_int_literal": (
        {"main.dnet": f"const BIG = {'7' * 100}\n" + MODEL.format(name="Net")},
        "E-VALUE",
    ),
    "dim_2_62_flatten": (
        {
            "main.dnet": "model Net() {\n    forward(x: f32[B, 4611686018427387904])"
            " { return flatten(x) }\n}\n"
        },
        "E-LIMIT",
    ),
    "dim_2_62_product": (
        {
            "main.dnet": "model Net() {\n    forward(x: f32[B, 2147483648, "
            "2147483648, 4]) { return flatten(x) }\n}\n"
        },
        "E-LIMIT",
    ),
    "linear_2_62": (
        {
            "main.dnet": "model Net() {\n    fc = Linear(2**62)\n"
            "    forward(x: f32[B, 8]) { return fc(x) }\n}\n"
        },
        "E-LIMIT",
    ),
    # imports
    "import_cycle_2": (
        {
            "main.dnet": 'import "b.dnet"\n' + MODEL.format(name="A"),
            "b.dnet": 'import "main.dnet"\n' + MODEL.format(name="B"),
        },
        "E-IMPORT",
    ),
    "import_cycle_3": (
        {
            "main.dnet": 'import "b.dnet"\n' + MODEL.format(name="A"),
            "b.dnet": 'import "c.dnet"\n' + MODEL.format(name="B"),
            "c.dnet": 'import "main.dnet"\n' + MODEL.format(name="C"),
        },
        "E-IMPORT",
    ),
    "import_escape_dotdot": (
        {
            "main.dnet": 'import "../outside.dnet"\n' + MODEL.format(name="A"),
            "../outside.dnet": MODEL.format(name="Out"),
        },
        "E-IMPORT",
    ),
    "import_directory": (
        {
            "main.dnet": 'import "lib"\n' + MODEL.format(name="A"),
            "lib/x.dnet": MODEL.format(name="X"),
        },
        "E-IMPORT",
    ),
    "import_missing": (
        {"main.dnet": 'from "nowhere.dnet" import Block\n' + MODEL.format(name="A")},
        "E-IMPORT",
    ),
}


def write_files(base: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


# Where the first diagnostic points: main.dnet, except for cycles (the closing import).
LOCATED_IN = {"import_cycle_2": "b.dnet", "import_cycle_3": "c.dnet"}


@pytest.mark.parametrize("name", list(SOURCES))
def test_bad_source(tmp_path: Path, name: str) -> None:
    files, code = SOURCES[name]
    work = tmp_path / "work"
    work.mkdir()
    write_files(work, files)
    r = run_cli(["check", "main.dnet"], work)
    if code is None and r.code == 0:  # a valid program may also simply check
        assert_clean(r, 0)
        return
    assert_clean(r)
    assert_located(r, LOCATED_IN.get(name, "main.dnet"), code)
    if name == "import_directory":
        assert "directory" in r.stderr.splitlines()[0], _show(r)
    if name == "import_cycle_3":
        assert "main.dnet → b.dnet → c.dnet → main.dnet" in r.stderr, _show(r)


def test_import_escape_via_symlink(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "secret.dnet").write_text(MODEL.format(name="Secret"), encoding="utf-8")
    (work / "link.dnet").symlink_to(tmp_path / "secret.dnet")
    (work / "main.dnet").write_text(
        'from "link.dnet" import Secret\n' + MODEL.format(name="A"), encoding="utf-8"
    )
    r = run_cli(["check", "main.dnet"], work)
    assert_clean(r)
    assert_located(r, "main.dnet", "E-IMPORT")
    assert "leaves the allowed directories" in r.stderr


def test_symlinked_directory_escape(tmp_path: Path) -> None:
    """A symlink to a directory outside, used as a path component, escapes too."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "lib.dnet").write_text(MODEL.format(name="Lib"), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    (work / "ext").symlink_to(outside, target_is_directory=True)
    (work / "main.dnet").write_text(
        'import "ext/lib.dnet"\n' + MODEL.format(name="A"), encoding="utf-8"
    )
    r = run_cli(["check", "main.dnet"], work)
    assert_clean(r)
    assert_located(r, "main.dnet", "E-IMPORT")


def test_sequential_of_10000_layers(tmp_path: Path) -> None:
    """Must succeed or fail cleanly within the time limit (the time is printed)."""
    (tmp_path / "main.dnet").write_text(
        "model Net() {\n    s = Sequential(Linear(8) for i in range(10000))\n"
        "    forward(x: f32[B, 8]) { return s(x) }\n}\n",
        encoding="utf-8",
    )
    r = run_cli(["check", "main.dnet"], tmp_path)
    print(f"10,000-layer Sequential: exit {r.code}, {r.cpu:.2f} s CPU, {r.rss_mb:.0f} MB")
    if r.code == 0:
        assert "trainable parameters: 720,000" in r.stdout
        assert_clean(r, 0)
    else:
        assert_clean(r, 1)
        assert_located(r, "main.dnet")


def test_sequential_of_10000_layers_json(tmp_path: Path) -> None:
    (tmp_path / "main.dnet").write_text(
        "model Net() {\n    s = Sequential(Linear(8) for i in range(10000))\n"
        "    forward(x: f32[B, 8]) { return s(x) }\n}\n",
        encoding="utf-8",
    )
    r = run_cli(["check", "--json", "main.dnet"], tmp_path)
    print(f"10,000-layer Sequential --json: exit {r.code}, {r.cpu:.2f} s CPU, {r.rss_mb:.0f} MB")
    assert_clean(r, 0)
    assert '"trainable_params": 720000' in r.stdout


# ---------------------------------------------------------------- the command line


def test_nonexistent_file(tmp_path: Path) -> None:
    r = run_cli(["check", "nope.dnet"], tmp_path)
    assert_clean(r)
    assert r.stderr.startswith("error[E-IO]: cannot read nope.dnet"), _show(r)


def test_directory_as_file(tmp_path: Path) -> None:
    (tmp_path / "dir.dnet").mkdir()
    r = run_cli(["check", "dir.dnet"], tmp_path)
    assert_clean(r)
    assert r.stderr.startswith("error[E-IO]: cannot read dir.dnet"), _show(r)
    assert "directory" in r.stderr.splitlines()[0]


def test_unknown_entry_model(tmp_path: Path) -> None:
    (tmp_path / "main.dnet").write_text(
        MODEL.format(name="Encoder") + MODEL.format(name="Head"), encoding="utf-8"
    )
    r = run_cli(["check", "--model", "Encodr", "main.dnet"], tmp_path)
    assert_clean(r)
    assert r.stderr.startswith("error[E-MODEL]"), _show(r)
    assert "`Encodr`" in r.stderr and "did you mean `Encoder`?" in r.stderr, _show(r)


def test_unknown_entry_model_in_file_without_models(tmp_path: Path) -> None:
    (tmp_path / "main.dnet").write_text("const WIDTH = 8\n", encoding="utf-8")
    r = run_cli(["check", "--model", "Net", "main.dnet"], tmp_path)
    assert_clean(r)
    assert r.stderr.startswith("error[E-MODEL]"), _show(r)
    assert not re.search(r"models here: *$", r.stderr, flags=re.M), _show(r)


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--frobnicate", "main.dnet"],
        ["check", "-x", "main.dnet"],
        ["--no-such-flag"],
        ["frobnicate", "main.dnet"],
        ["check"],
        ["check", "--model"],
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "main.dnet").write_text(MODEL.format(name="Net"), encoding="utf-8")
    r = run_cli(args, tmp_path)
    assert_clean(r, 2)
    assert "usage: dualnet" in r.stderr and "dualnet: error:" in r.stderr, _show(r)

"""Golden tests for diagnostics: every fixture in tests/diagnostics/ is checked with the CLI.

Each `tests/diagnostics/NAME.expected` holds exactly what

    cd tests/diagnostics && dualnet check NAME.dnet

prints on stderr (colour off), followed by a last line `exit: N` with the exit status.
The input is `NAME.dnet`: usually a file; `io_directory.dnet` is a directory, and inputs
listed in `ABSENT` deliberately do not exist. Every `*.dnet` in the folder needs an
`.expected` file (library files imported by other fixtures included: they check cleanly
and expect an empty stderr and `exit: 0`).

To regenerate the expected files after an intended change of the messages, run

    DUALNET_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_diagnostics.py

which rewrites every `.expected` file from the current output instead of comparing (the
tests then pass). Read every changed file before committing it: the caret must sit under
the right text, the message must say what was expected and what was found, and the code
must be the right one.

Some expected files were written by hand with the corrected output of a known checker bug
(args_extra, args_unknown_keyword, dtype_float_ids, import_escape, import_missing,
multi_errors, multi_imports, multi_models, shape_add_mismatch, syntax_model_without_name,
value_const_cycle); the
`test_known_*` tests check the same behaviour directly, so that regenerating the golden files
from a checker that still has the bug does not hide it.

Other tests here generate their input (5,000-deep nesting for E-DEPTH), check the `--json`
output, and check that the examples in docs/diagnostics.md are the fixtures' real output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dualnet.diagnostics import CODES

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "diagnostics"
UPDATE = os.environ.get("DUALNET_UPDATE_GOLDEN") == "1"

# Fixtures whose input must not exist (the error is about the missing file).
ABSENT = {"io_missing_file"}

# Codes that `dualnet check` never reports, so no fixture can show them; each is tested where
# it arises (the value names the test file).
NOT_FROM_CHECK = {
    "E-WEIGHTS": "tests/backends/test_weights.py",
    "E-BACKEND": "tests/backends/test_onnx_emit.py",
    "E-INPUT": "tests/backends/test_onnx_emit.py",
    "E-EXTRA": "tests/test_untrusted_files.py",
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DUALNET_TRACEBACK", "FORCE_COLOR")}
    # DUALNET_CHECK_CPU_SECONDS: the work limit, not the CPU backstop, on a slow machine
    env.update(NO_COLOR="1", TERM="dumb", PYTHONIOENCODING="utf-8", DUALNET_CHECK_CPU_SECONDS="60")
    # The checkout's dualnet, also when it is not installed into the running interpreter.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_check(*args: str, cwd: Path = FIXTURES, timeout: float = 60) -> tuple[str, int]:
    """Run `dualnet check ARGS` in `cwd`; return (stderr, exit status)."""
    proc = subprocess.run(
        [sys.executable, "-m", "dualnet", "check", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        timeout=timeout,
    )
    return proc.stderr.decode("utf-8", errors="replace"), proc.returncode


def golden_text(stderr: str, code: int) -> str:
    return f"{stderr}exit: {code}\n"


def golden_names() -> list[str]:
    return sorted(p.name[: -len(".expected")] for p in FIXTURES.glob("*.expected"))


# ---------------------------------------------------------------- the golden files


@pytest.mark.parametrize("name", golden_names())
def test_golden(name: str) -> None:
    source = FIXTURES / f"{name}.dnet"
    if name in ABSENT:
        assert not source.exists(), f"{source} must not exist: the fixture is about its absence"
    else:
        assert source.exists(), f"{name}.expected has no {name}.dnet"
    stderr, code = run_check(f"{name}.dnet")
    actual = golden_text(stderr, code)
    expected_path = FIXTURES / f"{name}.expected"
    if UPDATE:
        expected_path.write_text(actual, encoding="utf-8", newline="\n")
        return
    expected = expected_path.read_text(encoding="utf-8")
    assert "Traceback" not in stderr
    assert actual == expected, (
        f"`dualnet check {name}.dnet` (in tests/diagnostics) printed\n{actual}\n"
        f"but {name}.expected says\n{expected}"
    )


def test_every_fixture_has_an_expected_file() -> None:
    missing = [
        p.name
        for p in FIXTURES.glob("*.dnet")
        if not (FIXTURES / (p.name[:-5] + ".expected")).exists()
    ]
    if UPDATE:  # a new fixture: write its first expected file (read it before committing!)
        for name in missing:
            stderr, code = run_check(name)
            (FIXTURES / (name[:-5] + ".expected")).write_text(
                golden_text(stderr, code), encoding="utf-8", newline="\n"
            )
        return
    assert not missing, f"fixtures without .expected: {missing}"


def _codes_in(text: str) -> list[str]:
    return re.findall(r"^error\[([A-Z-]+)\]", text, flags=re.M)


def test_every_code_has_a_fixture() -> None:
    """Each code of the catalogue is produced by at least one fixture: the first line of
    some .expected file is `error[CODE]: ...`."""
    first = {}
    for name in golden_names():
        text = (FIXTURES / f"{name}.expected").read_text(encoding="utf-8")
        codes = _codes_in(text)
        if codes:
            first.setdefault(codes[0], name)
            assert text.startswith(f"error[{codes[0]}]"), name
    missing = sorted(set(CODES) - set(first) - set(NOT_FROM_CHECK))
    assert not missing, f"no fixture produces {missing}"
    for code, test in NOT_FROM_CHECK.items():
        assert code in CODES and code not in first, code
        assert f'"{code}"' in (ROOT / test).read_text(encoding="utf-8"), (code, test)
    unknown = sorted(set(first) - set(CODES))
    assert not unknown, f"fixtures show codes missing from CODES: {unknown}"


def test_expected_files_are_consistent() -> None:
    """Every expected file ends with `exit: N`, N is 1 exactly when errors are shown, the
    count line agrees with the number of errors, and all codes are catalogued."""
    for name in golden_names():
        text = (FIXTURES / f"{name}.expected").read_text(encoding="utf-8")
        lines = text.splitlines()
        m = re.fullmatch(r"exit: (\d+)", lines[-1])
        assert m, f"{name}: last line must be `exit: N`"
        codes = _codes_in(text)
        assert set(codes) <= set(CODES), name
        if not codes:
            assert m.group(1) == "0" and len(lines) == 1, name
            continue
        assert m.group(1) == "1", name
        n = len(codes)
        assert lines[-2] == f"{n} error{'s' * (n != 1)} in {name}.dnet", name


def test_encoding_fixture_is_really_invalid_utf8() -> None:
    """Guards the committed binary fixture against an editor that 'repairs' it."""
    data = (FIXTURES / "encoding_invalid_utf8.dnet").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert b"caf\xe9" in data


def test_escape_target_exists() -> None:
    """import_escape.dnet must fail for escaping, not because the file is missing."""
    assert (FIXTURES.parent / "outside.dnet").is_file()
    assert (FIXTURES / "io_directory.dnet").is_dir()


# ---------------------------------------------------------------- --json


def test_json_output_fields() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dualnet", "check", "--json", "annotation_return.dnet"],
        cwd=FIXTURES,
        env=_env(),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["ok"] is False and out["file"] == "annotation_return.dnet"
    assert out["layers"] == [] and out["trainable_params"] is None
    [d] = out["diagnostics"]
    assert d == {
        "code": "E-ANNOTATION",
        "message": "the result is declared f32[B, 100] but is f32[B, 10]",
        "label": "dimension 1: 100 vs 10",
        "notes": [],
        "file": "annotation_return.dnet",
        "line": 6,
        "column": 16,
        "end_line": 6,
        "end_column": 21,
    }


def test_json_output_ok() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dualnet", "check", "--json", "import_lib.dnet"],
        cwd=FIXTURES,
        env=_env(),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is True and out["model"] == "Demo" and out["diagnostics"] == []
    assert out["inputs"] == ["x: f32[B, 8]"] and out["outputs"] == ["f32[B, 16]"]
    assert out["trainable_params"] == 8 * 16 + 16 and out["buffers"] == 0


# ---------------------------------------------------------------- generated inputs

DEEP = 5000


def _nested_ifs(n: int) -> str:
    lines = ["model Net() {", "    forward(x: f32[B, 8]) {"]
    lines += ["if true {"] * n + ["return x"] + ["}"] * n + ["    }", "}"]
    return "\n".join(lines) + "\n"


def _in_forward(expr: str) -> str:
    return f"model Net() {{\n    forward(x: f32[B, 8]) {{\n        return {expr}\n    }}\n}}\n"


@pytest.mark.parametrize(
    "kind,source,line",
    [
        ("parens", _in_forward("(" * DEEP + "x" + ")" * DEEP), 3),
        ("calls", _in_forward("relu(" * DEEP + "x" + ")" * DEEP), 3),
        ("ifs", _nested_ifs(DEEP), None),
    ],
)
def test_depth_5000(tmp_path: Path, kind: str, source: str, line: int | None) -> None:
    (tmp_path / "deep.dnet").write_text(source, encoding="utf-8")
    stderr, code = run_check("deep.dnet", cwd=tmp_path)
    assert code == 1
    assert stderr.startswith("error[E-DEPTH]: nesting deeper than "), stderr[:500]
    m = re.search(r"^ *--> deep\.dnet:(\d+):(\d+)$", stderr, flags=re.M)
    assert m, stderr[:500]
    if line is not None:
        assert int(m.group(1)) == line
    assert stderr.rstrip().endswith("1 error in deep.dnet")


# ---------------------------------------------------------------- known checker bugs
# Each of these fails with the checker as it was when the test was written; the golden
# files of the same fixtures encode the corrected output where it is unambiguous.


def _first_block(stderr: str) -> str:
    return stderr.split("\n\n")[0]


def test_known_unterminated_string_is_named() -> None:
    """An unclosed string should be reported as such at its opening quote, not as an
    'unexpected character'."""
    stderr, code = run_check("syntax_unterminated_string.dnet")
    head = stderr.splitlines()[0]
    assert code == 1 and head.startswith("error[E-SYNTAX]")
    assert "string" in head and "unexpected character" not in head, head
    assert "syntax_unterminated_string.dnet:3:40" in stderr


def test_known_no_model_has_a_location() -> None:
    """LANGUAGE.md §10: every error carries file, line and column, also 'declares no model'."""
    stderr, code = run_check("model_no_model.dnet")
    assert code == 1
    assert "--> model_no_model.dnet:1:1" in stderr, stderr


def test_known_encoding_error_shows_the_line() -> None:
    """LANGUAGE.md §10: the source line is shown with a caret under the bad byte."""
    stderr, _ = run_check("encoding_invalid_utf8.dnet")
    lines = stderr.splitlines()
    [i] = [k for k, s in enumerate(lines) if s.startswith("3 |")]
    assert "caf" in lines[i] and "au lait" in lines[i], stderr
    assert lines[i + 1].index("^") == lines[i].index("caf") + 3, stderr


def test_known_encoding_column_counts_characters(tmp_path: Path) -> None:
    """Columns count characters (as in every other diagnostic), not bytes: after `ü` (two
    bytes) the bad byte of `# ü \\xff` is at column 5."""
    (tmp_path / "enc.dnet").write_bytes("# ü ".encode() + b"\xff\n")
    stderr, code = run_check("enc.dnet", cwd=tmp_path)
    assert code == 1 and "--> enc.dnet:1:5" in stderr, stderr


def test_known_import_of_a_directory_says_so() -> None:
    stderr, code = run_check("import_directory.dnet")
    head = stderr.splitlines()[0]
    assert code == 1 and head.startswith("error[E-IMPORT]")
    assert "directory" in head and "cannot find" not in head, stderr


def test_known_no_duplicate_diagnostics() -> None:
    stderr, code = run_check("value_const_cycle.dnet")
    blocks = [b for b in stderr.split("\n\n") if b.startswith("error[")]
    assert code == 1 and len(blocks) == len(set(blocks)), stderr


def test_known_failed_import_does_not_cascade() -> None:
    """A name whose `from ... import` failed is not reported again as undefined."""
    for name in ("import_escape", "import_missing"):
        stderr, code = run_check(f"{name}.dnet")
        assert code == 1 and _codes_in(stderr) == ["E-IMPORT"], stderr


def test_known_every_bad_name_in_an_import_is_reported() -> None:
    stderr, _ = run_check("multi_imports.dnet")
    assert "`Blok`" in stderr and "`WIDHT`" in stderr, stderr


@pytest.mark.parametrize(
    "name,line,keyword",
    [
        ("args_unknown_keyword", "3 |", "strides=2"),  # a built-in layer's argument
        ("multi_models", "13 |", "stride=2"),  # a model's hyperparameter
    ],
)
def test_known_unknown_keyword_caret_under_keyword(name: str, line: str, keyword: str) -> None:
    """The caret of an unknown keyword argument sits under `name=value`, not the value
    (as for a keyword given twice, which already underlines `name=value`)."""
    stderr, _ = run_check(f"{name}.dnet")
    lines = stderr.splitlines()
    i = next(k for k, s in enumerate(lines) if s.startswith(line))
    start = lines[i].index(keyword)
    caret = lines[i + 1]
    assert caret.index("^") == start and caret.count("^") == len(keyword), stderr


def test_known_singular_argument() -> None:
    stderr, _ = run_check("args_extra.dnet")
    assert "relu takes at most 1 positional argument, found 2" in stderr, stderr


def test_known_shape_label_names_first_mismatch() -> None:
    """LANGUAGE.md §10: the label names the first axis that differs (`dimension 1: 64 vs
    128`), not the last."""
    stderr, _ = run_check("shape_add_mismatch.dnet")
    assert "dimension 1: 64 vs 128" in stderr, stderr


def test_known_article_before_int() -> None:
    stderr, _ = run_check("dtype_float_ids.dnet")
    assert "expects an int tensor" in stderr, stderr


def test_known_no_spurious_newline_expected() -> None:
    """After `model` only a name can follow; a newline is not accepted there (`model` at the
    end of a line is itself an error), so the message must not offer one."""
    stderr, _ = run_check("syntax_model_without_name.dnet")
    assert stderr.startswith("error[E-SYNTAX]: unexpected `(`, expected a name\n"), stderr


# ---------------------------------------------------------------- docs/diagnostics.md


def test_docs_examples_match_fixtures() -> None:
    """The examples in docs/diagnostics.md are the fixtures and their expected output."""
    doc = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    outputs = re.findall(r"`dualnet check (\w+)\.dnet` prints:\n\n```\n(.*?)\n```", doc, re.S)
    sources = re.findall(r"`tests/diagnostics/(\w+)\.dnet`:\n\n```\n(.*?)\n```", doc, re.S)
    assert outputs and sources
    for name, shown in outputs:
        expected = (FIXTURES / f"{name}.expected").read_text(encoding="utf-8")
        assert shown == expected.rsplit("exit:", 1)[0].rstrip("\n"), name
    for name, shown in sources:
        assert shown == (FIXTURES / f"{name}.dnet").read_text(encoding="utf-8").rstrip("\n")
    for code in CODES:
        assert f"\n### {code}\n" in doc, f"docs/diagnostics.md does not describe {code}"

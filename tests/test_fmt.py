"""`dualnet fmt` and `dualnet.fmt.format_source`: every .dnet file of the zoo and the tests
that parses keeps its meaning (the same AST, the same IR for every model), its comments and
their order, and is formatted idempotently within 100 columns; hand-written inputs of each
construct give their canonical text; the command's exit codes, `--check`, folders and
errors."""

# ruff: noqa: E501 (the inputs of CASES have long lines on purpose)

from __future__ import annotations

import dataclasses
import re
import shutil
import textwrap
import time
from pathlib import Path

import pytest
from runcli import CPU_LIMIT, assert_clean, run_cli

from dualnet.cli import main
from dualnet.diagnostics import DualnetError
from dualnet.fmt import format_source
from dualnet.frontend import check_file
from dualnet.ir.printer import print_ir
from dualnet.syntax import ast
from dualnet.syntax.parser import parse

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 100
_COMMENTS = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`\n]*`|#[^\n]*')


def _parsing_sources() -> list[Path]:
    """The zoo and every .dnet file under tests/ that is UTF-8 and parses."""
    found = []
    for path in sorted([*ROOT.glob("models/*.dnet"), *ROOT.glob("tests/**/*.dnet")]):
        try:
            parse(path.read_text("utf-8"), str(path))
        except (OSError, UnicodeDecodeError, DualnetError):
            continue
        found.append(path)
    return found


SOURCES = _parsing_sources()
# The folders whose files are checked model by model (imports resolve within a folder).
CHECKED = ["models", "tests/programs", "tests/architectures"]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _shape(node):
    """An AST without its spans: what the program means."""
    if dataclasses.is_dataclass(node):
        return (type(node).__name__,) + tuple(
            _shape(getattr(node, f.name)) for f in dataclasses.fields(node) if f.name != "span"
        )
    if isinstance(node, tuple | list):
        return tuple(_shape(n) for n in node)
    return node


def comments(text: str) -> list[str]:
    return [m.group().rstrip() for m in _COMMENTS.finditer(text) if m.group().startswith("#")]


def code_of(line: str) -> str:
    """A line without its comment."""
    for m in _COMMENTS.finditer(line):
        if m.group().startswith("#"):
            return line[: m.start()].rstrip()
    return line


def test_the_corpus_is_large():
    assert len(SOURCES) > 150 and sum(p.parts[-2] == "models" for p in SOURCES) == 21


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_idempotent_same_meaning_comments_kept_and_width(path):
    text = path.read_text("utf-8")
    once = format_source(text, str(path))
    assert format_source(once, str(path)) == once
    assert _shape(parse(once, str(path)).decls) == _shape(parse(text, str(path)).decls)
    assert comments(once) == comments(text)
    assert once.endswith("\n") and not once.endswith("\n\n")
    for number, line in enumerate(once.split("\n"), 1):
        assert line == line.rstrip(), f"trailing spaces on line {number}"
        code = code_of(line)
        # Longer only for a comment, or code broken at the last bracket it could break at.
        assert len(code) <= WIDTH or code.endswith(("(", "[", "{")), f"line {number}: {line}"


def _models(path: Path) -> list[str]:
    tree = parse(path.read_text("utf-8"), str(path))
    return [d.name.id for d in tree.decls if isinstance(d, ast.Model)]


def _ir(path: Path, model: str) -> str:
    """The printed IR of `model` (source locations left out: the layout moves them), or
    its diagnostics' codes and messages."""
    summary = check_file(str(path), model)
    if not summary.ok:
        return "\n".join(f"{d.code}: {d.message}" for d in summary.diagnostics)
    return re.sub(r"  # \S+:\d+:\d+$", "", print_ir(summary.instance), flags=re.M)


@pytest.mark.parametrize("folder", CHECKED)
def test_the_ir_of_every_model_is_unchanged(folder, tmp_path):
    shutil.copytree(ROOT / folder, tmp_path / folder)
    assert main(["fmt", str(tmp_path / folder)]) == 0
    assert main(["fmt", "--check", str(tmp_path / folder)]) == 0
    paths = sorted((ROOT / folder).glob("*.dnet"))
    printed = 0  # models with an IR (the others compare their diagnostics)
    for path in paths:
        for model in _models(path):
            before = _ir(path, model)
            assert _ir(tmp_path / folder / path.name, model) == before, f"{path.name}: {model}"
            printed += before.startswith("model ")
    assert printed >= len(paths) // 2


def _respaced(text: str) -> str:
    """`text` with the spaces between tokens changed (none where two words would merge,
    three elsewhere): the same line breaks and tokens."""
    pieces = re.findall(r'"(?:[^"\\\n]|\\.)*"|`[^`\n]*`|#[^\n]*|\n|[ \t]+|\w+|\S', text)
    out: list[str] = []
    for piece in pieces:
        if piece.isspace() and piece != "\n":
            word = out and (out[-1][-1:].isalnum() or out[-1][-1:] in '_"`')
            out.append(" " if word else "   ")
        else:
            out.append(piece)
    return "".join(out)


@pytest.mark.parametrize("path", SOURCES[::4], ids=_rel)
def test_the_spacing_of_the_input_does_not_matter(path):
    text = path.read_text("utf-8")
    ugly = _respaced(text)
    assert ugly != text or " " not in text
    # Only where a trailing comment starts may differ (its column is kept when possible).
    same = [re.sub(r" +#", " #", format_source(t, str(path))) for t in (text, ugly)]
    assert same[0] == same[1]


CASES = {
    "spacing of operators, commas, colons and arrows": (
        """
        model  M( a:int=3 ,b : float=0.5 ){
          fc=Linear( a,bias = false )
          forward( x :f32[ B,a*2 ] , y=none )->f32[B , a]{
            z=-x+x*2-(x//3)**2@x
            return fc( z [ :, 1: ] ) if a>1 and not b is none else x|>relu |> fc
          }
        }
        """,
        """
        model M(a: int = 3, b: float = 0.5) {
            fc = Linear(a, bias=false)
            forward(x: f32[B, a * 2], y=none) -> f32[B, a] {
                z = -x + x * 2 - (x // 3) ** 2 @ x
                return fc(z[:, 1:]) if a > 1 and not b is none else x |> relu |> fc
            }
        }
        """,
    ),
    "declarations, one blank line around models, statements split at `;`": (
        """
        # header

        from "blocks.dnet"   import  BasicBlock ,Other as O
        import "x.dnet" as  x
        const  N=3
        model A() {
            forward(x: f32[B]) -> f32[B] { return x }
        }
        model B() {


            l = Linear(3);  m = Linear(4)



            forward(x: f32[B, 3]) -> f32[B, 4] {
                for i in range(N) { x = l(x) }
                if N > 2 { x = m(x) } else if N > 1 { x = m(x) } else { x = m(x) }
                return x
            }
        }
        """,
        """
        # header

        from "blocks.dnet" import BasicBlock, Other as O
        import "x.dnet" as x
        const N = 3

        model A() {
            forward(x: f32[B]) -> f32[B] {
                return x
            }
        }

        model B() {
            l = Linear(3)
            m = Linear(4)

            forward(x: f32[B, 3]) -> f32[B, 4] {
                for i in range(N) {
                    x = l(x)
                }
                if N > 2 {
                    x = m(x)
                } else if N > 1 {
                    x = m(x)
                } else {
                    x = m(x)
                }
                return x
            }
        }
        """,
    ),
    "comments: own lines, trailing ones keep their column, inside brackets": (
        """
        # about A
          # indented wrongly
        model A() {   # trailing the header
            # a layer
            fc = Linear(3)            # aligned
            fc2 = Linear(3)           # aligned too
            block = Sequential(Linear(3),  # the first
                Linear(4))
            forward(x: f32[B, 3]) -> f32[B, 4] {
                return block(x)
                # before the brace
            }
        }
        # the end
        """,
        """
        # about A
        # indented wrongly
        model A() {   # trailing the header
            # a layer
            fc = Linear(3)            # aligned
            fc2 = Linear(3)           # aligned too
            block = Sequential(Linear(3),  # the first
                               Linear(4))
            forward(x: f32[B, 3]) -> f32[B, 4] {
                return block(x)
                # before the brace
            }
        }
        # the end
        """,
    ),
    "comments after an opening bracket; parentheses around a whole value": (
        """
        model A() {
            forward(x: f32[B]) -> f32[B] {
                y = ((x))  # c
                z = (  # keep
                  x)
                w = f(  # keep
                  x, y)
                return (x)
            }
        }
        """,
        """
        model A() {
            forward(x: f32[B]) -> f32[B] {
                y = x      # c
                z = (  # keep
                    x
                )
                w = f(  # keep
                    x, y
                )
                return x
            }
        }
        """,
    ),
    "a long header fills its lines, aligned after the bracket": (
        """
        model Encoder(vocabulary_size: int = 30522, hidden_size: int = 768, layers: int = 12, heads: int = 12) {
            embeddings = Embeddings(vocabulary_size, hidden_size, max_positions=max_positions, type_vocab=type_vocab)
            forward(ids: i64[B, T], token_types: i64[B, T], attention_mask: bool[B, T]) -> (f32[B, T, hidden_size], f32[B, hidden_size]) {
                return ids
            }
        }
        """,
        """
        model Encoder(vocabulary_size: int = 30522, hidden_size: int = 768, layers: int = 12,
                      heads: int = 12) {
            embeddings = Embeddings(vocabulary_size, hidden_size, max_positions=max_positions,
                                    type_vocab=type_vocab)
            forward(ids: i64[B, T], token_types: i64[B, T],
                    attention_mask: bool[B, T]) -> (f32[B, T, hidden_size], f32[B, hidden_size]) {
                return ids
            }
        }
        """,
    ),
    "hanging brackets: a trailing comma keeps the source's lines; an item too long to align": (
        """
        const TABLE = [
            (1, 2), (3, 4),
            (5, 6)
            ,
        ]
        model A(width: int = 8) {
            block = Sequential(Conv2d(width, 7, padding=3, groups=width, init=trunc_normal(std=0.02), bias_init="zeros"), gelu)
            steps = Sequential(
                Linear(3),
                gelu,
            )
            named = Sequential({"a": Linear(3), "b": gelu,})
            blocks = Sequential(SomeVeryLongBlockName(width, width * 2, width * 4, dropout=0.1) for i in range(12))
            forward(x: f32[B, 3]) -> f32[B, 3] { return x }
        }
        """,
        """
        const TABLE = [
            (1, 2), (3, 4),
            (5, 6),
        ]

        model A(width: int = 8) {
            block = Sequential(
                Conv2d(width, 7, padding=3, groups=width, init=trunc_normal(std=0.02), bias_init="zeros"),
                gelu,
            )
            steps = Sequential(
                Linear(3),
                gelu,
            )
            named = Sequential({
                "a": Linear(3), "b": gelu,
            })
            blocks = Sequential(
                SomeVeryLongBlockName(width, width * 2, width * 4, dropout=0.1) for i in range(12)
            )
            forward(x: f32[B, 3]) -> f32[B, 3] {
                return x
            }
        }
        """,
    ),
    "breaks inside brackets: before `else`, `|>` and operators; values in parentheses": (
        """
        model A(t: int = 6) {
            conv = Sequential(Sequential(Conv2d(32, kernel=3, stride=2, padding=1, bias=false), BatchNorm(), relu6) if i == 0 else Sequential(Conv2d(1280, kernel=1, bias=false), BatchNorm()) for i in range(19))
            forward(x: f32[B, 3]) -> f32[B, 3] {
                y = (x)
                z = first_long_function_name(x) + second_long_function_name(x) * third_long_function_name(x) + x
                return concat([x |> first_long_function_name |> second_long_function_name |> third_long_function_name], 1)
            }
        }
        """,
        """
        model A(t: int = 6) {
            conv = Sequential(
                Sequential(Conv2d(32, kernel=3, stride=2, padding=1, bias=false), BatchNorm(),
                           relu6) if i == 0
                else Sequential(Conv2d(1280, kernel=1, bias=false), BatchNorm())
                for i in range(19)
            )
            forward(x: f32[B, 3]) -> f32[B, 3] {
                y = x
                z = (
                    first_long_function_name(x)
                    + second_long_function_name(x) * third_long_function_name(x)
                    + x
                )
                return concat(
                    [x
                         |> first_long_function_name
                         |> second_long_function_name
                         |> third_long_function_name],
                    1,
                )
            }
        }
        """,
    ),
    "literals, quoted names, f-strings, slices, tuples and train declarations as written": (
        """
        model `model`() {
            t = (1 ,)
            u = ( 1.50e-3,2 ,)
            s = Sequential({f"layer{ i+1 }":Linear(3) for i in range(2)})
            forward(x: f32[B, 3, _]) -> (out: f32[B, 3],) { return x[ :, 0 ] if true else x[::2, none] }
        }
        train `model` {
            optimizer=SGD(lr = 0.1)
            loss(out: f32[B, 3], y: f32[B, 3]) -> f32[] { return mean((out-y)**2, axis=(0, 1)) }
        }
        """,
        """
        model `model`() {
            t = (1,)
            u = (
                1.50e-3, 2,
            )
            s = Sequential({f"layer{ i+1 }": Linear(3) for i in range(2)})
            forward(x: f32[B, 3, _]) -> (out: f32[B, 3],) {
                return x[:, 0] if true else x[::2, none]
            }
        }

        train `model` {
            optimizer = SGD(lr=0.1)
            loss(out: f32[B, 3], y: f32[B, 3]) -> f32[] {
                return mean((out - y) ** 2, axis=(0, 1))
            }
        }
        """,
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_canonical_text_of_each_construct(name):
    ugly, expected = (textwrap.dedent(t).lstrip("\n") for t in CASES[name])
    try:
        parse(ugly, "case.dnet")
    except DualnetError as exc:  # a case that does not parse says so, not "different text"
        pytest.fail(str(exc))
    assert format_source(ugly, "case.dnet") == expected
    assert format_source(expected, "case.dnet") == expected


def test_the_example_of_the_docs():
    text = (ROOT / "docs" / "formatting.md").read_text("utf-8")
    before, after = re.findall(r"```dnet\n(.*?)```", text, flags=re.S)
    assert before != after and format_source(before, "example.dnet") == after


def test_syntax_errors_raise_the_parsers_diagnostic():
    with pytest.raises(DualnetError) as info:
        format_source("model A( {\n", "bad.dnet")
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "E-SYNTAX" and diagnostic.span.file == "bad.dnet"
    assert diagnostic.span.line == 1


def test_an_empty_file_stays_empty_and_line_endings_become_newlines():
    assert format_source("", "e.dnet") == ""
    assert format_source("\n\n# only a comment\n\n", "e.dnet") == "# only a comment\n"
    text = "model A() {\r\n    forward(x: f32[B]) -> f32[B] {\r\n        return x  # ok\r\n    }\r\n}\r\n"
    assert format_source(text, "e.dnet") == text.replace("\r\n", "\n")


# ---------------------------------------------------------------- the command

UGLY = "model A(){\n  forward(x:f32[B])->f32[B]{ return x }\n}\n"
CANONICAL = format_source(UGLY, "a.dnet")


def test_check_lists_what_would_change_and_changes_nothing(tmp_path, capsys):
    ugly, fine = tmp_path / "ugly.dnet", tmp_path / "fine.dnet"
    ugly.write_text(UGLY)
    fine.write_text(CANONICAL)
    assert main(["fmt", "--check", str(ugly), str(fine)]) == 1
    out, err = capsys.readouterr()
    assert out == f"would reformat {ugly}\n"
    assert "1 file would be reformatted, 1 unchanged" in err
    assert ugly.read_text() == UGLY and fine.read_text() == CANONICAL
    assert main(["fmt", "--check", str(fine)]) == 0


def test_fmt_rewrites_in_place_and_a_folder_stands_for_its_dnet_files(tmp_path, capsys):
    (tmp_path / "sub" / ".hidden").mkdir(parents=True)
    files = [
        tmp_path / "a.dnet",
        tmp_path / "sub" / "b.dnet",
        tmp_path / "sub" / ".hidden" / "c.dnet",
    ]
    for f in files:
        f.write_text(UGLY)
    (tmp_path / "notes.txt").write_text(UGLY)
    assert main(["fmt", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"reformatted {files[0]}",
        f"reformatted {files[1]}",
    ]
    assert [f.read_text() for f in files] == [CANONICAL, CANONICAL, UGLY]
    assert (tmp_path / "notes.txt").read_text() == UGLY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dnet", "notes.txt", "sub"]
    assert main(["fmt", "--check", str(tmp_path)]) == 0


def test_bad_files_get_their_diagnostic_and_are_left_untouched(tmp_path, capsys):
    bad, good = tmp_path / "bad.dnet", tmp_path / "good.dnet"
    bad.write_text("model A( {\n")
    good.write_text(UGLY)
    missing = tmp_path / "missing.dnet"
    assert main(["fmt", str(bad), str(missing), str(good)]) == 1
    err = capsys.readouterr().err
    assert "error[E-SYNTAX]" in err and f"--> {bad}:1:" in err
    assert f"error[E-IO]: no such file or directory: {missing}" in err
    assert "1 file reformatted, 0 unchanged, 2 failed" in err
    assert bad.read_text() == "model A( {\n" and good.read_text() == CANONICAL
    (tmp_path / "latin1.dnet").write_bytes(b"# caf\xe9\n")
    assert main(["fmt", str(tmp_path / "latin1.dnet")]) == 1
    assert "error[E-ENCODING]" in capsys.readouterr().err


def test_standard_input_to_standard_output(tmp_path):
    result = run_cli(
        ["fmt", "-"],
        cwd=tmp_path,
        prelude=f"import sys, io; sys.stdin = io.TextIOWrapper(io.BytesIO({UGLY.encode()!r}))",
    )
    assert (result.code, result.stdout, result.stderr) == (0, CANONICAL, "")
    check = run_cli(
        ["fmt", "--check", "-"],
        cwd=tmp_path,
        prelude=f"import sys, io; sys.stdin = io.TextIOWrapper(io.BytesIO({UGLY.encode()!r}))",
    )
    assert (check.code, check.stdout) == (1, "")


def test_a_link_keeps_pointing_at_its_formatted_target_and_files_count_once(tmp_path, capsys):
    target = tmp_path / "target.dnet"
    target.write_text(UGLY)
    (tmp_path / "link.dnet").symlink_to(target)
    assert main(["fmt", str(tmp_path / "link.dnet"), str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"reformatted {tmp_path / 'link.dnet'}\n"
    assert (tmp_path / "link.dnet").is_symlink() and target.read_text() == CANONICAL


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path, monkeypatch, capsys):
    path = tmp_path / "a.dnet"
    path.write_text(UGLY)

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dualnet.io.files.os.replace", refuse)
    assert main(["fmt", str(path)]) == 1
    assert "error[E-IO]" in capsys.readouterr().err
    assert path.read_text() == UGLY and [p.name for p in tmp_path.iterdir()] == ["a.dnet"]


def test_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fmt"])
    assert info.value.code == 2
    assert "PATH" in capsys.readouterr().err


def test_formatting_the_zoo_costs_little_cpu():
    paths = sorted(ROOT.glob("models/*.dnet"))
    texts = [(p.read_text("utf-8"), str(p)) for p in paths]
    start = time.process_time()
    changed = sum(format_source(text, name) != text for text, name in texts)
    in_process = time.process_time() - start
    assert in_process < CPU_LIMIT, f"{in_process:.2f} s of CPU for the zoo"
    result = run_cli(["fmt", "--check", "models"], cwd=ROOT)
    assert_clean(result, code=1 if changed else 0)
    assert f"{len(texts) - changed} unchanged" in result.stderr
    assert len(result.stdout.splitlines()) == changed

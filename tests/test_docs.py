"""The documentation site (mkdocs.yml, docs/): it builds with warnings as errors, and every
code example in it runs. Per page, in order, in one temporary directory:
- a ```dnet block passes `check`; it is written to the file the line before it names ("Save
  this as `tiny.dnet`:"), else to a file of its own; a ```{.dnet .fragment} is written but
  not checked;
- the ```python blocks run, one namespace per page, as `python` run in that directory;
- each `$ dualnet ...` line of a ```console block runs and exits 0, or N where the line ends
  in `# exits N`, and the lines shown below it appear in its output in that order (a line
  `...` stands for lines left out).
Other blocks (```sh, ```text, unlabelled) and a block marked `.fragment` (```{.python
.fragment}, ```{.console .fragment}) are not run."""

from __future__ import annotations

import html
import itertools
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from runcli import run_cli

import dualnet
from dualnet.cli import _parser
from dualnet.diagnostics import CODES
from dualnet.ops import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^( *)```([^\n]*)\n(.*?)^\1```$", re.S | re.M)  # also inside list items
FILE_NAME = re.compile(r"`([\w.-]+\.dnet)`.*:\s*$")
EXITS = re.compile(r"\s+# exits (\d+)$")


def blocks(page: Path) -> list[tuple[int, str, set[str], str, str | None]]:
    """(line, language, classes, text, the file name the line before names) of each fenced
    block of a page."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        info = m.group(2)
        classes = set(re.findall(r"\.([\w-]+)", info)) if info.startswith("{") else {info}
        language = re.match(r"\{?\.?([\w-]*)", info).group(1)
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        named = FILE_NAME.search(before)
        line = text.count("\n", 0, m.start()) + 1
        body = textwrap.dedent(m.group(3))
        out.append((line, language, classes, body, named.group(1) if named else None))
    return out


def run_console(block: str, where: str, cwd: Path) -> None:
    lines = block.rstrip("\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("$ ")] + [len(lines)]
    for start, end in itertools.pairwise(starts):
        command = lines[start][2:]
        expected = EXITS.search(command)
        argv = shlex.split(EXITS.sub("", command))
        assert argv[0] == "dualnet", f"{where}: only dualnet commands run: {command}"
        result = run_cli(argv[1:], cwd)
        output = (result.stdout + result.stderr).split("\n")
        code = int(expected.group(1)) if expected else 0
        assert result.code == code, f"{where}: `{command}` exited {result.code}:\n" + "\n".join(
            output
        )
        shown = [line for line in lines[start + 1 : end] if line.strip()]
        at = 0
        for line in shown:
            if line == "...":
                continue
            found = [i for i, out in enumerate(output[at:], at) if out.rstrip() == line.rstrip()]
            assert found, f"{where}: `{command}` did not print {line!r}:\n" + "\n".join(output)
            at = found[0] + 1


@pytest.fixture
def page_dir(tmp_path, monkeypatch):
    """The working directory of a page's examples, first on sys.path as for `python` run
    there; the modules imported from it are forgotten afterwards (`out` is a common name)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None) or str(getattr(module, "__path__", ""))
        if str(tmp_path) in where:
            del sys.modules[name]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_run(page, page_dir):
    namespace = {"__name__": "__main__"}
    found = blocks(page)
    fences = re.findall(r"^ *```", page.read_text(encoding="utf-8"), re.M)
    assert len(fences) == 2 * len(found), f"{page.name}: a fence is not closed"
    for n, (line, language, classes, text, name) in enumerate(found):
        where = f"{page.name}:{line}"
        if language == "dnet":
            path = page_dir / (name or f"block_{n}.dnet")
            path.write_text(text, encoding="utf-8")
            if "fragment" in classes:  # written (a console block may use it), not checked
                continue
            summary = dualnet.check_file(str(path))
            assert summary.ok, f"{where}: " + "; ".join(
                f"{d.code}: {d.message}" for d in summary.diagnostics
            )
        elif "fragment" in classes:
            continue
        elif language == "python":
            exec(compile(text, where, "exec"), namespace)
        elif language == "console":
            run_console(text, where, page_dir)


# ---------------------------------------------------------------- the site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built as `make docs` builds it (warnings are errors)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert build.returncode == 0, build.stderr
    return out


def headings(page: Path, level: int) -> list[str]:
    found = re.findall(rf"<h{level} id=\"[^\"]*\">(.*?)</h{level}>", page.read_text(), re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", h)).strip() for h in found]


def test_ops_page_lists_the_registry(site):
    assert headings(site / "ops" / "index.html", 2) == list(REGISTRY)


def test_cli_page_lists_every_subcommand(site):
    parser = _parser()
    (commands,) = (a.choices for a in parser._actions if a.dest == "command")
    page = (site / "cli" / "index.html").read_text()
    assert headings(site / "cli" / "index.html", 2) == list(commands)
    for name, sub in commands.items():  # every option of every subcommand but --help
        for action in sub._actions:
            for flag in action.option_strings if action.dest != "help" else ():
                assert html.escape(flag) in page, (name, flag)


# ---------------------------------------------------------------- the diagnostics catalogue


def test_diagnostics_table_is_the_catalogue():
    """docs/diagnostics.md's table of codes is `CODES`, in its order, with its meanings."""
    doc = (DOCS / "diagnostics.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| \[`(E-[A-Z-]+)`\]\(#([\w-]+)\) \| (.*) \|$", doc, re.M)
    assert [(code, meaning) for code, _, meaning in rows] == list(CODES.items())
    assert all(anchor == code.lower() for code, anchor, _ in rows)


def test_every_code_in_the_source_is_catalogued():
    """Each diagnostic code dualnet's source writes is in `CODES` (and so documented)."""
    used = set()
    for path in Path(dualnet.__file__).parent.rglob("*.py"):
        used |= set(re.findall(r"\"(E-[A-Z][A-Z-]*)\"", path.read_text(encoding="utf-8")))
    assert used and used <= set(CODES), sorted(used - set(CODES))

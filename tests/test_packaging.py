"""Packaging: the wheel ships the grammar inside the package and the console script.

Builds the real artifacts with `python -m build --no-isolation` (hatchling and build
come with the `test` extra), then inspects the archives.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GRAMMAR = ROOT / "grammar" / "dnet.lark"


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    outdir = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--sdist",
            "--wheel",
            "--outdir",
            str(outdir),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"build failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = sorted(outdir.glob("dualnet-*.whl"))
    sdists = sorted(outdir.glob("dualnet-*.tar.gz"))
    assert len(wheels) == 1, wheels
    assert len(sdists) == 1, sdists
    return {"wheel": wheels[0], "sdist": sdists[0]}


def test_wheel_ships_grammar_inside_package(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = whl.namelist()
        assert names.count("dualnet/dnet.lark") == 1, "grammar missing or duplicated in wheel"
        assert whl.read("dualnet/dnet.lark") == GRAMMAR.read_bytes()
        assert "dualnet/__init__.py" in names
        # the runtime helpers are read from their modules' text (not their ruff settings)
        for name in ("torch_helpers.py", "keras_helpers.py", "keras_optimizers.py", "ruff.toml"):
            assert (f"dualnet/backends/runtime/{name}" in names) == name.endswith(".py")
        # only the package (plus metadata) goes into the wheel
        top = {n.split("/", 1)[0] for n in names}
        assert top == {"dualnet", "dualnet-0.1.0.dist-info"}, top


def test_wheel_declares_console_script(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as whl:
        entry_points = whl.read("dualnet-0.1.0.dist-info/entry_points.txt").decode()
        metadata = whl.read("dualnet-0.1.0.dist-info/METADATA").decode()
    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    assert parser["console_scripts"]["dualnet"].strip() == "dualnet.cli:main"
    assert "\nVersion: 0.1.0\n" in metadata
    # the console script target exists in the source tree
    assert (ROOT / "dualnet" / "cli.py").is_file()


def test_sdist_has_sources_grammar_models_tests(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for required in (
        "pyproject.toml",
        "README.md",
        "grammar/dnet.lark",
        "dualnet/__init__.py",
        "models/lenet5.dnet",
        "tests/test_packaging.py",
        "mkdocs.yml",
        "scripts/docs/hooks.py",
    ):
        assert required in names, f"{required} missing from sdist"

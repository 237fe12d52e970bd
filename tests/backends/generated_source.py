"""Checks every source backend's generated files share: ruff-clean under a user's default
settings, unchanged by `ruff format`, byte-identical across processes, and equal to the
reviewed copies in tests/golden/ (DUALNET_UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def assert_ruff_clean(files: list[Path]) -> None:
    """ruff's default settings, as in a user's project: lint clean, and `ruff format` leaves
    every file as it is."""
    names = sorted(str(p) for p in files)
    lint = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--isolated",
            "--extend-select",
            "B,W",
            *names,
        ],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    fmt = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--no-cache",
            "--isolated",
            "--check",
            "--diff",
            *names,
        ],
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout


def compile_elsewhere(model: Path, target: str, out_dir: Path, hash_seed: str) -> Path:
    """`dualnet compile` in another process, directory and PYTHONHASHSEED."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dualnet",
            "compile",
            str(model),
            "--target",
            target,
            "-o",
            str(out_dir),
        ],
        check=True,
        cwd=out_dir.parent,
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    return out_dir / f"{model.stem}_{target}.py"


def assert_matches_golden(text: str, name: str) -> None:
    golden = ROOT / "tests" / "golden" / f"{name}.py.txt"
    if os.environ.get("DUALNET_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()

"""Shared test helpers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import dualnet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def check_source(tmp_path):
    """Write `text` to a .dnet file (plus any `extra` files) and check it."""

    def run(text: str, model: str | None = None, extra: dict[str, str] | None = None, **hyper):
        for name, body in (extra or {}).items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(textwrap.dedent(body))
        path = tmp_path / "main.dnet"
        path.write_text(textwrap.dedent(text))
        return dualnet.check_file(str(path), model, hyper=hyper or None)

    return run


def codes(summary) -> list[str]:
    return [d.code for d in summary.diagnostics]

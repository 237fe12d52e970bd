"""ONNX's own node test cases, translated to .dnet, through the PyTorch, Keras and ONNX
backends (the translation rules, exclusions and loosened tolerances are in
`onnx_conformance.py`). `pytest -s -k coverage` prints the coverage table.
"""

from __future__ import annotations

import functools

import onnx_conformance as oc
import pytest

# ONNX cases dualnet expresses: raise it as coverage grows, never lower it. (It went from 315
# to 310 once, by a language decision: dualnet tensors have no zero-sized axes, issue 12.)
MIN_MATCHED = 310

CASES = {case.name: case for case in oc.matched_cases()}


@functools.cache
def _results(name: str) -> dict:
    """Every backend's outputs for one case: built and run once, shared by its tests."""
    return oc.run_case(CASES[name])


def _check(name: str, backend: str) -> None:
    got = _results(name)[backend]
    if isinstance(got, Exception):
        raise got
    oc.compare(CASES[name], got)


def _params():
    for name in CASES:
        for backend in oc.BACKENDS:
            reason = oc.KNOWN_FAILURES.get((name, backend))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(name, backend, marks=marks, id=f"{name}-{backend}")


@pytest.mark.parametrize(("name", "backend"), list(_params()))
def test_case_matches_onnx(name, backend):
    _check(name, backend)


def _passes(name: str, backend: str) -> bool:
    try:
        _check(name, backend)
    except Exception:  # any failure counts as not passing in the table
        return False
    return True


def test_coverage_table():
    passing = {b: {name for name in CASES if _passes(name, b)} for b in oc.BACKENDS}
    print("\n" + oc.coverage_table(passing))
    assert len(CASES) >= MIN_MATCHED, f"only {len(CASES)} ONNX cases matched"
    documented = {name for name, _ in oc.KNOWN_FAILURES} | set(oc.LOOSENED)
    assert documented <= set(CASES), f"stale entries: {sorted(documented - set(CASES))}"

"""Differential fuzzing (issue 6): random valid programs, and every program the fuzzer
found a bug with (tests/fuzz_regressions), agree across PyTorch, Keras and ONNX Runtime.
Many more programs: `python benchmarks/fuzz.py --examples N`."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from dualnet import fuzzing, parity
from dualnet.ir.dims import substitute

REGRESSIONS = sorted((Path(__file__).parent / "fuzz_regressions").glob("*.dnet"))
FIXED = settings(database=None, deadline=None, derandomize=True,
                 suppress_health_check=list(HealthCheck))


@settings(FIXED, max_examples=10)
@given(fuzzing.programs())
def test_random_programs_agree_across_backends(case):
    outcome = fuzzing.run_case(case)
    assert outcome.rows and not outcome.failures, f"{case.source}\n{outcome.failures}"


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.stem)
def test_each_regression_program_agrees_across_backends(path):
    outcome = fuzzing.run_case(fuzzing.read_case(path.read_text()))
    assert outcome.rows and not outcome.failures, outcome.failures


@settings(FIXED, max_examples=300)
@given(fuzzing.programs())
def test_generated_programs_check_to_the_shapes_the_generator_expects(case):
    with fuzzing.loaded(case) as program:  # a DualnetError here is a generator bug
        outputs = program.check().graph.outputs
    shapes = [tuple(substitute(d, case.dims) for d in v.type.shape) for v in outputs]
    assert shapes == list(case.shapes)


SOURCE = """\
model Fuzz() {
    fc = Linear(3)
    forward(x: f32[B, 4]) -> f32[B, 3] {
        return fc(x)
    }
}
"""


def test_a_drifting_backend_or_a_wrong_shape_is_a_failure(monkeypatch):
    assert not fuzzing.run_case(fuzzing.Case(SOURCE, {"B": 2}, ((2, 3),))).failures
    wrong = fuzzing.run_case(fuzzing.Case(SOURCE, {"B": 2}, ((2, 4),))).failures
    assert {r.pair[0] for r in wrong} == {"expected"}
    real = parity.run

    def drifting(program, model, backend, inputs, *args, **kwargs):
        outputs, where = real(program, model, backend, inputs, *args, **kwargs)
        return ([o + 0.01 for o in outputs] if backend == "onnx" else outputs), where

    monkeypatch.setattr(parity, "run", drifting)
    drift = fuzzing.run_case(fuzzing.Case(SOURCE, {"B": 2}, ((2, 3),))).failures
    assert {r.pair for r in drift} == {("torch", "onnx"), ("keras", "onnx")}


def test_a_case_survives_its_file_format():
    for train in (False, True):
        case = fuzzing.Case(SOURCE, {"B": 2, "T": 5}, (), train)
        again = fuzzing.read_case(fuzzing.case_text(case, "a note\non two lines"))
        assert (again.dims, again.train) == (case.dims, train)
        assert again.source.startswith("# a note\n# on two lines\n# dims: B=2,T=5\n")
        assert again.source.endswith(SOURCE)

"""Programs that `check` accepts compile in every backend and compute the same numbers
(issue 11): each program in tests/programs/ was written wrongly, crashed or was refused by a
backend before; now PyTorch, Keras and ONNX Runtime agree on it within 1e-5, and every
generated model holds exactly the checked model's parameters (the self-check of
`dualnet.load(...).torch()/.keras()`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dualnet.verify import fuzzing

PROGRAMS = sorted((Path(__file__).parent / "programs").glob("*.dnet"))
TOLERANCE = 1e-5


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.stem)
def test_program_agrees_across_backends(path):
    outcome = fuzzing.run_case(fuzzing.read_case(path))
    assert outcome.rows
    worst = max(outcome.rows, key=lambda r: r.max_rel)
    assert worst.max_rel <= TOLERANCE, worst

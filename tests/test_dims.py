"""Symbolic dimensions: canonical forms, floor division, substitution."""

from hypothesis import given
from hypothesis import strategies as st

from dualnet.ir.dims import (
    Dim,
    equal_everywhere,
    extremum,
    floordiv,
    lower_bound,
    mod,
    substitute,
    sym,
)

B, H, T = sym("B"), sym("H"), sym("T")


def test_constants_collapse_to_int():
    assert H - H == 0
    assert isinstance((H + 3) - H, int)


def test_equal_expressions_are_equal_and_hash_equal():
    a, b = (H - 1) // 2 + 1, (H + 1) // 2
    assert a == b and hash(a) == hash(b)
    assert 2 * T + B == B + T * 2


def test_nested_floor_division_merges():
    assert (H // 2) // 2 == H // 4
    assert (((H - 1) // 2 + 1) - 1) // 2 + 1 == (H + 3) // 4


def test_exact_division():
    assert (4 * H) // 2 == 2 * H
    assert (B * T) // T == B
    assert (2 * H + 2) // 4 == (H + 1) // 2


def test_common_factor_of_the_sizes_leaves_the_divisor():
    """(g*a + c) // (g*b) == (a + c // g) // b: the constant need not share the factor."""
    assert (8 * H + 15) // 16 == (H + 1) // 2  # fuzzer, seed 8001
    assert (6 * H * T + 4 * B - 7) // 4 == (3 * H * T + 2 * B - 4) // 2


def test_printing():
    assert str(H // 2) == "H // 2"
    assert str((H + 1) // 2) == "(H + 1) // 2"
    assert str(2 * T + 1) == "2 * T + 1"
    assert str(B * T - 3) == "B * T - 3"
    assert str(-H) == "-H"


def test_substitute():
    assert substitute((H - 1) // 2 + 1, {"H": 224}) == 112
    assert substitute(B * T + H, {"H": T}) == B * T + T
    assert substitute(H // 2, {"H": 7}) == 3


def test_division_by_zero_raises():
    import pytest

    with pytest.raises(ZeroDivisionError):
        floordiv(H, 0)


@given(
    st.integers(-50, 50),
    st.integers(-50, 50),
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(0, 400),
)
def test_floor_division_agrees_with_integers(a, b, k1, k2, h):
    """Simplified forms give the same numbers as Python's // for every H."""
    expr = ((a * H + b) // k1 + a) // k2
    direct = ((a * h + b) // k1 + a) // k2
    assert substitute(expr, {"H": h}) == direct


@given(st.integers(-20, 20), st.integers(-20, 20), st.integers(0, 50), st.integers(0, 50))
def test_polynomial_arithmetic_agrees(a, b, t, h):
    expr = (a * T + b) * (H - a) - T * H
    assert substitute(expr, {"T": t, "H": h}) == (a * t + b) * (h - a) - t * h
    assert isinstance(expr, Dim | int)


def test_a_polynomial_divides_exactly():
    """(fuzzer, seed 9102) a reshape's -1 over a product written out."""
    w = (T + 1) // 2
    assert floordiv(B * (H + 4) * (w + 2), (H + 4) * (w + 2)) == B
    assert floordiv(6 * B * H + 24 * B, 2 * H + 8) == 3 * B
    assert isinstance(floordiv(B * H + 4 * B + 1, H + 4), Dim)  # a remainder: not exact
    assert isinstance(floordiv(B * H + 4 * B, 2 * H + 8), Dim)  # B / 2: not an integer


def test_sizes_equal_everywhere_though_written_differently():
    """(fuzzer, seed 9101) two canonical forms of one function of W; a near miss is not."""
    w = sym("W")
    assert equal_everywhere(((w + 2) // 4 + (w + 6) // 8 + 4) // 6, (w + 14) // 16)
    assert equal_everywhere((w + 1) // 2 + w // 2, w)
    assert not equal_everywhere(((w + 2) // 4 + (w + 6) // 8 + 4) // 6, (w + 15) // 16)
    assert not equal_everywhere((w + 1) // 2 + H // 2, w)
    assert not equal_everywhere(w * H + w // 2, H * w + (w + 1) // 2)  # not quasi-affine


@given(st.integers(-9, 9), st.integers(-9, 9), st.integers(1, 7), st.integers(1, 300))
def test_mod_agrees_with_python(a, b, k, h):
    assert substitute(mod(a * H + b, k), {"H": h}) == (a * h + b) % k


@given(
    st.integers(0, 5), st.integers(-9, 9), st.integers(0, 5), st.integers(-9, 9), st.integers(1, 60)
)
def test_extremum_holds_for_every_size(a, b, c, d, h):
    """A decided max/min is the larger/smaller for every size H ≥ 1; a lower bound holds."""
    x, y = a * H + b, c * H + d
    for kind, pick in (("max", max), ("min", min)):
        chosen = extremum(kind, [x, y])
        if chosen is not None:
            assert substitute(chosen, {"H": h}) == pick(a * h + b, c * h + d)
    low = lower_bound(x + (H + 3) // 2)
    if low is not None:
        assert substitute(x + (H + 3) // 2, {"H": h}) >= low


def test_extremum_decides_only_what_holds_everywhere():
    assert extremum("max", [H, 1]) == H
    assert extremum("max", [2 * H + 6, 7]) == 2 * H + 6
    assert extremum("min", [T + 2, T]) == T
    assert extremum("max", [H, 7]) is None  # H = 3 and H = 9 disagree
    assert extremum("max", [H // 2, 1]) is None  # H // 2 is 0 for H = 1
    assert lower_bound(H - T) is None

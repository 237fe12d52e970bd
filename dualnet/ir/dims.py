"""Symbolic dimensions: integer polynomials over named sizes and floor divisions.

A dimension is a plain `int` when known, else a `Dim` in canonical form (a sorted sum of
monomials with integer coefficients), so that equal expressions compare equal:
`(H - 1) // 2 + 1` and `(H + 1) // 2` are the same `Dim`.

A `Dim` has at most MAX_SIZE atoms (symbols and floor divisions, counted inside floor
divisions too): an expression that would grow past it — `(A + B) * (A + B) * ...` — raises
`DimTooLarge`, which the front end reports as E-LIMIT at the expression.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

from dualnet import budget
from dualnet.diagnostics import DualnetError, Span, error

MAX_SIZE = 256


class DimTooLarge(ArithmeticError):
    """A symbolic size would have more than MAX_SIZE atoms."""

    @staticmethod
    def at(span: Span | None) -> DualnetError:
        return error(
            "E-LIMIT",
            f"a symbolic size would grow past {MAX_SIZE} terms",
            span,
            "too complex",
            [
                "give the dimensions concrete sizes in the forward "
                "signature, or simplify the expression"
            ],
        )


class FloorDiv:
    """The atom `num // den` where neither side simplifies further."""

    __slots__ = ("num", "den", "_key", "size")

    def __init__(self, num: int | Dim, den: int | Dim):
        self.num, self.den = num, den
        self.size = 1 + _size(num) + _size(den)
        if self.size > MAX_SIZE:
            raise DimTooLarge
        self._key = (1, str(num), str(den))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FloorDiv) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __str__(self) -> str:
        return self.render(str)

    def render(self, name_of) -> str:
        num, den = (
            str(x) if isinstance(x, int) else x.render(name_of) for x in (self.num, self.den)
        )
        num = num if _is_simple(self.num) else f"({num})"
        # `a // (b // c)` keeps its brackets: `//` groups to the left
        den = den if _is_simple(self.den) and not _divides(self.den) else f"({den})"
        return f"{num} // {den}"


def _atom_key(atom) -> tuple:
    return (0, atom) if isinstance(atom, str) else atom._key


def _divides(d: int | Dim) -> bool:
    """Whether `d` is a single floor division."""
    return not isinstance(d, int) and isinstance(d.terms[0][0][0], FloorDiv)


def _is_simple(d: int | Dim) -> bool:
    return isinstance(d, int) or (
        len(d.terms) == 1 and d.terms[0][1] == 1 and len(d.terms[0][0]) == 1
    )


class Dim:
    """A non-constant symbolic size. Build with `sym(name)` and arithmetic, never directly."""

    __slots__ = ("terms", "_hash", "size")

    def __init__(self, terms: tuple):
        budget.sizes += 1
        size, keys = len(terms), []
        for mono, coeff in terms:  # one pass: the size, and the key the hash is taken of
            atoms = []
            for atom in mono:
                if atom.__class__ is str:
                    size += 1
                    atoms.append((0, atom))
                else:
                    size += atom.size
                    atoms.append(atom._key)
            keys.append((tuple(atoms), coeff))
        if size > MAX_SIZE:
            raise DimTooLarge
        self.size = size
        self.terms = terms  # ((monomial: tuple[atom, ...], coeff: int), ...), sorted
        self._hash = hash(tuple(keys))

    # -- construction
    @staticmethod
    def _make(poly: dict) -> int | Dim:
        items = sorted(
            ((m, c) for m, c in poly.items() if c),
            key=lambda mc: (-len(mc[0]), [_atom_key(a) for a in mc[0]]),
        )
        if not items:
            return 0
        if len(items) == 1 and items[0][0] == ():
            return items[0][1]
        return Dim(tuple(items))

    def _poly(self) -> dict:
        return dict(self.terms)

    # -- queries
    def symbols(self) -> set[str]:
        out: set[str] = set()
        for mono, _ in self.terms:
            for atom in mono:
                if isinstance(atom, str):
                    out.add(atom)
                else:
                    out |= symbols_of(atom.num) | symbols_of(atom.den)
        return out

    @property
    def symbol(self) -> str | None:
        """The name, when this size is exactly one symbol (`B`), else None."""
        if len(self.terms) == 1:
            mono, coeff = self.terms[0]
            if coeff == 1 and len(mono) == 1 and isinstance(mono[0], str):
                return mono[0]
        return None

    def constant(self) -> int:
        return dict(self.terms).get((), 0)

    # -- arithmetic
    def __add__(self, other: int | Dim) -> int | Dim:
        poly = self._poly()
        for m, c in _as_poly(other).items():
            poly[m] = poly.get(m, 0) + c
        return Dim._make(poly)

    __radd__ = __add__

    def __neg__(self) -> int | Dim:
        return Dim._make({m: -c for m, c in self.terms})

    def __sub__(self, other: int | Dim) -> int | Dim:
        return self + (-other)

    def __rsub__(self, other: int | Dim) -> int | Dim:
        return (-self) + other

    def __mul__(self, other: int | Dim) -> int | Dim:
        factor = _as_poly(other)
        if len(self.terms) * len(factor) > MAX_SIZE:  # refused before it is multiplied out
            raise DimTooLarge
        poly: dict = {}
        for m1, c1 in self.terms:
            for m2, c2 in factor.items():
                m = tuple(sorted(m1 + m2, key=_atom_key))
                poly[m] = poly.get(m, 0) + c1 * c2
        return Dim._make(poly)

    __rmul__ = __mul__

    def __floordiv__(self, other: int | Dim) -> int | Dim:
        return floordiv(self, other)

    def __rfloordiv__(self, other: int) -> int | Dim:
        return floordiv(other, self)

    # -- identity
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dim) and self.terms == other.terms

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Dim({self})"

    def __str__(self) -> str:
        return self.render(str)

    def render(self, name_of) -> str:
        """The expression as text, with each symbol written as `name_of(symbol)`."""
        parts: list[str] = []
        for mono, coeff in self.terms:
            # a floor division times a coefficient, or negated first, is parenthesised:
            # `2 * (H + 1) // 2` would read as (2 * (H + 1)) // 2, `-H // 2` as (-H) // 2
            grouped = len(mono) > 1 or abs(coeff) != 1 or (coeff < 0 and not parts)
            body = " * ".join(_atom_str(a, grouped, name_of) for a in mono)
            mag = abs(coeff)
            text = str(mag) if not mono else body if mag == 1 else f"{mag} * {body}"
            if not parts:
                parts.append(text if coeff > 0 else f"-{text}")
            else:
                parts.append(f"+ {text}" if coeff > 0 else f"- {text}")
        return " ".join(parts)


def _atom_str(atom, in_product: bool, name_of=str) -> str:
    if isinstance(atom, str):
        return name_of(atom)
    text = atom.render(name_of)
    return f"({text})" if in_product else text


def _size(d: int | Dim) -> int:
    return 0 if isinstance(d, int) else d.size


def _as_poly(d: int | Dim) -> dict:
    return {(): d} if isinstance(d, int) else d._poly()


def sym(name: str) -> Dim:
    return Dim((((name,), 1),))


def symbols_of(d: int | Dim) -> set[str]:
    return set() if isinstance(d, int) else d.symbols()


def floordiv(num: int | Dim, den: int | Dim) -> int | Dim:
    """Floor division in canonical form. Raises ZeroDivisionError for a zero divisor."""
    if hasattr(num, "expr"):  # a tagged size keeps its tag (ir/tagged.py)
        return num.__floordiv__(den)
    if hasattr(den, "expr"):
        return den.__rfloordiv__(num)
    if isinstance(den, int):
        if den == 0:
            raise ZeroDivisionError
        if isinstance(num, int):
            return num // den
        if den < 0:
            return floordiv(-num, -den)
        if den == 1:
            return num
        # (k*q + r) // k == q + r // k: pull whole multiples of k out of every term.
        quot, rest = {}, {}
        for mono, c in num.terms:
            q, r = divmod(c, den)
            quot[mono], rest[mono] = q, r
        whole, residual = Dim._make(quot), Dim._make(rest)
        if isinstance(residual, int):
            return whole + residual // den
        g = math.gcd(den, *(c for m, c in residual.terms if m))
        if g > 1:  # (g*a + c) // (g*b) == (a + c // g) // b for integer a
            residual, den = Dim._make({m: c // g for m, c in residual.terms}), den // g
            if den == 1:
                return whole + residual
        inner = _single_floordiv(residual)
        if inner is not None and isinstance(inner.den, int):
            # (x // a + c) // b == (x + a*c) // (a*b) for positive a, b
            c = residual.constant()
            return whole + floordiv(inner.num + inner.den * c, inner.den * den)
        return whole + Dim((((FloorDiv(residual, den),), 1),))
    if num == den:
        return 1
    quotient = _exact_monomial_quotient(num, den)
    if quotient is None:
        quotient = _exact_quotient(num, den)
    if quotient is not None:
        return quotient
    return Dim((((FloorDiv(num, den),), 1),))


def mod(num: int | Dim, den: int | Dim) -> int | Dim:
    """`num % den` with the divisor's sign, as Python's: num - (num // den) * den."""
    return num - floordiv(num, den) * den


def lower_bound(d: int | Dim) -> int | None:
    """The least value size `d` takes when every symbol is a size (≥ 1): proven for sums of
    products of symbols and floor divisions by positive constants with non-negative
    coefficients; None where no bound is proven."""
    if isinstance(d, int):
        return d
    total = 0
    for mono, coeff in d.terms:
        if not mono:
            total += coeff
            continue
        if coeff < 0:
            return None
        term = coeff
        for atom in mono:
            if isinstance(atom, FloorDiv):
                low = lower_bound(atom.num)
                if low is None or low < 0 or not isinstance(atom.den, int) or atom.den <= 0:
                    return None
                term *= low // atom.den
        total += term
    return total


def extremum(kind: str, sizes: list[int | Dim]) -> int | Dim | None:
    """`max(...)`/`min(...)` of sizes: the one no other exceeds (`max`) or undercuts (`min`)
    for every value of the symbols (sizes ≥ 1), the first such; None where it depends on
    the symbols' values (`max(H, 7)`)."""
    for i, a in enumerate(sizes):
        diffs = [(a - b) if kind == "max" else (b - a) for b in sizes]
        if all(_at_least_zero(x) for x in diffs):
            return sizes[i]
    return None


def _at_least_zero(d: int | Dim) -> bool:
    low = lower_bound(d)
    return low is not None and low >= 0


def _single_floordiv(d: Dim) -> FloorDiv | None:
    """The atom of `x // a + c` (one floor division with coefficient 1, plus a constant)."""
    rest = [(mono, c) for mono, c in d.terms if mono]
    if len(rest) == 1:
        mono, c = rest[0]
        if c == 1 and len(mono) == 1 and isinstance(mono[0], FloorDiv):
            return mono[0]
    return None


def _exact_monomial_quotient(num: int | Dim, den: Dim) -> int | Dim | None:
    """num / den when den is a single monomial dividing every term of num exactly."""
    if len(den.terms) != 1 or isinstance(num, int):
        return None
    dmono, dc = den.terms[0]
    out = {}
    for mono, c in num.terms:
        rest = list(mono)
        for atom in dmono:
            if atom not in rest:
                return None
            rest.remove(atom)
        if c % dc:
            return None
        out[tuple(rest)] = c // dc
    return Dim._make(out)


def _exact_quotient(num: int | Dim, den: Dim) -> int | Dim | None:
    """num / den when den divides num exactly as polynomials (atoms as variables) with an
    integer quotient: (B*H + 4*B) // (H + 4) is B. Long division by den's leading term in
    graded lexicographic order; None where a remainder is left."""
    if isinstance(num, int):
        return None
    atoms = sorted(
        {a for poly in (num, den) for mono, _ in poly.terms for a in mono}, key=_atom_key
    )

    def order(mono: tuple) -> tuple:
        return (len(mono), tuple(-mono.count(a) for a in atoms))

    divisor = den._poly()
    lead = min(divisor, key=order)
    rest, quotient = num._poly(), {}
    for _ in range(4 * len(num.terms) + 4):  # each step removes rest's leading term
        if not rest:
            return Dim._make(quotient)
        mono = min(rest, key=order)
        part = list(mono)
        for atom in lead:
            if atom not in part:
                return None
            part.remove(atom)
        if rest[mono] % divisor[lead]:
            return None
        factor, coeff = tuple(part), rest[mono] // divisor[lead]
        quotient[factor] = quotient.get(factor, 0) + coeff
        for m, c in divisor.items():
            key = tuple(sorted(factor + m, key=_atom_key))
            rest[key] = rest.get(key, 0) - coeff * c
            if not rest[key]:
                del rest[key]
    return None


MAX_PROOF_POINTS = 50_000  # evaluations `equal_everywhere` may spend on one proof


def equal_everywhere(a: int | Dim, b: int | Dim) -> bool:
    """Whether a == b for every integer value of their symbols, where the canonical forms
    differ (`((W + 2) // 4 + (W + 6) // 8 + 4) // 6` and `(W + 14) // 16`). Proven for
    quasi-affine sizes — integer multiples of symbols and of floor divisions of such sums
    by positive constants: with L the product of the divisors, a − b changes by a constant
    when any symbol grows by L, so being zero on a box of L + 1 consecutive values per symbol
    makes it zero everywhere. False where that is not proven (other forms, or a box of more
    than MAX_PROOF_POINTS points)."""
    if a == b:
        return True
    period = 1
    for d in (a, b):
        p = _period(d)
        if p is None:
            return False
        period *= p
    names = sorted(symbols_of(a) | symbols_of(b))
    if (period + 1) ** len(names) > MAX_PROOF_POINTS:
        return False
    for values in itertools.product(range(period + 1), repeat=len(names)):
        env = dict(zip(names, values, strict=True))
        if _value(a, env) != _value(b, env):
            return False
    return True


def _period(d: int | Dim) -> int | None:
    """The product of the divisors of a quasi-affine size, else None."""
    if isinstance(d, int):
        return 1
    period = 1
    for mono, _ in d.terms:
        if len(mono) > 1:
            return None
        for atom in mono:
            if isinstance(atom, FloorDiv):
                inner = _period(atom.num)
                if inner is None or not isinstance(atom.den, int) or atom.den <= 0:
                    return None
                period *= inner * atom.den
    return period


def _value(d: int | Dim, env: Mapping[str, int]) -> int:
    if isinstance(d, int):
        return d
    total = 0
    for mono, c in d.terms:
        term = c
        for atom in mono:
            term *= (
                env[atom]
                if isinstance(atom, str)
                else _value(atom.num, env) // _value(atom.den, env)
            )
        total += term
    return total


def substitute(d: int | Dim, env: Mapping[str, int | Dim]) -> int | Dim:
    """Replace symbols by sizes (ints or other dims) and re-simplify."""
    if isinstance(d, int):
        return d
    total: int | Dim = 0
    for mono, c in d.terms:
        term: int | Dim = c
        for atom in mono:
            if isinstance(atom, str):
                term = term * env.get(atom, sym(atom))
            else:
                term = term * floordiv(substitute(atom.num, env), substitute(atom.den, env))
        total = total + term
    return total

"""Line layout for generated Python: lines stay within LIMIT characters, split the way
`ruff format` (with its defaults) splits them, so generated files are stable under it.

A long line first loses its trailing comment to a line of its own above it. A long statement
is then split at its last bracket pair (a `def` at its parameters): the contents go on one
indented line if they fit, else one item per line with a trailing comma, recursively.
"""

from __future__ import annotations

from collections.abc import Iterator

LIMIT = 88  # ruff format's default
_PAIRS = {"(": ")", "[": "]", "{": "}"}
_CLAUSES = (" if ", " else ", " for ")


def layout(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        out.extend(_fit(line))
    return out


def scan(code: str) -> Iterator[tuple[int, str, int]]:
    """(index, character, bracket depth before it) for every character outside strings."""
    depth, quote, escaped = 0, None, False
    for i, ch in enumerate(code):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
            continue
        yield i, ch, depth
        if ch in _PAIRS:
            depth += 1
        elif ch in _PAIRS.values():
            depth -= 1


def _fit(line: str) -> list[str]:
    if len(line) <= LIMIT:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    code, comment = _split_comment(line.strip())
    lines = [f"{indent}# {comment}"] if comment else []
    return lines + _wrap(indent, code)


def _split_comment(code: str) -> tuple[str, str]:
    """Code and its trailing comment (a `#` outside strings)."""
    for i, ch, _ in scan(code):
        if ch == "#":
            return code[:i].rstrip(), code[i + 1 :].strip()
    return code, ""


def _wrap(indent: str, code: str) -> list[str]:
    if len(indent) + len(code) <= LIMIT:
        return [indent + code]
    inner_indent = indent + "    "
    head, value = _statement_value(code)
    if value is not None and len(_clauses(value)) > 1:
        # `x = a if c else b` / `return ...`: the value goes in brackets, a clause a line
        lines = [f"{indent}{head}("]
        for piece in _clauses(value):
            lines += _wrap(inner_indent, piece)
        return lines + [f"{indent})"]
    span = _def_parameters(code) if code.startswith("def ") else _outer_bracket(code)
    if span is None:
        return [indent + code]  # nothing to split at; rare and still valid Python
    start, end = span
    head, inner, tail = code[: start + 1], code[start + 1 : end], code[end:]
    parts = _top_level_split(inner)
    lines = [indent + head]
    single = len(parts) == 1 and inner.rstrip().endswith(",")  # a 1-tuple keeps its comma
    joined = ", ".join(parts) + ("," if single else "")
    if len(inner_indent) + len(joined) <= LIMIT:
        lines.append(inner_indent + joined)
    elif len(parts) == 1 and not single:
        for piece in _clauses(parts[0]):
            lines += _wrap(inner_indent, piece)
    else:
        for part in parts:
            lines += _wrap(inner_indent, part + ",")
    lines.append(indent + tail)
    return lines


def _statement_value(code: str) -> tuple[str, str | None]:
    """(`target = ` or `return `, value) for an assignment or return, else (code, None)."""
    if code.startswith("return "):
        return "return ", code[len("return ") :]
    for i, _, depth in scan(code):
        if depth == 0 and code.startswith(" = ", i):
            return code[: i + 3], code[i + 3 :]
    return code, None


def _def_parameters(code: str) -> tuple[int, int] | None:
    """The parameter list's brackets in `def name(...) -> ...:`."""
    start = code.index("(")
    for i, ch, depth in scan(code):
        if i > start and depth == 1 and ch == ")":
            return start, i
    return None


def _outer_bracket(code: str) -> tuple[int, int] | None:
    """The first opening bracket whose partner is the last bracket of the line."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    last = None
    for i, ch, _ in scan(code):
        if ch in _PAIRS:
            stack.append(i)
        elif ch in _PAIRS.values() and stack:
            pairs[stack.pop()] = i
            last = i
    for open_at in sorted(pairs):
        if pairs[open_at] == last and last - open_at > 1:
            return open_at, last
    return None


def _clauses(code: str) -> list[str]:
    """`a if c else b` (or `x for i in r`) as its clauses, when they are at the top level."""
    cuts = [
        i
        for i, _, depth in scan(code)
        if depth == 0 and any(code.startswith(w, i) for w in _CLAUSES)
    ]
    bounds = [0, *cuts, len(code)]
    return [code[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False)]


def _top_level_split(inner: str) -> list[str]:
    """The items of a bracket's contents, split at its top-level commas."""
    cuts = [i for i, ch, depth in scan(inner) if ch == "," and depth == 0]
    bounds = [-1, *cuts, len(inner)]
    parts = [inner[a + 1 : b].strip() for a, b in zip(bounds, bounds[1:], strict=False)]
    return [p for p in parts if p]

"""Line layout for generated Python: lines stay within LIMIT characters, split the way
`ruff format` (with its defaults) splits them, so generated files are stable under it.

A long line first loses its trailing comment to a line of its own above it. A long statement
is then split at its last bracket pair (a `def` at its parameters): the contents go on one
indented line if they fit, else one item per line with a trailing comma, recursively.
"""

from __future__ import annotations

LIMIT = 88  # ruff format's default
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def layout(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        out.extend(_fit(line))
    return out


def _fit(line: str) -> list[str]:
    if len(line) <= LIMIT:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    code, comment = _split_comment(line.strip())
    lines = [f"{indent}# {comment}"] if comment else []
    return lines + _wrap(indent, code)


def _split_comment(code: str) -> tuple[str, str]:
    """Code and its trailing comment (a `#` outside strings)."""
    quote = None
    for i, ch in enumerate(code):
        if quote:
            if ch == "\\":
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return code[:i].rstrip(), code[i + 1:].strip()
    return code, ""


def _wrap(indent: str, code: str) -> list[str]:
    if len(indent) + len(code) <= LIMIT:
        return [indent + code]
    head, value = _statement_value(code)
    if value is not None and len(_split_conditional(value)) > 1:
        # `x = a if c else b` / `return ...`: the value goes in brackets, a clause a line
        inner_indent = indent + "    "
        lines = [f"{indent}{head}("]
        for piece in _split_conditional(value):
            lines += _wrap(inner_indent, piece)
        return lines + [f"{indent})"]
    span = _def_parameters(code) if code.startswith("def ") else _outer_bracket(code)
    if span is None:
        return [indent + code]  # nothing to split at; rare and still valid Python
    start, end = span
    head, inner, tail = code[: start + 1], code[start + 1: end], code[end:]
    parts = _top_level_split(inner)
    inner_indent = indent + "    "
    lines = [indent + head]
    joined = ", ".join(parts)
    if len(inner_indent) + len(joined) <= LIMIT:
        lines.append(inner_indent + joined)
    elif len(parts) == 1:
        for piece in _split_conditional(parts[0]):
            lines += _wrap(inner_indent, piece)
    else:
        for part in parts:
            lines += _wrap(inner_indent, part + ",")
    lines.append(indent + tail)
    return lines


def _statement_value(code: str) -> tuple[str, str | None]:
    """(`target = ` or `return `, value) for an assignment or return, else (code, None)."""
    if code.startswith("return "):
        return "return ", code[len("return "):]
    depth, quote = 0, None
    for i, ch in enumerate(code):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in _PAIRS:
            depth += 1
        elif ch in _PAIRS.values():
            depth -= 1
        elif depth == 0 and code.startswith(" = ", i):
            return code[: i + 3], code[i + 3:]
    return code, None


def _def_parameters(code: str) -> tuple[int, int] | None:
    """The parameter list's brackets in `def name(...) -> ...:`."""
    start = code.index("(")
    depth = 0
    for i in range(start, len(code)):
        depth += code[i] in _PAIRS
        depth -= code[i] in _PAIRS.values()
        if depth == 0:
            return start, i
    return None


def _outer_bracket(code: str) -> tuple[int, int] | None:
    """The first opening bracket whose partner is the last bracket of the line."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    quote = None
    for i, ch in enumerate(code):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in _PAIRS:
            stack.append(i)
        elif ch in _PAIRS.values() and stack:
            pairs[stack.pop()] = i
    closers = [i for i, ch in enumerate(code) if ch in _PAIRS.values()]
    if not closers:
        return None
    last = max(closers)
    for open_at in sorted(pairs):
        if pairs[open_at] == last and last - open_at > 1:
            return open_at, last
    return None


def _split_conditional(code: str) -> list[str]:
    """`a if c else b` (or `x for i in r`) as its clauses, when they are at the top level."""
    depth, quote = 0, None
    cuts = []
    for i, ch in enumerate(code):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in _PAIRS:
            depth += 1
        elif ch in _PAIRS.values():
            depth -= 1
        elif depth == 0 and any(code.startswith(w, i) for w in (" if ", " else ", " for ")):
            cuts.append(i)
    if not cuts:
        return [code]
    bounds = [0, *cuts, len(code)]
    return [code[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False)]


def _top_level_split(inner: str) -> list[str]:
    parts, depth, quote, current = [], 0, None, []
    for ch in inner:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in _PAIRS:
            depth += 1
        elif ch in _PAIRS.values():
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    last = "".join(current).strip()
    if last:
        parts.append(last)
    return parts

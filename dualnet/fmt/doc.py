"""A Wadler-style document and its printer: text, line breaks that their group takes flat or
broken, indentation, and trailing comments written at the end of their line.

A group is printed flat when it fits in `WIDTH` columns together with what follows it up to
the next possible break (or, for a group made with `rest_flat`, up to the end of the line);
a group holding a hard line or a trailing comment is always broken."""

from __future__ import annotations

WIDTH = 100
INDENT = 4


class Doc:
    """A piece of a document; `hard` when it must be printed broken."""

    __slots__ = ("hard",)


class Line(Doc):
    """A line break; printed as `flat` in a flat group. Hard lines always break."""

    __slots__ = ("flat",)

    def __init__(self, flat: str, hard: bool = False):
        self.flat, self.hard = flat, hard


SOFT = Line("")
LINE = Line(" ")
HARD = Line("", hard=True)


def _hard(part) -> bool:
    return not isinstance(part, str) and part.hard


class Concat(Doc):
    __slots__ = ("parts",)

    def __init__(self, parts):
        self.parts = tuple(parts)
        self.hard = any(_hard(p) for p in self.parts)


class Group(Concat):
    """Parts printed flat if they fit, else with every line of theirs broken."""

    __slots__ = ("rest_flat",)

    def __init__(self, parts, rest_flat: bool = False):
        super().__init__(parts)
        self.rest_flat = rest_flat


class Indent(Concat):
    """Parts whose broken lines start INDENT columns further in."""

    __slots__ = ()


class IfBreak(Doc):
    """Text printed only when the enclosing group is broken (a trailing comma)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text, self.hard = text, False


class Comment(Doc):
    """A trailing comment: written at the end of the line it is on, at `column` when that
    leaves two spaces after the code and stays within WIDTH, else two spaces after it."""

    __slots__ = ("text", "column")

    def __init__(self, text: str, column: int):
        self.text, self.column, self.hard = text, column, True


def render(doc: Doc) -> str:
    """The document as text, lines without trailing spaces."""
    out: list[str] = []
    col = 0
    line_start = True  # the indentation is written with the line's first text
    pending: list[Comment] = []
    stack: list[tuple[int, bool, object]] = [(0, True, doc)]
    while stack:
        indent, broken, d = stack.pop()
        if isinstance(d, str):
            if d:
                if line_start:
                    out.append(" " * indent)
                    col, line_start = indent, False
                out.append(d)
                col += len(d)
        elif isinstance(d, Line):
            if broken or d.hard:
                for c in pending:
                    gap = (
                        c.column
                        if c.column >= col + 2 and c.column + len(c.text) <= WIDTH
                        else col + 2
                    )
                    out.append(" " * (gap - col) + c.text)
                    col = gap + len(c.text)
                pending.clear()
                out.append("\n")
                col, line_start = indent, True
            elif d.flat:
                stack.append((indent, broken, d.flat))
        elif isinstance(d, Group):
            flat = not d.hard and (not broken or _fits(d, stack, WIDTH - col, d.rest_flat))
            stack.extend((indent, not flat, p) for p in reversed(d.parts))
        elif isinstance(d, Indent):
            stack.extend((indent + INDENT, broken, p) for p in reversed(d.parts))
        elif isinstance(d, Concat):
            stack.extend((indent, broken, p) for p in reversed(d.parts))
        elif isinstance(d, IfBreak):
            if broken:
                stack.append((indent, broken, d.text))
        elif isinstance(d, Comment):
            if line_start:  # nothing on the line yet: keep the comment in it
                stack.append((indent, broken, d.text))
            else:
                pending.append(d)
    for c in pending:
        out.append("  " + c.text)
    return "".join(out)


def _fits(group: Group, rest: list, width: int, rest_flat: bool) -> bool:
    """Whether `group` flat, and what follows it up to the next line break, fit in `width`."""
    todo: list[tuple[bool, object]] = [(False, group)]
    index = len(rest)
    while width >= 0:
        if not todo:
            if index == 0:
                return True
            index -= 1
            _, broken, d = rest[index]
            todo.append((broken and not rest_flat, d))
        broken, d = todo.pop()
        if isinstance(d, str):
            width -= len(d)
        elif isinstance(d, Line):
            if d.hard or broken:
                return True
            width -= len(d.flat)
        elif isinstance(d, Concat):
            todo.extend((broken, p) for p in reversed(d.parts))
        elif isinstance(d, IfBreak) and broken:
            width -= len(d.text)
    return False

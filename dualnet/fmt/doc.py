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


class _Break(Doc):
    """Nothing, but its group is broken (a trailing comma in the source); and a rest of the
    line holding it does not fit flat."""

    __slots__ = ()

    def __init__(self):
        self.hard = True


BREAK = _Break()
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


class Align(Concat):
    """Parts whose broken lines start at the column where they start."""

    __slots__ = ()


class Fill(Concat):
    """Items with separators after all but the last: as many items a line as fit, the
    lines aligned (the house style of a long argument list)."""

    __slots__ = ("items", "seps", "rest_flat")

    def __init__(self, items: list, seps: list, rest_flat: bool = False):
        parts = [items[0]]
        for sep, item in zip(seps, items[1:], strict=True):
            parts += [sep, LINE, item]
        super().__init__(parts)
        self.items, self.seps, self.rest_flat = items, seps, rest_flat


class Bracket(Doc):
    """Items between brackets. Flat if they fit (with what follows: up to the next possible
    break, or with `rest_flat` up to the end of the line); else, as the house style writes
    them, filled and aligned after the opening bracket — or `hanging` (the items on indented
    lines of their own, the closing bracket on its own line) when it is `magic` (a trailing
    comma in the source, or comments before the closing bracket), when an item does not fit
    flat after the opening bracket, or (`rest_flat`) when the last item and the rest of the
    line would not. (`rest_flat` is dropped where the rest of the line cannot fit even after
    a hanging bracket: then a bracket further on breaks.)"""

    __slots__ = ("hanging", "head", "fill", "tail", "magic", "rest_flat")

    def __init__(self, hanging: Group, head, fill: Fill, tail, magic: bool, rest_flat: bool):
        self.hanging, self.head, self.fill, self.tail = hanging, head, fill, tail
        self.magic, self.rest_flat, self.hard = magic, rest_flat, hanging.hard


class Choice(Doc):
    """A statement's value: `plain`, or `parens` (the value between parentheses on lines of
    their own) when `plain` leaves a line longer than WIDTH and `parens` is narrower."""

    __slots__ = ("plain", "parens")

    def __init__(self, plain, parens):
        self.plain, self.parens, self.hard = plain, parens, _hard(plain)


class _FillStep:
    """Rendering a Fill: its item `i`, with the space or line break before it."""

    __slots__ = ("fill", "i")

    def __init__(self, fill: Fill, i: int):
        self.fill, self.i = fill, i


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


def render(doc: Doc, indent: int = 0, col: int = 0, comments: bool = True) -> str:
    """The document as text, lines without trailing spaces (from column `col`, its broken
    lines indented by `indent`; without its trailing comments unless `comments`)."""
    out: list[str] = []
    line_start = col == 0  # the indentation is written with the line's first text
    pending: list[Comment] = []
    stack: list[tuple[int, bool, object]] = [(indent, True, doc)]
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
        elif isinstance(d, Bracket):
            stack.extend(_bracket(d, indent, broken, col, stack))
        elif isinstance(d, Choice):
            here = indent if line_start else col
            plain = d.plain
            if not _fits_alone(plain, WIDTH - here):
                wide = _widest(plain, indent, here)
                if wide > WIDTH and _widest(d.parens, indent, here) < wide:
                    plain = d.parens
            stack.append((indent, True, plain))
        elif isinstance(d, _FillStep):
            stack.extend(_fill_step(d, indent, col, bool(pending), stack))
        elif isinstance(d, Indent):
            stack.extend((indent + INDENT, broken, p) for p in reversed(d.parts))
        elif isinstance(d, Align):
            here = indent if line_start else col
            stack.extend((here, broken, p) for p in reversed(d.parts))
        elif isinstance(d, Fill):
            here = indent if line_start else col
            stack.append((here, broken, _FillStep(d, 0)))
        elif isinstance(d, Concat):
            stack.extend((indent, broken, p) for p in reversed(d.parts))
        elif isinstance(d, IfBreak):
            if broken:
                stack.append((indent, broken, d.text))
        elif isinstance(d, Comment):
            if line_start:  # nothing on the line yet: keep the comment in it
                stack.append((indent, broken, d.text))
            elif comments:
                pending.append(d)
    for c in pending:
        out.append("  " + c.text)
    return "".join(out)


def _bracket(d: Bracket, indent: int, broken: bool, col: int, stack: list) -> list:
    """What to print for a Bracket, last first (see Bracket)."""
    rest_flat = d.rest_flat and _fits(Group([d.tail]), stack, WIDTH - indent, True)
    if not d.hard and (not broken or _fits(d.hanging, stack, WIDTH - col, rest_flat)):
        return [(indent, False, d.hanging)]
    hanging = [(indent, True, p) for p in reversed(d.hanging.parts)]
    if d.magic:
        return hanging
    column = col + _width(d.head)
    if indent + INDENT < column:
        for item in d.fill.items:
            if not _fits_alone(item, WIDTH - column - 1):
                return hanging
        last = d.fill.items[-1]
        if rest_flat and not _fits(Group([last, d.tail]), stack, WIDTH - column, True):
            return hanging  # a header whose last line would not fit
    return [(indent, True, p) for p in (d.tail, Align([d.fill]), d.head)]


def _fill_step(d: _FillStep, indent: int, col: int, pending: bool, stack: list) -> list:
    """Item `i` of a Fill on this line if it fits there (with its separator, or for the
    last item what follows it), else on the next; then the next step."""
    fill, i = d.fill, d.i
    item = fill.items[i]
    last = i == len(fill.items) - 1
    todo = [] if last else [(indent, True, _FillStep(fill, i + 1)), (indent, True, fill.seps[i])]

    def fits(width: int) -> bool:
        if last:
            return not _hard(item) and _fits(Group([item]), stack, width, fill.rest_flat)
        return _fits_alone(Concat([item, fill.seps[i]]), width)

    if i == 0:
        return [*todo, (indent, not fits(WIDTH - col), item)]
    if not pending and fits(WIDTH - col - 1):
        return [*todo, (indent, False, item), (indent, False, " ")]
    return [*todo, (indent, not fits(WIDTH - indent), item), (indent, True, HARD)]


def _widest(doc, indent: int, col: int) -> int:
    """The longest line of code of `doc` printed from column `col`."""
    first, *rest = render(doc, indent, col, comments=False).split("\n")
    return max([col + len(first), *map(len, rest)])


def _fits_alone(doc, width: int) -> bool:
    return not _hard(doc) and _fits(Group([doc]), [], width, False)


def _width(doc) -> int:
    """The flat width of a document without line breaks."""
    if isinstance(doc, str):
        return len(doc)
    return sum(_width(p) for p in doc.parts) if isinstance(doc, Concat) else 0


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
        elif isinstance(d, _Break) and rest_flat:
            return False
        elif isinstance(d, Concat):
            todo.extend((broken, p) for p in reversed(d.parts))
        elif isinstance(d, Bracket):
            todo.append((broken, d.hanging))
        elif isinstance(d, Choice):
            todo.append((broken, d.plain))
        elif isinstance(d, _FillStep):  # the rest of a Fill being printed
            fill = d.fill
            todo.extend((broken, p) for p in reversed(fill.parts[max(0, 3 * d.i - 1) :]))
        elif isinstance(d, IfBreak) and broken:
            width -= len(d.text)
    return False

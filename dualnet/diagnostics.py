"""Diagnostics: source spans, error codes, and rendering as in LANGUAGE.md §10."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_SHOWN = 100  # longest stretch of a source line shown under a diagnostic
MAX_TEXT = 40  # longest piece of user text (a string, a name, a path) quoted in a message
MAX_MESSAGE = 1000  # longest message, label or note; longer ones are cut in the middle


def shorten(text: str, limit: int = MAX_TEXT) -> str:
    """`text`, or its start and end around `…` with the length, when longer than `limit`."""
    if len(text) <= limit:
        return text
    keep = max(limit - 12, 8)
    return f"{text[: keep // 2 + keep % 2]}…{text[-(keep // 2) :]} ({len(text):,} characters)"


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file; lines and columns are 1-based, the end is exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return self.file if not self.line else f"{self.file}:{self.line}:{self.column}"


def whole_file(path) -> Span:
    """The location of a diagnostic about a file as a whole (a weight file, an input array,
    a file to write), shown as its path."""
    return Span(str(path), 0, 0, 0, 0)


def outside(where: str) -> Span:
    """The location of a diagnostic about something outside any file: a command-line option
    (`command line: --dims`), an environment variable, the Python environment, an API
    argument."""
    return Span(where, 0, 0, 0, 0)


def option(flag: str) -> Span:
    """A command-line option (also an argument of the Python API of that name)."""
    return outside(f"command line: {flag}")


# Every diagnostic code, with the one-line meaning documented in docs/diagnostics.md.
CODES: dict[str, str] = {
    "E-IO": "a file cannot be read or written",
    "E-ENCODING": "a source file is not valid UTF-8",
    "E-SYNTAX": "the text does not follow the grammar",
    "E-DEPTH": "expressions or blocks nested deeper than the compiler allows",
    "E-NAME": "a name is not defined",
    "E-REDEFINED": "a name is declared twice in the same scope",
    "E-IMPORT": "an import cannot be resolved, escapes the allowed directories, or is cyclic",
    "E-TYPE": "a value has the wrong kind or type (argument, hyperparameter, annotation)",
    "E-ARGS": "a call has missing, extra or duplicate arguments",
    "E-SHAPE": "tensor shapes do not fit together",
    "E-DTYPE": "tensor element types do not fit together",
    "E-ANNOTATION": "a declared type differs from the inferred type",
    "E-VALUE": "a compile-time value is out of range or invalid",
    "E-LIMIT": "a loop, repetition or size exceeds the compiler's limits",
    "E-MODEL": "a model is malformed (no forward, several forwards, unknown entry model)",
    "E-CONST": "a value that must be known at compile time is not",
    "E-UNUSED": "a layer's parameters never reach an output",
    "E-GRAD": "a trainable parameter's gradient path is cut by a non-differentiable op",
    "E-GRAD-DTYPE": "an integer or bool value sits on a gradient path",
    "E-BACKEND": "a model uses something a backend cannot write",
    "E-EXTRA": "an optional dependency the command needs is not installed",
    "E-INPUT": "the arrays given to `dualnet run` do not fit the model's inputs",
    "E-WEIGHTS": "a weight file does not fit the model (missing, extra, mis-shaped or "
    "mis-typed tensor)",
}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    span: Span | None
    label: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self):  # user text inside can be huge: no diagnostic echoes all of it
        for name in ("message", "label"):
            object.__setattr__(self, name, shorten(getattr(self, name), MAX_MESSAGE))
        object.__setattr__(self, "notes", tuple(shorten(n, MAX_MESSAGE) for n in self.notes))

    def to_json(self) -> dict:
        out: dict = {
            "code": self.code,
            "message": self.message,
            "label": self.label,
            "notes": list(self.notes),
        }
        if self.span is not None:
            out.update(
                file=self.span.file,
                line=self.span.line,
                column=self.span.column,
                end_line=self.span.end_line,
                end_column=self.span.end_column,
            )
        return out


class DualnetError(Exception):
    """One or more diagnostics that stop compilation."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        self.diagnostics = [diagnostics] if isinstance(diagnostics, Diagnostic) else diagnostics
        super().__init__("\n".join(d.message for d in self.diagnostics))


def error(
    code: str,
    message: str,
    span: Span | None,
    label: str = "",
    notes: tuple[str, ...] | list[str] = (),
) -> DualnetError:
    """Build (not raise) an error carrying a single diagnostic."""
    assert code in CODES, code
    return DualnetError(Diagnostic(code, message, span, label, tuple(notes)))


@dataclass
class SourceCache:
    """Source texts by file name, for rendering the line under a caret."""

    texts: dict[str, str] = field(default_factory=dict)

    def line(self, file: str, line: int) -> str | None:
        text = self.texts.get(file)
        if text is None:
            return None
        lines = text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else None


def render(diag: Diagnostic, sources: SourceCache, color: bool = False) -> str:
    """Render a diagnostic like rustc: header, location, source line with carets, notes."""
    red, blue, bold, reset = ("\x1b[31m", "\x1b[34m", "\x1b[1m", "\x1b[0m") if color else ("",) * 4
    out = [f"{bold}{red}error[{diag.code}]{reset}{bold}: {diag.message}{reset}"]
    span = diag.span
    if span is not None:
        source = sources.line(span.file, span.line)
        gutter = " " * len(str(span.line))
        out.append(f"{gutter}{blue}-->{reset} {span}")
        if source is not None:
            source = source.expandtabs(1)
            end = span.end_column if span.end_line == span.line else len(source) + 1
            width = max(1, min(end, len(source) + 1) - span.column)
            start = span.column - 1
            if len(source) > MAX_SHOWN:  # a window around the caret
                first = max(0, min(start - 20, len(source) - MAX_SHOWN))
                source = ("…" if first else "") + source[first : first + MAX_SHOWN] + "…"
                start = start - first + (1 if first else 0)
                width = min(width, MAX_SHOWN - (start - (1 if first else 0)))
            caret = " " * start + "^" * max(1, width)
            label = f" {diag.label}" if diag.label else ""
            out.append(f"{gutter} {blue}|{reset}")
            out.append(f"{blue}{span.line} |{reset} {source}")
            out.append(f"{gutter} {blue}|{reset} {red}{caret}{label}{reset}")
    pad = " " * len(str(span.line)) if span is not None else " "
    for note in diag.notes:
        out.append(f"{pad} = note: {note}")
    return "\n".join(out)

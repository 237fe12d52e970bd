"""User text in generated Python, one helper per context.

File names, model names and string values come from the user; they reach generated source
only through these helpers, so no text can end a comment, a docstring or a string early,
start a new line, or be read as code. Printable characters are kept as they are (a file
`modèle.dnet` reads as such); everything else (line breaks, control and format characters,
surrogates) is written as a Python escape (`\\n`, `\\x1b`, `\\u2028`).
"""

from __future__ import annotations


def _escaped(text: str, quoted: str = "") -> str:
    """`text` with unsafe characters as Python escapes; `quoted`: characters that also get a
    backslash (and then the backslash itself does)."""
    out = []
    for ch in text:
        if quoted and (ch in quoted or ch == "\\"):
            out.append("\\" + ch)
        elif ch.isprintable() and (ch == " " or not ch.isspace()):
            out.append(ch)
        elif ch in _SHORT:
            out.append(_SHORT[ch])
        else:
            code = ord(ch)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    return "".join(out)


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def comment(text: str) -> str:
    """`text` for the inside of a `# ...` comment: one line, nothing but the text."""
    return _escaped(text)


def docstring(text: str) -> str:
    """`text` for the inside of a triple-quoted docstring: backslashes and quotes escaped,
    so it can neither end the docstring nor make an escape sequence."""
    return _escaped(text, quoted='"')


def string(text: str) -> str:
    """`text` as a Python string literal (double quotes where possible)."""
    literal = repr(text)
    if literal.startswith("'") and '"' not in text:
        literal = '"' + literal[1:-1].replace("\\'", "'") + '"'
    return literal

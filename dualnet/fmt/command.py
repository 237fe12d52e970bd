"""`dualnet fmt PATH... [--check]`: format .dnet files in place, or list those that would
change. A folder stands for the .dnet files below it and `-` for standard input (formatted
to standard output); a file that cannot be read or parsed gets its diagnostic and is left
untouched; files are replaced atomically (a symbolic link's target, the link kept)."""

from __future__ import annotations

import os
import sys

from dualnet.diagnostics import DualnetError, SourceCache, error, render, whole_file
from dualnet.fmt import format_source
from dualnet.io.files import atomic_write, read_limited, too_large
from dualnet.semantics.loader import MAX_SOURCE_BYTES
from dualnet.syntax.parser import decode_source

STDIN = "-"


def run(paths: list[str], check: bool) -> int:
    """Format (or with `check`, only compare) every file; 1 when any file would change
    (`check`) or failed, else 0."""
    sources = SourceCache()
    failed = changed = unchanged = 0
    for path in _expand(paths, sources):
        if path is None:
            failed += 1
            continue
        try:
            new, text = _format(path, check, sources)
        except DualnetError as exc:
            _report(exc, sources)
            failed += 1
            continue
        if new == text:
            unchanged += 1
            continue
        changed += 1
        if path != STDIN:
            print(f"{'would reformat' if check else 'reformatted'} {path}")
    verb = "would be reformatted" if check else "reformatted"
    summary = [f"{changed} file{'s' * (changed != 1)} {verb}", f"{unchanged} unchanged"]
    if failed:
        summary.append(f"{failed} failed")
    if paths != [STDIN]:
        print(", ".join(summary), file=sys.stderr)
    return 1 if failed or (check and changed) else 0


def _format(path: str, check: bool, sources: SourceCache) -> tuple[str, str]:
    """The formatted and the original text of `path`, written back unless `check`."""
    if path == STDIN:
        data = sys.stdin.buffer.read(MAX_SOURCE_BYTES + 1)
        if len(data) > MAX_SOURCE_BYTES:
            raise too_large("standard input", "source file", MAX_SOURCE_BYTES)
        name = "<stdin>"
    else:
        data = read_limited(path, MAX_SOURCE_BYTES, "source file")
        name = path
    text = decode_source(data, name)
    sources.texts[name] = text
    new = format_source(text, name)
    if path == STDIN:
        if not check:
            sys.stdout.write(new)
    elif new != text and not check:
        atomic_write(os.path.realpath(path), new.encode("utf-8"), source=True)
    return new, text


def _expand(paths: list[str], sources: SourceCache):
    """The files to format, each once: each path given, and the .dnet files below a folder
    (sorted, hidden folders skipped); None, after its diagnostic, for a missing path."""
    seen: set[str] = set()
    for path in paths:
        if path == STDIN or not os.path.isdir(path):
            if path != STDIN and not os.path.lexists(path):
                missing = error("E-IO", f"no such file or directory: {path}", whole_file(path))
                _report(missing, sources)
                yield None
            elif path == STDIN or os.path.realpath(path) not in seen:
                seen.add(os.path.realpath(path))
                yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                found = os.path.join(root, name)
                if name.endswith(".dnet") and os.path.realpath(found) not in seen:
                    seen.add(os.path.realpath(found))
                    yield found


def _report(exc: DualnetError, sources: SourceCache) -> None:
    color = sys.stderr.isatty()
    for d in exc.diagnostics:
        print(render(d, sources, color) + "\n", file=sys.stderr)

"""`dualnet fmt PATH... [--check]`: format .dnet files in place, or list those that would
change. A directory stands for the .dnet files below it; a file that cannot be read or
parsed gets its diagnostic and is left untouched; files are replaced atomically."""

from __future__ import annotations

import os
import sys

from dualnet.diagnostics import DualnetError, SourceCache, error, render, whole_file
from dualnet.fmt import format_source
from dualnet.io.files import atomic_write, read_limited
from dualnet.semantics.loader import MAX_SOURCE_BYTES
from dualnet.syntax.parser import decode_source


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
            text = decode_source(read_limited(path, MAX_SOURCE_BYTES, "source file"), path)
            sources.texts[path] = text
            new = format_source(text, path)
            if new != text and not check:
                atomic_write(path, new.encode("utf-8"), source=True)
        except DualnetError as exc:
            _report(exc, sources)
            failed += 1
            continue
        if new == text:
            unchanged += 1
            continue
        changed += 1
        print(f"{'would reformat' if check else 'reformatted'} {path}")
    verb = "would be reformatted" if check else "reformatted"
    summary = [f"{changed} file{'s' * (changed != 1)} {verb}", f"{unchanged} unchanged"]
    if failed:
        summary.append(f"{failed} failed")
    print(", ".join(summary), file=sys.stderr)
    return 1 if failed or (check and changed) else 0


def _expand(paths: list[str], sources: SourceCache):
    """The files to format: each path given, and the .dnet files below a directory (sorted,
    hidden folders skipped); None, after its diagnostic, for a path that does not exist."""
    for path in paths:
        if not os.path.isdir(path):
            if not os.path.lexists(path):
                _report(
                    error("E-IO", f"no such file or directory: {path}", whole_file(path)), sources
                )
                yield None
            else:
                yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.endswith(".dnet"):
                    yield os.path.join(root, name)


def _report(exc: DualnetError, sources: SourceCache) -> None:
    color = sys.stderr.isatty()
    for d in exc.diagnostics:
        print(render(d, sources, color) + "\n", file=sys.stderr)

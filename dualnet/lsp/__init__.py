"""`dualnet lsp`: the language server (pygls, over stdin/stdout) — diagnostics as you type,
hover with inferred types, go to definition, completion, document symbols, formatting."""

from __future__ import annotations


def serve() -> int:
    """Run the server until the client exits (imports pygls: E-EXTRA without it)."""
    from dualnet.lsp.server import serve as run

    return run()

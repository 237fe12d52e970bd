"""The pygls server behind `dualnet lsp`: documents are checked in one worker thread, newest
text first (a check that a later edit made stale is skipped), so requests are answered at
once from the last check while the next one runs."""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from dualnet.frontend import check_file
from dualnet.lsp import features
from dualnet.lsp.document import Document, Pos
from dualnet.version import __version__

log = logging.getLogger(__name__)


class DualnetServer(LanguageServer):
    def __init__(self):
        super().__init__("dualnet", __version__, lsp.TextDocumentSyncKind.Full)
        self.documents: dict[str, Document] = {}  # uri → its last check
        self.latest: dict[str, int] = {}  # uri → the newest version received
        self.checker = ThreadPoolExecutor(1, thread_name_prefix="dualnet-check")
        self.formatter = ThreadPoolExecutor(1, thread_name_prefix="dualnet-fmt")

    async def check(self, uri: str) -> None:
        """Check the document's current text in the worker; publish its diagnostics unless
        a newer version came meanwhile (its own check publishes)."""
        doc = self.workspace.get_text_document(uri)
        version = doc.version or 0
        self.latest[uri] = version
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.checker, self._check, uri, version, doc.source)
        if result is None or self.latest.get(uri) != version:
            return
        checked, imported = result
        self.documents[uri] = checked
        for other, (before, after) in imported.items():
            if self.documents.get(other) is before:  # not checked again meanwhile
                self.documents[other] = after
        diagnostics = features.diagnostics(checked)
        for d in diagnostics:
            d.range = doc.range_to_client_units(d.range)
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri, diagnostics, version)
        )

    def _check(self, uri: str, version: int, text: str):
        """The document checked, and the open documents it imports with its instances of
        their models (uri → (document, document with them)); None when stale."""
        if self.latest.get(uri) != version:  # stale: a newer text waits behind it
            return None
        path = _path(uri)
        try:
            summary = check_file(str(path), text=text)
            doc = Document.build(path, text, summary, self.documents.get(uri))
            others = [(u, d) for u, d in list(self.documents.items()) if u != uri]
            if not doc.roots():  # no instances of its own: an open importer's
                doc = next(filter(None, (doc.imported_by(d.summary) for _, d in others)), doc)
            imported = {u: (d, d.imported_by(summary)) for u, d in others}
            return doc, {u: pair for u, pair in imported.items() if pair[1] is not None}
        except Exception:  # a bug in dualnet: keep serving the last good state
            log.exception("checking %s failed", uri)
            return None


def _path(uri: str) -> Path:
    """The real path of a document; an unsaved one lives in the working directory."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    return Path(os.path.realpath(path or Path.cwd() / "untitled.dnet"))


def _guard(handler):
    """A feature on the document's last check, at a position in code points (the client's
    units converted); it answers None instead of an error when dualnet has a bug."""

    def guarded(ls: DualnetServer, params):
        uri = params.text_document.uri
        doc = ls.documents.get(uri)
        if doc is None:
            return None
        text = ls.workspace.get_text_document(uri)
        try:
            return handler(ls, doc, text, params)
        except Exception:
            log.exception("%s failed", handler.__name__)
            return None

    guarded.__name__ = handler.__name__
    return guarded


def _position(text: TextDocument, position: lsp.Position) -> Pos:
    at = text.position_from_client_units(position)
    return (at.line + 1, at.character + 1)


def _symbols_to_client(text: TextDocument, symbols: list[lsp.DocumentSymbol]) -> None:
    for symbol in symbols:
        symbol.range = text.range_to_client_units(symbol.range)
        symbol.selection_range = text.range_to_client_units(symbol.selection_range)
        _symbols_to_client(text, symbol.children or [])


def make_server() -> DualnetServer:
    server = DualnetServer()

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(ls: DualnetServer, params: lsp.DidOpenTextDocumentParams):
        await ls.check(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(ls: DualnetServer, params: lsp.DidChangeTextDocumentParams):
        await ls.check(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    async def did_save(ls: DualnetServer, params: lsp.DidSaveTextDocumentParams):
        """The other open documents may import the saved file: check them again."""
        others = [uri for uri in ls.latest if uri != params.text_document.uri]
        await asyncio.gather(*(ls.check(uri) for uri in others))

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: DualnetServer, params: lsp.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        ls.documents.pop(uri, None)
        ls.latest.pop(uri, None)
        ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri, []))

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    @_guard
    def hover(ls, doc: Document, text: TextDocument, params: lsp.HoverParams):
        found = features.hover(doc, _position(text, params.position))
        if found is not None:
            found.range = text.range_to_client_units(found.range)
        return found

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    @_guard
    def definition(ls, doc: Document, text: TextDocument, params: lsp.DefinitionParams):
        found = features.definition(doc, _position(text, params.position))
        if found is not None:  # in the units of the file it is in
            target = ls.workspace.get_text_document(found.uri)
            found.range = target.range_to_client_units(found.range)
        return found

    @server.feature(
        lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=["(", ",", " "])
    )
    @_guard
    def completion(ls, doc: Document, text: TextDocument, params: lsp.CompletionParams):
        at = _position(text, params.position)
        items = features.completion(doc, text.source, at)
        return lsp.CompletionList(is_incomplete=False, items=items)

    @server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_guard
    def document_symbol(ls, doc: Document, text: TextDocument, params):
        symbols = features.symbols(doc)
        _symbols_to_client(text, symbols)
        return symbols

    @server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
    async def formatting(ls: DualnetServer, params: lsp.DocumentFormattingParams):
        """The whole text in the canonical layout (`dualnet fmt`), formatted off the event
        loop; no edit for a text that does not parse."""
        uri = params.text_document.uri
        text = ls.workspace.get_text_document(uri)
        source, lines = text.source, text.lines
        loop = asyncio.get_running_loop()
        edits = await loop.run_in_executor(ls.formatter, features.formatting, source, _path(uri))
        for edit in edits or ():
            edit.range = text.position_codec.range_to_client_units(lines, edit.range)
        return edits

    return server


def serve() -> int:
    """Serve on stdin/stdout until the client says exit."""
    logging.basicConfig(level=logging.WARNING)  # to stderr: stdout carries the protocol
    make_server().start_io()
    return 0

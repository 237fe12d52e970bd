"""A small LSP client over stdio for `dualnet lsp`, shared by tests/test_lsp.py and
benchmarks/lsp_bench.py: JSON-RPC framing, requests with ids, notifications, and the
server's publishDiagnostics collected by document and version."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path


class ServerGone(RuntimeError):
    """The server exited, or did not answer within the timeout."""


class Client:
    """`python -m dualnet lsp` in a child process, initialised."""

    def __init__(self, root: Path, env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dualnet", "lsp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=root,
            env={**os.environ, **(env or {})},
        )
        self._next_id = 0
        self._responses: dict[int, queue.Queue] = {}
        self._diagnostics: dict[str, list[tuple[int | None, list]]] = {}
        self._published = threading.Condition()
        self._versions: dict[str, int] = {}
        self.stderr: list[bytes] = []
        self.messages: list[dict] = []  # window/showMessage and window/logMessage params
        threading.Thread(target=self._read, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_reader.start()
        self.request(
            "initialize", {"processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": {}}
        )
        self.notify("initialized", {})

    # ---------------------------------------------------------------- framing

    def _send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        try:
            self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise ServerGone(f"the server exited ({self.process.poll()})") from exc

    def _read(self) -> None:
        out = self.process.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    for q in self._responses.values():
                        q.put(None)
                    with self._published:
                        self._published.notify_all()
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            message = json.loads(out.read(length))
            if "id" in message and "method" in message:  # a request from the server
                self._send({"id": message["id"], "result": None})
            elif "id" in message:
                self._responses.setdefault(message["id"], queue.Queue()).put(message)
            elif message.get("method") in ("window/showMessage", "window/logMessage"):
                self.messages.append(message["params"])
            elif message.get("method") == "textDocument/publishDiagnostics":
                params = message["params"]
                with self._published:
                    self._diagnostics.setdefault(params["uri"], []).append(
                        (params.get("version"), params["diagnostics"])
                    )
                    self._published.notify_all()

    def _drain_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line)

    # ---------------------------------------------------------------- messages

    def notify(self, method: str, params: dict) -> None:
        self._send({"method": method, "params": params})

    def request(self, method: str, params: dict | None, timeout: float = 10.0):
        """The result of a request (ServerGone when it does not come)."""
        self._next_id += 1
        ident = self._next_id
        box = self._responses.setdefault(ident, queue.Queue())
        self._send({"id": ident, "method": method, "params": params})
        try:
            message = box.get(timeout=timeout)
        except queue.Empty:
            raise ServerGone(f"no answer to {method} within {timeout} s") from None
        finally:
            self._responses.pop(ident, None)
        if message is None:
            raise ServerGone(f"the server exited ({self.process.poll()}) during {method}")
        if "error" in message:
            raise RuntimeError(f"{method}: {message['error']}")
        return message["result"]

    def diagnostics(
        self, uri: str, version: int, timeout: float = 10.0, after: int = 0
    ) -> list[dict]:
        """The diagnostics published for `version` of `uri`, the latest from the
        `after`-th publication for it on (waits for them)."""
        with self._published:
            if not self._published.wait_for(
                lambda: (
                    self._found(uri, version, after) is not None or self.process.poll() is not None
                ),
                timeout,
            ):
                raise ServerGone(f"no diagnostics for {uri} version {version} in {timeout} s")
            found = self._found(uri, version, after)
            if found is None:
                raise ServerGone(f"the server exited ({self.process.poll()})")
            return found

    def published(self, uri: str) -> int:
        """How many times diagnostics were published for `uri` so far."""
        with self._published:
            return len(self._diagnostics.get(uri, ()))

    def _found(self, uri: str, version: int, after: int) -> list[dict] | None:
        matching = [d for v, d in self._diagnostics.get(uri, ())[after:] if v == version]
        return matching[-1] if matching else None

    # ---------------------------------------------------------------- documents

    def open(self, path: Path, text: str | None = None) -> tuple[str, int]:
        """Open `path` (with `text` instead of its content); its uri and version."""
        uri = path.resolve().as_uri()
        text = path.read_text() if text is None else text
        self._versions[uri] = 1
        with self._published:  # a new session of the document: forget the last one's
            self._diagnostics.pop(uri, None)
        item = {"uri": uri, "languageId": "dnet", "version": 1, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": item})
        return uri, 1

    def change(self, uri: str, text: str) -> int:
        """Replace the document's text (full sync); the new version."""
        self._versions[uri] += 1
        version = self._versions[uri]
        self.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"text": text}],
            },
        )
        return version

    def at(self, method: str, uri: str, line: int, character: int, **extra):
        """A request at a position (0-based, as LSP counts)."""
        position = {"line": line, "character": character}
        return self.request(method, {"textDocument": {"uri": uri}, "position": position, **extra})

    def close(self) -> int:
        """shutdown, exit; the server's exit status."""
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
        except ServerGone:
            pass
        try:
            status = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self._stderr_reader.join(timeout=10)  # all of `stderr` read
        return status

"""`dualnet lsp` driven over stdio with real LSP messages (benchmarks/lsp_client.py): the
diagnostics of `dualnet check`, hover, definition, completion, symbols, formatting, and a
server that survives random edits. One server process serves the whole module."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dualnet
from dualnet.fmt import format_source
from dualnet.ops import REGISTRY
from dualnet.syntax import ast
from dualnet.syntax.parser import parse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from fuzz_frontend import Mutator  # noqa: E402
from lsp_client import Client  # noqa: E402


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """A copy of models/, where the test writes the texts it checks on disk."""
    folder = tmp_path_factory.mktemp("zoo") / "models"
    shutil.copytree(ROOT / "models", folder)
    return folder


@pytest.fixture(scope="module")
def client(zoo):
    c = Client(zoo)
    yield c
    status, log = c.close(), b"".join(c.stderr).decode()
    assert status == 0 and "Traceback" not in log, log  # no request failed inside
    assert [m for m in c.messages if m["type"] == 1] == []  # no error shown to the user


def lsp_range(span) -> dict:
    return {
        "start": {"line": span.line - 1, "character": span.column - 1},
        "end": {"line": span.end_line - 1, "character": span.end_column - 1},
    }


def where(text: str, needle: str, offset: int = 0) -> tuple[int, int]:
    """The 0-based line and character of the first `needle` in `text`, plus `offset`."""
    before = text[: text.index(needle) + offset]
    return before.count("\n"), len(before) - before.rfind("\n") - 1


def hover_text(client, uri, text, needle, offset=0) -> str:
    answer = client.at("textDocument/hover", uri, *where(text, needle, offset))
    return answer["contents"]["value"] if answer else ""


def test_diagnostics_are_dualnet_checks_then_clear(client, zoo):
    path = zoo / "resnet18.dnet"
    good = path.read_text()
    bad = good.replace("fc = Linear(classes)", "fc = Linear(classes, bias=3)").replace(
        "x = global_avg_pool(x)", "x = global_avg_pool(y)"
    )
    uri, version = client.open(path, bad)
    published = client.diagnostics(uri, version)
    edited = zoo / "edited.dnet"  # `dualnet check` of the same text, from disk
    edited.write_text(bad)
    expected = dualnet.check_file(str(edited)).diagnostics
    assert len(expected) >= 2
    assert [(d["code"], d["range"]) for d in published] == [
        (d.code, lsp_range(d.span)) for d in expected
    ]
    assert all(d["source"] == "dualnet" and d["severity"] == 1 for d in published)
    assert client.diagnostics(uri, client.change(uri, good)) == []


def test_saving_an_import_checks_its_importers_again(client, zoo):
    resnet, blocks = zoo / "resnet18.dnet", zoo / "blocks.dnet"
    uri, version = client.open(resnet)
    assert client.diagnostics(uri, version) == []
    original = blocks.read_text()
    blocks_uri, _ = client.open(blocks)
    try:
        blocks.write_text(original.replace("model BasicBlock(", "model BasicBlok("))
        before = client.published(uri)
        client.notify("textDocument/didSave", {"textDocument": {"uri": blocks_uri}})
        [published] = client.diagnostics(uri, version, after=before)
    finally:
        blocks.write_text(original)
    assert published["code"] == "E-IMPORT"
    before = client.published(uri)
    client.notify("textDocument/didSave", {"textDocument": {"uri": blocks_uri}})
    assert client.diagnostics(uri, version, after=before) == []


def test_positions_are_utf16_as_clients_count(client, zoo):
    """A client that names no position encoding counts UTF-16 units: a character outside
    the Basic Multilingual Plane is two."""
    path = zoo / "emoji.dnet"
    text = 'const s = "🙂🙂"; const t = unknown\nmodel M() { forward(x: f32[2]) { return x } }\n'
    path.write_text(text)
    uri, version = client.open(path, text)
    [published] = client.diagnostics(uri, version)
    [expected] = dualnet.check_file(str(path)).diagnostics
    line = text.split("\n")[0]

    def utf16(column: int) -> int:
        return len(line[: column - 1].encode("utf-16-le")) // 2

    start, end = utf16(expected.span.column), utf16(expected.span.end_column)
    assert published["range"]["start"]["character"] == start == expected.span.column + 1
    assert published["range"]["end"]["character"] == end
    found = client.at("textDocument/definition", uri, 0, start + 1)  # `unknown`: nothing
    assert found is None
    found = client.at("textDocument/hover", uri, 0, utf16(line.index("t =") + 1))
    assert found["range"]["start"]["character"] == utf16(line.index("t =") + 1)


def test_syntax_error_keeps_the_last_tree(client, zoo):
    path = zoo / "mlp.dnet"
    good = path.read_text()
    uri, version = client.open(path, good)
    assert client.diagnostics(uri, version) == []
    broken = good + "\nmodel {"
    [published] = client.diagnostics(uri, client.change(uri, broken))
    (zoo / "broken.dnet").write_text(broken)
    [expected] = dualnet.check_file(str(zoo / "broken.dnet")).diagnostics
    assert (published["code"], published["range"]) == ("E-SYNTAX", lsp_range(expected.span))
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert [s["name"] for s in symbols] == [
        d.name.id for d in parse(good, "mlp").decls if isinstance(d, ast.Model)
    ]


def test_hover_types_layers_and_ops(client, zoo):
    path = zoo / "resnet18.dnet"
    text = path.read_text()
    uri, version = client.open(path, text)
    client.diagnostics(uri, version)
    summary = dualnet.check_file(str(path))
    layer1 = summary.instance.children["layer1"]
    conv1 = summary.instance.children["conv1"]
    out1 = str(layer1.graphs[0].outputs[0].type)
    assert f"x: {out1}" in hover_text(client, uri, text, "x = x |> layer1")  # the target
    assert f"x: {out1}" in hover_text(client, uri, text, "x |> layer2")  # a use of it
    conv = hover_text(client, uri, text, "conv1 |>")
    weight = conv1.params["weight"]
    assert f"weight: {dualnet.ir.types.TensorType(weight.dtype, weight.shape)}" in conv
    assert str(conv1.output_types[0]) in conv
    assert f"{conv1.param_count:,} parameters" in conv
    op = hover_text(client, uri, text, "max_pool2d")
    assert f"max_pool2d{REGISTRY['max_pool2d'].signature}" in op
    assert REGISTRY["max_pool2d"].doc in op
    assert "model BasicBlock(" in hover_text(client, uri, text, "BasicBlock(64)")


def instances(instance, definition: str) -> list:
    out = [instance] if instance.definition == definition else []
    for child in instance.children.values():
        if hasattr(child, "graphs"):
            out += instances(child, definition)
    return out


def test_hover_in_a_model_of_many_instances(client, zoo):
    path = zoo / "mobilenetv2.dnet"
    text = path.read_text()
    uri, version = client.open(path, text)
    client.diagnostics(uri, version)
    blocks = instances(dualnet.check_file(str(path)).instance, "InvertedResidual")
    inputs = {f"x: {g.inputs[0].type}" for b in blocks for g in b.graphs}
    shown = hover_text(client, uri, text, "forward(x: f32[B, C, H, W])", len("forward("))
    assert 1 < len(inputs) <= 8 and set(shown.split("\n")[1:-1]) == inputs
    sizes = {str(b.sizes["C"]) for b in blocks}  # a size the signature names
    shown = hover_text(client, uri, text, "forward(x: f32[B, C, H, W])", len("forward(x: f32[B, "))
    assert set(shown.split("\n")[1].removeprefix("C = ").split(" | ")) == sizes
    hidden = {str(b.sizes["hidden"]) for b in blocks}  # a value declared with the layers
    shown = hover_text(client, uri, text, "hidden = C * t")
    assert set(shown.split("values: ")[1].split(", ")) == hidden


def test_a_library_file_gets_types_from_an_open_importer(client, zoo):
    blocks, resnet = zoo / "blocks.dnet", zoo / "resnet18.dnet"
    text = blocks.read_text()
    uri, version = client.open(blocks)
    assert [d["code"] for d in client.diagnostics(uri, version)] == ["E-MODEL"]  # as check
    resnet_uri, resnet_version = client.open(resnet)
    client.diagnostics(resnet_uri, resnet_version)
    users = instances(dualnet.check_file(str(resnet)).instance, "BasicBlock")
    inputs = {f"x: {g.inputs[0].type}" for b in users for g in b.graphs}
    shown = hover_text(client, uri, text, "forward(x:", len("forward("))
    assert len(inputs) > 1 and set(shown.split("\n")[1:-1]) == inputs
    client.diagnostics(uri, client.change(uri, text + "\n"))  # no longer the text it read
    assert hover_text(client, uri, text, "forward(x:", len("forward(")) == ""


def test_definition(client, zoo):
    path = zoo / "mobilenetv2.dnet"
    text = path.read_text()
    uri, version = client.open(path, text)
    client.diagnostics(uri, version)
    tree = parse(text, "m")
    decls = {d.name.id: d for d in tree.decls if isinstance(d, ast.Model | ast.Const)}
    layers = {m.name.id: m for m in decls["MobileNetV2"].members if isinstance(m, ast.LayerDecl)}

    def goes(needle, offset, span, file=path):
        found = client.at("textDocument/definition", uri, *where(text, needle, offset))
        assert found == {"uri": file.resolve().as_uri(), "range": lsp_range(span)}

    goes("InvertedResidual(BLOCKS", 1, decls["InvertedResidual"].name.span)
    goes("BLOCKS[i - 1][1]", 1, decls["BLOCKS"].name.span)
    goes("= features(x)", 3, layers["features"].name.span)
    goes("|> classifier", 4, layers["classifier"].name.span)
    resnet = zoo / "resnet18.dnet"
    text = resnet.read_text()
    uri, version = client.open(resnet, text)
    client.diagnostics(uri, version)
    blocks = parse((zoo / "blocks.dnet").read_text(), "b")
    basic = next(d for d in blocks.decls if isinstance(d, ast.Model) and d.name.id == "BasicBlock")
    goes("BasicBlock(128", 2, basic.name.span, zoo / "blocks.dnet")  # an imported model
    found = client.at("textDocument/definition", uri, *where(text, '"blocks.dnet"', 2))
    assert found["uri"] == (zoo / "blocks.dnet").resolve().as_uri()  # the imported file


def test_completion_of_keywords_and_names(client, zoo):
    path = zoo / "resnet18.dnet"
    text = path.read_text()
    uri, version = client.open(path, text)
    client.diagnostics(uri, version)
    at = where(text, "max_pool2d(3, ", len("max_pool2d(3, "))
    labels = [i["label"] for i in client.at("textDocument/completion", uri, *at)["items"]]
    attrs = [p.name for p in REGISTRY["max_pool2d"].signature.params if not p.is_tensor]
    assert labels[: len(attrs)] == [f"{a}=" for a in attrs]
    at = where(text, "x = x |> layer1", len("x = x |> "))
    labels = {i["label"] for i in client.at("textDocument/completion", uri, *at)["items"]}
    assert {"x", "conv1", "layer4", "fc", "classes", "BasicBlock", "relu", "Conv2d"} <= labels
    at = where(text, "Conv2d(64, ", len("Conv2d(64, "))  # a layer: its constructor's
    labels = [i["label"] for i in client.at("textDocument/completion", uri, *at)["items"]]
    assert "kernel=" in labels and "stride=" in labels


def test_document_symbols(client, zoo):
    path = zoo / "mobilenetv2.dnet"
    text = path.read_text()
    uri, version = client.open(path, text)
    client.diagnostics(uri, version)
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    tree = parse(text, "m")
    assert [s["name"] for s in symbols] == [d.name.id for d in tree.decls]
    model = tree.decls[-1]
    expected = [h.name for h in model.hypers] + [
        m.name.id if isinstance(m, ast.LayerDecl) else "forward" for m in model.members
    ]
    assert [c["name"] for c in symbols[-1]["children"]] == expected


def apply(text: str, edits: list[dict]) -> str:
    """`text` with LSP text edits applied (ranges in the original, none overlapping)."""
    lines = text.split("\n")

    def offset(p):
        return sum(len(line) + 1 for line in lines[: p["line"]]) + p["character"]

    for edit in sorted(edits, key=lambda e: offset(e["range"]["start"]), reverse=True):
        start, end = offset(edit["range"]["start"]), offset(edit["range"]["end"])
        text = text[:start] + edit["newText"] + text[end:]
    return text


def test_formatting_is_dualnet_fmts(client, zoo):
    path = zoo / "resnet18.dnet"
    messy = path.read_text().replace("x = x |>", "x   =   x|>").replace("    fc =", "  fc  =")
    uri, version = client.open(path, messy)
    client.diagnostics(uri, version)
    options = {"tabSize": 4, "insertSpaces": True}
    params = {"textDocument": {"uri": uri}, "options": options}
    edits = client.request("textDocument/formatting", params)
    formatted = format_source(messy, str(path))
    assert formatted != messy and apply(messy, edits) == formatted
    client.diagnostics(uri, client.change(uri, formatted))
    assert client.request("textDocument/formatting", params) == []
    client.diagnostics(uri, client.change(uri, messy + "\nmodel {"))
    assert client.request("textDocument/formatting", params) is None


def test_random_edits_while_typing(client, zoo):
    """40 random edits of zoo files (the front-end fuzzer's mutations) sent as fast as
    typing, each followed by a hover and a completion: every request is answered, the
    latest text's diagnostics arrive, the server stays up."""
    rng = random.Random(15)
    sources = {p.name: p.read_text() for p in sorted((ROOT / "models").glob("*.dnet"))}
    mutator = Mutator(rng, sources)
    for name in ("resnet18.dnet", "bert_encoder.dnet"):
        text = sources[name]
        uri, version = client.open(zoo / name, text)
        for _ in range(20):
            text = mutator.mutate(text)[0] if rng.random() < 0.8 else sources[name]
            # a flipped byte is invalid UTF-8: an editor shows it as U+FFFD
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            version = client.change(uri, text)
            line = rng.randrange(text.count("\n") + 1)
            client.at("textDocument/hover", uri, line, rng.randrange(40))
            client.at("textDocument/completion", uri, line, rng.randrange(40))
        (zoo / "mutant.dnet").write_text(text)
        expected = dualnet.check_file(str(zoo / "mutant.dnet")).diagnostics
        published = client.diagnostics(uri, version, timeout=30)
        assert [d["code"] for d in published] == [d.code for d in expected]
        assert client.process.poll() is None
    pathological = ["(" * 5000, "const c = 1\n" * 40000, "\x00\ufeff🙂" * 1000]
    for text in pathological:
        version = client.change(uri, text)
        client.at("textDocument/hover", uri, 0, 3)
        assert client.diagnostics(uri, version, timeout=30)
    assert client.process.poll() is None


def test_without_pygls_it_is_e_extra():
    code = (
        "import sys; sys.modules['pygls'] = None\n"  # as if not installed: ImportError
        "from dualnet.cli import main; sys.exit(main(['lsp']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1 and "E-EXTRA" in out.stderr and "dualnet[lsp]" in out.stderr


def key(span) -> tuple | None:
    return span and (span.line, span.column, span.end_line, span.end_column)


@pytest.mark.parametrize("kind", ["error", "too large"])
def test_check_file_text_is_as_if_on_disk(tmp_path, kind):
    """`check_file(path, text=...)` (the server's door) reports what checking a file with
    that content does."""
    shutil.copy(ROOT / "models" / "blocks.dnet", tmp_path)
    text = (ROOT / "models" / "resnet18.dnet").read_text().replace("relu", "rleu")
    if kind == "too large":
        text += "#é" * (8 * 1024 * 1024)  # 24 MiB of UTF-8, 16 million characters
    (tmp_path / "on_disk.dnet").write_text(text)
    (tmp_path / "edited.dnet").write_text("model Unrelated() {}")
    here = dualnet.check_file(str(tmp_path / "on_disk.dnet")).diagnostics
    edited = dualnet.check_file(str(tmp_path / "edited.dnet"), text=text).diagnostics
    assert here and [(d.code, d.message.replace("on_disk", "edited")) for d in here] == [
        (d.code, d.message) for d in edited
    ]
    assert [key(d.span) for d in here] == [key(d.span) for d in edited]

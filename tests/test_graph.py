"""`dualnet graph` and `dualnet check --summary`: the SVG of every zoo model read back
(boxes, edges, their types and parameter counts against the checker's), DOT, --depth, the
missing `graph` extra, bad input, and the summary's totals, parameters and bytes."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from runcli import assert_clean, run_cli, show

from dualnet.frontend import check_file
from dualnet.graph.summary import summarize
from dualnet.graph.write import write_graph
from dualnet.ir.types import DTYPES

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
LIBRARIES = {"blocks.dnet"}  # files of sub-models only
ZOO = sorted(p.name for p in MODELS.glob("*.dnet") if p.name not in LIBRARIES)
SVG = "{http://www.w3.org/2000/svg}"
DEFAULT_DEPTH = 2


def _expected(graph, depth: int, level: int = 0, found=None) -> list[tuple[str, str, list]]:
    """(kind, title, output types) of every box the forward's nodes give at `depth`, in
    execution order."""
    found = [] if found is None else found
    for node in graph.nodes:
        if node.kind == "constant":
            continue
        if node.kind == "call" and level < depth:
            _expected(node.callee, depth, level + 1, found)
        else:
            kind = {"call": "model", "layer": "layer"}.get(node.kind, "op")
            target = graph.instance.child(node.target) if node.target else None
            types = [str(v.type) for v in node.outputs]
            found.append((kind, target.path if target else node.op, types))
    return found


def _read_svg(path: Path) -> tuple[list[dict], list[dict]]:
    root = ET.parse(path).getroot()
    boxes, edges = [], []
    for g in root.iter(f"{SVG}g"):
        cls = g.get("class", "").split()
        if cls[:1] == ["box"]:
            lines = [t.text for t in g.findall(f"{SVG}text")]
            boxes.append(
                {
                    "id": g.get("id"),
                    "kind": cls[1],
                    "lines": lines,
                    "tip": g.find(f"{SVG}title").text,
                }
            )
        elif cls == ["edge"]:
            edges.append(
                {
                    "source": g.get("data-source"),
                    "target": g.get("data-target"),
                    "type": g.get("data-type"),
                }
            )
    return boxes, edges


def _params(lines: list[str]) -> int:
    counts = [int(t.split()[0].replace(",", "")) for t in lines if t.endswith(" params")]
    return counts[0] if counts else 0


@pytest.mark.parametrize("file", ZOO)
def test_svg_of_every_zoo_model(file: str, tmp_path: Path) -> None:
    s = check_file(str(MODELS / file))
    assert s.ok
    out = tmp_path / "model.svg"
    write_graph(s, str(out), DEFAULT_DEPTH, {})
    boxes, edges = _read_svg(out)
    ids = {b["id"]: b for b in boxes}
    # one box per input, output, and call at the depth, in the order the forward runs
    inner = [b for b in boxes if b["kind"] not in ("input", "output")]
    expected = _expected(s.graph, DEFAULT_DEPTH)
    assert [(b["kind"], b["lines"][0]) for b in inner] == [e[:2] for e in expected]
    assert [b["lines"][0] for b in boxes if b["kind"] == "input"] == [
        v.name for v in s.graph.inputs
    ]
    assert [b["lines"][1] for b in boxes if b["kind"] == "output"] == [
        str(v.type) for v in s.graph.outputs
    ]
    # each output is drawn from what makes it; each box but the inputs reads something,
    # or is a value of its own (a parameter, arange, zeros)
    for b in boxes:
        if b["kind"] == "output":
            assert sum(e["target"] == b["id"] for e in edges) == 1
    assert all(e["source"] in ids and e["target"] in ids for e in edges)
    # an edge carries one of the types the checker gives its source's outputs
    outputs = {b["id"]: e[2] for b, e in zip(inner, expected, strict=True)}
    outputs.update({b["id"]: [b["lines"][1]] for b in boxes if b["kind"] == "input"})
    for e in edges:
        assert e["type"] in outputs[e["source"]], (ids[e["source"]], e)
    # parameters: each layer's as the summary counts them, all of them in total
    rows, totals = summarize(s.instance, s.graph)
    per_layer = {r.path: r.params for r in rows}
    for b in boxes:
        if b["kind"] == "layer":
            assert _params(b["lines"]) == per_layer[b["lines"][0]]
    assert sum(_params(b["lines"]) for b in boxes) == totals.params == s.trainable_params
    # the tooltip: where the call is in the source
    for b in boxes:
        if b["kind"] in ("layer", "model", "op"):
            assert re.match(r"\S+\.dnet:\d+: \S", b["tip"]), b


def test_residual_connections_are_two_edges_from_one_box(tmp_path: Path) -> None:
    s = check_file(str(MODELS / "resnet18.dnet"))
    out = tmp_path / "r.svg"
    write_graph(s, str(out), 2, {"B": 1})
    boxes, edges = _read_svg(out)
    titles = {b["id"]: b["lines"][0] for b in boxes}
    pool = next(b["id"] for b in boxes if b["lines"][0] == "max_pool2d")
    assert sorted(titles[e["target"]] for e in edges if e["source"] == pool) == [
        "layer1.0.conv1",
        "layer1.0.downsample",
    ]
    assert {e["type"] for e in edges if e["source"] == pool} == {"f32[1, 64, 56, 56]"}


def test_depth(tmp_path: Path) -> None:
    s = check_file(str(MODELS / "resnet18.dnet"))
    found = {}
    for depth in (0, 1, 2, 3):
        out = tmp_path / f"d{depth}.svg"
        write_graph(s, str(out), depth, {})
        boxes, _ = _read_svg(out)
        found[depth] = [b["lines"][:2] for b in boxes if b["kind"] == "model"]
    assert found[0] == [[f"layer{i}", "Sequential"] for i in (1, 2, 3, 4)]
    assert found[1] == [[f"layer{i}.{j}", "BasicBlock"] for i in (1, 2, 3, 4) for j in (0, 1)]
    assert found[2] == [[f"layer{i}.0.downsample", "Sequential"] for i in (2, 3, 4)]
    assert found[3] == []


def test_dot(tmp_path: Path) -> None:
    s = check_file(str(MODELS / "bert_encoder.dnet"))
    write_graph(s, str(tmp_path / "b.svg"), DEFAULT_DEPTH, {})
    write_graph(s, str(tmp_path / "b.dot"), DEFAULT_DEPTH, {})
    boxes, edges = _read_svg(tmp_path / "b.svg")
    text = (tmp_path / "b.dot").read_text()
    assert text.startswith('digraph "BertEncoder (') and text.endswith("}\n")
    nodes = re.findall(r'^  (n\d+) \[label="([^"]*)"', text, re.M)
    assert [(i, label.split("\\n")) for i, label in nodes] == [(b["id"], b["lines"]) for b in boxes]
    arrows = re.findall(r'^  (n\d+) -> (n\d+) \[label="([^"]*)"\];$', text, re.M)
    assert arrows == [(e["source"], e["target"], e["type"]) for e in edges]


def test_png(tmp_path: Path) -> None:
    s = check_file(str(MODELS / "lenet5.dnet"))
    write_graph(s, str(tmp_path / "l.png"), DEFAULT_DEPTH, {})
    assert (tmp_path / "l.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_svg_every_run(tmp_path: Path) -> None:
    for name, seed in (("a.svg", "1"), ("b.svg", "2")):  # other hashes, other addresses
        r = run_cli(
            ["graph", str(MODELS / "inception_v3.dnet"), "-o", name],
            tmp_path,
            env={"PYTHONHASHSEED": seed},
        )
        assert r.code == 0, show(r)
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()


def _without(module: str) -> str:
    return (
        "import sys\n"
        "class _Missing:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.partition('.')[0] == {module!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Missing())\n"
    )


@pytest.mark.parametrize(
    ("module", "suffix"), [("grandalf", ".svg"), ("grandalf", ".png"), ("matplotlib", ".png")]
)
def test_missing_graph_extra(module: str, suffix: str, tmp_path: Path) -> None:
    r = run_cli(
        ["graph", str(MODELS / "mlp.dnet"), "-o", f"m{suffix}"], tmp_path, prelude=_without(module)
    )
    assert_clean(r)
    assert r.stderr.startswith(f"error[E-EXTRA]: this needs {module}"), show(r)
    assert "pip install 'dualnet[graph]'" in r.stderr, show(r)
    assert not (tmp_path / f"m{suffix}").exists()


def test_dot_needs_no_extra(tmp_path: Path) -> None:
    prelude = _without("grandalf") + _without("matplotlib")
    r = run_cli(["graph", str(MODELS / "mlp.dnet"), "-o", "m.dot"], tmp_path, prelude=prelude)
    assert r.code == 0, show(r)
    assert (tmp_path / "m.dot").read_text().startswith("digraph")


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["missing.dnet", "-o", "x.svg"], "E-IO", "missing.dnet"),
        (["bad.dnet", "-o", "x.svg"], "E-SYNTAX", "bad.dnet:1"),
        ([str(MODELS / "mlp.dnet"), "--model", "Nope", "-o", "x.svg"], "E-MODEL", "`Nope`"),
        ([str(MODELS / "mlp.dnet"), "-o", "x.pdf"], "E-INPUT", ".svg, .png or .dot"),
        ([str(MODELS / "mlp.dnet"), "--depth", "-1", "-o", "x.svg"], "E-INPUT", "--depth"),
        ([str(MODELS / "mlp.dnet"), "--dims", "B=0", "-o", "x.svg"], "E-INPUT", "--dims"),
        ([str(MODELS / "densenet121.dnet"), "--dims", "H=8", "-o", "x.svg"], "E-INPUT", "small"),
        ([str(MODELS / "mlp.dnet"), "-o", "x.svg/"], "E-IO", "x.svg"),
    ],
)
def test_bad_input(args: list[str], code: str, says: str, tmp_path: Path) -> None:
    (tmp_path / "bad.dnet").write_text("model M {\n")
    (tmp_path / "x.svg").mkdir()
    r = run_cli(["graph", *args], tmp_path)
    assert_clean(r)
    assert r.stderr.startswith(f"error[{code}]"), show(r)
    assert says in r.stderr, show(r)
    assert not (tmp_path / "x.svg").is_file()


# ---------------------------------------------------------------- check --summary


@pytest.mark.parametrize("file", ZOO)
@pytest.mark.parametrize("dims", [{}, {"B": 1, "T": 16, "H": 224, "W": 224, "S": 16}])
def test_summary_totals(file: str, dims: dict) -> None:
    s = check_file(str(MODELS / file))
    rows, totals = summarize(s.instance, s.graph, dims)
    assert totals.macs == sum((r.macs for r in rows), 0)
    assert totals.output_bytes == sum((r.output_bytes for r in rows), 0)
    assert totals.params == sum(r.params for r in rows) == s.trainable_params
    assert totals.param_bytes == sum(r.param_bytes for r in rows)
    layers = {r.path for r in rows if "@" not in r.path}  # every layer with parameters
    assert {x.path for x in s.instance.layers() if x.param_count} <= layers
    assert layers <= {x.path for x in s.instance.layers()}
    if dims:  # concrete: the bytes of the printed output types, NumPy's item sizes
        for r in rows:
            if r.output == "(never called)":
                continue
            want = 0
            for dtype, shape in re.findall(r"(\w+)\[([^\]]*)\]", r.output):
                size = math.prod(int(d) for d in shape.split(", ") if d)
                want += size * np.dtype(DTYPES[dtype].numpy or "float16").itemsize
            assert r.output_bytes == want, r


def test_parameter_bytes() -> None:
    s = check_file(str(MODELS / "resnet18.dnet"))
    rows, totals = summarize(s.instance, s.graph)
    conv1 = next(r for r in rows if r.path == "conv1")
    assert (conv1.params, conv1.param_bytes) == (64 * 3 * 7 * 7, 64 * 3 * 7 * 7 * 4)
    assert totals.param_bytes == 4 * s.trainable_params  # every parameter is f32


def test_summary_cli(tmp_path: Path) -> None:
    r = run_cli(["check", str(MODELS / "resnet18.dnet"), "--summary", "--dims", "B=1"], tmp_path)
    assert r.code == 0, show(r)
    s = check_file(str(MODELS / "resnet18.dnet"))
    rows, totals = summarize(s.instance, s.graph, {"B": 1})
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ResNet18(x: f32[B, 3, 224, 224])")
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines if "│" in line]
    total = [c for c in cells[-1] if c]
    assert total == [
        "total",
        f"{totals.macs:,}",
        f"{totals.output_bytes:,}",
        f"{totals.params:,}",
        f"{totals.param_bytes:,}",
    ]
    assert [c[0] for c in cells[1:-1]] == [row.path for row in rows]
    symbolic = run_cli(["check", str(MODELS / "resnet18.dnet"), "--summary"], tmp_path)
    assert f"{totals.macs} * B" in symbolic.stdout, show(symbolic)


@pytest.mark.parametrize(
    ("file", "dims", "says"),
    [("mlp.dnet", "B", "NAME=SIZE"), ("densenet121.dnet", "H=8", "too small")],
)
def test_summary_bad_dims(file: str, dims: str, says: str, tmp_path: Path) -> None:
    r = run_cli(["check", str(MODELS / file), "--summary", "--dims", dims], tmp_path)
    assert_clean(r)
    assert r.stderr.startswith("error[E-INPUT]") and says in r.stderr, show(r)


@pytest.mark.parametrize("name", ["resnet18", "bert_encoder"])
def test_docs_images_are_current(name: str, tmp_path: Path, monkeypatch) -> None:
    """docs/images/<name>.svg is what `dualnet graph models/<name>.dnet -o ...` writes from
    the repository's root (re-run it after a change that alters the picture)."""
    monkeypatch.chdir(ROOT)
    s = check_file(f"models/{name}.dnet")
    write_graph(s, str(tmp_path / f"{name}.svg"), DEFAULT_DEPTH, {})
    current = (ROOT / "docs" / "images" / f"{name}.svg").read_bytes()
    assert (tmp_path / f"{name}.svg").read_bytes() == current, (
        f"docs/images/{name}.svg is stale: run "
        f"`dualnet graph models/{name}.dnet -o docs/images/{name}.svg` in the repository's root"
    )


@pytest.mark.parametrize("args", [["--dims", "B=1"], ["--summary", "--json"]])
def test_summary_usage(args: list[str], tmp_path: Path) -> None:
    r = run_cli(["check", str(MODELS / "mlp.dnet"), *args], tmp_path)
    assert r.code == 2 and "--dims goes with --summary" in r.stderr, show(r)


@pytest.mark.parametrize("file", ["resnet18.dnet", "bert_encoder.dnet"])
def test_drawing_cost(file: str, tmp_path: Path) -> None:
    """SVG of ResNet-18 or BERT: within the CPU-time and memory limits of any command."""
    r = run_cli(["graph", str(MODELS / file), "-o", "m.svg"], tmp_path)
    assert_clean(r, code=0)
    assert r.stdout == "wrote m.svg\n"


def test_hostile_text_is_escaped(tmp_path: Path) -> None:
    """Markup, quotes and control characters in the file name and a source comment: the
    SVG still parses, with the text in its tooltip; DOT quotes it."""
    source = tmp_path / 'a"<b>&$x$.dnet'
    source.write_text(
        "model M() {\n    fc = Linear(4)\n    forward(x: f32[B, 4]) -> f32[B, 4] {\n"
        '        return fc(x)  # \x01 </title> "q" \\ \x1b[31m $\\alpha$\n    }\n}\n'
    )
    s = check_file(str(source))
    for suffix in (".svg", ".dot", ".png"):
        write_graph(s, str(tmp_path / f"m{suffix}"), DEFAULT_DEPTH, {})
    boxes, _ = _read_svg(tmp_path / "m.svg")
    fc = next(b for b in boxes if b["lines"][0] == "fc")
    assert fc["tip"].endswith('# \ufffd </title> "q" \\ \ufffd[31m $\\alpha$')
    assert ET.parse(tmp_path / "m.svg").getroot().find(f"{SVG}title").text.startswith("M (")
    dot = (tmp_path / "m.dot").read_text()
    assert '# \ufffd </title> \\"q\\" \\\\ \ufffd[31m' in dot and 'a\\"<b>&$x$.dnet' in dot


FRAMEWORKS = "".join(_without(m) for m in ("torch", "tensorflow", "keras", "onnx", "onnxruntime"))


@pytest.mark.parametrize(
    "args", [["graph", "-o", "m.svg"], ["graph", "-o", "m.png"], ["check", "--summary"]]
)
def test_no_framework_is_imported(args: list[str], tmp_path: Path) -> None:
    """Drawing and summarising work with PyTorch, TensorFlow and ONNX unimportable."""
    command = [args[0], str(MODELS / "bert_encoder.dnet"), *args[1:]]
    r = run_cli(command, tmp_path, prelude=FRAMEWORKS)
    assert r.code == 0, show(r)

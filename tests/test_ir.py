"""The typed IR: hierarchy, node kinds, spans, and the stable text form (golden files).

Golden files live in tests/golden/; set DUALNET_UPDATE_GOLDEN=1 to rewrite them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dualnet
from dualnet.ir.graph import ModelInstance
from dualnet.ir.printer import print_ir

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("model", ["lenet5", "resnet18"])
def test_ir_text_matches_golden(model):
    summary = dualnet.check_file(str(ROOT / "models" / f"{model}.dnet"))
    assert summary.ok
    text = print_ir(summary.instance)
    golden = GOLDEN / f"{model}.ir"
    if os.environ.get("DUALNET_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


def test_ir_is_identical_across_processes_and_hash_seeds(tmp_path):
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-m", "dualnet", "ir", str(ROOT / "models" / "resnet18.dnet")],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=True,
        )
        outputs.add(run.stdout)
    assert len(outputs) == 1


def test_hierarchy_and_node_kinds():
    summary = dualnet.check_file(str(ROOT / "models" / "resnet18.dnet"))
    entry = summary.instance
    assert entry.path == "" and entry.definition == "ResNet18"
    layer2 = entry.children["layer2"]
    assert isinstance(layer2, ModelInstance) and layer2.definition == "Sequential"
    block = layer2.children["0"]
    assert block.definition == "BasicBlock" and block.path == "layer2.0"
    assert block.hyper == {"out": 128, "stride": 2}
    kinds = {n.kind for n in summary.graph.nodes}
    assert kinds <= {"op", "layer", "call", "constant"} and "call" in kinds
    for node in summary.graph.nodes:
        assert node.span is not None and node.span.file.endswith("resnet18.dnet")
        if node.kind == "call":
            assert node.callee.instance is entry.children[node.target]
        assert len(node.input_names) == len(node.inputs)


def test_parameters_use_state_dict_names():
    summary = dualnet.check_file(str(ROOT / "models" / "resnet18.dnet"))
    names = {
        f"{layer.path}.{p}"
        for layer in summary.instance.layers()
        for p in [*layer.params, *layer.buffers]
    }
    for expected in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_var",
        "fc.weight",
        "fc.bias",
    ):
        assert expected in names
    assert "layer1.0.downsample.0.weight" not in names

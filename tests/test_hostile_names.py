"""Hostile names and file names (issue 11): every name of the corpus (Python keywords and
builtins, dunders, mangled names, the attributes of nn.Module / keras.Model / keras.Layer,
generated code's own names, suffix collisions such as `len` / `len_`) in every role a .dnet
name plays, and file names that would run code or break a comment or docstring. Each program
compiles for every backend, builds, runs, keeps its weight names, agrees with ONNX Runtime,
and executes nothing."""

from __future__ import annotations

import os

import pytest
from hostile_names import FILE_NAMES, MARKER, QUOTED, ROLES, chunks, corpus

import dualnet
from dualnet.backends import BACKENDS
from dualnet.backends.keras.base_attrs import KERAS_BASE_ATTRS
from dualnet.backends.torch.module_attrs import NN_MODULE_ATTRS
from dualnet.compiler import compile_file
from dualnet.io.weights import state_specs
from dualnet.verify import parity

NAMES = corpus()
CHUNK = 140
GROUPS = [*chunks(NAMES, CHUNK), QUOTED]
CASES = [(role, i) for role in ROLES for i in range(len(GROUPS))]
DIMS = {"zzB": 2, "zzT": 3}


def test_the_corpus_is_large_and_covers_every_class():
    assert len(NAMES) >= 500
    for name in (
        "class",
        "lambda",
        "None",
        "len",
        "len_",
        "__init__",
        "__x",
        "_",
        "training",
        "state_dict",
        "weights",
        "name",
        "torch",
        "F",
        "self",
        "super",
    ):
        assert name in NAMES, name


@pytest.mark.parametrize(("role", "index"), CASES, ids=[f"{r}-{i}" for r, i in CASES])
def test_names_compile_run_and_agree(role, index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "names.dnet"
    path.write_text(ROLES[role](GROUPS[index]))
    program = dualnet.load(str(path))
    summary = program.check()
    assert summary.ok, summary.diagnostics[:3]
    for target in ("torch", "keras"):
        program.source(target)
    rows, _ = parity.compare(program, None, list(BACKENDS), dims=DIMS)
    assert rows and all(r.ok for r in rows), [r for r in rows if not r.ok]
    state = program.torch().state_dict()
    assert sorted(state) == sorted(n for n, _ in state_specs(summary.instance))
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("index", range(len(FILE_NAMES)))
def test_file_names_reach_generated_code_as_text(index, tmp_path, monkeypatch):
    """The entry file and the file it imports have hostile names; the generated modules
    compile, run and agree, and nothing in a name runs."""
    monkeypatch.chdir(tmp_path)
    lib_name = FILE_NAMES[index]
    entry_name = FILE_NAMES[(index + 1) % len(FILE_NAMES)]
    (tmp_path / lib_name).write_text(
        "model Lib() {\n    fc = Linear(4)\n"
        "    forward(x: f32[B, 4]) -> f32[B, 4] { return relu(fc(x)) }\n}\n"
    )
    quoted = lib_name.replace("\\", "\\\\").replace('"', '\\"')
    if "\n" in quoted or "\r" in quoted:  # a .dnet string has no line breaks: a link
        os.symlink(lib_name, tmp_path / "lib.dnet")
        quoted = "lib.dnet"
    entry = tmp_path / entry_name
    entry.write_text(
        f'from "{quoted}" import Lib\n\nmodel Net() {{\n    lib = Lib()\n'
        "    forward(x: f32[B, 4]) -> f32[B, 4] { return lib(x) }\n}\n"
    )
    program = dualnet.load(str(entry))
    for target in ("torch", "keras"):
        out = compile_file(str(entry), target, str(tmp_path / "out"))
        assert out.exists()
    rows, _ = parity.compare(program, None, list(BACKENDS), dims={"B": 2})
    assert rows and all(r.ok for r in rows)
    assert not (tmp_path / MARKER).exists()  # what the names would `touch`


def test_base_class_attribute_lists_cover_the_installed_frameworks():
    """Generated code never stores under a name of these lists: they must still hold every
    attribute of the installed torch and Keras (dunders aside)."""
    import keras
    from torch import nn

    def public(names):  # the namespace never hands out a name starting with `__`
        return {n for n in names if not n.startswith("__")}

    assert public(dir(nn.Module()) + dir(nn.Module)) <= NN_MODULE_ATTRS
    keras_names = (
        dir(keras.Model()) + dir(keras.Model) + dir(keras.layers.Layer()) + dir(keras.layers.Layer)
    )
    assert public(keras_names) <= KERAS_BASE_ATTRS


def test_keras_model_with_hostile_hyperparameters_saves_and_reloads(tmp_path):
    """Hyperparameters named like Python builtins or Keras's own keywords survive a `.keras`
    round trip (get_config / from_config)."""
    import keras
    import numpy as np

    names = [
        "float",
        "eval",
        "input",
        "compile",
        "training",
        "name",
        "dtype",
        "cls",
        "self",
        "kwargs",
        "trainable",
        "super",
    ]
    params = ", ".join(f"{n}: int = {i + 1}" for i, n in enumerate(names))
    total = " + ".join(names)
    path = tmp_path / "hyper.dnet"
    path.write_text(
        f"model zzNet({params}) {{\n    fc = Linear({total})\n"
        f"    forward(zz_in: f32[zzB, 4]) {{ return fc(zz_in) * ({total}) }}\n}}\n"
    )
    model = dualnet.load(str(path)).keras()
    x = np.random.default_rng(0).standard_normal((2, 4)).astype("float32")
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras")
    assert np.array_equal(np.asarray(model(x)), np.asarray(again(x)))

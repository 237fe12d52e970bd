"""The runtime helpers as modules (`dualnet/backends/runtime/`): every definition is a helper
dualnet can read without importing a framework, whose dependencies are found, formatted as
generated files are; and a few helpers, imported for real, compute the right numbers."""

from __future__ import annotations

import ast
import builtins
import copy
import os
import subprocess
import symtable
import sys

import numpy as np
import pytest
from generated_source import assert_ruff_clean

from dualnet.backends.common.source_helpers import helpers_used
from dualnet.backends.keras import lowering as keras_lowering
from dualnet.backends.runtime_source import RUNTIME, helper_sources
from dualnet.backends.torch import emit as torch_emit
from dualnet.backends.torch import lowering as torch_lowering

MODULES = {"torch": RUNTIME / "torch_helpers.py", "keras": RUNTIME / "keras_helpers.py"}
HELPERS = {"torch": torch_lowering.HELPERS, "keras": keras_lowering.HELPERS}
# what a generated file may import, by the name it binds
IMPORTS = {
    "torch": {
        "torch": "import torch",
        "F": "import torch.nn.functional as F",
        "nn": "from torch import nn",
    },
    "keras": {"keras": "import keras", "ops": "from keras import ops"},
}


# ---------------------------------------------------------------- reading the modules


@pytest.mark.parametrize("backend", MODULES)
def test_every_definition_is_a_helper_in_file_order(backend):
    tree = ast.parse(MODULES[backend].read_text())
    defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    assert list(HELPERS[backend]) == defined and len(defined) > 10
    assert HELPERS[backend] is helper_sources(MODULES[backend])  # read once
    for name, source in HELPERS[backend].items():
        (node,) = ast.parse(source).body  # exactly one definition, decorators included
        assert node.name == name and source.endswith("\n") and not source.endswith("\n\n")


@pytest.mark.parametrize("backend", MODULES)
def test_module_imports_are_those_of_generated_files(backend):
    tree = ast.parse(MODULES[backend].read_text())
    imports = {
        ast.unparse(n)
        for n in tree.body
        if isinstance(n, ast.Import) or (isinstance(n, ast.ImportFrom) and n.module != "__future__")
    }
    assert imports == set(IMPORTS[backend].values())
    assert set(torch_emit._MODULES.values()) >= set(IMPORTS["torch"].values())


def test_extraction_keeps_decorators_and_comments_and_refuses_statements(tmp_path):
    path = tmp_path / "helpers.py"
    path.write_text(
        '"""doc"""\n\nimport keras\n\n\n@first\n@second(1)\ndef f(x):\n'
        "    return x  # a comment\n\n\n# between\nclass C:\n    pass\n"
    )
    assert dict(helper_sources(path)) == {
        "f": "@first\n@second(1)\ndef f(x):\n    return x  # a comment\n",
        "C": "class C:\n    pass\n",
    }
    path = tmp_path / "constant.py"
    path.write_text("def f():\n    return X\n\n\nX = 1\n")
    with pytest.raises(ValueError, match="constant.py:5"):
        helper_sources(path)


def test_extraction_and_checking_never_import_a_framework():
    code = (
        "import sys\n"
        "from dualnet.backends.runtime_source import RUNTIME, helper_sources\n"
        "for name in ('torch_helpers.py', 'keras_helpers.py'):\n"
        "    assert len(helper_sources(RUNTIME / name)) > 10\n"
        "import dualnet.backends.torch.emit, dualnet.backends.keras.emit\n"
        "assert 'torch' not in sys.modules and 'keras' not in sys.modules\n"
        "assert 'tensorflow' not in sys.modules\n"
        "assert not any(m.startswith('dualnet.backends.runtime.') for m in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _globals_read(source: str, top_only: bool = False) -> set[str]:
    """The global names `source` (one definition) reads: in every scope inside it, or only
    where it is defined (its decorators and base classes) with `top_only`."""
    found: set[str] = set()

    def walk(table: symtable.SymbolTable) -> None:
        for s in table.get_symbols():
            top = table.get_type() == "module"
            if (s.is_referenced() and not s.is_assigned()) if top else s.is_global():
                found.add(s.get_name())
        for child in [] if top_only else table.get_children():
            walk(child)

    walk(symtable.symtable(source, "helper", "exec"))
    return found


@pytest.mark.parametrize("backend", MODULES)
def test_each_helper_brings_every_helper_it_reads(backend):
    helpers = HELPERS[backend]
    for name, source in helpers.items():
        needed = helpers_used(f"{name}()", helpers)
        assert name in needed
        unknown = _globals_read(source) - set(dir(builtins)) - set(IMPORTS[backend])
        assert unknown <= set(needed), (name, unknown - set(needed))
        # what runs where it is defined (a base class, a decorator) is pasted before it
        for early in _globals_read(source, top_only=True) & set(helpers):
            assert needed.index(early) < needed.index(name), (name, early)


def test_helper_dependencies():
    torch_needs = {
        "_pad_first": ["_pad_first", "_forward_padded"],
        "_avg_pool": ["_pad_same", "_avg_pool"],
        "_bn": [
            "_bn",
            "_gradient_in_output_layout",
            "_lay_out_gradient",
            "_laid_out",
            "_skip_num_batches_tracked",
        ],
        "_Function": ["_Function"],
    }
    keras_needs = {
        "_PadSame": ["_pad_same", "_PadSame"],
        "_TorchKernelInit": ["_TorchInit", "_KernelTaps", "_TorchKernelInit", "_trunc_normal"],
        "_KernelTaps": ["_KernelTaps"],
        "_Recurrent": ["_TorchInit", "_trunc_normal", "_SummedBias", "_Recurrent"],
        "_attention": ["_softmax", "_causal_mask", "_attention"],
        "_unchecked": ["_unchecked"],
    }
    for helpers, needs in ((HELPERS["torch"], torch_needs), (HELPERS["keras"], keras_needs)):
        for name, expected in needs.items():
            assert helpers_used(f"y = {name}(x)", helpers) == expected


def test_modules_are_formatted_as_generated_files():
    """Their definitions go into generated files as they are: lint clean and unchanged by
    `ruff format` under a user's default settings."""
    assert_ruff_clean(list(MODULES.values()))


# ---------------------------------------------------------------- PyTorch helpers, for real


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture(scope="module")
def th():
    pytest.importorskip("torch")
    from dualnet.backends.runtime import torch_helpers

    return torch_helpers


def test_torch_pad_same_pads_by_the_same_rule(th):
    import torch

    x = torch.arange(30.0).reshape(1, 1, 5, 6)
    # n=5, k=3, s=2: (3 - 1) * 2 + 3 - 5 = 2 → (1, 1); n=6: (3 - 1) * 2 + 3 - 6 = 1 → (0, 1)
    y = th._pad_same(x, (3, 3), (2, 2))
    np.testing.assert_array_equal(y.numpy(), np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (0, 1))))
    # dilation 2, stride 1, n=4: 3 + 2 * 2 + 1 - 4 = 4 → (2, 2), filled with `value`
    y = th._pad_same(torch.ones(1, 1, 4), (3,), (1,), (2,), value=-1.0)
    assert y.tolist() == [[[-1.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0]]]


def test_torch_avg_pool_divides_by_unpadded_counts(th):
    import torch

    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    # padded [0, 1, 2, 3, 4, 0]: the windows' sums over their unpadded elements
    np.testing.assert_allclose(th._avg_pool(x, (3,), (1,), ((1, 1),)), [[[1.5, 2.0, 3.0, 3.5]]])
    # "same" at run time, stride 2: [1, 2, 3, 4, 0] → (1 + 2 + 3) / 3, (3 + 4) / 2
    np.testing.assert_allclose(th._avg_pool(x, (3,), (2,)), [[[2.0, 3.5]]])


def test_torch_attention_matches_softmax_and_zeroes_empty_rows(th):
    import torch

    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 4)) for _ in range(3))
    mask = np.array([[True, True], [False, False]])
    y = th._attention(*(torch.tensor(a)[None] for a in (q, k, v, mask)))[0].numpy()
    weights = _softmax(q[0] @ k.T / np.sqrt(4.0), -1)  # d = 4
    np.testing.assert_allclose(y[0], weights @ v, rtol=1e-12)
    assert (y[1] == 0).all()


def test_torch_state_names_renames_children_in_state_dict_and_loading(th):
    import torch
    from torch import nn

    module = nn.Module()
    module.held = nn.Linear(2, 2)
    th._state_names(module, {"held": "training"})
    state = module.state_dict()
    assert sorted(state) == ["training.bias", "training.weight"]
    module.load_state_dict({k: torch.zeros_like(v) for k, v in state.items()})  # strict
    assert not module.held.weight.any()
    parent = nn.Sequential(module)  # renamed under a prefix too
    assert sorted(parent.state_dict()) == ["0.training.bias", "0.training.weight"]
    parent.load_state_dict(parent.state_dict())


def test_torch_pad_first_pads_and_copies(th):
    import torch
    from torch import nn

    conv = nn.Conv1d(1, 1, 2)
    padded = th._pad_first(conv, nn.ConstantPad1d((1, 0), 0.0))
    x = torch.randn(1, 1, 5)
    torch.testing.assert_close(
        padded(x), nn.functional.conv1d(nn.functional.pad(x, (1, 0)), conv.weight, conv.bias)
    )
    twin = copy.deepcopy(padded)
    assert twin(x).shape == (1, 1, 5) and sorted(twin.state_dict()) == ["bias", "weight"]


def test_torch_function_and_unchecked(th):
    import torch

    step = th._Function(torch.neg, "neg")
    assert step(torch.ones(2)).tolist() == [-1.0, -1.0] and repr(step) == "_Function(neg)"
    with pytest.raises(ValueError, match="Net: dualnet checked no configuration .*here"):
        th._unchecked("Net", "here")


# ---------------------------------------------------------------- Keras helpers, for real


@pytest.fixture(scope="module")
def kh():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pytest.importorskip("keras")
    from dualnet.backends.runtime import keras_helpers

    return keras_helpers


def test_keras_softmax_at_any_rank(kh):
    from keras import ops

    rng = np.random.default_rng(1)
    for shape, axis in (((3, 4), -1), ((2, 1, 2, 1, 2, 3), 2), ((2, 1, 2, 1, 2, 3), -1)):
        x = rng.standard_normal(shape).astype("float32")
        y = ops.convert_to_numpy(kh._softmax(ops.convert_to_tensor(x), axis=axis))
        np.testing.assert_allclose(y, _softmax(x, axis), rtol=1e-5, atol=1e-6)
        log = ops.convert_to_numpy(kh._softmax(ops.convert_to_tensor(x), axis=axis, log=True))
        np.testing.assert_allclose(log, np.log(_softmax(x, axis)), rtol=1e-5, atol=1e-5)


def test_keras_pad_same_and_avg_pool(kh):
    from keras import ops

    x = np.arange(30.0, dtype="float32").reshape(1, 5, 6, 1)
    y = ops.convert_to_numpy(kh._pad_same(ops.convert_to_tensor(x), (3, 3), (2, 2)))
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (1, 1), (0, 1), (0, 0))))
    x = np.array([1.0, 2.0, 3.0, 4.0], "float32").reshape(1, 4, 1)
    y = ops.convert_to_numpy(kh._avg_pool(ops.convert_to_tensor(x), (3,), (1,), ((1, 1),)))
    np.testing.assert_allclose(y.ravel(), [1.5, 2.0, 3.0, 3.5])


def test_keras_adaptive_pool_uses_pytorchs_windows(kh):
    from keras import ops

    x = np.arange(5.0, dtype="float32").reshape(1, 5)
    y = ops.convert_to_numpy(kh._adaptive_pool(ops.convert_to_tensor(x), 1, 5, 3))
    # windows [0, 2), [1, 4), [3, 5)
    np.testing.assert_allclose(y, [[0.5, 2.0, 3.5]])
    with pytest.raises(ValueError, match="Net: dualnet checked no configuration"):
        kh._unchecked("Net", "here")


@pytest.mark.parametrize("approximate", [False, True])
def test_keras_gelu_is_pytorchs_in_float64(approximate):
    """TensorFlow's float64 gelu kernels are off by up to 5e-9 (erf) and 9e-10 (tanh), which
    a float64 training-run comparison (1e-10) sees; `_gelu` computes PyTorch's formula."""
    import torch
    from keras import ops

    from dualnet.backends.runtime.keras_helpers import _gelu

    x = np.linspace(-6.0, 6.0, 2001)
    mode = "tanh" if approximate else "none"
    want = torch.nn.functional.gelu(torch.from_numpy(x), approximate=mode).numpy()
    got = ops.convert_to_numpy(_gelu(ops.convert_to_tensor(x, "float64"), approximate))
    kernel = ops.convert_to_numpy(ops.gelu(ops.convert_to_tensor(x), approximate=approximate))
    assert np.abs(got - want).max() <= 1e-14 < np.abs(kernel - want).max()

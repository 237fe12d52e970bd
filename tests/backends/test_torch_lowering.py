"""The PyTorch lowering table: for every registry op, the generated expression, executed with
torch (and the runtime helpers it names), equals the op's NumPy reference; layers are built
from their constructor expression, loaded with the reference's parameters by dualnet's names,
and run in eval mode."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lowering_cases import (
    CASES,
    LAYER_CASES,
    Case,
    assert_one_row_per_op,
    case_id,
    fmt,
    one_tensor,
    python_sources,
    randn,
)
from torch import nn

from dualnet.backends.rows import FunctionRow, LayerRow, lowering_row
from dualnet.backends.torch.lowering import HELPERS, TorchCall, helpers_needed
from dualnet.ir.types import DType, TensorType
from dualnet.ops import REGISTRY
from dualnet.ops.free import FREE_TENSORS
from dualnet.ops.registry import run_rule

# ---------------------------------------------------------------- the harness


def lower_function(op: str, call: TorchCall) -> str:
    return lowering_row(op, "torch", layer=False).lower(call)


def lower_and_run(case: Case, hide_in_types: bool = False):
    """Returns (generated sources, torch results, reference results)."""
    bound, construct, src = python_sources(case, "torch", hide_in_types)
    op = REGISTRY[case.op]
    ns = {"torch": torch, "nn": nn, "F": F, **case.env}
    ns.update({name: torch.from_numpy(a) for name, a in bound.named.items()})
    params = {}
    for name in helpers_needed(construct + "\n" + src):
        exec(HELPERS[name], ns)
    if case.op in FREE_TENSORS:  # a tensor: held by a module, as a generated class holds it
        params = bound.params()
        holder = nn.Module()
        holder.tensor = eval(construct, ns)
        assert sorted(holder.state_dict()) == ["tensor"], construct
        trainable = bound.ctx.params.get("", None)
        assert [p.requires_grad for p in holder.parameters()] == (
            [trainable.trainable] if trainable else []
        )
        holder.load_state_dict({"tensor": torch.from_numpy(params[""])})
        ns["module"] = holder.tensor
    elif op.is_layer:
        module = eval(construct, ns)
        expected_keys = sorted({**bound.ctx.params, **bound.ctx.buffers})
        assert sorted(module.state_dict()) == expected_keys, construct
        params = bound.params()
        module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
        ns["module"] = module.eval()
    with torch.no_grad():
        result = eval(src, ns)
    results = list(result) if isinstance(result, tuple) else [result]
    expected = bound.reference(params)
    assert len(results) == len(expected) == len(bound.out_types), src
    return (construct, src), results, expected


def check(case: Case, hide_in_types: bool = False):
    sources, results, expected = lower_and_run(case, hide_in_types)
    for r, e in zip(results, expected, strict=True):
        e = np.asarray(e)
        assert isinstance(r, torch.Tensor), (sources, type(r))
        actual = r.detach().numpy()
        assert actual.dtype == e.dtype, (sources, actual.dtype, e.dtype)
        assert actual.shape == e.shape, (sources, actual.shape, e.shape)
        if e.dtype.kind in "biu":
            np.testing.assert_array_equal(actual, e, err_msg=str(sources))
        else:
            tol = case.tol if e.dtype != np.float64 else 1e-10
            np.testing.assert_allclose(actual, e, rtol=tol, atol=tol, err_msg=str(sources))
    return sources


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_function_matches_reference(case):
    check(case)


@pytest.mark.parametrize("case", [c for c in CASES if one_tensor(c)], ids=case_id)
def test_function_without_input_types(case):
    """The emitter lowers a function child of a Sequential (`_Function(lambda x: ...)`)
    knowing only the result types."""
    check(case, hide_in_types=True)


@pytest.mark.parametrize("case", LAYER_CASES, ids=case_id)
def test_layer_matches_reference(case):
    check(case)


# ---------------------------------------------------------------- the table


def test_table_covers_every_op_once():
    assert_one_row_per_op("torch", LayerRow, FunctionRow)


def test_every_op_has_a_case():
    assert {case.op for case in CASES + LAYER_CASES} == set(REGISTRY)


def test_lower_function_refuses_layers():
    with pytest.raises(KeyError, match="`Conv2d` is a layer, not a function"):
        lower_function("Conv2d", None)


def test_checking_never_imports_torch():
    code = (
        "import sys, dualnet.backends.torch.lowering, dualnet.backends.torch.emit; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- generated source


def _source(op, inputs, config=None, **attrs):
    return lower_and_run(Case(op, inputs, config, **attrs))[0]


def test_readable_sources():
    x = randn(2, 3, 8, 8)
    assert _source(
        "Conv2d",
        {"x": randn(1, 3, 16, 16)},
        {"out": 64, "kernel": 7, "stride": 2, "padding": 3, "bias": False},
    ) == ("nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)", "module(x)")
    assert _source("Conv2d", {"x": x}, {"out": 4, "kernel": 3, "stride": 2, "padding": "same"}) == (
        "nn.Conv2d(3, 4, kernel_size=3, stride=2)",
        "module(F.pad(x, (0, 1, 0, 1)))",
    )
    assert (
        _source("Conv2d", {"x": x}, {"out": 4, "kernel": 3, "padding": "same"})[0]
        == "nn.Conv2d(3, 4, kernel_size=3, padding='same')"
    )
    assert _source("BatchNorm", {"x": x})[0] == "_bn(nn.BatchNorm2d(3, eps=1e-05, momentum=0.1))"
    assert _source(
        "LSTM", {"x": randn(2, 5, 3)}, {"hidden": 4, "layers": 2, "bidirectional": True}, state=True
    ) == (
        "nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)",
        "_unpack_lstm(module(x))",
    )
    assert _source(
        "MultiHeadAttention",
        {"q": randn(2, 4, 8), "k": randn(2, 4, 8), "v": randn(2, 4, 8)},
        {"dim": 8, "heads": 2},
    ) == ("_MultiheadAttention(8, 2, batch_first=True)", "module(q, k, v)")
    assert (
        _source("max_pool2d", {"x": x}, kernel=3, stride=2, padding=1)[1]
        == "F.max_pool2d(x, kernel_size=3, stride=2, padding=1)"
    )
    assert _source("max_pool2d", {"x": x}, kernel=2)[1] == "F.max_pool2d(x, kernel_size=2)"
    assert (
        _source("avg_pool2d", {"x": x}, kernel=3, padding=1, count_include_pad=False)[1]
        == "F.avg_pool2d(x, kernel_size=3, padding=1, count_include_pad=False)"
    )
    assert _source("pad", {"x": x}, pads=(1, 2, 3, 4))[1] == "F.pad(x, (3, 4, 1, 2))"
    assert (
        _source("sum", {"x": x}, axis=(2, 3), keepdims=True)[1] == "x.sum(dim=(2, 3), keepdim=True)"
    )
    assert _source("softmax", {"x": x})[1] == "F.softmax(x, dim=-1)"
    assert _source("getitem", {"x": x}, items=(slice(None), slice(1, 2), -1))[1] == "x[:, 1:2, 7]"
    assert _source("pow", {"x": -2.0, "p": np.ones(3, np.float32)})[1] == "(-2.0) ** p"
    assert _source("add", {"a": 2.0, "b": 3.0})[1] == "torch.tensor(2.0, dtype=torch.float32) + 3.0"
    assert _source("gelu", {"x": x}, approximate="tanh")[1] == "F.gelu(x, approximate='tanh')"
    assert _source("leaky_relu", {"x": x})[1] == "F.leaky_relu(x)"
    assert _source("upsample", {"x": x}, scale=2)[1] == "F.interpolate(x, scale_factor=2)"
    assert _source("split", {"x": x}, n=3, axis=1)[1] == "x.chunk(3, dim=1)"


def test_bracketed_and_device_aware_sources():
    t = TensorType(DType.f32, (2, 3))

    def call(inputs, **attrs):
        return TorchCall(inputs, attrs, {k: t for k in inputs}, [t], fmt)

    assert (
        lower_function("sum", call({"x": "a + b"}, axis=(1,), keepdims=False))
        == "(a + b).sum(dim=1)"
    )
    assert lower_function("sub", call({"a": "x", "b": "y - z"})) == "x - (y - z)"
    assert lower_function("neg", call({"x": "-y"})) == "-(-y)"
    assert (
        lower_function("arange", TorchCall({}, {"n": 4, "_device": "x.device"}, {}, [t], fmt))
        == "torch.arange(4, device=x.device)"
    )
    assert (
        lower_function("exp", call({"x": "1.0"}, _device="x.device"))
        == "torch.exp(torch.tensor(1.0, dtype=torch.float32, device=x.device))"
    )


def test_conv_call_needs_the_layer_config():
    t = TensorType(DType.f32, (2, 3, 8, 8))
    with pytest.raises(KeyError, match="layer.attrs"):
        lowering_row("Conv2d", "torch", layer=True).call(
            "self.conv", TorchCall({"x": "x"}, {}, {"x": t}, [t], fmt)
        )


def test_cast_to_bfloat16():
    x = randn(3, 4)
    _, ctx = run_rule(
        REGISTRY["cast"], {"x": TensorType(DType.f32, (3, 4))}, {"dtype": DType.bf16}, {}, None
    )
    src = lower_function("cast", TorchCall({"x": "x"}, ctx.attrs, {}, [], fmt))
    y = eval(src, {"torch": torch, "x": torch.from_numpy(x)})
    assert y.dtype == torch.bfloat16
    np.testing.assert_allclose(y.float().numpy(), x, rtol=1e-2)


# ---------------------------------------------------------------- runtime helpers


def test_helpers_needed_follows_dependencies():
    assert helpers_needed("y = _avg_pool(x, (3,), (2,), None)") == ["_pad_same", "_avg_pool"]
    assert helpers_needed("self.bn = _bn(nn.BatchNorm2d(3))") == [
        "_bn",
        "_gradient_in_output_layout",
        "_lay_out_gradient",
        "_laid_out",
        "_skip_num_batches_tracked",
    ]
    assert helpers_needed("self._bn(x) + my_pad_same(x) + _bn2(x)") == []
    assert helpers_needed("F.relu(x)") == []


def _bn_module():
    """A BatchNorm built as a generated file builds it (helpers in an importable module, so
    that whole models pickle)."""
    name = "dualnet_generated_bn_test"
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__dict__.update(torch=torch, nn=nn, F=F)
        for helper in helpers_needed("_bn(x)"):
            exec(HELPERS[helper], module.__dict__)
        sys.modules[name] = module
    return eval("_bn(nn.BatchNorm2d(3, eps=1e-05, momentum=0.1))", module.__dict__)


def test_batchnorm_without_batch_counter_loads_trains_copies_and_pickles():
    bn = _bn_module()
    assert sorted(bn.state_dict()) == ["bias", "running_mean", "running_var", "weight"]
    plain = {k: torch.randn(3).abs() + 0.5 for k in bn.state_dict()}
    bn.load_state_dict(plain)  # strict, no num_batches_tracked
    torch_style = {**plain, "num_batches_tracked": torch.tensor(7)}
    bn.load_state_dict(torch_style)  # a PyTorch checkpoint's counter is ignored
    assert torch.equal(bn.running_var, plain["running_var"])
    bn.train()
    bn(torch.randn(4, 3, 2, 2))  # training updates the running statistics
    assert not torch.equal(bn.running_var, plain["running_var"])
    bn.reset_parameters()
    twin = copy.deepcopy(bn)
    twin.load_state_dict(plain)
    buffer = io.BytesIO()
    torch.save(bn, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    loaded.load_state_dict(plain)
    assert sorted(loaded.state_dict()) == sorted(plain)
    parent = nn.Sequential(_bn_module(), nn.ReLU())
    parent.load_state_dict({f"0.{k}": v for k, v in plain.items()})


def test_fully_masked_attention_has_finite_gradients():
    ns = {"torch": torch, "nn": nn, "F": F}
    for name in ("_attention", "_MultiheadAttention"):
        exec(HELPERS[name], ns)
    q = torch.randn(1, 2, 3, 4, requires_grad=True)
    mask = torch.ones(1, 2, 3, 5, dtype=torch.bool)
    mask[0, 1, 2] = False
    k = torch.randn(1, 2, 5, 4, requires_grad=True)
    y = ns["_attention"](q, k, torch.randn(1, 2, 5, 4), mask)
    y.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    assert (y[0, 1, 2] == 0).all()
    attention = ns["_MultiheadAttention"](8, 2, batch_first=True)
    nn.init.normal_(attention.out_proj.bias)
    x = torch.randn(2, 3, 8, requires_grad=True)
    keys = torch.tensor([[True, True, False], [False, False, False]])
    out = attention(x, x, x, keys)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.equal(out[1], attention.out_proj.bias.expand(3, 8))


def _module_mha(attention, q, k, v, mask, causal):
    """nn.MultiheadAttention's own forward on `attention`, with dualnet's mask (true = may
    attend)."""
    blocked = None
    if mask is not None or causal:
        allowed = torch.ones(q.shape[0], q.shape[1], k.shape[1], dtype=torch.bool)
        if mask is not None:
            allowed = allowed & (mask[:, None, :] if mask.dim() == 2 else mask)
        if causal:
            allowed = allowed.tril()
        blocked = (~allowed).repeat_interleave(attention.num_heads, dim=0)
    forward = nn.MultiheadAttention.forward
    return forward(attention, q, k, v, attn_mask=blocked, need_weights=False)[0]


@pytest.mark.parametrize("inputs", ["self", "kv", "cross"])
@pytest.mark.parametrize("mask_kind", [None, "keys", "full"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_mha_helper_computes_what_the_module_does(inputs, mask_kind, causal, bias):
    """`_MultiheadAttention` (F.linear and SDPA over the module's parameters) gives
    nn.MultiheadAttention's outputs and gradients in training mode, attention dropout
    included (the same draws)."""
    ns = {"torch": torch, "nn": nn, "F": F}
    for name in ("_attention", "_MultiheadAttention"):
        exec(HELPERS[name], ns)
    torch.manual_seed(0)
    attention = ns["_MultiheadAttention"](12, 3, bias=bias, dropout=0.25, batch_first=True)
    attention.double()
    if bias:
        nn.init.normal_(attention.in_proj_bias)
        nn.init.normal_(attention.out_proj.bias)
    q = torch.randn(2, 4, 12, dtype=torch.float64)
    tk = 5 if inputs == "kv" else 4
    k = q if inputs == "self" else torch.randn(2, tk, 12, dtype=torch.float64)
    v = torch.randn(2, tk, 12, dtype=torch.float64) if inputs == "cross" else k
    mask = {None: None, "keys": torch.rand(2, tk) > 0.3, "full": torch.rand(2, 4, tk) > 0.3}
    mask = mask[mask_kind]
    if mask is not None:
        mask[..., 0] = True  # every query may attend a key: the module gives no NaN
    weights = torch.linspace(-1, 1, 2 * 4 * 12, dtype=torch.float64).view(2, 4, 12)
    results = []
    for call in (_module_mha, type(attention).__call__):
        leaves = {id(t): t.detach().requires_grad_() for t in (q, k, v)}
        attention.zero_grad()
        torch.manual_seed(1)
        y = call(attention, *(leaves[id(t)] for t in (q, k, v)), mask, causal)
        (y * weights).sum().backward()
        grads = [leaf.grad for leaf in leaves.values()]
        results.append([y, *grads, *(p.grad for p in attention.parameters())])
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)

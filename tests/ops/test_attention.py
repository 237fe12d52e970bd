"""scaled_dot_product_attention and MultiHeadAttention: rules, PyTorch's parameter layout and
initialisers, references against torch (SDPA, nn.MultiheadAttention with converted masks) and
ONNX Attention (opset 23), including the fully-masked-row rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from opkit import B, T, close, fails, infer, onnx_node, randn, run_ref, shapes, tt

from dualnet.ir.dims import sym

RNG = np.random.default_rng(6)
S = sym("S")


# ---------------------------------------------------------------- SDPA rules


def test_sdpa_rules():
    q = tt("f32", B, 4, T, 16)
    assert shapes("scaled_dot_product_attention", {"q": q, "k": q, "v": q}) == ["f32[B, 4, T, 16]"]
    k, v = tt("f32", B, 4, S, 16), tt("f32", B, 4, S, 8)
    ok = {"q": q, "k": k, "v": v}
    assert shapes("scaled_dot_product_attention", ok) == ["f32[B, 4, T, 8]"]
    for m in (tt("bool", B, 1, 1, S), tt("bool", T, S), tt("bool", B, 4, T, S), tt("bool", S)):
        assert shapes("scaled_dot_product_attention", {**ok, "mask": m}) == ["f32[B, 4, T, 8]"]
    assert shapes(
        "scaled_dot_product_attention",
        {"q": tt("f32", 3, T, 16), "k": tt("f32", 1, S, 16), "v": tt("f32", 1, S, 16)},
    ) == ["f32[3, T, 16]"]  # batch axes broadcast
    fails("scaled_dot_product_attention", {**ok, "mask": tt("bool", B, 4, S, T)}, "E-SHAPE")
    fails("scaled_dot_product_attention", {**ok, "mask": tt("bool", 2, B, 4, T, S)}, "E-SHAPE")
    fails("scaled_dot_product_attention", {**ok, "mask": tt("f32", T, S)}, "E-DTYPE")
    fails("scaled_dot_product_attention", {**ok, "k": tt("f32", B, 4, S, 8)}, "E-SHAPE")
    fails("scaled_dot_product_attention", {**ok, "v": tt("f32", B, 4, T, 8)}, "E-SHAPE")
    fails("scaled_dot_product_attention", {**ok, "v": tt("f64", B, 4, S, 8)}, "E-DTYPE")
    fails("scaled_dot_product_attention", {**ok, "q": tt("f32", 16)}, "E-SHAPE")


# ---------------------------------------------------------------- SDPA references


def _torch_sdpa(q, k, v, mask, causal):
    allowed = None
    if mask is not None or causal:
        allowed = np.ones((q.shape[-2], k.shape[-2]), dtype=bool)
        if causal:
            allowed = np.tril(allowed)
        if mask is not None:
            allowed = allowed & mask
    q, k, v = (torch.from_numpy(a) for a in (q, k, v))
    m = None if allowed is None else torch.from_numpy(np.ascontiguousarray(allowed))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=m).numpy()


def _mask(shape, p=0.7):
    m = RNG.random(shape) < p
    m[..., 0] = True  # no fully masked row (PyTorch gives NaN there)
    return m


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_shape", [None, (2, 1, 1, 6), (5, 6), (2, 3, 5, 6)])
def test_sdpa_matches_torch_and_onnx(causal, mask_shape):
    q, k, v = randn(RNG, 2, 3, 5, 8), randn(RNG, 2, 3, 6, 8), randn(RNG, 2, 3, 6, 4)
    mask = None if mask_shape is None else _mask(mask_shape)
    (y,), _, _ = run_ref(
        "scaled_dot_product_attention", {"q": q, "k": k, "v": v, "mask": mask}, causal=causal
    )
    close(y, _torch_sdpa(q, k, v, mask, causal))
    if mask is not None:  # onnx.reference (1.23) takes the causal Tq from the mask's shape:
        mask = np.broadcast_to(mask, (2, 3, 5, 6))  # give it the full [B, h, Tq, Tk] mask
    expected = onnx_node("Attention", [q, k, v, mask], opset=23, is_causal=int(causal))[0]
    close(y, expected)


def test_sdpa_fully_masked_row_is_zero_as_onnx():
    q, k, v = randn(RNG, 1, 2, 3, 4), randn(RNG, 1, 2, 5, 4), randn(RNG, 1, 2, 5, 4)
    mask = _mask((1, 2, 3, 5))
    mask[0, 1, 2] = False  # head 1, query 2 sees nothing
    (y,), _, _ = run_ref("scaled_dot_product_attention", {"q": q, "k": k, "v": v, "mask": mask})
    assert np.all(y[0, 1, 2] == 0) and np.all(np.isfinite(y))
    close(y, onnx_node("Attention", [q, k, v, mask], opset=23)[0])
    with torch.no_grad():  # rows that do see keys agree with PyTorch
        t = _torch_sdpa(q, k, v, mask, False)
    close(y[0, 0], t[0, 0])


def test_sdpa_float64_and_scale():
    q, k, v = (randn(RNG, 4, 7, dtype=np.float64) for _ in range(3))
    (y,), _, _ = run_ref("scaled_dot_product_attention", {"q": q, "k": k, "v": v})
    s = q @ k.T / math.sqrt(7)
    w = np.exp(s - s.max(-1, keepdims=True))
    close(y, (w / w.sum(-1, keepdims=True)) @ v)
    assert y.dtype == np.float64


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("bias_shape", [(2, 3, 5, 6), (3, 1, 6), (5, 6)])
@pytest.mark.parametrize("scale", [None, 0.3])
def test_sdpa_bias_and_scale_match_torch_and_onnx(causal, bias_shape, scale):
    q, k, v = randn(RNG, 2, 3, 5, 8), randn(RNG, 2, 3, 6, 8), randn(RNG, 2, 3, 6, 4)
    bias = randn(RNG, *bias_shape)
    (y,), _, _ = run_ref(
        "scaled_dot_product_attention",
        {"q": q, "k": k, "v": v, "bias": bias},
        causal=causal,
        scale=scale,
    )
    tq, tk, tb = (torch.from_numpy(a) for a in (q, k, bias))
    if causal:  # PyTorch's is_causal takes no attn_mask: the causal rule as -inf in the bias
        tb = tb.masked_fill(~torch.ones(5, 6, dtype=torch.bool).tril(), float("-inf"))
    expected = F.scaled_dot_product_attention(
        tq, tk, torch.from_numpy(v), attn_mask=tb, scale=scale
    ).numpy()
    close(y, expected)
    attrs = {"is_causal": int(causal)} | ({} if scale is None else {"scale": scale})
    full = np.broadcast_to(bias, (2, 3, 5, 6))
    close(y, onnx_node("Attention", [q, k, v, full], opset=23, **attrs)[0])


def test_sdpa_bias_with_mask_keeps_fully_masked_rows_zero():
    q, k, v = randn(RNG, 1, 2, 3, 4), randn(RNG, 1, 2, 5, 4), randn(RNG, 1, 2, 5, 4)
    mask, bias = _mask((1, 2, 3, 5)), randn(RNG, 2, 3, 5)
    mask[0, 0, 1] = False
    (y,), _, _ = run_ref(
        "scaled_dot_product_attention", {"q": q, "k": k, "v": v, "mask": mask, "bias": bias}
    )
    assert np.all(y[0, 0, 1] == 0)
    t = torch.from_numpy(bias).masked_fill(~torch.from_numpy(mask), float("-inf"))
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    expected = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=t).numpy()
    close(y[0, 1], expected[0, 1])


def test_sdpa_bias_rules():
    q, k = tt("f32", B, 4, T, 16), tt("f32", B, 4, S, 16)
    ok = {"q": q, "k": k, "v": k}
    for bias in (tt("f32", 4, T, S), tt("f32", B, 4, T, S), tt("f32", S)):
        assert shapes("scaled_dot_product_attention", {**ok, "bias": bias}) == ["f32[B, 4, T, 16]"]
    fails("scaled_dot_product_attention", {**ok, "bias": tt("f64", T, S)}, "E-DTYPE")
    fails("scaled_dot_product_attention", {**ok, "bias": tt("bool", T, S)}, "E-DTYPE")
    fails("scaled_dot_product_attention", {**ok, "bias": tt("f32", 3, T, S)}, "E-SHAPE")
    fails("scaled_dot_product_attention", {**ok, "bias": tt("f32", S, T)}, "E-SHAPE")


# ---------------------------------------------------------------- MultiHeadAttention


def test_mha_rules_and_params():
    h = tt("f32", B, T, 128)
    out, ctx = infer(
        "MultiHeadAttention",
        {"q": h, "k": h, "v": h, "mask": tt("bool", B, T)},
        config={"dim": 128, "heads": 2},
    )
    assert str(out[0]) == "f32[B, T, 128]" and ctx.config["head_dim"] == 64
    module = torch.nn.MultiheadAttention(128, 2, batch_first=True)
    state = module.state_dict()
    assert {k: s.shape for k, s in ctx.params.items()} == {
        k: tuple(v.shape) for k, v in state.items()
    }
    init = {k: s.init for k, s in ctx.params.items()}
    assert init["in_proj_weight"].scheme == "xavier_uniform"
    assert dict(init["in_proj_weight"].args) == {"fan_in": 128, "fan_out": 384}
    assert init["in_proj_bias"].scheme == init["out_proj.bias"].scheme == "zeros"
    assert init["out_proj.weight"].scheme == "kaiming_uniform"
    assert dict(init["out_proj.weight"].args)["a"] == pytest.approx(math.sqrt(5))
    # PyTorch's own draws: xavier bound sqrt(6 / (E + 3E)); kaiming(a=√5) bound 1/sqrt(E)
    w = state["in_proj_weight"].abs().max().item()
    assert 0.95 * math.sqrt(6 / 512) < w <= math.sqrt(6 / 512)
    w = state["out_proj.weight"].abs().max().item()
    assert 0.95 / math.sqrt(128) < w <= 1 / math.sqrt(128)
    assert not state["in_proj_bias"].any() and not state["out_proj.bias"].any()
    _, ctx = infer(
        "MultiHeadAttention",
        {"q": h, "k": h, "v": h},
        config={"dim": 128, "heads": 2, "bias": False},
    )
    no_bias = torch.nn.MultiheadAttention(128, 2, bias=False).state_dict()
    assert sorted(ctx.params) == sorted(no_bias)


def test_mha_cross_attention_and_failures():
    q, kv = tt("f32", B, T, 32), tt("f32", B, S, 32)
    cfg = {"dim": 32, "heads": 4}
    ins = {"q": q, "k": kv, "v": kv}
    assert shapes("MultiHeadAttention", ins, config=cfg) == ["f32[B, T, 32]"]
    assert shapes(
        "MultiHeadAttention", {**ins, "mask": tt("bool", B, T, S)}, config=cfg, causal=True
    ) == ["f32[B, T, 32]"]
    fails("MultiHeadAttention", ins, "E-VALUE", config={"dim": 32, "heads": 5})
    fails("MultiHeadAttention", {**ins, "q": tt("f32", B, T, 16)}, "E-SHAPE", config=cfg)
    fails("MultiHeadAttention", {**ins, "v": tt("f32", B, T, 32)}, "E-SHAPE", config=cfg)
    fails("MultiHeadAttention", {**ins, "k": tt("f32", 3, S, 32)}, "E-SHAPE", config=cfg)
    fails("MultiHeadAttention", {**ins, "mask": tt("bool", B, T)}, "E-SHAPE", config=cfg)
    fails("MultiHeadAttention", {**ins, "mask": tt("bool", B, S, T)}, "E-SHAPE", config=cfg)
    fails("MultiHeadAttention", {**ins, "mask": tt("bool", S)}, "E-SHAPE", config=cfg)
    fails("MultiHeadAttention", {**ins, "mask": tt("i64", B, S)}, "E-DTYPE", config=cfg)
    fails("MultiHeadAttention", {**ins, "v": tt("f64", B, S, 32)}, "E-DTYPE", config=cfg)


def _torch_mha(params, q, k, v, mask, causal, dim, heads, bias):
    module = torch.nn.MultiheadAttention(dim, heads, bias=bias, batch_first=True)
    module.load_state_dict({n: torch.from_numpy(a) for n, a in params.items()})
    module.eval()
    key_padding, attn = None, None
    tq, tk = q.shape[1], k.shape[1]
    if mask is not None and mask.ndim == 2:
        key_padding = torch.from_numpy(~mask)  # PyTorch: True = ignore this key
    blocked = np.zeros((q.shape[0], tq, tk), dtype=bool)
    if mask is not None and mask.ndim == 3:
        blocked |= ~mask
    if causal:
        blocked |= ~np.tril(np.ones((tq, tk), dtype=bool))
    if blocked.any():  # PyTorch: [B·heads, Tq, Tk], True = not allowed
        attn = torch.from_numpy(np.repeat(blocked, heads, axis=0))
    with torch.no_grad():
        y, _ = module(
            *(torch.from_numpy(a) for a in (q, k, v)),
            key_padding_mask=key_padding,
            attn_mask=attn,
            need_weights=False,
        )
    return y.numpy()


@pytest.mark.parametrize("mask_kind", [None, "keys", "full"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_mha_matches_torch(mask_kind, causal, bias):
    dim, heads, batch, tq, tk = 12, 3, 2, 4, 5
    q, k, v = randn(RNG, batch, tq, dim), randn(RNG, batch, tk, dim), randn(RNG, batch, tk, dim)
    mask = {None: None, "keys": _mask((batch, tk)), "full": _mask((batch, tq, tk))}[mask_kind]
    cfg = {"dim": dim, "heads": heads, "bias": bias}
    (y,), params, _ = run_ref(
        "MultiHeadAttention",
        {"q": q, "k": k, "v": v, "mask": mask},
        config=cfg,
        rng=RNG,
        param_scale=0.3,
        causal=causal,
    )
    close(y, _torch_mha(params, q, k, v, mask, causal, dim, heads, bias))


def test_mha_self_attention_with_padding_mask():
    dim, heads = 8, 2
    h = randn(RNG, 3, 6, dim)
    mask = np.ones((3, 6), dtype=bool)
    mask[1, 4:] = False
    mask[2, 2:] = False
    (y,), params, _ = run_ref(
        "MultiHeadAttention",
        {"q": h, "k": h, "v": h, "mask": mask},
        config={"dim": dim, "heads": heads},
        rng=RNG,
        param_scale=0.3,
    )
    close(y, _torch_mha(params, h, h, h, mask, False, dim, heads, True))


def test_mha_fully_masked_query_gives_out_proj_bias():
    dim, heads = 8, 2
    q, kv = randn(RNG, 1, 3, dim), randn(RNG, 1, 4, dim)
    mask = _mask((1, 3, 4))
    mask[0, 1] = False
    (y,), params, _ = run_ref(
        "MultiHeadAttention",
        {"q": q, "k": kv, "v": kv, "mask": mask},
        config={"dim": dim, "heads": heads},
        rng=RNG,
        param_scale=0.3,
    )
    close(y[0, 1], params["out_proj.bias"])

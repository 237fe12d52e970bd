"""Attention: scaled_dot_product_attention and the MultiHeadAttention layer (PyTorch's
parameter layout; masks are bool with true = may attend)."""

from __future__ import annotations

import math

from dualnet.ir.graph import Init
from dualnet.ir.types import DType, TensorType
from dualnet.ops.common import broadcast, fan_in_init, positive, probability, same_dtype
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, Use, register, sig

_FULLY_MASKED = (
    "A query that may attend no key (every key masked) gets all-zero attention "
    "weights, so its attended value is 0 (ONNX Attention's rule; PyTorch's SDPA "
    "gives NaN there)."
)
_CAUSAL = (
    "causal=true lets query i attend key j only when j ≤ i (top-left aligned, as "
    "PyTorch's is_causal and ONNX Attention without a cache); it combines with `mask` "
    "by logical and."
)


def attend(q, k, v, allowed=None, causal: bool = False, bias=None, scale=None):
    """softmax(q kᵀ · scale + bias, masked) v over [..., T, d] arrays (scale 1/√d unless
    given); `allowed` and `bias` broadcast to [..., Tq, Tk] (true = may attend). Computed in
    float64."""
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ np.swapaxes(k, -1, -2) * scale
    if bias is not None:
        scores = scores + bias.astype(np.float64)
    tq, tk = scores.shape[-2:]
    keep = np.ones((tq, tk), dtype=bool)
    if causal:
        keep = np.tril(keep)
    if allowed is not None:
        keep = keep & allowed
    keep = np.broadcast_to(keep, scores.shape)
    scores = np.where(keep, scores, -np.inf)
    top = np.max(scores, axis=-1, keepdims=True)
    e = np.where(keep, np.exp(scores - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = np.sum(e, axis=-1, keepdims=True)
    return (e / np.where(total == 0, 1.0, total)) @ v


def _mask_check(ctx: Ctx, mask: TensorType | None, target: tuple) -> None:
    if mask is None:
        return
    if mask.dtype != DType.bool:
        ctx.fail(
            f"`mask` must be a bool tensor (true = may attend), found {mask}",
            "mask",
            f"{mask.dtype}",
            code="E-DTYPE",
            notes=("compare to get a bool mask, e.g. `ids != 0`",),
        )
    if mask.rank > len(target) or broadcast(ctx, mask, TensorType(mask.dtype, target)) != target:
        ctx.fail(
            f"`mask` {mask} does not broadcast to the attention scores "
            f"[{', '.join(str(d) for d in target)}]",
            "mask",
            "mask shape",
        )


# ---------------------------------------------------------------- scaled_dot_product_attention


def _sdpa_macs(use: Use):
    """q kᵀ and the weights times v: each of the [..., Tq, Tk] scores takes d + dv."""
    k, v, out = use.inputs["k"], use.inputs["v"], use.outputs[0]
    return math.prod(out.shape[:-1]) * k.shape[-2] * (k.shape[-1] + v.shape[-1])


def _sdpa_infer(ctx: Ctx) -> list[TensorType]:
    q, k, v = (ctx.inputs[n] for n in ("q", "k", "v"))
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.rank < 2:
            ctx.fail(f"`{name}` must be [..., T, d], found {t}", name, f"rank {t.rank}")
    dtype = same_dtype(ctx, q, k, v)
    if q.shape[-1] != k.shape[-1]:
        ctx.fail(
            f"query and key sizes differ: {q} and {k}", "k", f"d: {q.shape[-1]} vs {k.shape[-1]}"
        )
    if k.shape[-2] != v.shape[-2]:
        ctx.fail(
            f"keys and values differ in length: {k} and {v}",
            "v",
            f"Tk: {k.shape[-2]} vs {v.shape[-2]}",
        )
    batch = broadcast(ctx, TensorType(dtype, q.shape[:-2]), TensorType(dtype, k.shape[:-2]))
    batch = broadcast(ctx, TensorType(dtype, batch), TensorType(dtype, v.shape[:-2]))
    scores = (*batch, q.shape[-2], k.shape[-2])
    _mask_check(ctx, ctx.inputs.get("mask"), scores)
    _bias_check(ctx, ctx.inputs.get("bias"), dtype, scores)
    return [TensorType(dtype, (*batch, q.shape[-2], v.shape[-1]))]


def _bias_check(ctx: Ctx, bias: TensorType | None, dtype: DType, target: tuple) -> None:
    if bias is None:
        return
    if bias.dtype != dtype:
        ctx.fail(
            f"`bias` is added to the {dtype} attention scores, found {bias}",
            "bias",
            f"{bias.dtype}",
            code="E-DTYPE",
        )
    if bias.rank > len(target) or broadcast(ctx, bias, TensorType(dtype, target)) != target:
        ctx.fail(
            f"`bias` {bias} does not broadcast to the attention scores "
            f"[{', '.join(str(d) for d in target)}]",
            "bias",
            "bias shape",
        )


def _sdpa_ref(inputs, attrs, params):
    q = inputs["q"]
    y = attend(
        q,
        inputs["k"],
        inputs["v"],
        inputs.get("mask"),
        attrs["causal"],
        inputs.get("bias"),
        attrs["scale"],
    )
    return [y.astype(q.dtype)]


register(
    OpDef(
        name="scaled_dot_product_attention",
        signature=sig(
            P("q", "tensor", dtypes="float"),
            P("k", "tensor", dtypes="float"),
            P("v", "tensor", dtypes="float"),
            P("mask", "tensor?", None),
            P("causal", "bool", False),
            P("bias", "tensor?", None),
            P("scale", "float", None),
        ),
        infer=_sdpa_infer,
        macs=_sdpa_macs,
        reference=_sdpa_ref,
        differentiable=("q", "k", "v", "bias"),
        doc="softmax(q kᵀ · scale + bias) v on q [..., Tq, d], k [..., Tk, d], v [..., Tk, dv] "
        "(batch axes broadcast; scale 1/√d unless given, d = q's last size; `bias`, a float "
        "tensor of q's dtype broadcast to [..., Tq, Tk], is added to the scores as PyTorch's "
        "float attn_mask is); `mask` is bool, broadcast to [..., Tq, Tk], true = may attend. "
        f"{_CAUSAL} {_FULLY_MASKED}",
    )
)


# ---------------------------------------------------------------- MultiHeadAttention


def _mha_macs(use: Use):
    """The q, k and v projections, the two attention products, the output projection."""
    q, k, dim = use.inputs["q"], use.inputs["k"], use.attrs["dim"]
    rows_q, rows_k = q.shape[0] * q.shape[1], k.shape[0] * k.shape[1]  # B·Tq, B·Tk
    return (2 * rows_q + 2 * rows_k) * dim * dim + 2 * rows_q * k.shape[1] * dim


def _mha_infer(ctx: Ctx) -> list[TensorType]:
    q, k, v = (ctx.inputs[n] for n in ("q", "k", "v"))
    cfg = ctx.config
    dim, heads = cfg["dim"], cfg["heads"]
    positive(ctx, (dim,), "dim")
    positive(ctx, (heads,), "heads")
    if dim % heads:
        ctx.fail(f"heads={heads} must divide dim={dim}", "heads", "does not divide", code="E-VALUE")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.rank != 3:
            ctx.fail(f"`{name}` must be [B, T, {dim}], found {t}", name, f"rank {t.rank}")
        if t.shape[2] != dim:
            ctx.fail(
                f"`{name}` must have {dim} features (the layer's dim), found {t}",
                name,
                f"{t.shape[2]} vs {dim}",
            )
    probability(ctx, "dropout")
    dtype = same_dtype(ctx, q, k, v)
    if not q.shape[0] == k.shape[0] == v.shape[0]:
        ctx.fail(f"batch sizes differ: {q}, {k}, {v}", "k", "dimension 0")
    if k.shape[1] != v.shape[1]:
        ctx.fail(
            f"keys and values differ in length: {k} and {v}",
            "v",
            f"Tk: {k.shape[1]} vs {v.shape[1]}",
        )
    batch, tq, tk = q.shape[0], q.shape[1], k.shape[1]
    mask = ctx.inputs.get("mask")
    if mask is not None and mask.rank not in (2, 3):
        ctx.fail(
            f"`mask` must be bool [B, Tk] or [B, Tq, Tk], found {mask}", "mask", f"rank {mask.rank}"
        )
    if mask is not None:
        _mask_check(ctx, mask, (batch, tk) if mask.rank == 2 else (batch, tq, tk))
    cfg.update(head_dim=dim // heads, batch_first=True)
    ctx.param(
        "in_proj_weight",
        (3 * dim, dim),
        Init("xavier_uniform", (("fan_in", dim), ("fan_out", 3 * dim))),
    )
    if cfg["bias"]:
        ctx.param("in_proj_bias", (3 * dim,), Init("zeros"))
    ctx.param("out_proj.weight", (dim, dim), fan_in_init(dim)[0])
    if cfg["bias"]:
        ctx.param("out_proj.bias", (dim,), Init("zeros"))
    return [TensorType(dtype, (batch, tq, dim))]


def _mha_ref(inputs, attrs, params):
    q_in, k_in, v_in = inputs["q"], inputs["k"], inputs["v"]
    dim, heads = attrs["dim"], attrs["heads"]
    w = params["in_proj_weight"].astype(np.float64)
    b = params.get("in_proj_bias", np.zeros(3 * dim)).astype(np.float64)

    def project(x, i):
        y = x.astype(np.float64) @ w[i * dim : (i + 1) * dim].T + b[i * dim : (i + 1) * dim]
        return y.reshape(*x.shape[:2], heads, dim // heads).transpose(0, 2, 1, 3)

    mask = inputs.get("mask")
    if mask is not None:  # [B, Tk] → [B, 1, 1, Tk]; [B, Tq, Tk] → [B, 1, Tq, Tk]
        mask = mask[:, None, None, :] if mask.ndim == 2 else mask[:, None]
    o = attend(project(q_in, 0), project(k_in, 1), project(v_in, 2), mask, attrs["causal"])
    o = o.transpose(0, 2, 1, 3).reshape(*q_in.shape[:2], dim)
    y = o @ params["out_proj.weight"].astype(np.float64).T
    if "out_proj.bias" in params:
        y = y + params["out_proj.bias"]
    return [y.astype(q_in.dtype)]


register(
    OpDef(
        name="MultiHeadAttention",
        signature=sig(
            P("q", "tensor", dtypes="float"),
            P("k", "tensor", dtypes="float"),
            P("v", "tensor", dtypes="float"),
            P("mask", "tensor?", None),
            P("causal", "bool", False),
        ),
        construct=sig(
            P("dim", "int"), P("heads", "int"), P("bias", "bool", True), P("dropout", "float", 0.0)
        ),
        infer=_mha_infer,
        macs=_mha_macs,
        reference=_mha_ref,
        differentiable=("q", "k", "v"),
        doc="PyTorch's nn.MultiheadAttention with batch_first=True: q [B, Tq, dim], k/v "
        "[B, Tk, dim]; in_proj_weight [3·dim, dim] (rows q, k, v; xavier_uniform), "
        "in_proj_bias [3·dim] (zeros), out_proj.weight [dim, dim] (kaiming_uniform a=√5), "
        "out_proj.bias (zeros); heads split dim into dim/heads slices. `mask` is bool [B, Tk] "
        f"(per key) or [B, Tq, Tk], true = may attend. {_CAUSAL} {_FULLY_MASKED} "
        "(For MultiHeadAttention that query's result is out_proj.bias.) `dropout`: the "
        "probability of zeroing an attention weight while training (nn.MultiheadAttention's "
        "dropout); none in inference mode.",
    )
)

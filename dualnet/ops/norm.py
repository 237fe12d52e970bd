"""Normalisation layers: BatchNorm, LayerNorm, LayerNorm2d, RMSNorm, GroupNorm (PyTorch names,
defaults and initialisers; references in inference mode)."""

from __future__ import annotations

from dualnet.ir.graph import Init
from dualnet.ir.types import TensorType
from dualnet.ops.common import positive, require_rank
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, register, sig

_CALL = sig(P("x", "tensor", dtypes="float"))
ONES, ZEROS = Init("ones"), Init("zeros")


def _check_eps(ctx: Ctx) -> None:
    if ctx.config["eps"] < 0:
        ctx.fail(
            f"`eps` must be non-negative, found {ctx.config['eps']:g}",
            "eps",
            "out of range",
            code="E-VALUE",
        )


def _channels(ctx: Ctx, x: TensorType) -> int:
    c = x.shape[1]
    if not isinstance(c, int):
        ctx.fail(
            f"the channel dimension (axis 1) must be known, found `{c}`",
            "x",
            "symbolic channel count",
        )
    return c


def _channel_shape(x: np.ndarray) -> tuple[int, ...]:
    return (1, -1) + (1,) * (x.ndim - 2)


# ---------------------------------------------------------------- BatchNorm


def _batchnorm_infer(ctx: Ctx) -> list[TensorType]:
    x, cfg = ctx.inputs["x"], ctx.config
    require_rank(ctx, "x", x, (2, 3, 4, 5), "[B, C, ...]")
    c = _channels(ctx, x)
    _check_eps(ctx)
    if not 0.0 <= cfg["momentum"] <= 1.0:
        ctx.fail(
            f"`momentum` must be in [0, 1], found {cfg['momentum']:g}",
            "momentum",
            "out of range",
            code="E-VALUE",
        )
    cfg.update(num_features=c, rank=x.rank)  # rank picks BatchNorm1d/2d/3d in PyTorch
    ctx.param("weight", (c,), ONES)
    ctx.param("bias", (c,), ZEROS)
    ctx.buffer("running_mean", (c,), ZEROS)
    ctx.buffer("running_var", (c,), ONES)
    return [x]


def _batchnorm_ref(inputs, attrs, params):
    x = inputs["x"]
    shape = _channel_shape(x)
    mean, var = params["running_mean"].reshape(shape), params["running_var"].reshape(shape)
    y = (x - mean) / np.sqrt(var + attrs["eps"])
    return [(y * params["weight"].reshape(shape) + params["bias"].reshape(shape)).astype(x.dtype)]


register(
    OpDef(
        name="BatchNorm",
        signature=_CALL,
        construct=sig(P("eps", "float", 1e-5), P("momentum", "float", 0.1)),
        infer=_batchnorm_infer,
        reference=_batchnorm_ref,
        differentiable=("x",),
        axes="channels",
        doc="Batch normalisation over axis 1 of [B, C, ...] (rank 2-5); weight/bias [C] (ones, "
        "zeros), buffers running_mean/running_var [C] (zeros, ones); momentum is PyTorch's "
        "(weight of the new batch; Keras gets 1 - m, ONNX's momentum is 1 - m). Inference "
        "uses the running statistics (ONNX BatchNormalization); training normalises with the "
        "biased batch variance and updates running_var with the unbiased one.",
    )
)


# ---------------------------------------------------------------- LayerNorm


def _normalized_shape(ctx: Ctx, x: TensorType, params: str = "weight and bias have") -> tuple:
    """The last `axes` sizes of x (LayerNorm, RMSNorm): known, as the parameters (`params`)
    have them."""
    n = ctx.config["axes"]
    positive(ctx, (n,), "axes")
    if n > x.rank:
        ctx.fail(f"cannot normalise over the last {n} axes of {x}", "x", f"rank {x.rank}")
    shape = tuple(x.shape[x.rank - n :])
    symbolic = [d for d in shape if not isinstance(d, int)]
    if symbolic:
        ctx.fail(
            f"normalises over the last {n} axes of {x}, whose sizes must be known; found "
            f"`{symbolic[0]}`",
            "x",
            "symbolic normalised size",
            notes=(f"{params} the normalised shape",),
        )
    return shape


def _layernorm_infer(ctx: Ctx) -> list[TensorType]:
    x, cfg = ctx.inputs["x"], ctx.config
    shape = _normalized_shape(ctx, x)
    _check_eps(ctx)
    cfg["normalized_shape"] = shape
    ctx.param("weight", shape, ONES)
    if cfg["bias"]:
        ctx.param("bias", shape, ZEROS)
    return [x]


def _normalized_f64(inputs, attrs):
    """(x, x in float64, the normalised axes): the last `axes` axes."""
    x = inputs["x"]
    return x, x.astype(np.float64), tuple(range(x.ndim - attrs["axes"], x.ndim))


def _layernorm_ref(inputs, attrs, params):
    x, xd, axes = _normalized_f64(inputs, attrs)
    mean = xd.mean(axis=axes, keepdims=True)
    var = ((xd - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (xd - mean) / np.sqrt(var + attrs["eps"])
    y = y * params["weight"]
    return [(y + params["bias"] if attrs["bias"] else y).astype(x.dtype)]


register(
    OpDef(
        name="LayerNorm",
        signature=_CALL,
        construct=sig(P("eps", "float", 1e-5), P("axes", "int", 1), P("bias", "bool", True)),
        infer=_layernorm_infer,
        reference=_layernorm_ref,
        differentiable=("x",),
        doc="Layer normalisation over the last `axes` axes (biased variance); weight/bias of that "
        "shape (`normalized_shape`; ones, zeros; no bias with bias=false, as nn.LayerNorm's "
        "bias=False). ONNX LayerNormalization with axis=-axes.",
    )
)


# ---------------------------------------------------------------- LayerNorm2d


def _layernorm2d_infer(ctx: Ctx) -> list[TensorType]:
    x, cfg = ctx.inputs["x"], ctx.config
    require_rank(ctx, "x", x, (2, 3, 4, 5), "[B, C, ...]")
    c = _channels(ctx, x)
    _check_eps(ctx)
    cfg["normalized_shape"] = (c,)
    ctx.param("weight", (c,), ONES)
    if cfg["bias"]:
        ctx.param("bias", (c,), ZEROS)
    return [x]


def _layernorm2d_ref(inputs, attrs, params):
    x = inputs["x"]
    xd = np.moveaxis(x.astype(np.float64), 1, -1)
    mean = xd.mean(axis=-1, keepdims=True)
    var = ((xd - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (xd - mean) / np.sqrt(var + attrs["eps"]) * params["weight"]
    y = y + params["bias"] if attrs["bias"] else y
    return [np.moveaxis(y, -1, 1).astype(x.dtype)]


register(
    OpDef(
        name="LayerNorm2d",
        signature=_CALL,
        construct=sig(P("eps", "float", 1e-5), P("bias", "bool", True)),
        infer=_layernorm2d_infer,
        reference=_layernorm2d_ref,
        differentiable=("x",),
        axes="channels",
        doc="Layer normalisation over the channel axis 1 of [B, C, ...] (rank 2-5), each "
        "position on its own (biased variance): torchvision's LayerNorm2d, weight/bias [C] "
        "(ones, zeros; no bias with bias=false). Keras LayerNormalization(axis=-1) on the "
        "channels-last tensor; ONNX LayerNormalization between two Transposes.",
    )
)


# ---------------------------------------------------------------- RMSNorm


def _rmsnorm_infer(ctx: Ctx) -> list[TensorType]:
    x, cfg = ctx.inputs["x"], ctx.config
    shape = _normalized_shape(ctx, x, "its weight has")
    if cfg["eps"] is None:  # PyTorch's eps=None, torch.finfo(dtype).eps: written as a number
        cfg["eps"] = x.dtype.eps
    _check_eps(ctx)
    cfg["normalized_shape"] = shape
    ctx.param("weight", shape, ONES)
    return [x]


def _rmsnorm_ref(inputs, attrs, params):
    x, xd, axes = _normalized_f64(inputs, attrs)
    y = xd / np.sqrt((xd * xd).mean(axis=axes, keepdims=True) + attrs["eps"])
    return [(y * params["weight"]).astype(x.dtype)]


register(
    OpDef(
        name="RMSNorm",
        signature=_CALL,
        construct=sig(P("eps", "float", None), P("axes", "int", 1)),
        infer=_rmsnorm_infer,
        reference=_rmsnorm_ref,
        differentiable=("x",),
        doc="Root-mean-square normalisation over the last `axes` axes: x / sqrt(mean(x²) + eps) "
        "· weight, weight of that shape (`normalized_shape`; ones), no bias (torch.nn.RMSNorm). "
        "eps=none is PyTorch's torch.finfo(dtype).eps of the input's dtype, resolved when the "
        "model is checked (f32: 2⁻²³). Keras RMSNormalization; ONNX Mul, ReduceMean, Add, "
        "Sqrt, Reciprocal (opset 13).",
    )
)


# ---------------------------------------------------------------- GroupNorm


def _groupnorm_infer(ctx: Ctx) -> list[TensorType]:
    x, cfg = ctx.inputs["x"], ctx.config
    if x.rank < 2:
        ctx.fail(f"expects an input [B, C, ...], found {x}", "x", f"rank {x.rank}")
    c = _channels(ctx, x)
    groups = cfg["groups"]
    positive(ctx, (groups,), "groups")
    if c % groups:
        ctx.fail(
            f"groups={groups} must divide the {c} channels",
            "groups",
            "does not divide",
            code="E-VALUE",
        )
    _check_eps(ctx)
    cfg["num_channels"] = c
    ctx.param("weight", (c,), ONES)
    ctx.param("bias", (c,), ZEROS)
    return [x]


def _groupnorm_ref(inputs, attrs, params):
    x = inputs["x"]
    g = attrs["groups"]
    xg = x.astype(np.float64).reshape(x.shape[0], g, -1)
    mean = xg.mean(axis=-1, keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=-1, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + attrs["eps"])).reshape(x.shape)
    shape = _channel_shape(x)
    return [(y * params["weight"].reshape(shape) + params["bias"].reshape(shape)).astype(x.dtype)]


register(
    OpDef(
        name="GroupNorm",
        signature=_CALL,
        construct=sig(P("groups", "int"), P("eps", "float", 1e-5)),
        infer=_groupnorm_infer,
        reference=_groupnorm_ref,
        differentiable=("x",),
        axes="channels",
        doc="Group normalisation: axis 1 of [B, C, ...] in `groups` consecutive groups, each "
        "normalised over its channels and the spatial axes (biased variance); per-channel "
        "weight/bias [C] (ones, zeros) — ONNX GroupNormalization opset 21 (per-channel scale), "
        "not opset 18's per-group scale.",
    )
)

"""Linear, Embedding, Dropout, StochasticDepth and Identity."""

from __future__ import annotations

from dualnet.ir.graph import Init
from dualnet.ir.types import DType, TensorType
from dualnet.ops.common import WEIGHT_INITS, fan_in_params, init_choice, positive, probability
from dualnet.ops.registry import Ctx, OpDef, P, register, sig


def _linear_infer(ctx: Ctx) -> list[TensorType]:
    x, cfg = ctx.inputs["x"], ctx.config
    if x.rank < 1:
        ctx.fail(f"expects an input with a feature axis, found {x}", "x", "rank 0")
    fin = x.shape[-1]
    if not isinstance(fin, int):
        ctx.fail(
            f"the input feature size must be known, found `{fin}`", "x", "symbolic last dimension"
        )
    positive(ctx, (cfg["out"],), "out")
    cfg["in_features"] = fin
    fan_in_params(ctx, (cfg["out"], fin), fin, cfg["out"], cfg["out"])
    return [x.with_shape((*x.shape[:-1], cfg["out"]))]


def _linear_ref(inputs, attrs, params):
    y = inputs["x"] @ params["weight"].T
    return [y + params["bias"] if "bias" in params else y]


register(
    OpDef(
        name="Linear",
        signature=sig(P("x", "tensor", dtypes="float")),
        construct=sig(P("out", "int"), P("bias", "bool", True), *WEIGHT_INITS),
        infer=_linear_infer,
        reference=_linear_ref,
        macs=lambda use: use.outputs[0].numel * use.attrs["in_features"],
        differentiable=("x",),
        doc="y = x Wᵀ + b on the last axis; weight [out, in].",
    )
)


def _embedding_infer(ctx: Ctx) -> list[TensorType]:
    ids, cfg = ctx.inputs["ids"], ctx.config
    positive(ctx, (cfg["vocab"], cfg["dim"]), "vocab")
    # PyTorch's fans of the weight [vocab, dim]: fan_in = size(1), fan_out = size(0)
    ctx.param(
        "weight",
        (cfg["vocab"], cfg["dim"]),
        init_choice(ctx, cfg["init"], Init("normal", (("std", 1.0),)), cfg["dim"], cfg["vocab"]),
    )
    return [TensorType(DType.f32, (*ids.shape, cfg["dim"]))]


register(
    OpDef(
        name="Embedding",
        signature=sig(P("ids", "tensor", dtypes="int")),
        construct=sig(P("vocab", "int"), P("dim", "int"), P("init", "init", None)),
        infer=_embedding_infer,
        reference=lambda inputs, attrs, params: [params["weight"][inputs["ids"]]],
        doc="Table lookup: ids [...] → [..., dim]; weight [vocab, dim], N(0, 1).",
    )
)


def _dropout_infer(ctx: Ctx) -> list[TensorType]:
    probability(ctx, "p")
    return [ctx.inputs["x"]]


def _stochastic_depth_infer(ctx: Ctx) -> list[TensorType]:
    x = ctx.inputs["x"]
    if ctx.config["mode"] == "row" and x.rank < 1:
        ctx.fail(f"row mode drops samples of axis 0: found {x}", "x", "a 0-d tensor")
    return _dropout_infer(ctx)


register(
    OpDef(
        name="Dropout",
        signature=sig(P("x", "tensor", dtypes="float")),
        construct=sig(P("p", "float", 0.5)),
        infer=_dropout_infer,
        reference=lambda inputs, attrs, params: [inputs["x"]],  # inference mode
        differentiable=("x",),
        axes="pointwise",
        doc="Zeroes elements with probability p while training (scaled by 1/(1-p)); identity "
        "in inference mode.",
    )
)

register(
    OpDef(
        name="StochasticDepth",
        signature=sig(P("x", "tensor", dtypes="float")),
        construct=sig(P("p", "float"), P("mode", "str", "row", choices=("row", "batch"))),
        infer=_stochastic_depth_infer,
        reference=lambda inputs, attrs, params: [inputs["x"]],  # inference mode
        differentiable=("x",),
        axes="pointwise",
        doc="torchvision's StochasticDepth (drop path): while training, zeroes each sample "
        '(mode="row": a mask [B, 1, ...]) or the whole batch ("batch") with probability p, '
        "scaling what is kept by 1/(1-p); identity in inference mode.",
    )
)

register(
    OpDef(
        name="Identity",
        signature=sig(P("x", "tensor")),
        construct=sig(),
        infer=lambda ctx: [ctx.inputs["x"]],
        reference=lambda inputs, attrs, params: [inputs["x"]],
        differentiable=("x",),
        axes="pointwise",
        doc="Returns its input.",
    )
)

"""Free tensors a model declares: `Parameter` (learnable, or frozen with trainable=false) and
`Buffer` (state that is not learned, in the weight file). Each is its own only tensor: its
state_dict name is its declared name (`class_token`, `blocks.0.layer_scale`), and forward
reads it by that name (PyTorch's nn.Parameter / nn.Buffer attributes)."""

from __future__ import annotations

from dualnet.ir.graph import Init
from dualnet.ir.types import DType, TensorType
from dualnet.ops.registry import Ctx, OpDef, P, register, sig

PARAMETER_INITS = ("zeros", "ones", "constant", "normal", "uniform", "trunc_normal")
BUFFER_INITS = ("zeros", "ones", "constant")  # and "table": a Buffer(expr)'s computed values
FREE_TENSORS = ("Parameter", "Buffer")
# Layers whose `weight` may be another layer's (`tie=`), and the layers' tensors forward may
# read by name (`transformer.wte.weight`): those every backend holds in PyTorch's layout or
# reads back into it.
TIEABLE = ("Linear", "Embedding")
READABLE = {
    "Linear": ("weight", "bias"),
    "Embedding": ("weight",),
    "LayerNorm": ("weight", "bias"),
    "RMSNorm": ("weight",),
}


def _init(ctx: Ctx, dtype: DType) -> Init:
    """The `Init` the arguments choose (torch.nn.init's functions of those names):
    constant(value), normal(mean, std), uniform(a, b), trunc_normal(mean, std, a, b)."""
    cfg = ctx.config
    scheme = cfg["init"]
    if scheme in ("zeros", "ones"):
        return Init(scheme)
    if scheme == "constant":
        return Init("constant", (("value", cfg["value"]),))
    if scheme == "table":  # Buffer(expr): the values computed at compile time, row-major
        return Init("table", (("values", cfg["table"]),))
    if not dtype.is_float:
        ctx.fail(f'init="{scheme}" draws floats; a {dtype} tensor', "init", code="E-DTYPE")
    if scheme == "uniform":
        if not cfg["a"] < cfg["b"]:
            ctx.fail(
                f"uniform needs a < b, found a={cfg['a']:g}, b={cfg['b']:g}", "b", code="E-VALUE"
            )
        return Init("uniform_range", (("a", cfg["a"]), ("b", cfg["b"])))
    if cfg["std"] <= 0:
        ctx.fail(f"`std` must be positive, found {cfg['std']:g}", "std", code="E-VALUE")
    args = (("mean", cfg["mean"]), ("std", cfg["std"]))
    if scheme == "normal":
        return Init("normal", args)
    if not cfg["a"] < cfg["b"]:
        ctx.fail(
            f"trunc_normal needs a < b, found a={cfg['a']:g}, b={cfg['b']:g}", "b", code="E-VALUE"
        )
    return Init("trunc_normal", (*args, ("a", cfg["a"]), ("b", cfg["b"])))


def _free_infer(ctx: Ctx) -> list[TensorType]:
    cfg = ctx.config
    shape, dtype = tuple(cfg["shape"]), cfg["dtype"]
    if not shape:
        ctx.fail("a free tensor needs at least one axis", "shape", code="E-VALUE")
    init = _init(ctx, dtype)
    if ctx.op.name == "Parameter":
        if cfg["trainable"] and not dtype.is_float:
            ctx.fail(
                f"a trainable Parameter must be a float tensor, found {dtype}",
                "dtype",
                code="E-DTYPE",
                notes=("write trainable=false, or declare a Buffer",),
            )
        ctx.param("", shape, init, dtype, cfg["trainable"])
    else:
        ctx.buffer("", shape, init, dtype)
    spec = ctx.params.get("") or ctx.buffers[""]
    return [TensorType(dtype, spec.shape)]


def _free_ref(inputs, attrs, params):
    return [params[attrs.get("tensor", "")]]  # a layer's tensor read by name: `tensor`


_DRAWS = (
    P("value", "float", 0.0),
    P("mean", "float", 0.0),
    P("std", "float", 1.0),
    P("a", "float", -2.0),
    P("b", "float", 2.0),
)

register(
    OpDef(
        name="Parameter",
        signature=sig(),
        construct=sig(
            P("shape", "dims"),
            P("init", "str", "zeros", choices=PARAMETER_INITS),
            P("dtype", "dtype", DType.f32),
            P("trainable", "bool", True),
            *_DRAWS,
        ),
        infer=_free_infer,
        reference=_free_ref,
        doc="A learnable tensor of `shape` (sizes known at compile time), read in forward by "
        'its name; nn.Parameter. init: "zeros" (default), "ones", "constant" (value), "normal" '
        '(mean, std), "uniform" (a, b) or "trunc_normal" (mean, std, cut at a and b: '
        "torch.nn.init.trunc_normal_). trainable=false freezes it (requires_grad=False): "
        "still in the weight file, not counted as trainable.",
    )
)

register(
    OpDef(
        name="Buffer",
        signature=sig(),
        construct=sig(
            P("shape", "dims"),
            P("dtype", "dtype", DType.f32),
            P("init", "str", "zeros", choices=BUFFER_INITS),
            P("value", "float", 0.0),
        ),
        infer=_free_infer,
        reference=_free_ref,
        doc="A tensor of `shape` and `dtype` that is state, not learned (a persistent buffer, "
        'nn.Buffer), read in forward by its name; init "zeros" (default), "ones" or '
        '"constant" (value). A weight file sets it, as a checkpoint sets an index table.',
    )
)

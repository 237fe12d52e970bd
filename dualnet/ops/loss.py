"""Losses and metrics with torch.nn.functional's meaning: cross_entropy (class-index or
class-probability targets, class weights, label smoothing, ignore_index), nll, mse, l1,
smooth_l1, huber, binary_cross_entropy_with_logits, kl_div; and the metrics accuracy and
top_k_accuracy.

Class losses take input [N, C] or [N, C, d1, ...] and an integer target [N] or [N, d1, ...]
(cross_entropy also a float target of the input's type: probabilities); the element-wise
losses an input and a target of one shape and float dtype. `reduction` "mean" and "sum" give
a scalar of the input's dtype, "none" the per-element losses."""

from __future__ import annotations

from dualnet.ir.types import DType, TensorType
from dualnet.ops.lazy_numpy import np
from dualnet.ops.reduce import log_softmax_ref
from dualnet.ops.registry import Ctx, OpDef, P, register, sig

REDUCTIONS = ("mean", "sum", "none")


def _reduced(ctx: Ctx, x: TensorType, per_element: tuple) -> list[TensorType]:
    if ctx.attrs.get("reduction", "mean") == "none":
        return [x.with_shape(per_element)]
    return [x.with_shape(())]


def _check_per_class(ctx: Ctx, name: str, x: TensorType, classes: tuple) -> None:
    """Input `name`, if given, is one weight per class: x's dtype, shape `classes`."""
    weight = ctx.inputs.get(name)
    if weight is not None and (weight.dtype != x.dtype or weight.shape != classes):
        ctx.fail(f"{name} {weight} is one weight per class: expected {x.with_shape(classes)}", name)


def _class_infer(ctx: Ctx) -> list[TensorType]:
    """input [N, C, d...] and target [N, d...] (cross_entropy: or probabilities [N, C, d...]);
    weight [C]."""
    x, target = ctx.inputs["input"], ctx.inputs["target"]
    if x.rank < 2:
        ctx.fail(f"needs input [N, C] or [N, C, d1, ...], found {x}", "input", f"rank {x.rank}")
    want = (x.shape[0], *x.shape[2:])
    _check_per_class(ctx, "weight", x, x.shape[1:2])
    if target.dtype.is_float and ctx.op.name == "cross_entropy":
        if target != x:
            ctx.fail(
                f"target {target} holds class probabilities: expected the input's type {x}",
                "target",
                f"expected {x}",
                notes=("class indices are an i64 tensor [N] or [N, d1, ...]",),
            )
    elif target.dtype != DType.i64:
        ctx.fail(
            f"target {target} holds class indices: expected i64",
            "target",
            "not i64",
            code="E-DTYPE",
            notes=('cast(target, "i64")',),
        )
    elif tuple(target.shape) != want:
        ctx.fail(
            f"target {target} does not fit input {x}: expected the class indices "
            f"{TensorType(target.dtype, want)}",
            "target",
            "one class index per example",
        )
    if "k" in ctx.attrs and not 1 <= ctx.attrs["k"]:
        ctx.fail(f"k is {ctx.attrs['k']}, expected ≥ 1", "k", code="E-VALUE")
    if "label_smoothing" in ctx.attrs and not 0 <= ctx.attrs["label_smoothing"] <= 1:
        ctx.fail("label_smoothing is in [0, 1]", "label_smoothing", code="E-VALUE")
    return _reduced(ctx, x, want)


def _pair_infer(ctx: Ctx) -> list[TensorType]:
    """input and target of one shape and dtype."""
    x, target = ctx.inputs["input"], ctx.inputs["target"]
    if target != x:
        ctx.fail(
            f"target {target} differs from input {x}",
            "target",
            f"expected {x}",
            notes=("losses compare tensors of one shape and dtype: broadcast explicitly",),
        )
    for name in ("beta", "delta"):
        if name in ctx.attrs and not ctx.attrs[name] > 0:
            ctx.fail(f"{name} is {ctx.attrs[name]}, expected > 0", name, code="E-VALUE")
    _check_per_class(ctx, "pos_weight", x, x.shape[-1:])
    if ctx.attrs.get("reduction") == "batchmean" and x.rank == 0:
        ctx.fail("batchmean divides by the batch size: input has no batch axis", "input")
    return _reduced(ctx, x, x.shape)


def _reduce(loss, reduction: str, dtype, count=None, batch: int = 1):
    if reduction == "none":
        return [loss.astype(dtype)]
    total = np.sum(loss)
    if reduction == "sum":
        return [np.asarray(total, dtype=dtype)]
    if reduction == "batchmean":
        return [np.asarray(total / batch, dtype=dtype)]
    return [np.asarray(total / (loss.size if count is None else count), dtype=dtype)]


def _picked(logp, target):
    """logp[n, target[n, d...], d...] (an ignored index reads class 0)."""
    return np.squeeze(np.take_along_axis(logp, np.expand_dims(target, 1), axis=1), 1)


def _per_class(weight, rank: int):
    """weight [C] shaped to broadcast along axis 1 of a rank-`rank` input."""
    return np.reshape(weight, (1, -1) + (1,) * (rank - 2))


def _class_loss_ref(logp, target, attrs, weight, smoothing: float = 0.0):
    """PyTorch's nll_loss of log-probabilities and class indices, with class weights (the
    mean divides by the kept targets' weights) and cross_entropy's label smoothing."""
    keep = target != attrs["ignore_index"]
    index = np.where(keep, target, 0)
    scale = np.ones(index.shape, logp.dtype) if weight is None else weight[index]
    loss = -scale * _picked(logp, index)
    if smoothing:
        weighted = logp if weight is None else logp * _per_class(weight, logp.ndim)
        loss = (1 - smoothing) * loss - smoothing * np.mean(weighted, axis=1)
    loss = np.where(keep, loss, 0)
    return _reduce(loss, attrs["reduction"], logp.dtype, np.sum(np.where(keep, scale, 0)))


def _cross_entropy_ref(inputs, attrs, params):
    x, target, weight = inputs["input"], inputs["target"], inputs.get("weight")
    logp = log_softmax_ref({"x": x}, {"axis": 1}, params)[0]
    if target.dtype.kind != "f":
        return _class_loss_ref(logp, target, attrs, weight, attrs["label_smoothing"])
    eps, classes = attrs["label_smoothing"], x.shape[1]
    target = target * (1 - eps) + eps / classes
    if weight is not None:
        target = target * _per_class(weight, x.ndim)
    loss = -np.sum(target * logp, axis=1)
    return _reduce(loss, attrs["reduction"], x.dtype)


def _nll_ref(inputs, attrs, params):
    return _class_loss_ref(inputs["input"], inputs["target"], attrs, inputs.get("weight"))


def _pointwise_ref(fn):
    def reference(inputs, attrs, params):
        x = inputs["input"]
        loss = fn(x, inputs["target"], attrs, inputs)
        batch = x.shape[0] if x.ndim else 1
        return _reduce(loss, attrs["reduction"], x.dtype, batch=batch)

    return reference


def _smooth_l1(x, t, attrs, inputs):
    d, beta = np.abs(x - t), attrs["beta"]
    return np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


def _huber(x, t, attrs, inputs):
    d, delta = np.abs(x - t), attrs["delta"]
    return np.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))


def _bce_with_logits(x, t, attrs, inputs):
    softplus = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)  # log(1 + exp(-x))
    weight = inputs.get("pos_weight")
    scale = 1 if weight is None else 1 + (weight - 1) * t
    return (1 - t) * x + scale * softplus


def _kl_div(x, t, attrs, inputs):
    if attrs["log_target"]:
        return np.exp(t) * (t - x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), 0) - t * x


def _accuracy_ref(inputs, attrs, params):
    x, target = inputs["input"], inputs["target"]
    return [np.asarray(np.mean(np.argmax(x, axis=1) == target), dtype=x.dtype)]


def _top_k_ref(inputs, attrs, params):
    x, target = inputs["input"], inputs["target"]
    own = np.take_along_axis(x, np.expand_dims(target, 1), axis=1)
    hits = np.sum(x > own, axis=1) < attrs["k"]
    return [np.asarray(np.mean(hits), dtype=x.dtype)]


def _tensors(*, target: str = "float") -> tuple[P, P]:
    return P("input", "tensor", dtypes="float"), P("target", "tensor", dtypes=target)


def _reduction(*extra: str) -> P:
    return P("reduction", "str", "mean", choices=(*REDUCTIONS, *extra))


_CLASS_SHAPES = (
    " input [N, C] or [N, C, d1, ...], target the i64 class indices [N] or [N, d1, ...]."
)
_CLASS_NOTE = _CLASS_SHAPES[:-1] + (
    "; `reduction` mean (over the targets not ignored), sum or none (target's shape)."
)
_PAIR_NOTE = (
    " input and target of one shape and float dtype; `reduction` mean, sum or none "
    "(the input's shape)."
)

for _op in (
    OpDef(
        name="cross_entropy",
        signature=sig(
            *_tensors(target="number"),
            P("weight", "tensor?", None),
            P("label_smoothing", "float", 0.0),
            P("ignore_index", "int", -100),
            _reduction(),
        ),
        infer=_class_infer,
        reference=_cross_entropy_ref,
        differentiable=("input",),
        doc="F.cross_entropy of logits and class indices: (1 - ε)·nll + ε·mean over classes "
        "of -log_softmax, ε = label_smoothing; targets equal to ignore_index count for "
        "nothing; weight [C] weighs each class (the mean then divides by the targets' "
        "weights). A float target of the input's type holds class probabilities: "
        "-Σ_c weight_c·t'_c·log_softmax_c with t' = (1 - ε)·t + ε/C, the mean over the "
        "examples (ignore_index does not apply)." + _CLASS_NOTE,
    ),
    OpDef(
        name="nll",
        signature=sig(
            *_tensors(target="int"),
            P("weight", "tensor?", None),
            P("ignore_index", "int", -100),
            _reduction(),
        ),
        infer=_class_infer,
        reference=_nll_ref,
        differentiable=("input",),
        doc="F.nll_loss: -weight[target[n]]·input[n, target[n]] of log-probabilities; targets "
        "equal to ignore_index count for nothing." + _CLASS_NOTE,
    ),
    OpDef(
        name="mse",
        signature=sig(*_tensors(), _reduction()),
        infer=_pair_infer,
        reference=_pointwise_ref(lambda x, t, a, i: (x - t) ** 2),
        differentiable=("input", "target"),
        doc="F.mse_loss: (input - target)²." + _PAIR_NOTE,
    ),
    OpDef(
        name="l1",
        signature=sig(*_tensors(), _reduction()),
        infer=_pair_infer,
        reference=_pointwise_ref(lambda x, t, a, i: np.abs(x - t)),
        differentiable=("input", "target"),
        doc="F.l1_loss: |input - target|." + _PAIR_NOTE,
    ),
    OpDef(
        name="smooth_l1",
        signature=sig(*_tensors(), _reduction(), P("beta", "float", 1.0)),
        infer=_pair_infer,
        reference=_pointwise_ref(_smooth_l1),
        differentiable=("input", "target"),
        doc="F.smooth_l1_loss: 0.5·d²/beta where d = |input - target| < beta, else "
        "d - 0.5·beta." + _PAIR_NOTE,
    ),
    OpDef(
        name="huber",
        signature=sig(*_tensors(), _reduction(), P("delta", "float", 1.0)),
        infer=_pair_infer,
        reference=_pointwise_ref(_huber),
        differentiable=("input", "target"),
        doc="F.huber_loss: 0.5·d² where d = |input - target| < delta, else "
        "delta·(d - 0.5·delta)." + _PAIR_NOTE,
    ),
    OpDef(
        name="binary_cross_entropy_with_logits",
        signature=sig(*_tensors(), _reduction(), P("pos_weight", "tensor?", None)),
        infer=_pair_infer,
        reference=_pointwise_ref(_bce_with_logits),
        differentiable=("input", "target"),
        doc="F.binary_cross_entropy_with_logits: -(pos_weight·t·log σ(x) + (1 - t)·"
        "log(1 - σ(x))), computed stably; pos_weight [C] weighs the positives of each class "
        "(the input's last axis)." + _PAIR_NOTE,
    ),
    OpDef(
        name="kl_div",
        signature=sig(*_tensors(), _reduction("batchmean"), P("log_target", "bool", False)),
        infer=_pair_infer,
        reference=_pointwise_ref(_kl_div),
        differentiable=("input", "target"),
        doc="F.kl_div of log-probabilities `input`: target·(log target - input) (0 where "
        "target is 0), exp(target)·(target - input) with log_target; `reduction` mean (over "
        "every element, PyTorch's default), batchmean (the sum over the batch size), sum or "
        "none.",
    ),
    OpDef(
        name="accuracy",
        signature=sig(*_tensors(target="int")),
        infer=_class_infer,
        reference=_accuracy_ref,
        doc="The fraction of examples whose argmax over the classes (the first on ties) is "
        "the target; a scalar of the input's dtype; not differentiable." + _CLASS_SHAPES,
    ),
    OpDef(
        name="top_k_accuracy",
        signature=sig(*_tensors(target="int"), P("k", "int")),
        infer=_class_infer,
        reference=_top_k_ref,
        doc="The fraction of examples whose target class has fewer than k classes scoring "
        "strictly higher (the target wins ties); a scalar of the input's dtype; not "
        "differentiable." + _CLASS_SHAPES,
    ),
):
    register(_op)

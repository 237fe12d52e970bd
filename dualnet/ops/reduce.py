"""Reductions (mean, sum, max, min, argmax, argmin), cumsum and softmax / log_softmax."""

from __future__ import annotations

from dualnet.ir.types import DType, TensorType
from dualnet.ops.common import norm_axis
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, register, sig


def _reduced_shape(x: TensorType, axes: tuple[int, ...], keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _no_scalar(ctx: Ctx, x: TensorType) -> None:
    if x.rank == 0:
        ctx.fail(f"cannot reduce the rank-0 tensor {x} along an axis", "x", "rank 0")


def _reduce_infer(ctx: Ctx) -> list[TensorType]:
    x, axis = ctx.inputs["x"], ctx.attrs["axis"]
    _no_scalar(ctx, x)
    axes = tuple(norm_axis(ctx, a, x.rank) for a in ((axis,) if isinstance(axis, int) else axis))
    if len(set(axes)) != len(axes):
        ctx.fail(f"axis {axis} names an axis twice", "axis", "repeated axis", code="E-VALUE")
    axes = tuple(sorted(axes))
    ctx.attrs["axis"] = axes
    if ctx.op.name in ("max", "min") and any(x.shape[a] == 0 for a in axes):
        ctx.fail(
            f"over an axis of size 0 there is no {ctx.op.name} (x is {x})",
            "x",
            "an empty axis",
            code="E-SHAPE",
        )
    return [x.with_shape(_reduced_shape(x, axes, ctx.attrs["keepdims"]))]


def _reduce_reference(fn: str):
    def reference(inputs, attrs, params):
        x = inputs["x"]
        return [
            np.asarray(getattr(np, fn)(x, axis=attrs["axis"], keepdims=attrs["keepdims"])).astype(
                x.dtype
            )
        ]

    return reference


# name: (NumPy function, input dtypes, ONNX counterpart)
_REDUCE = {
    "mean": ("mean", "float", "ReduceMean"),
    "sum": ("sum", "number", "ReduceSum"),
    "max": ("max", "number", "ReduceMax"),
    "min": ("min", "number", "ReduceMin"),
}

for _name, (_fn, _dtypes, _onnx) in _REDUCE.items():
    register(
        OpDef(
            name=_name,
            signature=sig(
                P("x", "tensor", dtypes=_dtypes), P("axis", "ints"), P("keepdims", "bool", False)
            ),
            infer=_reduce_infer,
            reference=_reduce_reference(_fn),
            differentiable=("x",),
            axes="attribute",
            doc=f"{_name.capitalize()} over `axis` (an int or a tuple; normalised to a sorted "
            f"tuple of non-negative axes); the result keeps x's dtype (ONNX {_onnx}).",
        )
    )


def _arg_infer(ctx: Ctx) -> list[TensorType]:
    x = ctx.inputs["x"]
    _no_scalar(ctx, x)
    axis = norm_axis(ctx, ctx.attrs["axis"], x.rank)
    ctx.attrs["axis"] = axis
    return [TensorType(DType.i64, _reduced_shape(x, (axis,), ctx.attrs["keepdims"]))]


def _arg_reference(fn: str):
    def reference(inputs, attrs, params):
        x = inputs["x"]
        return [
            np.asarray(getattr(np, fn)(x, axis=attrs["axis"], keepdims=attrs["keepdims"])).astype(
                np.int64
            )
        ]

    return reference


for _name in ("argmax", "argmin"):
    register(
        OpDef(
            name=_name,
            signature=sig(
                P("x", "tensor", dtypes="number"), P("axis", "int"), P("keepdims", "bool", False)
            ),
            infer=_arg_infer,
            reference=_arg_reference(_name),
            differentiable=(),
            axes="attribute",
            doc=f"i64 index of the {_name[3:]}imum along `axis`, the first one on ties "
            f"(ONNX {'ArgMax' if _name == 'argmax' else 'ArgMin'}, select_last_index=0); "
            "not differentiable.",
        )
    )


def _cumsum_infer(ctx: Ctx) -> list[TensorType]:
    x = ctx.inputs["x"]
    _no_scalar(ctx, x)
    ctx.attrs["axis"] = norm_axis(ctx, ctx.attrs["axis"], x.rank)
    return [x]


register(
    OpDef(
        name="cumsum",
        signature=sig(P("x", "tensor", dtypes="number"), P("axis", "int")),
        infer=_cumsum_infer,
        reference=lambda inputs, attrs, params: [
            np.cumsum(inputs["x"], axis=attrs["axis"], dtype=inputs["x"].dtype)
        ],
        differentiable=("x",),
        axes="attribute",
        doc="Running sum along `axis` (torch.cumsum, ONNX CumSum); the result keeps x's dtype.",
    )
)


def _softmax_infer(ctx: Ctx) -> list[TensorType]:
    x = ctx.inputs["x"]
    ctx.attrs["axis"] = norm_axis(ctx, ctx.attrs["axis"], x.rank)
    return [x]


def _softmax_ref(inputs, attrs, params):
    x = inputs["x"]
    e = np.exp(x - np.max(x, axis=attrs["axis"], keepdims=True))
    return [(e / np.sum(e, axis=attrs["axis"], keepdims=True)).astype(x.dtype)]


def log_softmax_ref(inputs, attrs, params):
    x = inputs["x"]
    shifted = x - np.max(x, axis=attrs["axis"], keepdims=True)
    return [
        (shifted - np.log(np.sum(np.exp(shifted), axis=attrs["axis"], keepdims=True))).astype(
            x.dtype
        )
    ]


register(
    OpDef(
        name="softmax",
        signature=sig(P("x", "tensor", dtypes="float"), P("axis", "int", -1)),
        infer=_softmax_infer,
        reference=_softmax_ref,
        differentiable=("x",),
        axes="attribute",
        doc="exp(x) / sum(exp(x)) along `axis` (ONNX Softmax, opset ≥ 13).",
    )
)

register(
    OpDef(
        name="log_softmax",
        signature=sig(P("x", "tensor", dtypes="float"), P("axis", "int", -1)),
        infer=_softmax_infer,
        reference=log_softmax_ref,
        differentiable=("x",),
        axes="attribute",
        doc="x - log(sum(exp(x))) along `axis` (ONNX LogSoftmax, opset ≥ 13).",
    )
)

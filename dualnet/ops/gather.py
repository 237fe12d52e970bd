"""Indexing by an integer tensor: take(x, index, axis), the op behind `x[index]`, and
gather(x, axis, index), PyTorch's torch.gather."""

from __future__ import annotations

from dualnet.ir.types import TensorType
from dualnet.ops.common import norm_axis
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, register, sig


def _take_infer(ctx: Ctx) -> list[TensorType]:
    x, index = ctx.inputs["x"], ctx.inputs["index"]
    if x.rank == 0:
        ctx.fail("cannot index a rank-0 tensor", "x", "rank 0")
    axis = norm_axis(ctx, ctx.attrs["axis"], x.rank)
    ctx.attrs["axis"] = axis
    return [x.with_shape((*x.shape[:axis], *index.shape, *x.shape[axis + 1 :]))]


register(
    OpDef(
        name="take",
        signature=sig(P("x", "tensor"), P("index", "tensor", dtypes="int"), P("axis", "int", 0)),
        infer=_take_infer,
        reference=lambda inputs, attrs, params: [
            np.take(inputs["x"], inputs["index"], axis=attrs["axis"])
        ],
        differentiable=("x",),
        doc="The entries of x at the integer tensor `index` along `axis`: PyTorch's `x[index]` "
        "(axis 0; `x[:, index]` axis 1), numpy.take, ONNX Gather. Result shape x.shape[:axis] "
        "+ index.shape + x.shape[axis + 1:]; negative indices count from the end; an index "
        "out of range is an error at run time (of each framework).",
    )
)


def _gather_infer(ctx: Ctx) -> list[TensorType]:
    x, index = ctx.inputs["x"], ctx.inputs["index"]
    if index.rank != x.rank or x.rank == 0:
        ctx.fail(
            f"needs an index of x's rank {x.rank} (at least 1), found {index}",
            "index",
            f"rank {index.rank}",
        )
    axis = norm_axis(ctx, ctx.attrs["axis"], x.rank)
    for i, (d, n) in enumerate(zip(x.shape, index.shape, strict=True)):
        if i != axis and d != n:
            ctx.fail(
                f"index {index} and x {x} differ on axis {i}, which is not `axis`",
                "index",
                f"dimension {i}: {n} vs {d}",
                notes=("dualnet's gather takes x's sizes on every other axis",),
            )
    ctx.attrs["axis"] = axis
    return [x.with_shape(index.shape)]


register(
    OpDef(
        name="gather",
        signature=sig(P("x", "tensor"), P("axis", "int"), P("index", "tensor", dtypes="int")),
        infer=_gather_infer,
        reference=lambda inputs, attrs, params: [
            np.take_along_axis(inputs["x"], inputs["index"], axis=attrs["axis"])
        ],
        differentiable=("x",),
        doc="torch.gather: y[i][j][k] = x[i][index[i][j][k]][k] for axis 1, ONNX "
        "GatherElements, numpy.take_along_axis. index has x's rank and x's sizes on every "
        "other axis (PyTorch also takes smaller ones); the result has index's shape. Indices "
        "are in 0..size - 1 (PyTorch refuses negative ones at run time).",
    )
)

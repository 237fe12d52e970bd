"""Indexing by an integer tensor: take(x, index, axis), the op behind `x[index]`."""

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

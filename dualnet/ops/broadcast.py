"""Broadcasting a tensor to a given shape: expand and broadcast_to (PyTorch's)."""

from __future__ import annotations

from dualnet.ir.dims import Dim
from dualnet.ir.types import TensorType
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, register, sig


def _is_keep(d) -> bool:
    return isinstance(d, int) and d == -1


def broadcast_shape(ctx: Ctx) -> list[TensorType]:
    """x's shape broadcast to `shape` as `Tensor.expand` does: new leading axes, size-1 axes
    repeated, -1 (or the same size) keeping an axis; normalised to the result's sizes."""
    x, shape = ctx.inputs["x"], tuple(ctx.attrs["shape"])
    if len(shape) < x.rank:
        ctx.fail(
            f"{len(shape)} sizes for {x}: the shape needs at least {x.rank}",
            "shape",
            f"at least {x.rank} sizes",
            code="E-VALUE",
        )
    new = len(shape) - x.rank
    out = []
    for i, s in enumerate(shape):
        if isinstance(s, int) and s < 1 and not (_is_keep(s) and i >= new):
            why = "a new leading axis needs its size" if _is_keep(s) else "sizes are positive"
            ctx.fail(f"size {s} at position {i} is out of range", "shape", why, code="E-VALUE")
        if i < new:
            out.append(s)
            continue
        d = x.shape[i - new]
        if _is_keep(s) or s == d:
            out.append(d)
        elif isinstance(d, int) and d == 1:
            out.append(s)
        else:
            proof = "" if isinstance(d, int) and not isinstance(s, Dim) else " provably"
            ctx.fail(
                f"cannot expand {x} to [{', '.join(str(v) for v in shape)}]: axis {i - new} "
                f"has size {d}, which is not{proof} {s} or 1",
                "shape",
                f"size {d} vs {s}",
            )
    ctx.attrs["shape"] = tuple(out)
    return [x.with_shape(tuple(out))]


def _reference(inputs, attrs, params):
    return [np.array(np.broadcast_to(inputs["x"], attrs["shape"]))]


for _name, _torch in (("expand", "Tensor.expand"), ("broadcast_to", "torch.broadcast_to")):
    register(
        OpDef(
            name=_name,
            signature=sig(P("x", "tensor"), P("shape", "dims")),
            infer=broadcast_shape,
            reference=_reference,
            differentiable=("x",),
            doc=f"x broadcast to `shape` ({_torch}): new leading axes, size-1 axes repeated; "
            "-1 or x's own size keeps an axis. Sizes may be symbolic. Normalised to the "
            "result's sizes (no -1).",
        )
    )

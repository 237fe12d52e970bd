"""Pooling: max and average pooling (1-d, 2-d, 3-d), global and adaptive average pooling."""

from __future__ import annotations

import math

from dualnet import budget
from dualnet.ir.dims import Dim, equal_everywhere
from dualnet.ir.types import TensorType
from dualnet.ops.common import (
    conv_out,
    expand,
    positive,
    require_rank,
    resolve_padding,
    same_pads,
)
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, register, sig


def _window_rule(n: int):
    def infer(ctx: Ctx) -> list[TensorType]:
        x, attrs = ctx.inputs["x"], ctx.attrs
        require_rank(ctx, "x", x, (n + 2,), "[B, C" + ", spatial" * n + "]")
        k = expand(ctx, attrs["kernel"], n, "kernel")
        s = k if attrs["stride"] is None else expand(ctx, attrs["stride"], n, "stride")
        positive(ctx, k + s, "kernel")
        pads, spatial = resolve_padding(ctx, attrs["padding"], x.shape[2:], k, s, (1,) * n)
        if any(p is not None and max(p) * 2 > kk for p, kk in zip(pads, k, strict=True)):
            ctx.fail(
                "padding must be at most half the kernel size",
                "padding",
                "too large",
                code="E-VALUE",
            )
        if attrs["ceil_mode"]:
            pads, spatial = _ceil_pads(ctx, x.shape[2:], k, s, pads)
        attrs.update(kernel=k, stride=s, pads=pads)
        return [x.with_shape((*x.shape[:2], *spatial))]

    return infer


def _ceil_pads(ctx: Ctx, spatial: tuple, kernel: tuple, stride: tuple, pads: tuple):
    """PyTorch's ceil_mode as floor mode over more padding at the end: a last, partial window
    is kept when it starts inside the input or its left padding, so with padding p, an axis
    of n gives floor(min(n + 2p - k + s - 1, n + p - 1) / s) + 1 windows — floor mode with
    pads (p, min(p + s - 1, k - 1)), for every n. Returns (pads, output sizes)."""
    if ctx.attrs["padding"] == "same":
        ctx.fail(
            'ceil_mode takes explicit padding (PyTorch has no padding="same" for pooling)',
            "padding",
            "use an int or a tuple",
            code="E-VALUE",
        )
    windows = zip(pads, kernel, stride, strict=True)
    pads = tuple((p, min(p + s - 1, k - 1)) for (p, _), k, s in windows)
    spatial = tuple(
        conv_out(n, k, s, 1, *p) for n, k, s, p in zip(spatial, kernel, stride, pads, strict=True)
    )
    return pads, spatial


def _windows(x, kernel, stride, pads, fill):
    """Yield every window offset's strided view of the padded input."""
    n = len(kernel)
    xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads], constant_values=fill)
    out = [(xp.shape[2 + i] - kernel[i]) // stride[i] + 1 for i in range(n)]
    for kidx in np.ndindex(*kernel):
        yield xp[
            (
                slice(None),
                slice(None),
                *(
                    slice(kidx[i], kidx[i] + stride[i] * (out[i] - 1) + 1, stride[i])
                    for i in range(n)
                ),
            )
        ]


def _max_ref(inputs, attrs, params):
    x = inputs["x"]
    views = list(_windows(x, attrs["kernel"], attrs["stride"], _concrete_pads(x, attrs), -np.inf))
    return [np.max(np.stack(views), axis=0).astype(x.dtype)]


for _n in (1, 2, 3):
    register(
        OpDef(
            name=f"max_pool{_n}d",
            signature=sig(
                P("x", "tensor", dtypes="float"),
                P("kernel", "ints"),
                P("stride", "ints", None),
                P("padding", "padding", 0),
                P("ceil_mode", "bool", False),
            ),
            infer=_window_rule(_n),
            reference=_max_ref,
            differentiable=("x",),
            axes="channels",
            doc="Maximum over each window; padding counts as −∞; stride defaults to kernel; "
            "ceil_mode=true keeps PyTorch's last, partial window (`pads` then hold its extra "
            "padding at the end).",
        )
    )


def _concrete_pads(x, attrs) -> tuple:
    """Explicit pads; "same" on a symbolic size (stored as None) is resolved from the data."""
    pads = attrs["pads"]
    if all(p is not None for p in pads):
        return pads
    windows = zip(pads, attrs["kernel"], attrs["stride"], strict=True)
    return tuple(
        same_pads(x.shape[2 + i], k, s, 1) if p is None else p
        for i, (p, k, s) in enumerate(windows)
    )


def _avg_ref(inputs, attrs, params):
    x = inputs["x"]
    k, s = attrs["kernel"], attrs["stride"]
    pads = _concrete_pads(x, attrs)
    total = sum(v.astype(np.float64) for v in _windows(x, k, s, pads, 0))
    if attrs["count_include_pad"] and not attrs["ceil_mode"]:
        count = float(math.prod(k))
    elif attrs["count_include_pad"]:  # the elements in the input and its padding (p, p)
        ones = np.ones((1, 1, *(n + 2 * p for n, (p, _) in zip(x.shape[2:], pads, strict=True))))
        count = sum(_windows(ones, k, s, [(0, after - p) for p, after in pads], 0))
    else:  # the number of real (unpadded) elements under each window
        ones = np.ones((1, 1, *x.shape[2:]))
        count = sum(_windows(ones, k, s, pads, 0))
    return [(total / count).astype(x.dtype)]


for _n in (1, 2, 3):
    register(
        OpDef(
            name=f"avg_pool{_n}d",
            signature=sig(
                P("x", "tensor", dtypes="float"),
                P("kernel", "ints"),
                P("stride", "ints", None),
                P("padding", "padding", 0),
                P("count_include_pad", "bool", True),
                P("ceil_mode", "bool", False),
            ),
            infer=_window_rule(_n),
            reference=_avg_ref,
            differentiable=("x",),
            axes="channels",
            doc="Mean over each window (ONNX AveragePool); stride defaults to kernel; "
            "count_include_pad=true divides by the kernel size, false by the number of "
            "unpadded elements under the window; ceil_mode=true keeps PyTorch's last, partial "
            "window (`pads` then hold its extra padding at the end), which counts only the "
            "elements in the input and its padding.",
        )
    )


# The layer forms of the window functions (PyTorch's nn.MaxPool2d, nn.AvgPool2d, ...): in a
# model body `MaxPool2d(3, stride=2)` is `max_pool2d(3, stride=2)`, the function with its
# later arguments, a declared child or a Sequential step.
LAYER_FORMS = {
    f"{kind.capitalize()}Pool{n}d": f"{kind}_pool{n}d" for kind in ("max", "avg") for n in (1, 2, 3)
}


def _global_avg_infer(ctx: Ctx) -> list[TensorType]:
    x = ctx.inputs["x"]
    if x.rank < 3:
        ctx.fail(
            f"expects an input [B, C, spatial...] of rank ≥ 3, found {x}", "x", f"rank {x.rank}"
        )
    ctx.attrs["axes"] = tuple(range(2, x.rank))
    return [x.with_shape(x.shape[:2])]


register(
    OpDef(
        name="global_avg_pool",
        signature=sig(P("x", "tensor", dtypes="float")),
        infer=_global_avg_infer,
        reference=lambda inputs, attrs, params: [
            np.mean(inputs["x"], axis=tuple(range(2, inputs["x"].ndim))).astype(inputs["x"].dtype)
        ],
        differentiable=("x",),
        axes="channels",
        doc="Mean over every spatial axis: [B, C, ...] → [B, C] (ONNX GlobalAveragePool, then "
        "the trailing 1s dropped).",
    )
)


def adaptive_bins(n: int, out: int) -> tuple[tuple[int, int], ...]:
    """PyTorch's adaptive pooling windows: [floor(i·n/out), ceil((i+1)·n/out))."""
    return tuple(((i * n) // out, -((-(i + 1) * n) // out)) for i in range(out))


def _adaptive_rule(n: int):
    def infer(ctx: Ctx) -> list[TensorType]:
        x, size = ctx.inputs["x"], ctx.attrs["size"]
        names = ("d", "h", "w")[3 - n :]
        require_rank(ctx, "x", x, (n + 2,), "[B, C, " + ", ".join(a.upper() for a in names) + "]")
        if isinstance(size, int | Dim) and not isinstance(size, bool):
            size = (size,) * n
        if (
            not isinstance(size, tuple | list)
            or len(size) != n
            or not all(isinstance(v, int | Dim) and not isinstance(v, bool) for v in size)
        ):
            ctx.fail(
                f"`size` must be a size or a {('pair', 'triple')[n - 2]} ({', '.join(names)}) "
                "of sizes",
                "size",
                f"expected ({', '.join(names)})",
                code="E-VALUE",
            )
        # a symbolic size written in another form than the input's but equal for every value
        # of its symbols is the input's own: pooling keeps that axis (a number stays itself,
        # even where it equals this instance's input size: another instance's may differ)
        size = tuple(
            m if isinstance(o, Dim) and equal_everywhere(o, m) else o
            for m, o in zip(x.shape[2:], size, strict=True)
        )
        bins = []
        for axis, (m, o) in enumerate(zip(x.shape[2:], size, strict=True)):
            if isinstance(o, int) and o <= 0:
                ctx.fail(
                    f"output sizes must be positive, found {o}",
                    "size",
                    "out of range",
                    code="E-VALUE",
                )
            budget.spend("item", o if isinstance(o, int) else 1, ctx.span)  # before listing
            if o == m:
                bins.append(tuple((i, i + 1) for i in range(m)) if isinstance(m, int) else None)
            elif o == 1:
                bins.append(((0, m),) if isinstance(m, int) else None)
            elif isinstance(m, int) and isinstance(o, int):
                bins.append(adaptive_bins(m, o))
            else:
                ctx.fail(
                    f"needs a known input size to pool {m} into {o} (axis {axis + 2})",
                    "x",
                    "symbolic size",
                    notes=(
                        "only an output equal to the input size, or 1, works on a symbolic size",
                    ),
                )
        ctx.attrs.update(size=size, bins=tuple(bins))
        return [x.with_shape((*x.shape[:2], *size))]

    return infer


def _adaptive_ref(inputs, attrs, params):
    """Axis by axis (the windows are boxes): the mean of each of PyTorch's windows."""
    y = inputs["x"]
    for axis, v in enumerate(attrs["size"], 2):
        m = y.shape[axis]
        o = v if isinstance(v, int) else m
        means = [
            np.take(y, range(lo, hi), axis=axis).mean(axis=axis, keepdims=True)
            for lo, hi in adaptive_bins(m, o)
        ]
        y = np.concatenate(means, axis=axis)
    return [y.astype(inputs["x"].dtype)]


for _n in (2, 3):
    register(
        OpDef(
            name=f"adaptive_avg_pool{_n}d",
            signature=sig(P("x", "tensor", dtypes="float"), P("size", "any")),
            infer=_adaptive_rule(_n),
            reference=_adaptive_ref,
            differentiable=("x",),
            axes="channels",
            doc="PyTorch's adaptive average pooling to one size per spatial axis: output cell "
            "i of an axis of n averages inputs floor(i·n/o) .. ceil((i+1)·n/o) - 1; needs known "
            "input sizes unless the output size is the input size or 1. `bins` lists each "
            "axis's windows.",
        )
    )

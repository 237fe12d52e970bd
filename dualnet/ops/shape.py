"""Shape ops: flatten, reshape, permute, transpose, concat, stack, split, chunk, roll,
(un)squeeze, pad, upsample, indexing and arange."""

from __future__ import annotations

import math

from dualnet import budget
from dualnet.ir.dims import Dim, floordiv
from dualnet.ir.tagged import untagged
from dualnet.ir.types import DType, TensorType
from dualnet.ops.common import fits_in, norm_axis, positive, same_dtype
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, register, sig


def _flatten_infer(ctx: Ctx) -> list[TensorType]:
    x = ctx.inputs["x"]
    start = norm_axis(ctx, ctx.attrs["start"], max(x.rank, 1), "start")
    ctx.attrs["start"] = start
    merged = math.prod(x.shape[start:], start=1)
    return [x.with_shape((*x.shape[:start], merged))]


register(
    OpDef(
        name="flatten",
        signature=sig(P("x", "tensor"), P("start", "int", 1)),
        infer=_flatten_infer,
        reference=lambda inputs, attrs, params: [
            inputs["x"].reshape(*inputs["x"].shape[: attrs["start"]], -1)
        ],
        differentiable=("x",),
        doc="Merges the axes from `start` on into one, in C·H·W order.",
    )
)


def _known(d) -> bool:
    return isinstance(d, int)


def _show(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# ---------------------------------------------------------------- reshape


def _reshape_infer(ctx: Ctx) -> list[TensorType]:
    x, dims = ctx.inputs["x"], tuple(ctx.attrs["dims"])
    holes = [i for i, d in enumerate(dims) if _known(d) and d == -1]
    if len(holes) > 1:
        ctx.fail(
            f"at most one size may be -1, found {len(holes)}", "dims", "several -1", code="E-VALUE"
        )
    bad = [d for d in dims if _known(d) and d != -1 and d < 1]
    if bad:
        ctx.fail(
            f"sizes must be positive (or one -1), found {bad[0]}",
            "dims",
            "out of range",
            code="E-VALUE",
        )
    numel = math.prod(map(untagged, x.shape), start=1)  # values: only compared and shown
    known = math.prod((untagged(d) for d in dims if not (_known(d) and d == -1)), start=1)
    if holes:
        rest = floordiv(*_cancel(x.shape, [d for d in dims if not (_known(d) and d == -1)]))
        if rest * known != numel:
            exact = _known(numel) and _known(known)
            ctx.fail(
                f"cannot reshape {x} into {_show(dims)}: {numel} elements "
                f"{'are not' if exact else 'are not provably'} a multiple of {known}",
                "dims",
                "sizes do not fit",
            )
        dims = (*dims[: holes[0]], rest, *dims[holes[0] + 1 :])
    elif numel != known:
        exact = _known(numel) and _known(known)
        ctx.fail(
            f"cannot reshape {x} ({numel} elements) into {_show(dims)} ({known} elements)"
            if exact
            else f"cannot prove that {x} and {_show(dims)} have the same number "
            f"of elements ({numel} vs {known})",
            "dims",
            "sizes do not fit",
        )
    ctx.attrs["dims"] = dims
    return [x.with_shape(dims)]


def _cancel(numerator, denominator) -> tuple[int | Dim, int | Dim]:
    """The products of two lists of sizes, without the sizes they share: [B + 2, 5, 14] over
    [B + 2] is 70 over 1, where (70 * B + 140) // (B + 2) is not provably a whole number."""
    rest = list(numerator)
    kept = []
    for d in denominator:
        if not _known(d) and d in rest:
            rest.remove(d)
        else:
            kept.append(d)
    return math.prod(rest, start=1), math.prod(kept, start=1)


def _reshape_ref(inputs, attrs, params):
    dims = attrs["dims"]
    symbolic = [i for i, d in enumerate(dims) if not _known(d)]
    if len(symbolic) == 1:  # the one symbolic size follows from the data
        dims = tuple(-1 if i == symbolic[0] else d for i, d in enumerate(dims))
    return [inputs["x"].reshape(dims)]


register(
    OpDef(
        name="reshape",
        signature=sig(P("x", "tensor"), P("dims", "dims")),
        infer=_reshape_infer,
        reference=_reshape_ref,
        differentiable=("x",),
        doc="Row-major (C order) reshape; one size may be -1 (resolved by the rule). Sizes may be "
        "symbolic; the element counts must be provably equal.",
    )
)


# ---------------------------------------------------------------- permute, transpose


def _permute_infer(ctx: Ctx) -> list[TensorType]:
    x, axes = ctx.inputs["x"], ctx.attrs["axes"]
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    if len(axes) != x.rank:
        ctx.fail(
            f"needs {x.rank} axes for {x}, found {len(axes)}",
            "axes",
            f"{len(axes)} axes",
            code="E-VALUE",
        )
    axes = tuple(norm_axis(ctx, a, x.rank, "axes") for a in axes)
    if sorted(axes) != list(range(x.rank)):
        ctx.fail(
            f"axes {list(axes)} are not a permutation of 0..{x.rank - 1}",
            "axes",
            "repeated axis",
            code="E-VALUE",
        )
    ctx.attrs["axes"] = axes
    return [x.with_shape(tuple(x.shape[a] for a in axes))]


register(
    OpDef(
        name="permute",
        signature=sig(P("x", "tensor"), P("axes", "ints")),
        infer=_permute_infer,
        reference=lambda inputs, attrs, params: [np.transpose(inputs["x"], attrs["axes"])],
        differentiable=("x",),
        doc="Reorders the axes: result axis i is input axis axes[i] (ONNX Transpose perm).",
    )
)


def _transpose_infer(ctx: Ctx) -> list[TensorType]:
    x = ctx.inputs["x"]
    a = norm_axis(ctx, ctx.attrs["a"], x.rank, "a")
    b = norm_axis(ctx, ctx.attrs["b"], x.rank, "b")
    perm = list(range(x.rank))
    perm[a], perm[b] = b, a
    ctx.attrs.update(a=a, b=b, perm=tuple(perm))
    return [x.with_shape(tuple(x.shape[p] for p in perm))]


register(
    OpDef(
        name="transpose",
        signature=sig(P("x", "tensor"), P("a", "int"), P("b", "int")),
        infer=_transpose_infer,
        reference=lambda inputs, attrs, params: [np.swapaxes(inputs["x"], attrs["a"], attrs["b"])],
        differentiable=("x",),
        doc="Swaps axes a and b; `perm` is the equivalent full permutation.",
    )
)


# ---------------------------------------------------------------- concat, split


def _concat_infer(ctx: Ctx) -> list[TensorType]:
    xs = ctx.inputs["xs"]
    first = xs[0]
    for i, t in enumerate(xs[1:], 1):
        if t.rank != first.rank:
            ctx.fail(
                f"cannot concatenate {first} and {t}",
                "xs",
                f"tensor {i} has rank {t.rank}, tensor 0 rank {first.rank}",
            )
    dtype = same_dtype(ctx, *xs)
    if first.rank == 0:
        ctx.fail("cannot concatenate rank-0 tensors", "xs", "rank 0")
    axis = norm_axis(ctx, ctx.attrs["axis"], first.rank)
    for i, t in enumerate(xs[1:], 1):
        for j, (da, db) in enumerate(zip(first.shape, t.shape, strict=True)):
            if j != axis and da != db:
                ctx.fail(
                    f"cannot concatenate {first} and {t} along axis {axis}",
                    "xs",
                    f"tensor {i}, dimension {j}: {db} vs {da}",
                )
    total = sum((t.shape[axis] for t in xs), start=0)
    ctx.attrs["axis"] = axis
    return [TensorType(dtype, (*first.shape[:axis], total, *first.shape[axis + 1 :]))]


register(
    OpDef(
        name="concat",
        signature=sig(P("xs", "tensors"), P("axis", "int")),
        infer=_concat_infer,
        reference=lambda inputs, attrs, params: [np.concatenate(inputs["xs"], axis=attrs["axis"])],
        differentiable=("xs",),
        axes="attribute",
        doc="Joins tensors of one dtype along `axis`; every other dimension must agree.",
    )
)


def _stack_infer(ctx: Ctx) -> list[TensorType]:
    xs = ctx.inputs["xs"]
    first = xs[0]
    for i, t in enumerate(xs[1:], 1):
        if t.shape != first.shape:
            ctx.fail(
                f"cannot stack {first} and {t}: every tensor must have the same shape",
                "xs",
                f"tensor {i} is {_show(t.shape)}, tensor 0 {_show(first.shape)}",
            )
    dtype = same_dtype(ctx, *xs)
    axis = norm_axis(ctx, ctx.attrs["axis"], first.rank, extra=1)
    ctx.attrs["axis"] = axis
    return [TensorType(dtype, (*first.shape[:axis], len(xs), *first.shape[axis:]))]


register(
    OpDef(
        name="stack",
        signature=sig(P("xs", "tensors"), P("axis", "int", 0)),
        infer=_stack_infer,
        reference=lambda inputs, attrs, params: [np.stack(inputs["xs"], axis=attrs["axis"])],
        differentiable=("xs",),
        doc="Joins tensors of one shape and dtype along a new axis `axis` of the result "
        "(torch.stack; -1 appends).",
    )
)


def _split_infer(ctx: Ctx) -> list[TensorType]:
    x, n = ctx.inputs["x"], ctx.attrs["n"]
    positive(ctx, (n,), "n")
    if x.rank == 0:
        ctx.fail("cannot split a rank-0 tensor", "x", "rank 0")
    axis = norm_axis(ctx, ctx.attrs["axis"], x.rank)
    d = x.shape[axis]
    part = floordiv(d, n)
    if part * n != d:
        why = f"{d} is not {'' if _known(d) else 'provably '}divisible by {n}"
        ctx.fail(f"cannot split axis {axis} of {x} into {n} equal parts: {why}", "n", why)
    budget.spend("item", n, ctx.span)  # before n results are listed
    ctx.attrs.update(axis=axis, sizes=(part,) * n)
    out = x.with_shape((*x.shape[:axis], part, *x.shape[axis + 1 :]))
    return [out] * n


def _split_ref(inputs, attrs, params):
    return list(np.split(inputs["x"], attrs["n"], axis=attrs["axis"]))


register(
    OpDef(
        name="split",
        signature=sig(P("x", "tensor"), P("n", "int"), P("axis", "int")),
        infer=_split_infer,
        reference=_split_ref,
        differentiable=("x",),
        axes="attribute",
        doc="n equal parts along `axis` (n results); the size must be divisible by n. `sizes` "
        "lists the parts (ONNX Split's `split` input).",
    )
)


def _chunk_infer(ctx: Ctx) -> list[TensorType]:
    x, chunks = ctx.inputs["x"], ctx.attrs["chunks"]
    positive(ctx, (chunks,), "chunks")
    if x.rank == 0:
        ctx.fail("cannot chunk a rank-0 tensor", "x", "rank 0")
    axis = norm_axis(ctx, ctx.attrs["axis"], x.rank)
    d = x.shape[axis]
    if _known(d):  # torch.chunk: parts of ceil(d / chunks), the last smaller; maybe fewer
        part = -(-d // chunks)
        n = -(-d // part)
        sizes = (part,) * (n - 1) + (d - part * (n - 1),)
    else:
        part = floordiv(d, chunks)
        if part * chunks != d:
            ctx.fail(
                f"cannot chunk axis {axis} of {x} into {chunks}: its parts' sizes depend on "
                f"the symbolic size {d}, not provably divisible by {chunks}",
                "chunks",
                f"{d} is not provably divisible by {chunks}",
                notes=("give the axis a known size, or one divisible by construction",),
            )
        sizes = (part,) * chunks
    budget.spend("item", len(sizes), ctx.span)  # before the results are listed
    ctx.attrs.update(axis=axis, sizes=sizes)
    return [x.with_shape((*x.shape[:axis], s, *x.shape[axis + 1 :])) for s in sizes]


def _chunk_ref(inputs, attrs, params):
    cuts = np.cumsum(attrs["sizes"])[:-1]
    return list(np.split(inputs["x"], cuts, axis=attrs["axis"]))


register(
    OpDef(
        name="chunk",
        signature=sig(P("x", "tensor"), P("chunks", "int"), P("axis", "int", 0)),
        infer=_chunk_infer,
        reference=_chunk_ref,
        differentiable=("x",),
        axes="attribute",
        doc="torch.chunk: parts of ceil(size / chunks) along `axis`, the last one smaller, so "
        "possibly fewer than `chunks` results (size 5 in 4 chunks: 2, 2, 1). A symbolic size "
        "must be provably divisible by `chunks`. `sizes` lists the parts (ONNX Split's "
        "`split` input).",
    )
)


# ---------------------------------------------------------------- roll


def _roll_infer(ctx: Ctx) -> list[TensorType]:
    x = ctx.inputs["x"]
    shift, axis = (
        (v,) if isinstance(v, int) else tuple(v) for v in (ctx.attrs["shift"], ctx.attrs["axis"])
    )
    if not axis or len(shift) != len(axis):
        ctx.fail(
            f"needs one shift per axis, found {len(shift)} shifts and {len(axis)} axes",
            "shift",
            "one shift per axis",
            code="E-VALUE",
        )
    if x.rank == 0:
        ctx.fail("cannot roll a rank-0 tensor", "x", "rank 0")
    ctx.attrs.update(shift=shift, axis=tuple(norm_axis(ctx, a, x.rank) for a in axis))
    return [x]


register(
    OpDef(
        name="roll",
        signature=sig(P("x", "tensor"), P("shift", "ints"), P("axis", "ints")),
        infer=_roll_infer,
        reference=lambda inputs, attrs, params: [
            np.roll(inputs["x"], attrs["shift"], axis=attrs["axis"])
        ],
        differentiable=("x",),
        axes="attribute",
        doc="Rotates x by shift[i] places along axis[i]: element j moves to (j + shift) mod "
        "size (torch.roll with dims). Any shift, negative or beyond the size; normalised to "
        "equal-length tuples, the axes non-negative and in the order written.",
    )
)


# ---------------------------------------------------------------- (un)squeeze


def _unsqueeze_infer(ctx: Ctx) -> list[TensorType]:
    x = ctx.inputs["x"]
    axis = norm_axis(ctx, ctx.attrs["axis"], x.rank, extra=1)
    ctx.attrs["axis"] = axis
    return [x.with_shape((*x.shape[:axis], 1, *x.shape[axis:]))]


register(
    OpDef(
        name="unsqueeze",
        signature=sig(P("x", "tensor"), P("axis", "int")),
        infer=_unsqueeze_infer,
        reference=lambda inputs, attrs, params: [np.expand_dims(inputs["x"], attrs["axis"])],
        differentiable=("x",),
        doc="Inserts a size-1 axis at position `axis` of the result (-1 appends).",
    )
)


def _squeeze_infer(ctx: Ctx) -> list[TensorType]:
    x = ctx.inputs["x"]
    axis = norm_axis(ctx, ctx.attrs["axis"], x.rank)
    if x.shape[axis] != 1:
        ctx.fail(
            f"axis {axis} of {x} has size {x.shape[axis]}, not 1",
            "axis",
            "only a size-1 axis can be removed",
        )
    ctx.attrs["axis"] = axis
    return [x.with_shape((*x.shape[:axis], *x.shape[axis + 1 :]))]


register(
    OpDef(
        name="squeeze",
        signature=sig(P("x", "tensor"), P("axis", "int")),
        infer=_squeeze_infer,
        reference=lambda inputs, attrs, params: [np.squeeze(inputs["x"], attrs["axis"])],
        differentiable=("x",),
        doc="Removes axis `axis`, whose size must be known to be 1.",
    )
)


# ---------------------------------------------------------------- pad


def _pad_infer(ctx: Ctx) -> list[TensorType]:
    x, pads, value = ctx.inputs["x"], ctx.attrs["pads"], ctx.attrs["value"]
    flat = (pads,) if isinstance(pads, int) else tuple(pads)
    if len(flat) % 2:
        ctx.fail(
            f"needs (before, after) pairs, found {len(flat)} values",
            "pads",
            "odd number of values",
            code="E-VALUE",
        )
    if len(flat) // 2 > x.rank:
        ctx.fail(
            f"{len(flat) // 2} pairs for a rank-{x.rank} tensor",
            "pads",
            "more pairs than axes",
            code="E-VALUE",
        )
    positive(ctx, flat, "pads", allow_zero=True)
    pairs = tuple(zip(flat[::2], flat[1::2], strict=True))
    pairs = ((0, 0),) * (x.rank - len(pairs)) + pairs
    if x.dtype.is_int and value != int(value):
        ctx.fail(
            f"cannot pad an {x.dtype} tensor with {value:g}",
            "value",
            "not an integer",
            code="E-VALUE",
        )
    if x.dtype == DType.bool and value not in (0, 1):
        ctx.fail(f"cannot pad a bool tensor with {value:g}", "value", "use 0 or 1", code="E-VALUE")
    fits_in(ctx, "value", x.dtype)
    ctx.attrs["pads"] = pairs
    return [x.with_shape(tuple(d + b + a for d, (b, a) in zip(x.shape, pairs, strict=True)))]


register(
    OpDef(
        name="pad",
        signature=sig(P("x", "tensor"), P("pads", "ints"), P("value", "float", 0.0)),
        infer=_pad_infer,
        reference=lambda inputs, attrs, params: [
            np.pad(inputs["x"], attrs["pads"], constant_values=attrs["value"])
        ],
        differentiable=("x",),
        doc="Constant padding. `pads` lists (before, after) pairs for consecutive axes; k pairs "
        "pad the LAST k axes, in axis order: pad(x, [1, 2, 3, 4]) on [B, C, H, W] pads H by (1, 2) "
        "and W by (3, 4) (unlike F.pad, whose pairs run from the last axis backwards). "
        "Normalised to one (before, after) pair per axis. Pads must be non-negative.",
    )
)


# ---------------------------------------------------------------- upsample


def _upsample_infer(ctx: Ctx) -> list[TensorType]:
    x, mode = ctx.inputs["x"], ctx.attrs["mode"]
    if x.rank < 3:
        ctx.fail(
            f"expects an input [B, C, spatial...] of rank ≥ 3, found {x}", "x", f"rank {x.rank}"
        )
    n = x.rank - 2
    scale = ctx.attrs["scale"]
    scale = (scale,) * n if isinstance(scale, int) else tuple(scale)
    if len(scale) != n:
        ctx.fail(
            f"`scale` needs 1 or {n} values, found {len(scale)}",
            "scale",
            f"{len(scale)} values",
            code="E-VALUE",
        )
    positive(ctx, scale, "scale")
    if mode == "bilinear" and n != 2:
        ctx.fail(f'mode "bilinear" needs a [B, C, H, W] input, found {x}', "x", f"rank {x.rank}")
    ctx.attrs["scale"] = scale
    return [x.with_shape((*x.shape[:2], *(d * s for d, s in zip(x.shape[2:], scale, strict=True))))]


def _linear_weights(n: int, s: int):
    """Half-pixel linear interpolation along one axis (PyTorch align_corners=False)."""
    src = np.maximum((np.arange(n * s) + 0.5) / s - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    return lo, hi, src - lo


def _upsample_ref(inputs, attrs, params):
    x, scale = inputs["x"], attrs["scale"]
    if attrs["mode"] == "nearest":
        for i, s in enumerate(scale):
            x = np.repeat(x, s, axis=2 + i)
        return [x]
    y = x.astype(np.float64)
    for i, s in enumerate(scale):
        lo, hi, frac = _linear_weights(x.shape[2 + i], s)
        shape = [1] * y.ndim
        shape[2 + i] = -1
        frac = frac.reshape(shape)
        y = np.take(y, lo, axis=2 + i) * (1 - frac) + np.take(y, hi, axis=2 + i) * frac
    return [y.astype(x.dtype)]


register(
    OpDef(
        name="upsample",
        signature=sig(
            P("x", "tensor", dtypes="float"),
            P("scale", "ints"),
            P("mode", "str", "nearest", choices=("nearest", "bilinear")),
        ),
        infer=_upsample_infer,
        reference=_upsample_ref,
        differentiable=("x",),
        axes="channels",
        doc='Integer-factor upsampling of the spatial axes. "nearest": y[i] = x[i // scale] '
        '(ONNX Resize asymmetric + floor); "bilinear" ([B, C, H, W] only): PyTorch\'s '
        "align_corners=False, i.e. ONNX Resize linear with half_pixel coordinates.",
    )
)


# ---------------------------------------------------------------- indexing


def _is_size(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, Dim)


def _bound(b, default, d):
    """A slice bound resolved against an axis of size d (symbolic bounds taken as in range)."""
    if b is None:
        return default
    if _known(b) and b < 0:
        b = d + b
        return max(b, 0) if _known(b) else b
    return min(b, d) if _known(b) and _known(d) else b


def _getitem_infer(ctx: Ctx) -> list[TensorType]:
    x, items = ctx.inputs["x"], ctx.attrs["items"]
    items = tuple(items) if isinstance(items, tuple | list) else (items,)
    taken = sum(item is not None for item in items)
    if taken > x.rank:
        ctx.fail(f"{taken} indices for {x}", "items", f"at most {x.rank} indices")
    items = items + (slice(None),) * (x.rank - taken)
    norm, shape, axis = [], [], -1
    for item in items:
        if item is None:  # a new axis of size 1 (NumPy's None)
            norm.append(("new",))
            shape.append(1)
            continue
        axis += 1
        d = x.shape[axis]
        if _is_size(item):
            if _known(item) and _known(d):
                if not -d <= item < d:
                    ctx.fail(
                        f"index {item} is out of range for axis {axis} of {x}",
                        "items",
                        f"valid indices are {-d}..{d - 1}",
                        code="E-VALUE",
                    )
                if not 0 <= item < d:  # an in-range index keeps its tag (`start`)
                    item %= d
            elif _known(item) and item < 0:
                item = d + item
            norm.append(("index", item))
            continue
        if not isinstance(item, slice):
            ctx.fail(
                f"indices must be sizes or slices, found {item!r}",
                "items",
                "not an index",
                code="E-VALUE",
            )
        if any(b is not None and not _is_size(b) for b in (item.start, item.stop)):
            ctx.fail(
                f"slice bounds must be sizes, found {item}", "items", "not a size", code="E-VALUE"
            )
        step = 1 if item.step is None else item.step
        if not _known(step) or isinstance(step, bool):
            ctx.fail(
                f"slice steps must be integers, found {step}", "items", "not an int", code="E-VALUE"
            )
        if step <= 0:
            ctx.fail(
                f"slice steps must be positive, found {step}", "items", "step ≤ 0", code="E-VALUE"
            )
        if item.start is None and item.stop is None and step == 1:  # the whole axis: its size
            norm.append(("slice", 0, untagged(d), 1))
            shape.append(d)
            continue
        if _known(d) and _known(item.start or 0) and _known(item.stop or 0):
            start, stop, _ = slice(item.start, item.stop, step).indices(d)
            # bounds already in range keep their tags, so a backend can write `start + 2`
            start = item.start if item.start is not None and item.start == start else start
            stop = item.stop if item.stop is not None and item.stop == stop else stop
        else:
            start, stop = _bound(item.start, 0, d), _bound(item.stop, d, d)
        length = floordiv(stop - start + step - 1, step)
        if _known(length) and length <= 0:
            stop, length = start, 0
        norm.append(("slice", start, stop, step))
        shape.append(length)
    ctx.attrs["items"] = tuple(norm)
    return [x.with_shape(tuple(shape))]


def _getitem_ref(inputs, attrs, params):
    index = tuple(
        None if entry[0] == "new" else entry[1] if entry[0] == "index" else slice(*entry[1:])
        for entry in attrs["items"]
    )
    return [np.asarray(inputs["x"][index])]


register(
    OpDef(
        name="getitem",
        signature=sig(P("x", "tensor"), P("items", "any")),
        infer=_getitem_infer,
        reference=_getitem_ref,
        differentiable=("x",),
        doc="Indexing and slicing x[i, a:b:s, none, ...] (positive steps; missing trailing axes "
        'are whole; none inserts an axis of size 1). Normalised to one ("index", i) or '
        '("slice", start, stop, step) per input axis with non-negative bounds, and ("new",) '
        "per none; indices and bounds may be sizes (ints or symbolic); on a "
        "symbolic size a negative bound n means size + n, and symbolic bounds are assumed in "
        "range.",
    )
)


# ---------------------------------------------------------------- arange


def _arange_infer(ctx: Ctx) -> list[TensorType]:
    n = ctx.attrs["n"]
    if _known(n) and n < 0:
        ctx.fail(f"needs a non-negative size, found {n}", "n", "negative", code="E-VALUE")
    return [TensorType(DType.i64, (n,))]


register(
    OpDef(
        name="arange",
        signature=sig(P("n", "size")),
        infer=_arange_infer,
        reference=lambda inputs, attrs, params: [np.arange(attrs["n"], dtype=np.int64)],
        differentiable=(),
        doc="i64[n]: 0, 1, ..., n - 1 (ONNX Range(0, n, 1)); n may be a symbolic size.",
    )
)


def substitute_attrs(value, env):
    """A normalised attribute value with its symbolic sizes replaced from `env` (name → int),
    so that a NumPy reference can run on attributes a rule normalised symbolically."""
    from dualnet.ir.dims import substitute

    if isinstance(value, Dim):
        return substitute(value, env)
    if isinstance(value, dict):
        return {k: substitute_attrs(v, env) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return type(value)(substitute_attrs(v, env) for v in value)
    if isinstance(value, slice):
        return slice(*(substitute_attrs(v, env) for v in (value.start, value.stop, value.step)))
    return value

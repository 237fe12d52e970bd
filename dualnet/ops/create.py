"""Constant tensors: zeros, ones, full (of a shape), zeros_like, ones_like, full_like (of
another tensor's shape) and tensor (of nested lists of numbers), as PyTorch's functions of
those names."""

from __future__ import annotations

import math

from dualnet.ir.types import DType, TensorType, out_of_range
from dualnet.ops.binding import describe
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, register, sig

_NUMPY = {d: d.numpy or "float32" for d in DType}  # bf16 computed in float32


def _fill_value(ctx: Ctx, value, dtype: DType, arg: str = "value"):
    """`value` (argument `arg`) as an element of `dtype` (a float for float types, an int for
    integer types, a bool for bool); E-VALUE where it is none (PyTorch would round or wrap
    silently)."""
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int | float):
        subject = "`value`" if arg == "value" else f"each element of `{arg}`"
        ctx.fail(f"{subject} must be a number, found {describe(value)}", arg, code="E-TYPE")
    if dtype == DType.bool:
        if value not in (0, 1):
            ctx.fail(f"cannot fill a bool tensor with {value:g}", arg, "0 or 1", code="E-VALUE")
        return bool(value)
    if dtype.is_int:
        if not math.isfinite(value) or value != int(value):
            ctx.fail(
                f"cannot fill an {dtype} tensor with {value:g}: not an integer",
                arg,
                "not an integer",
                code="E-VALUE",
            )
        value = value if isinstance(value, int) else int(value)  # an int keeps its tag
    why = out_of_range(value, dtype)
    if why is not None:
        ctx.fail(f"`{arg}`: {why}", arg, f"out of range for {dtype}", code="E-VALUE")
    return float(value) if dtype.is_float else value


def _shape(ctx: Ctx) -> tuple:
    shape = tuple(ctx.attrs["shape"])
    for i, d in enumerate(shape):
        if isinstance(d, int) and d < 1:
            ctx.fail(
                f"size {d} at position {i} is out of range",
                "shape",
                "sizes are positive",
                code="E-VALUE",
            )
    return shape


def _filled(value):
    """The rule of zeros and ones (`value`) or full (None: the `value` attribute)."""

    def infer(ctx: Ctx) -> list[TensorType]:
        shape, dtype = _shape(ctx), ctx.attrs["dtype"]
        if value is None:
            given = ctx.attrs["value"]
            if dtype is None:  # PyTorch's: bool, i64 or f32 from the number
                dtype = DType.bool if isinstance(given, bool) else _default_dtype(given)
            ctx.attrs["value"] = _fill_value(ctx, given, dtype)
        ctx.attrs.update(shape=shape, dtype=dtype)
        return [TensorType(dtype, shape)]

    return infer


def _default_dtype(value) -> DType:
    return DType.i64 if isinstance(value, int) else DType.f32


def _filled_like(value):
    """The rule of zeros_like and ones_like (`value`) or full_like (None)."""

    def infer(ctx: Ctx) -> list[TensorType]:
        x = ctx.inputs["x"]
        dtype = ctx.attrs["dtype"] or x.dtype
        if value is None:
            ctx.attrs["value"] = _fill_value(ctx, ctx.attrs["value"], dtype)
        ctx.attrs["dtype"] = dtype
        return [TensorType(dtype, x.shape)]

    return infer


def _constant(value):
    def reference(inputs, attrs, params):
        shape = inputs["x"].shape if "x" in inputs else attrs["shape"]
        fill = attrs["value"] if value is None else value
        return [np.full(shape, fill, dtype=_NUMPY[attrs["dtype"]])]

    return reference


MAX_LITERAL_ELEMENTS = 65_536  # a table this size belongs in a weight file, not in source


def _literal_shape(ctx: Ctx, data, depth: int = 0) -> tuple[tuple, list]:
    """The shape of nested lists of numbers and their elements in order; E-SHAPE where a
    list is empty or its items differ in shape (PyTorch's "expected sequence of length")."""
    if not isinstance(data, list | tuple):
        return (), [data]
    if not data:
        ctx.fail("`data` holds an empty list: dualnet tensors have no zero-sized axes", "data")
    parts = [_literal_shape(ctx, item, depth + 1) for item in data]
    for i, (shape, _) in enumerate(parts):
        if shape != parts[0][0]:
            ctx.fail(
                f"`data` is not rectangular: at depth {depth}, item {i} has shape "
                f"{list(shape)} where item 0 has {list(parts[0][0])}",
                "data",
            )
    return (len(data), *parts[0][0]), [e for _, items in parts for e in items]


def _tensor_infer(ctx: Ctx) -> list[TensorType]:
    shape, elements = _literal_shape(ctx, ctx.attrs["data"])
    if len(elements) > MAX_LITERAL_ELEMENTS:
        ctx.fail(
            f"`data` holds {len(elements):,} numbers, more than {MAX_LITERAL_ELEMENTS:,}",
            "data",
            code="E-LIMIT",
            notes=("load a large table from the weight file: a Buffer",),
        )
    dtype = ctx.attrs["dtype"]
    if dtype is None:  # PyTorch's: bool when all are, else f32 when any is a float, else i64
        if all(isinstance(e, bool) for e in elements):
            dtype = DType.bool
        elif any(isinstance(e, float) for e in elements):
            dtype = DType.f32
        else:
            dtype = DType.i64
    values = [_fill_value(ctx, e, dtype, "data") for e in elements]
    ctx.attrs.update(data=_nest(values, shape), shape=shape, dtype=dtype)
    return [TensorType(dtype, shape)]


def _nest(values: list, shape: tuple):
    """Row-major `values` as nested tuples of `shape` (a number for shape ())."""
    if not shape:
        return values[0]
    step = len(values) // shape[0]
    return tuple(_nest(values[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0]))


def _tensor_ref(inputs, attrs, params):
    return [np.array(attrs["data"], dtype=_NUMPY[attrs["dtype"]]).reshape(attrs["shape"])]


register(
    OpDef(
        name="tensor",
        signature=sig(P("data", "any"), P("dtype", "dtype", None)),
        infer=_tensor_infer,
        reference=_tensor_ref,
        doc="A constant tensor of nested lists of numbers (torch.tensor): `[1.0, 3.0]` is "
        "f32[2], `[[1, 2], [3, 4]]` i64[2, 2], a number a 0-d tensor; dtype by default "
        "PyTorch's for the numbers: bool when all are bools, f32 when any is a float, "
        "else i64. Normalised: `data` nested tuples of numbers of `dtype`, and `shape`.",
    )
)

_VALUE = P("value", "any")
_DOCS = {
    "zeros": ("0", "f32 by default"),
    "ones": ("1", "f32 by default"),
    "full": ("`value`", "by default PyTorch's for the number: bool, i64 or f32"),
}
for _name, _value in (("zeros", 0), ("ones", 1), ("full", None)):
    _what, _dtype = _DOCS[_name]
    _takes_value = (_VALUE,) if _value is None else ()
    register(
        OpDef(
            name=_name,
            signature=sig(
                P("shape", "dims"),
                *_takes_value,
                P("dtype", "dtype", None if _value is None else DType.f32),
            ),
            infer=_filled(_value),
            reference=_constant(_value),
            doc=f"A tensor of `shape` filled with {_what} (torch.{_name}); sizes may be "
            f"symbolic; dtype {_dtype}. Normalised: `dtype` a DType, `value` of that type.",
        )
    )
    register(
        OpDef(
            name=f"{_name}_like",
            signature=sig(P("x", "tensor"), *_takes_value, P("dtype", "dtype", None)),
            infer=_filled_like(_value),
            reference=_constant(_value),
            axes="pointwise",
            doc=f"A tensor of x's shape filled with {_what} (torch.{_name}_like); dtype x's "
            "unless given. Not differentiable: x gives only its shape.",
        )
    )

"""Tensors filled with one value: zeros, ones, full (of a shape) and zeros_like, ones_like,
full_like (of another tensor's shape), as PyTorch's functions of those names."""

from __future__ import annotations

import math

from dualnet.ir.types import DType, TensorType, out_of_range
from dualnet.ops.binding import describe
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, register, sig

_NUMPY = {d: d.numpy or "float32" for d in DType}  # bf16 computed in float32


def _fill_value(ctx: Ctx, value, dtype: DType):
    """`value` as an element of `dtype` (a float for float types, an int for integer types,
    a bool for bool); E-VALUE where it is none (PyTorch would round or wrap silently)."""
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int | float):
        ctx.fail(f"`value` must be a number, found {describe(value)}", "value", code="E-TYPE")
    if dtype == DType.bool:
        if value not in (0, 1):
            ctx.fail(f"cannot fill a bool tensor with {value:g}", "value", "0 or 1", code="E-VALUE")
        return bool(value)
    if dtype.is_int:
        if not math.isfinite(value) or value != int(value):
            ctx.fail(
                f"cannot fill an {dtype} tensor with {value:g}: not an integer",
                "value",
                "not an integer",
                code="E-VALUE",
            )
        value = value if isinstance(value, int) else int(value)  # an int keeps its tag
    why = out_of_range(value, dtype)
    if why is not None:
        ctx.fail(f"`value`: {why}", "value", f"out of range for {dtype}", code="E-VALUE")
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

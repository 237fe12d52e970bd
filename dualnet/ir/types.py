"""Element types and tensor types."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import NamedTuple

from dualnet.ir.dims import Dim

SIZE_LIMIT = 2**62  # largest dimension or element count a tensor may have


class DType(enum.Enum):
    f16 = "f16"
    bf16 = "bf16"
    f32 = "f32"
    f64 = "f64"
    i32 = "i32"
    i64 = "i64"
    bool = "bool"

    @property
    def is_float(self) -> bool:
        return self in (DType.f16, DType.bf16, DType.f32, DType.f64)

    @property
    def is_int(self) -> bool:
        return self in (DType.i32, DType.i64)

    @property
    def framework(self) -> str:
        """The type's name in PyTorch (`torch.<name>`), Keras and NumPy: `float32`."""
        return _TABLE[self].name

    @property
    def numpy(self) -> str | None:
        """The NumPy dtype name (None for bf16, which NumPy lacks)."""
        return None if self is DType.bf16 else _TABLE[self].name

    @property
    def eps(self) -> float | None:
        """The machine epsilon (`torch.finfo(dtype).eps`) of a float type, else None."""
        return _TABLE[self].eps

    @property
    def itemsize(self) -> int:
        """Bytes per element (bool: one byte, as in PyTorch and NumPy)."""
        return _TABLE[self].itemsize

    @property
    def onnx(self) -> int:
        """The ONNX element type (`TensorProto.FLOAT` is 1)."""
        return _TABLE[self].onnx

    def __str__(self) -> str:
        return self.value


DTYPES = {d.value: d for d in DType}


class _Row(NamedTuple):
    name: str  # in PyTorch, Keras and NumPy
    onnx: int  # TensorProto's code
    itemsize: int  # bytes per element
    range: tuple | None  # the values it holds (f64: every finite float; bool: none checked)
    eps: float | None = None  # machine epsilon, torch.finfo(dtype).eps (floats)


# dualnet's one table of element types; every backend's names derive from it.
_TABLE = {
    DType.f16: _Row("float16", 10, 2, (-65504.0, 65504.0), 2.0**-10),
    DType.bf16: _Row("bfloat16", 16, 2, (-3.3895313892515355e38, 3.3895313892515355e38), 2.0**-7),
    DType.f32: _Row("float32", 1, 4, (-3.4028234663852886e38, 3.4028234663852886e38), 2.0**-23),
    DType.f64: _Row("float64", 11, 8, None, 2.0**-52),
    DType.i32: _Row("int32", 6, 4, (-(2**31), 2**31 - 1)),
    DType.i64: _Row("int64", 7, 8, (-(2**63), 2**63 - 1)),
    DType.bool: _Row("bool", 9, 1, None),
}


def out_of_range(value: float, dtype: DType) -> str | None:
    """Why `value` cannot be an element of `dtype` (`1e+300 does not fit in f32 (from ...
    to ...)`), or None when it can."""
    low, high = _TABLE[dtype].range or (value, value)
    if low <= value <= high:
        return None
    shown = (lambda v: f"{v:,}") if isinstance(value, int) else (lambda v: f"{v:g}")
    return f"{shown(value)} does not fit in {dtype} (from {shown(low)} to {shown(high)})"


SizeT = int | Dim


@dataclass(frozen=True, slots=True)
class TensorType:
    dtype: DType
    shape: tuple[SizeT, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_shape(self, shape) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(dtype, self.shape)

    @property
    def numel(self) -> SizeT:
        """The number of elements: an int, or a `Dim` over the symbolic sizes."""
        return math.prod(self.shape)

    def static_numel(self) -> int:
        """Product of the known dimensions (symbolic ones count as 1)."""
        return math.prod(int(d) for d in self.shape if isinstance(d, int))

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"

"""Element types and tensor types."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

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
    def numpy(self) -> str | None:
        """The NumPy dtype name (None for bf16, which NumPy lacks)."""
        return _NUMPY_NAMES.get(self)

    def __str__(self) -> str:
        return self.value


DTYPES = {d.value: d for d in DType}
# The values each element type holds (f64: every finite float; bool: none are checked).
_RANGES = {
    DType.f16: (-65504.0, 65504.0),
    DType.bf16: (-3.3895313892515355e38, 3.3895313892515355e38),
    DType.f32: (-3.4028234663852886e38, 3.4028234663852886e38),
    DType.i32: (-(2**31), 2**31 - 1),
    DType.i64: (-(2**63), 2**63 - 1),
}


def out_of_range(value: float, dtype: DType) -> str | None:
    """Why `value` cannot be an element of `dtype` (`1e+300 does not fit in f32 (from ...
    to ...)`), or None when it can."""
    low, high = _RANGES.get(dtype, (value, value))
    if low <= value <= high:
        return None
    shown = (lambda v: f"{v:,}") if isinstance(value, int) else (lambda v: f"{v:g}")
    return f"{shown(value)} does not fit in {dtype} (from {shown(low)} to {shown(high)})"


_NUMPY_NAMES = {
    DType.f16: "float16",
    DType.f32: "float32",
    DType.f64: "float64",
    DType.i32: "int32",
    DType.i64: "int64",
    DType.bool: "bool",
}
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

    def static_numel(self) -> int:
        """Product of the known dimensions (symbolic ones count as 1)."""
        return math.prod(d for d in self.shape if isinstance(d, int))

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"

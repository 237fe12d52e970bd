"""Arrays from untrusted files (`dualnet run`'s inputs, `dualnet train`'s data): reading one
`.npy` array (never a pickle, the header checked against the file's size) and checking an
array against the tensor type it stands for."""

from __future__ import annotations

import math
import os

import numpy as np

from dualnet.diagnostics import error, whole_file
from dualnet.io.files import io_error, open_regular
from dualnet.ir.dims import Dim


def read_npy(path: str) -> np.ndarray:
    """One `.npy` array: a regular file whose header is read and checked against the file's
    size before the data is read; never a pickle (E-IO / E-INPUT)."""
    from numpy.lib import format as npy

    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    with open_regular(path) as f:
        try:
            if f.read(4) == b"PK\x03\x04":
                raise error(
                    "E-INPUT",
                    f"{path} is an .npz archive, not one .npy array",
                    whole_file(path),
                    notes=["save each input as its own .npy file (numpy.save)"],
                )
            f.seek(0)
            version = npy.read_magic(f)
            if version not in readers:
                raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
            shape, _, dtype = readers[version](f)
            if dtype.hasobject:
                raise ValueError("it holds Python objects, which dualnet never unpickles")
            need = math.prod(shape) * dtype.itemsize
            have = os.fstat(f.fileno()).st_size - f.tell()
            if have != need:
                raise ValueError(
                    f"its header promises {dtype}{list(shape)} ({need:,} bytes), "
                    f"the file holds {have:,} bytes of data"
                )
            f.seek(0)
            return npy.read_array(f, allow_pickle=False)
        except (ValueError, EOFError) as exc:
            raise error(
                "E-INPUT", f"{path} is not a .npy array file: {exc or 'empty'}", whole_file(path)
            ) from None
        except OSError as exc:
            raise io_error("read", path, exc) from None


def check_array(what: str, array: np.ndarray, t, span, bound: dict, examples: bool = False):
    """E-INPUT at `span` unless `array` (`what`: "the input `x`") has the dtype, rank and
    sizes of the tensor type `t`. Symbolic sizes bind in `bound`; with `examples`, axis 0
    counts the examples, one count for every array whatever its declared size."""
    if array.dtype != np.dtype(t.dtype.numpy) or array.ndim != len(t.shape):
        raise error("E-INPUT", f"{what} must be {t}; it is {array.dtype}{list(array.shape)}", span)
    for axis, (d, n) in enumerate(zip(t.shape, array.shape, strict=True)):
        if axis == 0 and examples:
            d = bound.setdefault("examples", n)
        elif isinstance(d, Dim) and d.symbol is not None:
            d = bound.setdefault(d.symbol, n)
        if isinstance(d, int) and d != n:
            declared = f"{t}, axis 0 the examples" if examples else str(t)
            raise error(
                "E-INPUT",
                f"axis {axis} of {what} must be {d} (it is declared {declared}); it has {n}",
                span,
            )

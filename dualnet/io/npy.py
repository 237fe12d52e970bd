"""Reading one `.npy` array from an untrusted file (`dualnet run`'s inputs, `dualnet train`'s
data directories): never a pickle, the header checked against the file's size."""

from __future__ import annotations

import math
import os

import numpy as np

from dualnet.diagnostics import error, whole_file
from dualnet.io.files import io_error, open_regular


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

"""The C allocator of a training process.

A training step frees and allocates the same large blocks every time: activations,
gradients, optimiser temporaries. glibc's malloc, left at its defaults, gives the memory of
large freed blocks back to the system and takes it again with page faults on the next step,
in a pattern that changes from one process to the next (BERT-tiny's PyTorch step: 105-130 ms
under the defaults, 98-103 ms with the memory kept; docs/training.md, "Training speed").
`dualnet train` therefore tells glibc to keep freed memory for the next step.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Mapping

M_TRIM_THRESHOLD = -1  # mallopt's parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30
"""Blocks under 1 GiB come from the heap, not from a mapping of their own."""
TRIM_THRESHOLD = (1 << 31) - 1
"""The heap gives memory back to the system only past 2 GiB free at its top."""
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> bool:
    """Tell glibc's malloc to keep freed memory (`MMAP_THRESHOLD`, `TRIM_THRESHOLD`);
    whether it did. It does not on other systems or C libraries, nor where the user set the
    allocator up: glibc's MALLOC_*_ variables or malloc tunables, or an allocator preloaded
    (jemalloc, tcmalloc, mimalloc)."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or configured(environ):
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def configured(environ: Mapping[str, str]) -> bool:
    """Whether the environment sets the allocator up itself."""
    return (
        any(name in environ for name in USER_SETTINGS)
        or "glibc.malloc" in environ.get("GLIBC_TUNABLES", "")
        or "malloc" in environ.get("LD_PRELOAD", "")
    )

"""`keep_freed_memory`: on glibc, freed blocks stay with the process (no page faults when a
step allocates them again); an allocator the user set up is left alone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from dualnet.training.allocator import configured, keep_freed_memory

GLIBC = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"

# 20 steps that each write eight 8 MB arrays, then free them: the page faults they take
FAULTS = """
import resource, sys
import numpy as np
from dualnet.training.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    blocks = [np.ones(1 << 20) for _ in range(8)]
    del blocks
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not configured({k: v})}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_kept_memory_is_taken_again_without_page_faults():
    kept, kept_faults = faults("keep")
    default, default_faults = faults("default")
    assert kept and not default
    pages = (64 << 20) // 4096  # one step's
    assert default_faults > 3 * pages  # glibc's defaults give the memory back, again and again
    assert kept_faults < pages  # at most the first step's


@pytest.mark.parametrize(
    "environ",
    [
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
    ],
)
def test_an_allocator_the_user_set_up_is_left_alone(environ):
    assert configured(environ)
    assert not keep_freed_memory(environ)


def test_other_variables_do_not_count_as_set_up():
    assert not configured({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F", "LD_PRELOAD": ""})

"""The size check before allocation: a checked model may still be far too large to build.

`Sequential(Linear(100000) for i in range(100000))` checks in a moment and has
1,000,000,000,800,000 parameters; building it would die mid-allocation. Every command that
allocates a model's tensors — `init`, `compile --target onnx`, `run`, `parity`,
`gradcheck`, and `load(...).torch()`, `.keras()`, `.onnx()` in Python — first counts the
parameter and buffer elements the IR declares and refuses (E-LIMIT, at the largest layer) a
model with more than the limit:

- `max_params` given to the command (`--max-params N`) or to `dualnet.load(...)`, else
- the environment variable DUALNET_MAX_PARAMS, else
- DEFAULT_MAX_PARAMS (two billion, 8 GB as f32), lowered on a machine whose physical memory
  holds fewer: a command may hold about three copies of the tensors at once (the drawn
  tensors, the bytes being written, a framework's copy), so the default is a twelfth of the
  physical memory's bytes, in 4-byte elements.
"""

from __future__ import annotations

import os

from dualnet.diagnostics import DualnetError, error, outside

ENV = "DUALNET_MAX_PARAMS"
DEFAULT_MAX_PARAMS = 2_000_000_000
_COPIES_AND_BYTES = 3 * 4


def default_max_params() -> int:
    """DEFAULT_MAX_PARAMS, or fewer where the machine's memory would not hold them."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return DEFAULT_MAX_PARAMS
    return max(1, min(DEFAULT_MAX_PARAMS, physical // _COPIES_AND_BYTES))


def max_params(explicit: int | None = None) -> int:
    """The limit in force: `explicit`, else DUALNET_MAX_PARAMS, else the default."""
    if explicit is not None:
        return explicit
    text = os.environ.get(ENV, "").strip().replace("_", "")
    if not text:
        return default_max_params()
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise error(
            "E-INPUT",
            f"{ENV}={os.environ[ENV]!r} is not a positive integer",
            outside(f"the environment variable {ENV}"),
        )
    return value


def require_allocatable(instance, explicit: int | None = None) -> None:
    """E-LIMIT when the parameters and buffers of the `ModelInstance` exceed the limit."""
    limit = max_params(explicit)
    total, largest, largest_count = 0, None, -1
    for layer in instance.layers():
        count = sum(p.numel for p in (*layer.params.values(), *layer.buffers.values()))
        total += count
        if count > largest_count:
            largest, largest_count = layer, count
    if total <= limit:
        return
    raise too_many(
        f"`{instance.definition}` has {total:,} parameters and buffer elements "
        f"({human_bytes(total * 4)} as f32)",
        limit,
        largest.span if largest is not None else instance.span,
        f"the largest layer: `{largest.path}` ({largest.op}, {largest_count:,})"
        if largest is not None
        else None,
    )


def require_elements(count: int, what: str, span, explicit: int | None = None) -> None:
    """E-LIMIT when `count` elements (of the tensors a command would make, such as random
    inputs; `span` says what sets their size) exceed the limit."""
    limit = max_params(explicit)
    if count > limit:
        raise too_many(
            f"{what} would have {count:,} elements ({human_bytes(count * 4)} as f32)",
            limit,
            span,
            None,
        )


def too_many(what: str, limit: int, span, note: str | None) -> DualnetError:
    notes = [note] if note else []
    notes.append(f"raise the limit with --max-params N or the environment variable {ENV}=N")
    return error(
        "E-LIMIT",
        f"{what}, more than the limit of {limit:,} ({human_bytes(limit * 4)})",
        span,
        "too large to allocate",
        notes,
    )


def human_bytes(n: int) -> str:
    """`4.0 PB`: bytes in powers of 1000."""
    value, unit = float(n), "B"
    for bigger in ("KB", "MB", "GB", "TB", "PB", "EB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{n:,} B" if unit == "B" else f"{value:,.1f} {unit}"

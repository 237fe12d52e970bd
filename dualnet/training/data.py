"""Training data for `dualnet train`: arrays named as the model's forward inputs and the
loss's targets, read from an `.npz` file or a directory of `<name>.npy` files, checked
against their declared types before anything is written, and cut into batches in an order
drawn from the seed (the same in both frameworks).

Axis 0 of every array is the example axis. Checked: every name present (other arrays are
ignored), dtype and rank as declared, fixed sizes, a symbolic size the same in every array,
and class labels in range: an integer target whose rank is one less than the model's first
output's, with a known size C on that output's axis 1 (PyTorch's class axis: `f32[B, C]`
logits and `i64[B]` labels), holds values in 0..C − 1.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from dualnet.diagnostics import error, option, whole_file
from dualnet.io.files import io_error
from dualnet.io.npy import check_array, read_npy
from dualnet.training.codegen import Roles

Batch = dict[str, np.ndarray]


def read_data(path: str, flag: str = "--data") -> Batch:
    """The arrays of an `.npz` file or of a directory's `.npy` files (by file stem)."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".npy"))
        if not names:
            raise error("E-INPUT", f"the directory {path} holds no .npy files", option(flag))
        return {n[:-4]: read_npy(os.path.join(path, n)) for n in names}
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it holds one array; name the arrays in an .npz file")
            return {name: archive[name] for name in archive.files}
    except OSError as exc:
        raise io_error("read", path, exc) from None
    except (ValueError, EOFError) as exc:
        raise error(
            "E-INPUT",
            f"{path} is not an .npz file of arrays: {exc}",
            whole_file(path),
            notes=["save the arrays with numpy.savez(path, x=..., labels=...)"],
        ) from None


@dataclass(frozen=True)
class Expected:
    """One array the data must hold: its name, declared type and where it is declared."""

    name: str
    type: object  # TensorType
    span: object
    classes: int | None = None  # integer labels: 0..classes - 1


def expected(roles: Roles) -> list[Expected]:
    """The model's inputs, then the targets, with the class count of label targets."""
    out = [Expected(v.name, v.type, v.span) for v in roles.model.graph.inputs]
    first = roles.model.graph.outputs[0].type
    n = len(roles.outputs)
    for v in roles.loss.graph.inputs[n:]:
        t, classes = v.type, None
        if not t.dtype.is_float and t.dtype.name != "bool" and first.rank == t.rank + 1:
            size = first.shape[1] if first.rank > 1 else None
            classes = size if isinstance(size, int) else None
        out.append(Expected(v.name, t, v.span, classes))
    return out


def check_arrays(arrays: Batch, wanted: list[Expected], where: str) -> int:
    """The number of examples; E-INPUT naming the array and its expected type otherwise
    (`where`: the file or batch, for the message)."""
    missing = [w.name for w in wanted if w.name not in arrays]
    if missing:
        raise error(
            "E-INPUT",
            f"{where} lacks the array `{missing[0]}`",
            option("--data"),
            notes=[f"it needs {', '.join(f'{w.name}: {w.type}' for w in wanted)}"],
        )
    bound: dict[str, int] = {}
    for w in wanted:
        array = arrays[w.name]
        check_array(f"the array `{w.name}` in {where}", array, w.type, w.span, bound, True)
        if w.classes is not None and array.size:
            low, high = int(array.min()), int(array.max())
            if low < 0 or high >= w.classes:
                raise error(
                    "E-INPUT",
                    f"the labels `{w.name}` in {where} hold {low if low < 0 else high}; "
                    f"they index {w.classes} classes, 0..{w.classes - 1}",
                    w.span,
                )
    return bound.get("examples", 0)


def shuffled_batches(
    arrays: Batch, names: list[str], batch_size: int, seed: int, epoch: int, skip: int = 0
) -> Iterator[Batch]:
    """The batches of one epoch: the examples in the order a NumPy generator seeded by
    (seed, epoch) permutes them, `batch_size` at a time (the last one smaller), after the
    first `skip` (a resumed epoch)."""
    n = len(arrays[names[0]])
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for start in range(skip * batch_size, n, batch_size):
        index = order[start : start + batch_size]
        yield {name: arrays[name][index] for name in names}


def in_order(arrays: Batch, names: list[str], batch_size: int) -> Iterator[Batch]:
    """Validation batches, in file order."""
    n = len(arrays[names[0]])
    for start in range(0, n, batch_size):
        yield {name: arrays[name][start : start + batch_size] for name in names}


def checked(batches: Iterable[Batch], wanted: list[Expected]) -> Iterator[Batch]:
    """A user's batches (dicts of arrays by name), each checked as a data file is."""
    for i, batch in enumerate(batches):
        check_arrays(batch, wanted, f"batch {i}")
        yield batch

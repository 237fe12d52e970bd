"""Whole programs: the entry model `Fuzz` as a chain of steps on one value, its templates
(in its file or in `blocks.dnet`, which it imports), and a case's files on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypothesis import reject
from hypothesis import strategies as st

from dualnet.ir.dims import DimTooLarge
from dualnet.training.spec import OPTIMIZERS
from dualnet.verify import parity
from dualnet.verify.fuzzing import blocks as _blocks  # noqa: F401  (registers its families)
from dualnet.verify.fuzzing.builder import ENTRY_FILE, Builder, Files, Tape, render
from dualnet.verify.fuzzing.consts import num
from dualnet.verify.fuzzing.ops import init
from dualnet.verify.fuzzing.steps import CONSTRUCTS, one_step

MAX_STEPS = 6  # steps of the main chain (a block or sub-model adds a few more each)


@dataclass(frozen=True)
class Case:
    source: str  # the entry file
    dims: dict[str, int]  # the size of every symbolic dimension of the inputs
    shapes: tuple[tuple[int, ...], ...]  # each output's shape at those sizes
    train: bool = False  # run in training mode (PyTorch and Keras only)
    files: tuple[tuple[str, str], ...] = ()  # other files: (name, text)
    optimizer: str = ""  # training mode: the optimiser of its training run (`training.py`)


def start(b: Builder) -> None:
    """The entry model's first input: an image, a signal, a volume, a sequence, a vector,
    or token ids through an Embedding. Its known sizes may be hyperparameters or
    constants."""
    batch = b.dim("B", 1, 3)
    kind = b.pick(["image", "signal", "volume", "sequence", "vector", "tokens"])
    dtype = b.pick(["f32"] * 5 + ["f64"])

    def features(hi: int):
        return num(b, range(1, hi + 1), "sig")

    if kind == "image":
        b.x = b.arg((batch, features(6), b.dim("H", 1, 10), b.dim("W", 1, 10)), dtype)
    elif kind == "signal":
        b.x = b.arg((batch, features(6), b.dim("L", 1, 16)), dtype)
    elif kind == "volume":
        b.x = b.arg(
            (batch, features(4), b.dim("D", 1, 5), b.dim("H", 1, 5), b.dim("W", 1, 5)), dtype
        )
    elif kind == "sequence":
        b.x = b.arg((batch, b.dim("T", 1, 8), features(16)), dtype)
    elif kind == "vector":
        b.x = b.arg((batch, features(16)), dtype)
    else:
        ids = b.arg((batch, b.dim("T", 1, 8)), b.pick(["i64", "i32"]))
        dim = num(b, range(1, 13), "decl")
        table = b.layer(render("Embedding", num(b, range(2, 51), "decl"), dim, init=init(b)), "emb")
        b.x = b.let(b.call(table, ids.name), (*ids.shape, dim), "f32")


@st.composite
def programs(
    draw, max_steps: int = MAX_STEPS, constructs=CONSTRUCTS, train: bool | None = None
) -> Case:
    """Random valid programs using `constructs` (steps.CONSTRUCTS): an entry model `Fuzz`
    (its file's last) and its templates; in training mode when `train`, else (None) one in
    four."""
    files = Files(constructs=frozenset(constructs))
    if train is None:
        train = draw(st.sampled_from([False] * 3 + [True]))
    optimizer = draw(st.sampled_from(OPTIMIZERS)) if train else ""
    b = Builder(Tape(draw), files, train=train)
    if "imports" in files.constructs:
        files.style = b.pick(["none", "all", "from", "as"])
    try:
        start(b)
        for _ in range(b.int(1, max_steps)):
            one_step(b)
    except DimTooLarge:  # a size past what symbolic sizes hold (check refuses it): no case
        reject()
    files.decls[ENTRY_FILE].append(b.source("Fuzz"))
    texts = files.sources()
    shapes = tuple(tuple(b.size(d) for d in v.shape) for v in [b.x, *b.extras])
    dims = {k: v for k, v in b.env.items() if k not in b.where}
    return Case(texts.pop(ENTRY_FILE), dims, shapes, b.train, tuple(texts.items()), optimizer)


def case_text(case: Case, note: str) -> str:
    """The case's entry file: `note`, the sizes and the mode in comments above the source."""
    dims = ",".join(f"{k}={v}" for k, v in case.dims.items())
    comments = "".join(f"# {line}\n" for line in note.splitlines())
    mode = f"# mode: train\n# optimizer: {case.optimizer}\n" if case.train else ""
    return f"{comments}# dims: {dims}\n{mode}\n{case.source}"


def write_case(case: Case, note: str, path: Path) -> Path:
    """The case as `path`.dnet, or as a directory `path` holding fuzz.dnet and the other
    files when it has several; returns what it wrote."""
    if not case.files:
        out = path.with_suffix(".dnet")
        out.write_text(case_text(case, note))
        return out
    path.mkdir(parents=True, exist_ok=True)
    (path / ENTRY_FILE).write_text(case_text(case, note))
    for name, text in case.files:
        (path / name).write_text(text)
    return path


def read_case(path: Path) -> Case:
    """A case from `write_case` (output shapes unknown: not checked)."""
    main = path / ENTRY_FILE if path.is_dir() else path
    text = main.read_text()
    lines = text.splitlines()
    dims, optimizer = (
        next((line[len(key) :].strip() for line in lines if line.startswith(key)), "")
        for key in ("# dims:", "# optimizer:")
    )
    files = (
        tuple((p.name, p.read_text()) for p in sorted(main.parent.glob("*.dnet")) if p != main)
        if path.is_dir()
        else ()
    )
    train = "# mode: train" in lines
    return Case(text, parity.parse_dims(dims.replace(" ", "")), (), train, files, optimizer)

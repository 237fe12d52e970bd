"""Sub-model templates: a model written once, used by several instances that each have
their own hyperparameter values and input sizes.

The first instance records its structural draws; every further instance replays them with
its own input, and its hyperparameters' values asked from the caller afresh, so the model's
source must come out the same (else the instance is dropped: `Diverged`). Its shapes are
that instance's own, so each instance is valid by construction, and its output's shape is
moved into the caller's names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from dualnet.ir.dims import substitute, sym, symbols_of
from dualnet.verify.fuzzing.builder import (
    BLOCKS_FILE,
    ENTRY_FILE,
    Builder,
    Const,
    Diverged,
    Tape,
    Value,
)
from dualnet.verify.fuzzing.consts import count, pair, tune
from dualnet.verify.fuzzing.steps import one_step


@dataclass
class Template:
    name: str
    file: str
    dtype: str
    signature: tuple  # per input axis: an int (written so), or (symbol, known)
    pure: bool  # no layers: may be called where some instances do not call it
    tape: Tape | None = None  # the first instance's draws
    source: str | None = None


@dataclass(frozen=True)
class Instance:
    text: str  # the constructor call, e.g. `Block2(4, k=(3, 1))`
    shape: tuple  # its output's shape, in the caller's names


def template(b: Builder, x: Value) -> Template:
    """A new template taking x: an axis is a literal size, or a symbol (known: a layer may
    take it; the same symbol for equal sizes)."""
    name = b.remember(lambda: b.files.fresh("Block"))
    file = b.file
    if b.file == ENTRY_FILE and b.files.style != "none" and b.pick([True, True, False]):
        file = BLOCKS_FILE
    symbols, signature = {}, []
    for d in x.shape:
        if isinstance(d, int) and b.pick([True, False, False]):
            signature.append(d)
        else:
            symbols.setdefault(d, (f"S{len(symbols) + 1}", b.known(d)))
            signature.append(symbols[d])
    return Template(name, file, x.dtype, tuple(signature), pure=b.branch)


def binding(b: Builder, t: Template, x: Value) -> dict[str, object] | None:
    """Each signature symbol's size in the caller for input x; None when x does not fit."""
    if x.rank != len(t.signature) or x.dtype != t.dtype:
        return None
    bound: dict[str, object] = {}
    for d, s in zip(x.shape, t.signature, strict=True):
        if isinstance(s, int):
            if not (isinstance(d, int) and d == s):
                return None
        elif (s[1] and not b.known(d)) or bound.setdefault(s[0], d) != d:
            return None
    return bound


def instance(b: Builder, t: Template, x: Value, args_tape: Tape | None = None) -> Instance:
    """A new instance of t taking x (the first records t's source). The caller's draws for
    the arguments come from `args_tape` when given (the elements of a generator, written
    once for all)."""
    bound = binding(b, t, x)
    if bound is None:
        raise Diverged

    def ask(type_: str, spec) -> tuple[Const, object]:
        with b.drawing(args_tape):
            return argument(b, type_, spec)

    tape = Tape(b.tape.draw, parent=b.tape) if t.tape is None else t.tape.replaying()
    sub = Builder(
        tape,
        b.files,
        file=t.file,
        names=Counter(),
        top=False,
        train=b.train,
        depth=b.depth + 1,
        branch=t.pure,
        ask=ask,
    )
    for d, s in zip(x.shape, t.signature, strict=True):
        if not isinstance(s, int):
            if s[1]:
                sub.bind(s[0], b.size(d), "int", "sig")
            else:
                sub.env[s[0]] = b.size(d)
    sub.x = sub.arg(tuple(s if isinstance(s, int) else sym(s[0]) for s in t.signature), t.dtype)
    for _ in range(sub.int(1, 3)):
        one_step(sub)
    source = sub.source(t.name)
    if t.source is None:
        b.files.register(t.name, t.file, source)
        t.source, t.tape = source, tape
    elif source != t.source:
        raise Diverged
    with b.drawing(args_tape):
        text = call_text(b, t, sub)
    return Instance(text, translate(b, sub, bound))


def argument(b: Builder, type_: str, spec) -> tuple[Const, object]:
    """How the caller writes a hyperparameter's value (in a declaration), and its size."""
    if type_ == "int":
        return count(b, spec, "decl")
    if type_.startswith("("):
        return pair(b, spec, "decl", typed=True)[0], None
    return tune(b, type_, spec, "decl"), None


def call_text(b: Builder, t: Template, sub: Builder) -> str:
    """`Ref(args)`: positional, then keywords; an argument equal to its default may be
    left out."""
    parts, keyword = [], False
    for name, const, _ in sub.asked:
        if name in sub.defaults and sub.defaults[name] == const.value and b.flag():
            keyword = True
            continue
        keyword = keyword or b.flag()
        parts.append(f"{name}={const.text}" if keyword else const.text)
    return f"{b.files.ref(t.name, b.file)}({', '.join(parts)})"


def translate(b: Builder, sub: Builder, bound: dict) -> tuple:
    """The instance's output shape in the caller's names: signature symbols become the
    input's sizes, hyperparameters the caller's sizes, other compile-time names their
    definitions or values (file constants stay where the caller sees them)."""
    outside = {**bound, **{name: size for name, _, size in sub.asked if size is not None}}
    shared = b.files.visible_consts(b.file)
    local = {
        n: sub.defs.get(n, sub.env[n])
        for n, t in sub.types.items()
        if t == "int" and n not in outside and n not in shared
    }
    shape = sub.x.shape
    while any(symbols_of(d) & local.keys() for d in shape):
        shape = tuple(substitute(d, local) for d in shape)
    shape = tuple(substitute(d, outside) for d in shape)
    for name in set().union(*map(symbols_of, shape)) & shared.keys() - b.types.keys():
        b.bind(name, shared[name][1], shared[name][0], "sig")
    return shape

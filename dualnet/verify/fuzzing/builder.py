"""The generator's state: one model under construction, the stream of its structural draws,
and how sizes and values are written.

A model's structural draws (which op, which axis, which literal) go through its `Tape`;
the first instance of a sub-model template records them and every further instance replays
them, so that all instances write the same source while their hyperparameters, input sizes
and therefore shapes differ. A replayed draw that no longer fits its instance raises
`Diverged` (the instance is dropped). Values that may differ between instances (a
hyperparameter's value) are drawn fresh from hypothesis.

Sizes are `int`s or `Dim`s. A `Dim` over *compile-time names* (hyperparameters, constants,
signature dimensions bound to known sizes) is known in every instance, so layers may take
it; a `Dim` over other symbols (B, H) is symbolic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from hypothesis import strategies as st

from dualnet.ir.dims import Dim, substitute, sym, symbols_of

ENTRY_FILE, BLOCKS_FILE = "fuzz.dnet", "blocks.dnet"
# Where a compile-time name may be written: hyperparameters, file constants and known
# dimensions of the signature anywhere ("sig": also in forward's signature), body
# constants in declarations and forward, forward constants in forward only.
SCOPES = ("sig", "decl", "forward")
_END = object()


class Diverged(Exception):
    """A replayed instance of a template no longer fits the first one's draws or source."""


class Tape:
    """The structural draws of one model. Recording, each comes from the parent tape (the
    enclosing model's, so that replaying that model replays this one too) or, at the
    root, from hypothesis, and is kept; replaying, they come back in order."""

    def __init__(self, draw: Callable, parent: Tape | None = None, replay: list | None = None):
        self.draw, self.parent = draw, parent
        self.log: list = []
        self._replay = None if replay is None else iter(replay)

    def take(self, source, fits: Callable[[object], bool]):
        """A value from `source` (a strategy, or a function making it when not replaying);
        `fits` says whether a replayed value is still valid here."""
        if self._replay is not None:
            value = next(self._replay, _END)
            if value is _END or not fits(value):
                raise Diverged
        elif self.parent is not None:
            value = self.parent.take(source, fits)
        else:
            value = self.draw(source) if isinstance(source, st.SearchStrategy) else source()
        self.log.append(value)
        return value

    def replaying(self) -> Tape:
        """A tape that gives this one's draws back (for the next instance)."""
        return Tape(self.draw, None, list(self.log))


@dataclass
class Files:
    """What the models of one program share: global names, each file's constants and
    models in order, and how the entry file refers to the other file's models."""

    names: Counter = field(default_factory=Counter)
    decls: dict[str, list[str]] = field(default_factory=lambda: {ENTRY_FILE: [], BLOCKS_FILE: []})
    models: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (file, source)
    consts: dict[str, dict[str, tuple[str, object]]] = field(
        default_factory=lambda: {ENTRY_FILE: {}, BLOCKS_FILE: {}}
    )  # file -> name -> (type, value)
    style: str = "none"  # how the entry file imports: "none", "all", "from" or "as"
    constructs: frozenset = frozenset({"ops"})  # what programs may use (steps.CONSTRUCTS)

    def fresh(self, prefix: str) -> str:
        self.names[prefix] += 1
        return f"{prefix}{self.names[prefix]}"

    def register(self, name: str, file: str, source: str) -> None:
        """Add a model; a replay registering it again must write the same source."""
        if name in self.models:
            if self.models[name] != (file, source):
                raise Diverged
            return
        self.models[name] = (file, source)
        self.decls[file].append(source)

    def constant(self, file: str, type_: str, value) -> str:
        """A new file constant."""
        name = self.fresh("K")
        self.consts[file][name] = (type_, value)
        self.decls[file].insert(0, f"const {name} = {literal(value)}")
        return name

    def visible_consts(self, file: str) -> dict[str, tuple[str, object]]:
        """The file constants a model of `file` may name (the entry file imports all of the
        other file's with `import "blocks.dnet"`)."""
        out = dict(self.consts[file])
        if file == ENTRY_FILE and self.style == "all":
            out.update(self.consts[BLOCKS_FILE])
        return out

    @staticmethod
    def alias(name: str) -> str | None:
        """The entry file's name for an imported model with `from ... import M as A`: every
        other model is renamed."""
        return f"Imported{name}" if int(name.removeprefix("Block")) % 2 else None

    def ref(self, name: str, file: str) -> str:
        """How a model of the program is written in `file`."""
        if self.models[name][0] == file or file == BLOCKS_FILE:
            return name
        if self.style == "as":
            return f"blocks.{name}"
        return (self.style == "from" and self.alias(name)) or name

    def sources(self) -> dict[str, str]:
        """Each file's text: its constants and models (the entry model last), the entry
        file's import first."""
        out = {}
        for file, decls in self.decls.items():
            head = []
            if file == ENTRY_FILE and self.decls[BLOCKS_FILE]:
                head.append(self.import_line())
            if decls or head:
                out[file] = "\n\n".join([*head, *decls]) + "\n"
        return out

    def import_line(self) -> str:
        if self.style == "all":
            return f'import "{BLOCKS_FILE}"'
        if self.style == "as":
            return f'import "{BLOCKS_FILE}" as blocks'
        names = [
            f"{m} as {self.alias(m)}" if self.alias(m) else m
            for m, (file, _) in self.models.items()
            if file == BLOCKS_FILE
        ]
        return f'from "{BLOCKS_FILE}" import {", ".join(names)}'


@dataclass(frozen=True)
class Value:
    name: str
    shape: tuple  # per axis an int or a Dim
    dtype: str = "f32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def type(self) -> str:
        return f"{self.dtype}[{', '.join(dim_text(d) for d in self.shape)}]"


@dataclass(frozen=True)
class Const:
    """A compile-time value as the source writes it (a literal, a name, an expression)."""

    text: str
    value: object

    def __str__(self) -> str:
        return self.text


def dim_text(d) -> str:
    """A size as the language writes it: no unary minus, so `-B + 3` becomes `0 - B + 3`."""
    if isinstance(d, int):
        return str(d)
    text = str(d)
    return ("0 - " + text[1:] if text.startswith("-") else text).replace("(-", "(0 - ")


def literal(v) -> str:
    if isinstance(v, Const):
        return v.text
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        return f"({', '.join(literal(i) for i in v)}{',' * (len(v) == 1)})"
    return dim_text(v) if isinstance(v, Dim) else str(v)


def keywords(**values) -> list[str]:
    """`key=value` texts of Python values; None leaves the keyword out."""
    return [f"{k}={literal(v)}" for k, v in values.items() if v is not None]


def render(fn: str, *args, **values) -> str:
    """`fn(args, key=value)`: args are source text (or sizes)."""
    args = [dim_text(a) if isinstance(a, Dim) else str(a) for a in args]
    return f"{fn}({', '.join([*args, *keywords(**values)])})"


@dataclass
class Builder:
    """One model under construction: layers and constants (`body`), hyperparameters,
    forward arguments, statements, the current value `x` of the main chain, the value of
    every name in scope (`env`: sizes of symbols, values of compile-time names) and which
    names are compile-time (`where`) and their types."""

    tape: Tape
    files: Files
    file: str = ENTRY_FILE
    env: dict[str, int] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # compile-time name -> SCOPES item
    types: dict[str, str] = field(default_factory=dict)  # compile-time name -> its type
    values: dict[str, object] = field(default_factory=dict)  # non-int compile-time values
    names: Counter = field(default_factory=Counter)
    top: bool = True  # the entry model: steps may add inputs and extra outputs
    train: bool = False  # the program runs in training mode
    depth: int = 0
    guarded: bool = False  # inside an `if` branch or a loop: no new inputs or outputs
    branch: bool = False  # inside an `if` branch: no layer declarations (E-UNUSED)
    ask: Callable | None = None  # a hyperparameter's value from the caller (templates)
    defaults: dict[str, object] = field(default_factory=dict)  # hyperparameter defaults
    asked: list = field(default_factory=list)  # (hyperparameter, caller's Const, its size)
    nest: int = 0  # nesting of compile-time expressions being drawn
    loop: bool = False  # writing a generator's element: no new hyperparameters or constants
    defs: dict[str, object] = field(default_factory=dict)  # constants that are sizes of others
    x: Value | None = None
    hypers: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    extras: list[Value] = field(default_factory=list)

    # -- structural draws (replayed by further instances)
    def pick(self, options):
        options = list(options)
        return self.tape.take(st.sampled_from(options), lambda v: v in options)

    def int(self, lo: int, hi: int) -> int:
        return self.tape.take(st.integers(lo, hi), lambda v: lo <= v <= hi)

    def flag(self) -> bool:
        return self.tape.take(st.booleans(), lambda v: True)

    def axis(self, rank: int, extra: int = 0) -> tuple[int, str]:
        """An axis in [0, rank + extra), and its text, sometimes negative."""
        a = self.int(0, rank + extra - 1)
        return a, str(a - rank - extra if self.flag() else a)

    def subset(self, n: int, lo: int, hi: int) -> list[int]:
        """A sorted set of lo..hi of range(n)."""
        return sorted(
            self.tape.take(
                st.sets(st.integers(0, n - 1), min_size=lo, max_size=hi),
                lambda v: lo <= len(v) <= hi and max(v) < n,
            )
        )

    def permutation(self, items) -> list:
        items = list(items)
        return self.tape.take(
            st.permutations(items), lambda v: sorted(map(str, v)) == sorted(map(str, items))
        )

    def remember(self, make: Callable):
        """`make()` when recording; the recorded result when replaying (global names)."""
        return self.tape.take(make, lambda v: True)

    @contextmanager
    def drawing(self, tape: Tape | None):
        """Structural draws from `tape` for a while (None: this builder's own)."""
        saved = self.tape
        self.tape = tape or saved
        try:
            yield
        finally:
            self.tape = saved

    # -- fresh draws (each instance its own)
    def fresh_draw(self, strategy):
        return self.tape.draw(strategy)

    # -- sizes and names
    def fresh(self, prefix: str) -> str:
        self.names[prefix] += 1
        return f"{prefix}{self.names[prefix]}"

    def size(self, d) -> int:
        return substitute(d, self.env)

    def numel(self, shape) -> int:
        return math.prod(self.size(d) for d in shape)

    def known(self, d) -> bool:
        """A size every instance knows at compile time (a layer may take it)."""
        return symbols_of(d) <= self.where.keys()

    def plain(self, d) -> bool:
        """Usable in an input type: known, or a bare dimension name (and no constant of
        the model's body or forward, which the signature cannot see)."""
        return self.writable(d, "sig") and (self.known(d) or d.symbol is not None)

    def visible(self, name: str, where: str) -> bool:
        """Whether a compile-time name may be written in `where`."""
        return SCOPES.index(self.where[name]) <= SCOPES.index(where)

    def writable(self, d, where: str) -> bool:
        """Whether a size can be written in `where` (its names are visible there)."""
        return all(s not in self.where or self.visible(s, where) for s in symbols_of(d))

    def decl(self, d):
        """A known size as a declaration writes it: its text when declarations see every
        name in it, else its value here."""
        return d if self.writable(d, "decl") else self.size(d)

    def bind(self, name: str, value, type_: str, where: str) -> None:
        """A new compile-time name, visible from `where` on (see SCOPES)."""
        self.where[name], self.types[name] = where, type_
        if type_ == "int":
            self.env[name] = value
        else:
            self.values[name] = value

    def unbind(self, name: str) -> None:
        for table in (self.where, self.types, self.env, self.values):
            table.pop(name, None)

    def dim(self, name: str, lo: int, hi: int):
        """A drawn size, as a constant or as a new symbolic dimension bound to it."""
        n = self.int(lo, hi)
        if not self.flag():
            return n
        symbol = name if name not in self.env else self.fresh(name)
        self.env[symbol] = n
        return sym(symbol)

    # -- emitting
    def arg(self, shape, dtype: str | None = None) -> Value:
        """A new forward argument, by default of x's dtype."""
        assert all(self.plain(d) for d in shape), shape
        value = Value(self.fresh("in"), tuple(shape), dtype or self.x.dtype)
        self.args.append(f"{value.name}: {value.type}")
        return value

    def layer(self, expr: str, prefix: str = "l") -> str:
        name = self.fresh(prefix)
        if prefix == "l" and self.pick([False, False, False, True]):
            name = f"`{name}-q`"  # a quoted name, kept as the state_dict name
        self.body.append(f"{name} = {expr}")
        return name

    def let(self, expr: str, shape, dtype: str | None = None) -> Value:
        """A new annotated statement, by default of x's dtype."""
        value = Value(self.fresh("h"), tuple(shape), dtype or self.x.dtype)
        self.lines.append(f"{value.name}: {value.type} = {expr}")
        return value

    def step(self, expr: str, shape) -> None:
        self.x = self.let(expr, shape)

    def call(self, fn: str, x: str, *args) -> str:
        """`fn(x, args...)`, or the same as a pipe `x |> fn(args...)`."""
        args = [dim_text(a) if isinstance(a, Dim) else str(a) for a in args]
        if self.flag():
            return f"{x} |> {fn}({', '.join(args)})" if args else f"{x} |> {fn}"
        return f"{fn}({', '.join((x, *args))})"

    def source(self, name: str, result_type: bool = True) -> str:
        """The model's declaration."""
        outputs = [self.x, *self.extras]
        types = (
            outputs[0].type if len(outputs) == 1 else "(" + ", ".join(v.type for v in outputs) + ")"
        )
        writable = all(self.writable(d, "decl") for v in outputs for d in v.shape)
        arrow = f" -> {types}" if result_type and writable else ""
        body = [f"    {line}" for line in self.body]
        body.append(f"    forward({', '.join(self.args)}){arrow} {{")
        body += [f"        {line}" for line in self.lines]
        body.append(f"        return {', '.join(v.name for v in outputs)}")
        return "\n".join([f"model {name}({', '.join(self.hypers)}) {{", *body, "    }", "}"])

    # -- state, for steps that may be undone
    def snapshot(self) -> tuple:
        return (
            self.x,
            list(self.hypers),
            list(self.args),
            list(self.body),
            list(self.lines),
            list(self.extras),
            dict(self.env),
            dict(self.where),
            dict(self.types),
            dict(self.values),
            dict(self.defaults),
            dict(self.defs),
            list(self.asked),
        )

    def restore(self, saved: tuple) -> None:
        (
            self.x,
            self.hypers,
            self.args,
            self.body,
            self.lines,
            self.extras,
            self.env,
            self.where,
            self.types,
            self.values,
            self.defaults,
            self.defs,
            self.asked,
        ) = saved

"""Differential fuzzing: random valid .dnet programs, run in every backend and compared.

`programs()` is a hypothesis strategy of `Case`s: a program's source, the sizes of its
symbolic dimensions and the concrete shape of each output. The generator builds the entry
model `Fuzz` as a chain of steps on one current value; each step is drawn from the op
families below that accept the value's shape. Shapes are tracked symbolically (with
dualnet's `Dim` algebra) and at the drawn sizes, so every program is valid by
construction; every statement is annotated with the type the generator expects, so a
program that fails `check` is itself a finding. Values stay numerically sane (exp of tanh,
log of |x| + 0.5, no normalisation of a single value, ...), and non-differentiable ops
(floor, round, comparisons, argmax, casts) only read inputs, so that a mismatch means a real
bug rather than a rounding flip. Inputs are f32 or f64; one program in four runs in
training mode (PyTorch and Keras: batch statistics, running statistics compared).

`run_case` writes a case to a temporary directory, compares all backends with
`dualnet.parity.compare` and counts the ops of the checked graph. Only the fuzzing tests
and `benchmarks/fuzz.py` import this module (it needs hypothesis).
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypothesis import strategies as st

import dualnet
from dualnet import parity
from dualnet.compiler import Program
from dualnet.ir.dims import Dim, floordiv, substitute, sym

BACKENDS = ("torch", "keras", "onnx")
MAX_STEPS = 6  # steps of the main chain (a branch or submodel adds up to two more each)
MAX_DEPTH = 2  # nesting of branches and submodels
MAX_ELEMENTS = 3000  # a step that grows its value only applies below this many elements
INITS = ("default", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal")

# Bugs the fuzzer found that are reported but not fixed yet: the generator steers around
# each (search for its name). Delete an entry once fixed, and those programs come back.
KNOWN_BUGS = {
    "keras-linear-rank1": "Keras: a Linear step of a Sequential on a rank-1 input is refused "
                          "(E-BACKEND; a direct call works)",
    "keras-bilinear-symbolic": "Keras: bilinear upsample of a symbolic size fails to build",
    "keras-submodel-sizes": "Keras: a size-dependent op (reshape, flatten) in a submodel "
                            "whose argument has a size like (W + 2) // 3: `cannot find the "
                            "size W at run time`",
    "keras-softmax-rank6": "Keras: softmax (also in attention) of a rank-6 tensor: "
                           "TensorFlow's kernel takes rank <= 5",
    "keras-dense-static": "Keras: a Linear whose input size TensorFlow cannot infer "
                          "statically (after a dilated conv over a symbolic size, or an "
                          "index like x[:, -2] of a symbolic size) cannot be built",
    "ort-pad-fusion": "ONNX Runtime: its Pad fusion makes a pool whose padding is not "
                      "smaller than its kernel, and fails (pad then avg_pool2d)",
    "convt-output-padding": "Keras and ONNX: ConvTranspose2d with stride <= output_padding "
                            "< dilation (valid in PyTorch): wrong kernel / ORT refuses",
    "keras-sequential-layout": "Keras refuses a generated Sequential(Block() for i in ...) "
                               "whose blocks take channels-last and give channels-first "
                               "(E-BACKEND: declare them one by one)",
    "keras-adaptive-pool": "Keras: adaptive_avg_pool2d that pools one axis and takes the "
                           "other to size 1 or over a symbolic size (Keras's adaptive "
                           "pooling fails in graph mode / needs static sizes)",
    "tf-onednn-conv": "TensorFlow (oneDNN): Conv2d/3d of one input channel with a stride on "
                      "the last axis and an output width of 1, batch and height >= 2, "
                      "returns garbage",
}


def avoid(bug: str) -> bool:
    return bug in KNOWN_BUGS


@dataclass(frozen=True)
class Case:
    source: str
    dims: dict[str, int]  # the size of every symbolic dimension of the inputs
    shapes: tuple[tuple[int, ...], ...]  # each output's shape at those sizes
    train: bool = False  # run in training mode (PyTorch and Keras only)


@dataclass(frozen=True)
class Value:
    name: str
    shape: tuple  # per axis an int or a Dim
    dtype: str = "f32"
    made_by: str = ""  # the family that made it, where a KNOWN_BUGS entry depends on it

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def type(self) -> str:
        return f"{self.dtype}[{', '.join(dim_text(d) for d in self.shape)}]"


def dim_text(d) -> str:
    """A size as the language writes it: no unary minus, so `-B + 3` becomes `0 - B + 3`."""
    text = str(d)
    return ("0 " + text if text.startswith("-") else text).replace("(-", "(0 - ")


def known(d) -> bool:
    return isinstance(d, int)


def plain(d) -> bool:
    """Usable in an input type: an int or a bare dimension name."""
    return known(d) or d.symbol is not None


@dataclass
class Builder:
    """One model under construction: layers, forward arguments, statements, the current
    value `x` of the main chain, and the drawn size of every symbol in scope."""

    draw: Callable
    names: Counter  # shared by all the models of a program: names stay unique
    env: dict[str, int]
    top: bool = True  # the entry model: steps may add inputs and extra outputs
    train: bool = False  # the program runs in training mode
    depth: int = 0
    x: Value | None = None
    args: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    extras: list[Value] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # submodel sources, shared like names

    # -- drawing
    def pick(self, options):
        return self.draw(st.sampled_from(list(options)))

    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def flag(self) -> bool:
        return self.draw(st.booleans())

    def axis(self, rank: int, extra: int = 0) -> tuple[int, str]:
        """An axis in [0, rank + extra), and its text, sometimes negative."""
        a = self.int(0, rank + extra - 1)
        return a, str(a - rank - extra if self.flag() else a)

    # -- sizes and names
    def fresh(self, prefix: str) -> str:
        self.names[prefix] += 1
        return f"{prefix}{self.names[prefix]}"

    def size(self, d) -> int:
        return substitute(d, self.env)

    def numel(self, shape) -> int:
        return math.prod(self.size(d) for d in shape)

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
        value = Value(self.fresh("in"), tuple(shape), dtype or self.x.dtype)
        self.args.append(f"{value.name}: {value.type}")
        return value

    def layer(self, expr: str, prefix: str = "l") -> str:
        name = self.fresh(prefix)
        self.layers.append(f"{name} = {expr}")
        return name

    def let(self, expr: str, shape, dtype: str | None = None) -> Value:
        """A new annotated statement, by default of x's dtype."""
        value = Value(self.fresh("h"), tuple(shape), dtype or self.x.dtype)
        self.lines.append(f"{value.name}: {value.type} = {expr}")
        return value

    def step(self, expr: str, shape, made_by: str = "") -> None:
        self.x = replace(self.let(expr, shape), made_by=made_by)

    def call(self, fn: str, x: str, *args: str) -> str:
        """`fn(x, args...)`, or the same as a pipe `x |> fn(args...)`."""
        if self.flag():
            return f"{x} |> {fn}({', '.join(args)})" if args else f"{x} |> {fn}"
        return f"{fn}({', '.join((x, *args))})"

    def model(self, name: str) -> str:
        outputs = [self.x, *self.extras]
        types = outputs[0].type if len(outputs) == 1 else \
            "(" + ", ".join(v.type for v in outputs) + ")"
        body = [f"    {line}" for line in self.layers]
        body.append(f"    forward({', '.join(self.args)}) -> {types} {{")
        body += [f"        {line}" for line in self.lines]
        body.append(f"        return {', '.join(v.name for v in outputs)}")
        return "\n".join([f"model {name}() {{", *body, "    }", "}"])


# ---------------------------------------------------------------- families

Accepts = Callable[[Builder, Value], bool]
FAMILIES: list[tuple[Accepts, Callable[[Builder], None], int]] = []


def family(accepts: Accepts, weight: int = 1):
    """Register a family of steps: `accepts(builder, x)` says whether it applies to the
    current value; `weight` makes it that many times likelier than a plain one."""
    def register(fn: Callable[[Builder], None]):
        FAMILIES.append((accepts, fn, weight))
        return fn
    return register


def small(b: Builder, x: Value) -> bool:
    return b.numel(x.shape) <= MAX_ELEMENTS


def one_step(b: Builder) -> None:
    b.pick([fn for accepts, fn, weight in FAMILIES if accepts(b, b.x) for _ in range(weight)])(b)


def literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        return f"({', '.join(literal(i) for i in v)})"
    return dim_text(v) if isinstance(v, Dim) else str(v)


def keywords(**values) -> list[str]:
    """`key=value` texts of Python values; None leaves the keyword out."""
    return [f"{k}={literal(v)}" for k, v in values.items() if v is not None]


def render(fn: str, *args, **values) -> str:
    """`fn(args, key=value)`: args are source text."""
    return f"{fn}({', '.join([*(str(a) for a in args), *keywords(**values)])})"


def per_axis(values):
    """One value for every axis as an int, else a tuple."""
    return values[0] if len(set(values)) == 1 else tuple(values)


def init(b: Builder) -> str | None:
    choice = b.pick(INITS)
    return None if choice == "default" else choice


ACTIVATIONS = {
    "relu": [()], "sigmoid": [()], "tanh": [()], "silu": [()], "abs": [()],
    "gelu": [(), ('approximate="tanh"',), ('approximate="none"',)],
    "leaky_relu": [(), ("slope=0.2",), ("0.5",)],
    "elu": [(), ("alpha=0.5",), ("alpha=2.0",)],
    "softplus": [(), ("beta=2.0",), ("beta=0.5", "threshold=2.0"), ("threshold=1.0",)],
    "clamp": [("0.0", "6.0"), ("lo=-0.5",), ("hi=0.5",), ("-1.0", "1.0")],
}


@family(lambda b, x: True, weight=2)
def activation(b: Builder) -> None:
    """An activation, softmax or log_softmax along an axis, a parameterless layer (Dropout,
    Identity), or the unary minus."""
    x = b.x
    softmax = not (avoid("keras-softmax-rank6") and x.rank > 5)
    kind = b.pick(["function", *["softmax"] * softmax, "layer", "neg"])
    if kind == "function":
        fn = b.pick(sorted(ACTIVATIONS))
        b.step(b.call(fn, x.name, *b.pick(ACTIVATIONS[fn])), x.shape)
    elif kind == "softmax":
        _, axis = b.axis(x.rank)
        b.step(b.call(b.pick(["softmax", "log_softmax"]), x.name, axis), x.shape)
    elif kind == "layer":
        layer = b.layer(b.pick(["Dropout(0.3)", "Dropout(p=0.1)", "Identity()"]))
        b.step(b.call(layer, x.name), x.shape)
    else:
        b.step(f"-{x.name}", x.shape)


MATH = ("exp(tanh({x}))", "log(abs({x}) + 0.5)", "sqrt(abs({x}) + 0.1)", "rsqrt(abs({x}) + 0.5)",
        "pow(sigmoid({x}) + 0.5, {p})", "(sigmoid({x}) + 0.5) ** {p}", "{x} * tanh({x})",
        "{x} / (abs({x}) + 1.0)", "0.5 * {x} + 1.0", "2.0 - {x} / 4.0")


@family(lambda b, x: True)
def math_op(b: Builder) -> None:
    """Unary math and scalar arithmetic, on domains where every backend agrees."""
    p = b.pick(["2.0", "0.5", "3.0", "-1.5"])
    b.step(b.pick(MATH).format(x=b.x.name, p=p), b.x.shape)


EXACT = ("floor({z} * 2.0)", "round({z} * 2.0)", "stop_gradient({z})",
         'cast({z} {cmp} 0.0, "{dt}")', 'cast(floor({z}) {cmp} 0.0, "{dt}")',
         'cast(cast({z}, "{float}"), "{dt}")', 'cast(cast({z}, "f64") * 2.0, "{dt}")',
         'cast(abs(cast(floor({z} * 4.0), "{int}")) * 2 - 1, "{dt}")',
         'cast(-cast(floor({z} * 4.0), "{int}"), "{dt}")',
         'cast(clamp(cast(floor({z} * 4.0), "i64"), -2.0, 2.0), "{dt}")')
COMBINE = ("{x} + {t}", "{x} * {t}", "{x} - {t}", "where({z} > 0.0, {x}, {t})",
           "where({z} < 0.5, {t}, {x})")


@family(lambda b, x: b.top, weight=2)
def exact_side(b: Builder) -> None:
    """A new input z broadcasting to x, through ops that must agree bit for bit in every
    backend (floor, round, comparisons, casts, integer arithmetic), merged into x; sometimes
    also argmax/argmin or a comparison of z as an extra output."""
    x = b.x
    shape = tuple(d if plain(d) and b.flag() else 1 for d in x.shape[-b.int(1, min(2, x.rank)):])
    z = b.arg(shape)
    exact = b.pick(EXACT).format(z=z.name, dt=x.dtype,
                                 cmp=b.pick(["<", "<=", ">", ">=", "==", "!="]),
                                 float=b.pick(["f16", "bf16", "f64"]), int=b.pick(["i32", "i64"]))
    t = b.let(exact, shape)
    b.step(b.pick(COMBINE).format(x=x.name, z=z.name, t=t.name), x.shape)
    if b.flag():
        axis, text = b.axis(z.rank)
        keep = b.flag()
        out = tuple(1 if i == axis else d for i, d in enumerate(shape) if keep or i != axis)
        fn = b.pick(["argmax", "argmin"])
        b.extras.append(b.let(f"{fn}({z.name}, {text}" + (", keepdims=true)" if keep else ")"),
                              out, "i64"))
    elif b.flag():
        b.extras.append(b.let(f"{z.name} {b.pick(['<', '>=', '!='])} 0.0", shape, "bool"))


# ---------------------------------------------------------------- dense, conv, pool, norm


def layer_ok(x: Value) -> bool:
    """Whether a layer with parameters may take x (its parameters are f32: E-DTYPE else)."""
    return x.dtype == "f32"


def linear_ok(b: Builder, x: Value) -> bool:
    return layer_ok(x) and x.rank >= 1 + avoid("keras-linear-rank1") and known(x.shape[-1])


@family(linear_ok, weight=2)
def linear(b: Builder) -> None:
    """Linear (bias, initialiser), applied twice with shared weights when square."""
    x = b.x
    out = b.int(1, 12)
    layer = b.layer(render("Linear", out, bias=False if b.flag() else None, init=init(b)), "fc")
    shape = (*x.shape[:-1], out)
    if out == x.shape[-1] and b.flag():
        b.step(f"{layer}({layer}({x.name}))", shape)
    else:
        b.step(b.call(layer, x.name), shape)


@dataclass(frozen=True)
class Window:
    keywords: dict  # kernel, stride, dilation, padding for render()
    out: tuple  # the output sizes


def window(b: Builder, spatial: tuple, pool: bool, unit_last: bool = False) -> Window:
    """A conv or pooling window that fits `spatial` at the drawn sizes: kernel, stride,
    dilation (convs only), padding "same", "valid" or ints (at most half the kernel for
    pools); one value for all axes, or one per axis; `unit_last`: stride 1 on the last."""
    n = len(spatial)
    groups = [tuple(range(n))] if b.flag() else [(i,) for i in range(n)]
    padding = b.pick(["same", "valid", "ints"])
    k, s, d, p = ([0] * n for _ in range(4))
    for axes in groups:
        smallest = min(b.size(spatial[i]) for i in axes)
        dilation = 1 if pool or (avoid("keras-dense-static") and not all(
            known(size) for size in spatial)) else b.int(1, 2)
        pad = b.int(0, 2) if padding == "ints" else 0
        if padding == "same":
            kernel = b.int(1, 4)
        elif pool:
            kernel = b.int(1, min(4, smallest))
            pad = min(pad, kernel // 2)
        else:
            kernel = b.int(1, min(4, (smallest + 2 * pad - 1) // dilation + 1))
        stride = kernel if pool and b.flag() else 1 if unit_last and n - 1 in axes \
            else b.int(1, 3)
        for i in axes:
            k[i], s[i], d[i], p[i] = kernel, stride, dilation, pad
    if padding == "same":
        out = tuple((x + si - 1) // si for x, si in zip(spatial, s, strict=True))
    else:
        out = tuple((x + 2 * pi - di * (ki - 1) - 1) // si + 1
                    for x, ki, si, di, pi in zip(spatial, k, s, d, p, strict=True))
    if padding == "ints":
        padding = per_axis(p) if any(p) else None
    return Window({"kernel": per_axis(k), "stride": None if pool and s == k else per_axis(s),
                   "dilation": None if set(d) == {1} else per_axis(d), "padding": padding},
                  out)


def channel_groups(b: Builder, cin: int) -> tuple[int, int]:
    """(groups, out channels): groups divides both; depthwise included."""
    groups = b.pick([g for g in range(1, cin + 1) if cin % g == 0])
    return groups, groups * b.int(1, max(1, 12 // groups))


@family(lambda b, x: layer_ok(x) and 3 <= x.rank <= 5 and known(x.shape[1]), weight=4)
def conv(b: Builder) -> None:
    """Conv1d/2d/3d by rank: random window, groups, bias and initialiser."""
    x = b.x
    groups, out = channel_groups(b, x.shape[1])
    one_channel = avoid("tf-onednn-conv") and x.rank >= 4 and x.shape[1] == 1
    w = window(b, x.shape[2:], pool=False, unit_last=one_channel)
    layer = b.layer(render(f"Conv{x.rank - 2}d", out, **w.keywords,
                           groups=groups if groups > 1 else None,
                           bias=False if b.flag() else None, init=init(b)), "conv")
    b.step(b.call(layer, x.name), (x.shape[0], out, *w.out))


@family(lambda b, x: layer_ok(x) and x.rank == 4 and known(x.shape[1]) and small(b, x),
        weight=2)
def conv_transpose(b: Builder) -> None:
    """ConvTranspose2d: kernel, stride, dilation, padding, output_padding, groups."""
    x = b.x
    groups, out = channel_groups(b, x.shape[1])
    k, s, d, p, o = ([0, 0] for _ in range(5))
    for i in range(2):
        k[i], s[i], d[i] = b.int(1, 3), b.int(1, 3), b.int(1, 2)
        o[i] = b.int(0, (s[i] if avoid("convt-output-padding") else max(s[i], d[i])) - 1)
        room = (b.size(x.shape[2 + i]) - 1) * s[i] + d[i] * (k[i] - 1) + o[i]
        p[i] = b.int(0, min(2, room // 2))
    spatial = tuple((n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
                    for n, ki, si, di, pi, oi in zip(x.shape[2:], k, s, d, p, o, strict=True))
    layer = b.layer(render("ConvTranspose2d", out, kernel=per_axis(k), stride=per_axis(s),
                           padding=per_axis(p) if any(p) else None,
                           output_padding=per_axis(o) if any(o) else None,
                           dilation=per_axis(d) if d != [1, 1] else None,
                           groups=groups if groups > 1 else None), "convt")
    b.step(b.call(layer, x.name), (x.shape[0], out, *spatial))


@family(lambda b, x: 3 <= x.rank <= 5 and not (avoid("ort-pad-fusion") and x.made_by == "pad"),
        weight=3)
def pool(b: Builder) -> None:
    """max/avg pooling (1-d, 2-d) with a random window, global and adaptive average pooling."""
    x = b.x
    n = x.rank - 2
    kind = b.pick(["global"] if n == 3 else ["max", "avg", "global"] + ["adaptive"] * (n == 2))
    if kind == "global":
        b.step(b.call("global_avg_pool", x.name), x.shape[:2])
    elif kind == "adaptive":
        spatial = x.shape[2:]
        size = tuple(b.int(1, d) if known(d) else b.pick([d, 1]) for d in spatial)
        if avoid("keras-adaptive-pool") and any(o not in (d, 1) for o, d in zip(
                size, spatial, strict=True)) and (1 in size or not all(map(known, spatial))):
            size = tuple(d if o != 1 else o for o, d in zip(size, spatial, strict=True))
        b.step(b.call("adaptive_avg_pool2d", x.name, literal(per_axis(size))),
               (*x.shape[:2], *size))
    else:
        w = window(b, x.shape[2:], pool=True)
        options = dict(w.keywords, count_include_pad=b.pick([None, True, False])
                       if kind == "avg" else None)
        kernel = literal(options.pop("kernel"))
        b.step(b.call(f"{kind}_pool{n}d", x.name, kernel, *keywords(**options)),
               (*x.shape[:2], *w.out))


def norm_kinds(b: Builder, x: Value) -> dict[str, list[int]]:
    """The norms that apply to x, each with its choices: GroupNorm its group counts,
    LayerNorm its numbers of normalised (known, trailing) axes. Never a group of one value:
    the result would be the bias plus rounding noise, which a later norm amplifies."""
    kinds = {}
    if x.rank >= 2 and known(x.shape[1]):
        c, spatial = x.shape[1], b.numel(x.shape[2:])
        if x.rank <= 5 and (spatial * b.size(x.shape[0]) > 1 or not b.train):
            kinds["BatchNorm"] = [1]  # batch statistics need two values per channel
        groups = [g for g in range(1, c + 1) if c % g == 0 and c // g * spatial > 1]
        if groups:
            kinds["GroupNorm"] = groups
    trailing = next((i for i, d in enumerate(reversed(x.shape)) if not known(d)), x.rank)
    axes = [n for n in range(1, trailing + 1) if math.prod(x.shape[x.rank - n:]) > 1]
    if axes:
        kinds["LayerNorm"] = axes
    return kinds


@family(lambda b, x: layer_ok(x) and bool(norm_kinds(b, x)), weight=2)
def norm(b: Builder) -> None:
    """BatchNorm, GroupNorm (channel axis 1) and LayerNorm over the last known axes."""
    x = b.x
    kinds = norm_kinds(b, x)
    kind = b.pick(sorted(kinds))
    eps = b.pick([None, 1e-3, 1e-5])
    if kind == "BatchNorm":
        layer = render("BatchNorm", eps=eps, momentum=b.pick([None, 0.01, 0.5]))
    elif kind == "LayerNorm":
        axes = b.pick(kinds[kind])
        layer = render("LayerNorm", eps=eps, axes=axes if axes > 1 or b.flag() else None)
    else:
        layer = render("GroupNorm", b.pick(kinds[kind]), eps=eps)
    b.step(b.call(b.layer(layer, "norm"), x.name), x.shape)


# ---------------------------------------------------------------- shape ops


@family(lambda b, x: x.rank >= 1)
def flatten(b: Builder) -> None:
    """flatten from a random start axis (the default 1 sometimes left implicit)."""
    x = b.x
    start, text = b.axis(x.rank)
    shape = (*x.shape[:start], math.prod(x.shape[start:]))
    b.step(b.call("flatten", x.name, *([] if text == "1" and b.flag() else [text])), shape)


@family(lambda b, x: x.rank >= 1)
def reshape(b: Builder) -> None:
    """reshape: two neighbouring axes merged, or one split in two (a known size into
    factors, a symbolic one next to a 1); sometimes one size written -1."""
    x = b.x
    i = b.int(0, x.rank - 1)
    d = x.shape[i]
    if i < x.rank - 1 and b.flag():
        new = (d * x.shape[i + 1],)
        shape = (*x.shape[:i], *new, *x.shape[i + 2:])
    else:
        p = b.pick([f for f in range(1, d + 1) if d % f == 0]) if known(d) else 1
        new = b.pick([(p, d // p), (d // p, p)])
        shape = (*x.shape[:i], *new, *x.shape[i + 1:])
    text = [dim_text(v) for v in shape]
    hole = b.int(0, len(text) - 1)
    rest = math.prod(shape[:hole] + shape[hole + 1:])
    if b.flag() and floordiv(math.prod(x.shape), rest) == shape[hole]:  # what check can solve
        text[hole] = "-1"
    b.step(b.call("reshape", x.name, f"[{', '.join(text)}]"), shape)


@family(lambda b, x: x.rank >= 2)
def permute(b: Builder) -> None:
    """permute (negative axes sometimes) or transpose of two axes."""
    x = b.x
    if b.flag():
        perm = b.draw(st.permutations(range(x.rank)))
        text = ", ".join(str(a - x.rank if b.flag() else a) for a in perm)
        b.step(b.call("permute", x.name, f"[{text}]"), tuple(x.shape[a] for a in perm))
    else:
        (i, first), (j, second) = b.axis(x.rank), b.axis(x.rank)
        perm = list(range(x.rank))
        perm[i], perm[j] = j, i
        b.step(b.call("transpose", x.name, first, second), tuple(x.shape[a] for a in perm))


@family(lambda b, x: x.rank <= 5)
def unsqueeze(b: Builder) -> None:
    """unsqueeze at any axis, or squeeze a size-1 axis."""
    x = b.x
    ones = [i for i, d in enumerate(x.shape) if d == 1]
    if ones and x.rank > 1 and b.flag():
        axis = b.pick(ones)
        text = str(axis - x.rank if b.flag() else axis)
        b.step(b.call("squeeze", x.name, text), x.shape[:axis] + x.shape[axis + 1:])
    else:
        axis, text = b.axis(x.rank, extra=1)
        b.step(b.call("unsqueeze", x.name, text), (*x.shape[:axis], 1, *x.shape[axis:]))


@family(lambda b, x: x.rank >= 1 and small(b, x))
def pad(b: Builder) -> None:
    """Constant padding of the last 1-3 axes."""
    x = b.x
    pairs = [(b.int(0, 2), b.int(0, 2)) for _ in range(b.int(1, min(3, x.rank)))]
    shape = x.shape[:x.rank - len(pairs)] + tuple(
        d + lo + hi for d, (lo, hi) in zip(x.shape[x.rank - len(pairs):], pairs, strict=True))
    flat = ", ".join(str(v) for pair in pairs for v in pair)
    value = b.pick([None, 1.5, -2.0])
    b.step(b.call("pad", x.name, f"[{flat}]", *([f"value={value}"] if value else [])), shape,
           "pad")


@family(lambda b, x: 3 <= x.rank <= 5 and small(b, x))
def upsample(b: Builder) -> None:
    """upsample by integer factors, nearest, or bilinear on [B, C, H, W]."""
    x = b.x
    scale = tuple(b.int(1, 3 if x.rank == 3 else 2) for _ in x.shape[2:])
    bilinear = x.rank == 4 and not (avoid("keras-bilinear-symbolic")
                                    and not all(known(d) for d in x.shape[2:]))
    mode = b.pick([None, "nearest"] + ["bilinear"] * bilinear)
    args = [literal(per_axis(scale))] + ([f"mode={literal(mode)}"] if mode else [])
    b.step(b.call("upsample", x.name, *args),
           (*x.shape[:2], *(d * s for d, s in zip(x.shape[2:], scale, strict=True))))


def slice_item(b: Builder, d) -> tuple[str, object]:
    """One axis of an index: (text, size), size None for an index that drops the axis.
    Bounds stay in range at the drawn size (the checker assumes so for symbolic sizes)."""
    n = b.size(d)
    bounded = known(d) or not avoid("keras-dense-static")  # else only x[i] and x[i:], i >= 0
    kind = b.pick(["all", "index", "slice"])
    if kind == "all":
        return ":", d
    if kind == "index":
        return str(b.int(-n if bounded else 0, n - 1)), None
    start = b.int(-n if bounded else 0, n - 1)
    first, lo = (start, start) if start >= 0 else (d + start, n + start)
    if b.flag() or lo == n - 1 or not bounded:
        stop, end = "", d
    elif b.flag():
        end = b.int(lo + 1, n)
        stop = str(end)
    else:
        cut = b.int(1, n - lo - 1)
        stop, end = str(-cut), d - cut
    step = b.pick([1, 1, 2, 3])
    text = f"{start if start or b.flag() else ''}:{stop}" + (f":{step}" if step > 1 else "")
    return text, floordiv(end - first + step - 1, step)


@family(lambda b, x: x.rank >= 1)
def index(b: Builder) -> None:
    """Indexing and slicing x[...]; at least one axis stays."""
    x = b.x
    items = [slice_item(b, d) for d in x.shape]
    if all(size is None for _, size in items):
        items[-1] = (":", x.shape[-1])
    while len(items) > 1 and items[-1][0] == ":" and b.flag():
        items.pop()
    shape = tuple(size for _, size in items if size is not None) + x.shape[len(items):]
    b.step(f"{x.name}[{', '.join(text for text, _ in items)}]", shape)


@family(lambda b, x: x.rank >= 1 and small(b, x))
def concat(b: Builder) -> None:
    """concat of x with a transformed copy or a leading slice of it along a random axis."""
    x = b.x
    axis, text = b.axis(x.rank)
    m = b.int(1, b.size(x.shape[axis]))
    other, size = b.pick([(f"sigmoid({x.name})", x.shape[axis]),
                          (f"{x.name}[{':, ' * axis}:{m}]", m)])
    parts = b.draw(st.permutations([x.name, other] + [x.name] * b.int(0, 1)))
    total = sum((size if p == other else x.shape[axis] for p in parts), start=0)
    b.step(f"concat([{', '.join(parts)}], {text})",
           (*x.shape[:axis], total, *x.shape[axis + 1:]))


def divisible(d, n: int) -> bool:
    return d % n == 0 if known(d) else floordiv(d, n) * n == d


@family(lambda b, x: any(divisible(d, 2) or divisible(d, 3) for d in x.shape))
def split(b: Builder) -> None:
    """split into n equal parts, merged back: a gated product, a sum, or the parts
    concatenated in reverse order."""
    x = b.x
    axis, n = b.pick([(i, n) for i, d in enumerate(x.shape) for n in (2, 3) if divisible(d, n)])
    text = str(axis - x.rank if b.flag() else axis)
    parts = [b.fresh("p") for _ in range(n)]
    b.lines.append(f"{', '.join(parts)} = {b.call('split', x.name, str(n), text)}")
    part = (*x.shape[:axis], floordiv(x.shape[axis], n), *x.shape[axis + 1:])
    merge = b.pick(["gate", "sum", "reverse"])
    if merge == "gate":
        b.step(f"{parts[0]} * sigmoid({parts[-1]})", part)
    elif merge == "sum":
        b.step(" + ".join(parts), part)
    else:
        b.step(f"concat([{', '.join(reversed(parts))}], {text})", x.shape)


# ---------------------------------------------------------------- reductions, matmul


@family(lambda b, x: x.rank >= 1)
def reduce(b: Builder) -> None:
    """mean, sum, max, min over one or several axes, keepdims or not (one axis stays)."""
    x = b.x
    keep = x.rank == 1 or b.flag()
    axes = sorted(b.draw(st.sets(st.integers(0, x.rank - 1), min_size=1,
                                 max_size=x.rank if keep else x.rank - 1)))
    texts = [str(a - x.rank if b.flag() else a) for a in axes]
    tupled = f"({', '.join(texts)}{',' * (len(texts) == 1)})"
    axis = texts[0] if len(texts) == 1 and b.flag() else tupled
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
    fn = b.pick(["mean", "sum", "max", "min"])
    b.step(b.call(fn, x.name, axis, *(["keepdims=true"] if keep else [])), shape)


@family(lambda b, x: x.rank >= 2 and small(b, x) and b.size(x.shape[-2]) <= 32)
def matmul(b: Builder) -> None:
    """x @ w for a new input w, or the Gram matrix tanh(x) @ tanh(x)ᵀ."""
    x = b.x
    if b.top and plain(x.shape[-1]) and b.flag():
        w = b.arg((x.shape[-1], b.int(1, 8)))
        expr = b.pick(["{a} @ {c}", "matmul({a}, {c})"]).format(a=x.name, c=w.name)
        b.step(expr, (*x.shape[:-1], w.shape[1]))
    else:
        t = b.let(f"tanh({x.name})", x.shape)
        b.step(f"{t.name} @ transpose({t.name}, -1, -2)", (*x.shape[:-1], x.shape[-2]))


# ---------------------------------------------------------------- sequence models


def mask_arg(b: Builder, scores: tuple, batch: bool = False) -> list[str]:
    """`mask=m` for a new bool input broadcasting to `scores` [..., Tq, Tk], or nothing;
    with `batch` (MultiHeadAttention) of the scores' rank. Every query may attend the first
    key (parity's masks keep it), so no row is empty."""
    if not (b.top and plain(scores[-1]) and b.flag()):
        return []
    rank = len(scores) if batch else b.int(1, len(scores))
    lead = [d if plain(d) and b.flag() else 1 for d in scores[-rank:-1]]
    return [f"mask={b.arg([*lead, scores[-1]], 'bool').name}"]


@family(lambda b, x: x.rank >= 2 and not (avoid("keras-softmax-rank6") and x.rank > 5),
        weight=2)
def attention(b: Builder) -> None:
    """scaled_dot_product_attention of x with itself (values sometimes tanh(x)), with a
    mask and/or causal."""
    x = b.x
    v = b.let(f"tanh({x.name})", x.shape).name if b.flag() else x.name
    options = mask_arg(b, (*x.shape[:-1], x.shape[-2])) + keywords(causal=b.flag() or None)
    b.step(render("scaled_dot_product_attention", x.name, x.name, v, *options), x.shape)


@family(lambda b, x: layer_ok(x) and x.rank == 3 and known(x.shape[2]), weight=3)
def multi_head_attention(b: Builder) -> None:
    """MultiHeadAttention: self-attention, or keys/values from a new input [B, S, dim];
    masks [B, Tk] or [B, Tq, Tk]; causal."""
    x = b.x
    dim = x.shape[2]
    heads = b.pick([h for h in range(1, dim + 1) if dim % h == 0])
    layer = b.layer(render("MultiHeadAttention", dim, heads, bias=False if b.flag() else None),
                    "mha")
    kv = x
    if b.top and plain(x.shape[0]) and b.flag():
        kv = b.arg((x.shape[0], b.dim("S", 1, 6), dim))
    scores = (x.shape[0], *((x.shape[1],) if b.flag() else ()), kv.shape[1])
    options = mask_arg(b, scores, batch=True) + keywords(causal=b.flag() or None)
    b.step(render(layer, x.name, kv.name, kv.name, *options), x.shape)


@family(lambda b, x: layer_ok(x) and x.rank == 3 and known(x.shape[2]), weight=3)
def recurrent(b: Builder) -> None:
    """LSTM or GRU (layers, bidirectional); with state=true the final states become extra
    outputs."""
    x = b.x
    kind, hidden, layers = b.pick(["LSTM", "GRU"]), b.int(1, 8), b.int(1, 2)
    bidirectional = b.flag()
    layer = b.layer(render(kind, hidden, layers=layers if layers > 1 or b.flag() else None,
                           bidirectional=bidirectional or None), "rnn")
    y = (*x.shape[:2], hidden * (1 + bidirectional))
    if b.top and b.flag():
        names = [b.fresh("h") for _ in range(3 if kind == "LSTM" else 2)]
        b.lines.append(f"{', '.join(names)} = {layer}({x.name}, state=true)")
        state = (layers * (1 + bidirectional), x.shape[0], hidden)
        b.x = Value(names[0], y, x.dtype)
        b.extras += [Value(name, state, x.dtype) for name in names[1:]]
    else:
        b.step(b.call(layer, x.name), y)


@family(lambda b, x: b.top and x.rank >= 2 and known(x.shape[-1]))
def positions(b: Builder) -> None:
    """Adds an Embedding of arange(n) or of new ids, or arange(n) as floats, along axis -2."""
    x = b.x
    n, dim = x.shape[-2], x.shape[-1]
    tables = ["arange", "ids"] if plain(n) else ["arange"]  # Embeddings give f32
    kind = b.pick([*tables * (x.dtype == "f32"), "float"])
    if kind == "float":
        b.step(f"{x.name} + unsqueeze(cast(arange({dim_text(n)}), \"{x.dtype}\"), -1) * 0.25",
               x.shape)
        return
    vocab = b.size(n) + b.int(0, 3)
    table = b.layer(render("Embedding", vocab, dim, init=init(b)), "emb")
    ids = f"arange({dim_text(n)})" if kind == "arange" else b.arg((n,), "i64").name
    b.step(f"{x.name} + {table}({ids})", x.shape)


# ---------------------------------------------------------------- composition

SEQUENTIAL_ITEMS = ("relu", "gelu", "tanh", "sigmoid", "Dropout(0.2)", "clamp(0.0, 6.0)",
                    "leaky_relu(0.1)", 'gelu(approximate="tanh")', "Identity()")


@family(linear_ok, weight=2)
def sequential(b: Builder) -> None:
    """A Sequential of Linear, LayerNorm and functions; or a generated stack of square
    Linears run by a `for` loop over its children."""
    x = b.x
    if b.flag():
        n, count = x.shape[-1], b.int(1, 3)
        stack = b.layer(f"Sequential(Linear({n}) for i in range({count}))", "stack")
        b.x = b.let(x.name, x.shape)
        b.lines += [f"for layer in {stack} {{", f"    {b.x.name} = layer({b.x.name})", "}"]
        return
    items, features = [], x.shape[-1]
    for _ in range(b.int(1, 4)):
        item = b.pick(["Linear", "LayerNorm()", *SEQUENTIAL_ITEMS])
        if item == "Linear":
            features = b.int(1, 12)
            item = f"Linear({features})"
        items.append(item)
    layer = b.layer(f"Sequential({', '.join(items)})", "seq")
    b.step(b.call(layer, x.name), (*x.shape[:-1], features))


def broadcast(a: tuple, c: tuple) -> tuple | None:
    """NumPy broadcasting of two shapes, None when they clash."""
    out = []
    for i in range(1, max(len(a), len(c)) + 1):
        da, dc = (a[-i] if i <= len(a) else 1), (c[-i] if i <= len(c) else 1)
        if da != dc and 1 not in (da, dc):
            return None
        out.append(dc if da == 1 else da)
    return tuple(reversed(out))


@family(lambda b, x: b.depth < MAX_DEPTH, weight=2)
def branch(b: Builder) -> None:
    """One or two steps on a branch, merged with the value it left from: +, -, * when the
    shapes broadcast, concat when they differ in one axis only."""
    skip = b.x
    b.depth += 1
    for _ in range(b.int(1, 2)):
        one_step(b)
    b.depth -= 1
    x = b.x
    shape = broadcast(skip.shape, x.shape)
    differ = [i for i, (p, q) in enumerate(zip(skip.shape, x.shape, strict=False)) if p != q]
    if shape is not None and b.numel(shape) <= 4 * MAX_ELEMENTS:
        op = b.pick(["+", "-", "*"])
        b.step(f"{skip.name} {op} {x.name}" if b.flag() else f"{x.name} {op} {skip.name}", shape)
    elif skip.rank == x.rank and len(differ) == 1:
        axis = differ[0]
        b.step(f"concat([{skip.name}, {x.name}], {axis})",
               (*x.shape[:axis], skip.shape[axis] + x.shape[axis], *x.shape[axis + 1:]))


@family(lambda b, x: b.depth < MAX_DEPTH
        and not (avoid("keras-submodel-sizes") and not all(plain(d) for d in x.shape)), weight=2)
def submodel(b: Builder) -> None:
    """The next one or two steps as a model of their own, used as a layer: its signature
    names a fresh symbol for each symbolic size (bound by unification at the call). When
    it keeps the shape: sometimes called twice (shared weights), or stacked in a Sequential."""
    x = b.x
    symbols = {b.fresh("S"): d for d in x.shape if not known(d)}
    local = iter(symbols)
    sub = Builder(b.draw, b.names, {s: b.size(d) for s, d in symbols.items()}, top=False,
                  train=b.train, depth=b.depth + 1, models=b.models)
    sub.x = sub.arg(tuple(d if known(d) else sym(next(local)) for d in x.shape), x.dtype)
    for _ in range(b.int(1, 2)):
        one_step(sub)
    name = b.fresh("Block")
    b.models.append(sub.model(name))
    shape = tuple(substitute(d, symbols) for d in sub.x.shape)
    use = b.pick(["once", "shared", "stacked"] if shape == x.shape else ["once"])
    if use == "stacked":
        n = b.int(2, 3)
        listed = b.flag() or (avoid("keras-sequential-layout") and x.rank >= 3)
        layer = b.layer(f"Sequential({', '.join([f'{name}()'] * n)})" if listed
                        else f"Sequential({name}() for i in range({n}))", "stack")
    else:
        layer = b.layer(f"{name}()", "block")
    b.step(f"{layer}({layer}({x.name}))" if use == "shared" else b.call(layer, x.name), shape)


# ---------------------------------------------------------------- programs


def start(b: Builder) -> None:
    """The entry model's first input: an image, a signal, a volume, a sequence, a vector,
    or token ids through an Embedding."""
    batch = b.dim("B", 1, 3)
    kind = b.pick(["image", "signal", "volume", "sequence", "vector", "tokens"])
    dtype = b.pick(["f32"] * 5 + ["f64"])
    if kind == "image":
        b.x = b.arg((batch, b.int(1, 6), b.dim("H", 1, 10), b.dim("W", 1, 10)), dtype)
    elif kind == "signal":
        b.x = b.arg((batch, b.int(1, 6), b.dim("L", 1, 16)), dtype)
    elif kind == "volume":
        b.x = b.arg((batch, b.int(1, 4), b.dim("D", 1, 5), b.dim("H", 1, 5), b.dim("W", 1, 5)),
                    dtype)
    elif kind == "sequence":
        b.x = b.arg((batch, b.dim("T", 1, 8), b.int(1, 16)), dtype)
    elif kind == "vector":
        b.x = b.arg((batch, b.int(1, 16)), dtype)
    else:
        ids = b.arg((batch, b.dim("T", 1, 8)), b.pick(["i64", "i32"]))
        dim = b.int(1, 12)
        table = b.layer(render("Embedding", b.int(2, 50), dim, init=init(b)), "emb")
        b.x = b.let(b.call(table, ids.name), (*ids.shape, dim), "f32")


@st.composite
def programs(draw, max_steps: int = MAX_STEPS) -> Case:
    """Random valid programs: an entry model `Fuzz` (the file's last) and its submodels;
    one in four runs in training mode."""
    b = Builder(draw, Counter(), {}, train=draw(st.sampled_from([False] * 3 + [True])))
    start(b)
    for _ in range(draw(st.integers(1, max_steps))):
        one_step(b)
    source = "\n\n".join([*b.models, b.model("Fuzz")]) + "\n"
    shapes = tuple(tuple(b.size(d) for d in v.shape) for v in [b.x, *b.extras])
    return Case(source, dict(b.env), shapes, b.train)


def case_text(case: Case, note: str) -> str:
    """The case as a .dnet file: `note`, the sizes and the mode in comments above the
    source."""
    dims = ",".join(f"{k}={v}" for k, v in case.dims.items())
    comments = "".join(f"# {line}\n" for line in note.splitlines())
    mode = "# mode: train\n" if case.train else ""
    return f"{comments}# dims: {dims}\n{mode}\n{case.source}"


def read_case(text: str) -> Case:
    """A case from `case_text` (output shapes unknown: not checked)."""
    lines = text.splitlines()
    dims = next((line[len("# dims:"):] for line in lines if line.startswith("# dims:")), "")
    return Case(text, parity.parse_dims(dims.replace(" ", "")), (), "# mode: train" in lines)


# ---------------------------------------------------------------- running


@dataclass
class Outcome:
    rows: list[parity.Difference]  # every output, every backend pair
    ops: Counter  # the registry ops of the checked graph, submodels included

    @property
    def failures(self) -> list[parity.Difference]:
        return [r for r in self.rows if not r.ok]


def count_ops(graph) -> Counter:
    ops = Counter()
    for node in graph.nodes:
        if node.kind in ("op", "layer"):
            ops[node.op] += 1
        elif node.kind == "call":
            ops += count_ops(node.callee)
    return ops


@contextmanager
def loaded(case: Case) -> Iterator[Program]:
    """The case's program, from a file in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="dualnet-fuzz-") as tmp:
        path = Path(tmp) / "fuzz.dnet"
        path.write_text(case.source)
        yield dualnet.load(str(path))


def run_case(case: Case, backends: tuple[str, ...] = BACKENDS) -> Outcome:
    """Check the case's program (a DualnetError is a finding), run it in every backend from
    one seeded initialisation on the same inputs, and compare every pair (in training mode
    also the running statistics); an output whose shape differs from the generator's is a
    failing row against "expected"."""
    if case.train:  # ONNX Runtime runs inference graphs only
        backends = tuple(b for b in backends if b != "onnx")
    with loaded(case) as program:
        ops = count_ops(program.check().graph)
        rows, _ = parity.compare(program, None, list(backends), dims=case.dims,
                                 train=case.train)
    names = ["output"] if len(case.shapes) == 1 else \
        [f"output_{i}" for i in range(len(case.shapes))]
    expected = dict(zip(names, case.shapes, strict=True))
    rows += [replace(r, pair=("expected", r.pair[0]), max_abs=math.inf, max_rel=math.inf)
             for r in rows if r.output in expected and r.shape != expected[r.output]]
    return Outcome(rows, ops)

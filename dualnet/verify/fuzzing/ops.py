"""Op families: each step applies built-in functions or layers to the current value.

Numbers that programs would write as hyperparameters (features, kernels, strides, pads,
slice bounds, scalars, axes, modes) come from `consts`, so in a template they may be
hyperparameters, constants or expressions; a number that decides a shape's *form* (an
axis to flatten, keepdims) stays a literal. Values stay numerically sane (exp of tanh,
log of |x| + 0.5, no normalisation of a single value, ...), and non-differentiable ops
(floor, round, comparisons, argmax, casts) only read inputs, so that a mismatch means a
real bug rather than a rounding flip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dualnet.ir.dims import Dim, floordiv
from dualnet.verify.fuzzing.builder import (
    Builder,
    Const,
    Value,
    dim_text,
    keywords,
    literal,
    render,
)
from dualnet.verify.fuzzing.consts import flag, num, pair, tune
from dualnet.verify.fuzzing.steps import family, free, layer_ok, outer, small

INITS = ("default", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal")

# Each activation's optional arguments: (keyword, values); clamp's lo < hi always.
ACTIVATIONS = {
    "relu": (),
    "sigmoid": (),
    "tanh": (),
    "silu": (),
    "abs": (),
    "relu6": (),
    "hardsigmoid": (),
    "hardswish": (),
    "mish": (),
    "sin": (),
    "cos": (),
    "erf": (),
    "gelu": (("approximate", ("tanh", "none")),),
    "leaky_relu": (("slope", (0.2, 0.5, 0.01)),),
    "elu": (("alpha", (0.5, 2.0)),),
    "softplus": (("beta", (2.0, 0.5)), ("threshold", (2.0, 1.0))),
    "clamp": (("lo", (0.0, -0.5, -1.0)), ("hi", (6.0, 0.5, 1.0))),
}


def options(b: Builder, params, where: str = "forward", least: int = 0) -> list[str]:
    """Some (at least `least`) of `params` as arguments, positional while none is left out
    before them."""
    out, positional = [], True
    for i, (key, values) in enumerate(params):
        if len(params) - i > least - len(out) and not b.flag():
            positional = False
            continue
        value = tune(b, "str" if isinstance(values[0], str) else "float", values, where)
        positional = positional and b.flag()
        out.append(value.text if positional else f"{key}={value.text}")
    return out


# `init=` written as calls with arguments (issue 13)
INIT_CALLS = (
    "normal(std=0.5)",
    "trunc_normal(std=0.5, a=-0.6, b=0.6)",
    "uniform(-0.5, 0.5)",
    "kaiming_normal(a=0.5)",
    "xavier_uniform(gain=1.5)",
)


def init(b: Builder) -> Const | None:
    if b.flag():
        return None
    if b.flag():
        call = b.pick(INIT_CALLS)
        return Const(call, call)
    return tune(b, "str", INITS, "decl")


def bias_init(b: Builder) -> Const | None:
    return tune(b, "str", ["zeros", "ones", "default"], "decl") if b.flag() else None


def bias(b: Builder) -> Const | None:
    return tune(b, "bool", [True, False], "decl") if b.flag() else None


def signed_axis(b: Builder, rank: int):
    """An axis whose value does not change the shape (softmax, concat's parts), as a number
    from -rank to rank - 1 that may be a hyperparameter."""
    return num(b, range(-rank, rank))


def _fills(b: Builder, x: Value) -> bool:
    return x.dtype in ("f32", "f64") and all(b.writable(d, "forward") for d in x.shape)


def _takes(b: Builder, x: Value) -> bool:
    return outer(b) and small(b, x) and any(isinstance(d, int) for d in x.shape)


@family(lambda b, x: _fills(b, x) or _takes(b, x))
def fill_expand_take(b: Builder) -> None:
    """x combined with a tensor of its shape: zeros, ones or full of the shape written out
    (symbolic sizes too), or their _like forms; a mean of x broadcast back by expand or
    broadcast_to (-1 keeping axes, a new leading axis averaged away); or x[ids], x[:, ids]
    or gather(x, axis, ids) for a new integer input of indices along an axis of known size
    (parity draws them below it), x[ids] sometimes shifted below zero (from the end)."""
    x = b.x
    kinds = ["like", "shape", *["expand"] * (x.rank > 0)] * _fills(b, x) + ["take"] * _takes(b, x)
    kind = b.pick(kinds)
    dims = [dim_text(d) for d in x.shape]
    dtype = [] if x.dtype == "f32" and b.flag() else [f'dtype="{x.dtype}"']
    if kind == "like":
        fn = b.pick(["zeros_like", "ones_like", "full_like"])
        args = ["0.5"] * (fn == "full_like") + [f'dtype="{x.dtype}"'] * b.flag()
        op = "+" if fn != "ones_like" else "*"
        b.step(f"{x.name} {op} ({b.call(fn, x.name, *args)})", x.shape)  # `|>` binds last
    elif kind == "shape":
        fn = b.pick(["zeros", "ones", "full"])
        args = [f"[{', '.join(dims)}]", *["-0.25"] * (fn == "full"), *dtype]
        op = "+" if fn != "ones" else "*"
        b.step(f"{x.name} {op} {fn}({', '.join(args)})", x.shape)
    elif kind == "take":
        axis = b.pick([i for i, d in enumerate(x.shape) if isinstance(d, int)])
        if all(b.plain(d) for d in x.shape) and b.flag():  # torch.gather: x's shape
            ids = b.arg(x.shape, b.pick(["i64", "i32"]))
            b.step(b.call("gather", x.name, str(axis), ids.name), x.shape)
            return
        ids = b.arg(tuple(b.int(1, 3) for _ in range(b.int(1, 2))), b.pick(["i64", "i32"]))
        index = f"{ids.name} - {x.shape[axis]}" if b.flag() else ids.name
        items = ", ".join([":"] * axis + [index])
        b.step(f"{x.name}[{items}]", (*x.shape[:axis], *ids.shape, *x.shape[axis + 1 :]))
    elif b.flag():
        axis = b.int(0, x.rank - 1)
        m = b.let(
            f"mean({x.name}, {axis}, keepdims=true)", (*x.shape[:axis], 1, *x.shape[axis + 1 :])
        )
        shape = ["-1" if i != axis and b.flag() else t for i, t in enumerate(dims)]
        fn = b.pick(["expand", "broadcast_to"])
        b.step(f"{x.name} - {fn}({m.name}, [{', '.join(shape)}])", x.shape)
    else:
        shape = ["3"] + ["-1" if b.flag() else t for t in dims]
        b.step(f"mean(expand(tanh({x.name}), [{', '.join(shape)}]), 0)", x.shape)


@family(lambda b, x: True, weight=2)
def activation(b: Builder) -> None:
    """An activation, softmax or log_softmax along an axis, a parameterless layer (Dropout,
    StochasticDepth, Identity), or the unary minus."""
    x = b.x
    kind = b.pick(["function", "softmax", *["layer"] * free(b), "neg"])
    if kind == "function":
        fn = b.pick(sorted(ACTIVATIONS))
        args = options(b, ACTIVATIONS[fn], least=int(fn == "clamp"))
        b.step(b.call(fn, x.name, *args), x.shape)
    elif kind == "softmax":
        b.step(b.call(b.pick(["softmax", "log_softmax"]), x.name, signed_axis(b, x.rank)), x.shape)
    elif kind == "layer":
        layer = b.pick(["Identity", "Dropout", *["StochasticDepth"] * (x.rank >= 1)])
        if layer == "Identity":
            layer = b.layer("Identity()")
        else:
            p = tune(b, "float", [0.1, 0.3, 0.5], "decl").text
            mode = tune(b, "str", ["row", "batch"], "decl") if layer != "Dropout" else None
            layer = b.layer(render(layer, f"{'p=' * b.flag()}{p}", mode=mode))
        b.step(b.call(layer, x.name), x.shape)
    else:
        b.step(f"-{x.name}", x.shape)


MATH = (
    "exp(tanh({x}))",
    "log(abs({x}) + 0.5)",
    "sqrt(abs({x}) + 0.1)",
    "rsqrt(abs({x}) + 0.5)",
    "pow(sigmoid({x}) + 0.5, {p})",
    "(sigmoid({x}) + 0.5) ** {p}",
    "{x} * tanh({x})",
    "{x} / (abs({x}) + 1.0)",
    "{p} * {x} + 1.0",
    "2.0 - {x} / 4.0",
)


@family(lambda b, x: True)
def math_op(b: Builder) -> None:
    """Unary math and scalar arithmetic, on domains where every backend agrees."""
    p = tune(b, "float", [2.0, 0.5, 3.0, -1.5])
    b.step(b.pick(MATH).format(x=b.x.name, p=p.text), b.x.shape)


EXACT = (
    "floor({z} * 2.0)",
    "round({z} * 2.0)",
    "stop_gradient({z})",
    'cast({z} {cmp} 0.0, "{dt}")',
    'cast(floor({z}) {cmp} 0.0, "{dt}")',
    'cast(cast({z}, "{float}"), "{dt}")',
    'cast(cast({z}, "f64") * 2.0, "{dt}")',
    'cast(abs(cast(floor({z} * 4.0), "{int}")) * 2 - 1, "{dt}")',
    'cast(-cast(floor({z} * 4.0), "{int}"), "{dt}")',
    'cast(clamp(cast(floor({z} * 4.0), "i64"), -2.0, 2.0), "{dt}")',
    'cast(cast(floor({z} * 4.0), "{int}") // {k}, "{dt}")',
    'cast(cast(floor({z} * 4.0), "{int}") % {k}, "{dt}")',
    'cast(cast(floor({z} * 4.0), "{int}") % (abs(cast(floor({z} * 3.0), "{int}")) + 1), "{dt}")',
    "floor({z} * 4.0) % {k}.0",
    "{z} // 0.5",
)
COMBINE = (
    "{x} + {t}",
    "{x} * {t}",
    "{x} - {t}",
    "where({z} > 0.0, {x}, {t})",
    "where({z} < 0.5, {t}, {x})",
)


@family(lambda b, x: outer(b), weight=2)
def exact_side(b: Builder) -> None:
    """A new input z broadcasting to x, through ops that must agree bit for bit in every
    backend (floor, round, comparisons, casts, integer arithmetic, // and %), merged into x;
    sometimes also argmax/argmin or a comparison of z as an extra output."""
    x = b.x
    shape = tuple(d if b.plain(d) and b.flag() else 1 for d in x.shape[-b.int(1, min(2, x.rank)) :])
    z = b.arg(shape)
    exact = b.pick(EXACT).format(
        z=z.name,
        dt=x.dtype,
        cmp=b.pick(["<", "<=", ">", ">=", "==", "!="]),
        float=b.pick(["f16", "bf16", "f64"]),
        int=b.pick(["i32", "i64"]),
        k=b.pick([3, -2, 5]),
    )
    t = b.let(exact, shape)
    b.step(b.pick(COMBINE).format(x=x.name, z=z.name, t=t.name), x.shape)
    if b.flag():
        axis, text = b.axis(z.rank)
        keep = b.flag()
        out = tuple(1 if i == axis else d for i, d in enumerate(shape) if keep or i != axis)
        fn = b.pick(["argmax", "argmin"])
        b.extras.append(
            b.let(f"{fn}({z.name}, {text}" + (", keepdims=true)" if keep else ")"), out, "i64")
        )
    elif b.flag():
        b.extras.append(b.let(f"{z.name} {b.pick(['<', '>=', '!='])} 0.0", shape, "bool"))


# ---------------------------------------------------------------- dense, conv, pool, norm


def linear_ok(b: Builder, x: Value) -> bool:
    return layer_ok(b, x) and x.rank >= 1 and b.known(x.shape[-1])


@family(linear_ok, weight=2)
def linear(b: Builder) -> None:
    """Linear (bias, initialiser), applied twice with shared weights when square."""
    x = b.x
    out = num(b, range(1, 13), "decl")
    layer = b.layer(render("Linear", out, bias=bias(b), init=init(b), bias_init=bias_init(b)), "fc")
    shape = (*x.shape[:-1], out)
    if b.flag() and out == x.shape[-1]:
        b.step(f"{layer}({layer}({x.name}))", shape)
    else:
        b.step(b.call(layer, x.name), shape)


@family(linear_ok)
def tied_linear(b: Builder) -> None:
    """A square Linear, a second Linear tied to its weight (`tie=`), and the first one's
    weight read as a tensor in forward (issue 13)."""
    x = b.x
    d = b.decl(x.shape[-1])
    fc = b.layer(render("Linear", d, bias=bias(b), init=init(b)), "fc")
    head = b.layer(render("Linear", d, bias=False, tie=Const(fc, None)), "tied")
    h = b.let(b.call(fc, x.name), x.shape)
    b.step(f"{head}({h.name}) + {h.name} @ transpose({fc}.weight, 0, 1)", x.shape)


@dataclass(frozen=True)
class Window:
    keywords: dict  # kernel, stride, dilation, padding for render()
    out: tuple  # the output sizes


def window(b: Builder, spatial: tuple, pool: bool, where: str = "decl") -> Window:
    """A conv or pooling window that fits `spatial` at this instance's sizes: kernel,
    stride, dilation (convs only), padding "same", "valid" or ints (at most half the kernel
    for pools; those may take ceil_mode); each one number, a tuple, or a tuple
    hyperparameter."""
    n, sizes = len(spatial), [b.size(d) for d in spatial]
    padding = b.pick(["same", "valid", "ints"])
    dilated = not pool and b.flag()
    dilation, d = pair(b, [(1, 2)] * n, where) if dilated else (None, (1,) * n)
    pads, p = (None, (0,) * n)
    if padding == "ints" and not pool:
        pads, p = pair(b, [range(0, 3)] * n, where)
    if padding == "same":
        kernel, k = pair(b, [range(1, 5)] * n, where)
    elif pool:
        kernel, k = pair(b, [range(1, min(4, s) + 1) for s in sizes], where)
        if padding == "ints":
            pads, p = pair(b, [range(0, b.size(ki) // 2 + 1) for ki in k], where)
    else:
        kernel, k = pair(
            b,
            [
                range(1, min(4, (s + 2 * b.size(pi) - 1) // b.size(di) + 1) + 1)
                for s, pi, di in zip(sizes, p, d, strict=True)
            ],
            where,
        )
    if pool and b.flag():
        stride, s = None, k
    else:
        stride, s = pair(b, [range(1, 4)] * n, where)
    fixed = all(isinstance(v, int) for v in (*k, *s, *p))  # min() below needs numbers
    ceil = pool and padding != "same" and fixed and b.flag()
    if padding == "same":
        out = tuple(floordiv(x + si - 1, si) for x, si in zip(spatial, s, strict=True))
        written = tune(b, "str", ["same"], where)
    else:  # ceil_mode: PyTorch's last window, starting inside the input or its left padding
        after = [
            min(pi + si - 1, ki - 1) if ceil else pi for ki, si, pi in zip(k, s, p, strict=True)
        ]
        out = tuple(
            floordiv(x + pi + ai - di * (ki - 1) - 1, si) + 1
            for x, ki, si, di, pi, ai in zip(spatial, k, s, d, p, after, strict=True)
        )
        zero = pads is None or pads.text in ("0", literal((0,) * n))
        written = (
            pads
            if not zero
            else tune(b, "str", ["valid"], where)
            if padding == "valid" and b.flag()
            else None
        )
    keywords = {"kernel": kernel, "stride": stride, "dilation": dilation, "padding": written}
    if ceil:
        keywords["ceil_mode"] = tune(b, "bool", [True], where)
    return Window(keywords, out)


def channel_groups(b: Builder, cin) -> tuple:
    """(groups, out channels): groups divides both; depthwise included."""
    c = b.size(cin)
    groups = num(b, [g for g in range(1, c + 1) if c % g == 0], "decl")
    g = b.size(groups)
    return groups, num(b, range(g, g * max(1, 12 // g) + 1, g), "decl")


def omit_one(v):
    """None (left out) for the literal 1, else v."""
    return None if isinstance(v, int) and v == 1 else v


@family(lambda b, x: layer_ok(b, x) and 3 <= x.rank <= 5 and b.known(x.shape[1]), weight=4)
def conv(b: Builder) -> None:
    """Conv1d/2d/3d by rank: random window, groups, bias and initialiser."""
    x = b.x
    groups, out = channel_groups(b, x.shape[1])
    w = window(b, x.shape[2:], pool=False)
    layer = b.layer(
        render(
            f"Conv{x.rank - 2}d",
            out,
            **w.keywords,
            groups=omit_one(groups),
            bias=bias(b),
            init=init(b),
            bias_init=bias_init(b),
        ),
        "conv",
    )
    b.step(b.call(layer, x.name), (x.shape[0], out, *w.out))


def per_axis(values):
    """One value for every axis, else a tuple."""
    return values[0] if all(v == values[0] for v in values) else tuple(values)


@family(
    lambda b, x: layer_ok(b, x) and 3 <= x.rank <= 5 and b.known(x.shape[1]) and small(b, x),
    weight=3,
)
def conv_transpose(b: Builder) -> None:
    """ConvTranspose1d/2d/3d by rank: kernel, stride, dilation, padding, output_padding,
    groups."""
    x = b.x
    n = x.rank - 2
    groups, out = channel_groups(b, x.shape[1])
    k, s, d, p, o = ([0] * n for _ in range(5))
    for i in range(n):
        k[i], s[i], d[i] = (num(b, r, "decl") for r in (range(1, 4), range(1, 4), (1, 2)))
        si, di = b.size(s[i]), b.size(d[i])
        o[i] = num(b, range(0, max(si, di)), "decl")
        room = (b.size(x.shape[2 + i]) - 1) * si + di * (b.size(k[i]) - 1) + b.size(o[i])
        p[i] = num(b, range(0, min(2, room // 2) + 1), "decl")
    spatial = tuple(
        (m - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
        for m, ki, si, di, pi, oi in zip(x.shape[2:], k, s, d, p, o, strict=True)
    )
    layer = b.layer(
        render(
            f"ConvTranspose{n}d",
            out,
            kernel=per_axis(k),
            stride=per_axis(s),
            padding=None if p == [0] * n else per_axis(p),
            output_padding=None if o == [0] * n else per_axis(o),
            dilation=None if d == [1] * n else per_axis(d),
            groups=omit_one(groups),
        ),
        "convt",
    )
    b.step(b.call(layer, x.name), (x.shape[0], out, *spatial))


@family(lambda b, x: 3 <= x.rank <= 5, weight=3)
def pool(b: Builder) -> None:
    """max/avg pooling (1-d, 2-d, 3-d) with a random window, global and adaptive (2-d, 3-d)
    average pooling."""
    x = b.x
    n = x.rank - 2
    kind = b.pick(["max", "avg", "global"] + ["adaptive"] * (n >= 2))
    if kind == "global":
        b.step(b.call("global_avg_pool", x.name), x.shape[:2])
    elif kind == "adaptive":
        spatial = x.shape[2:]
        if all(b.known(d) for d in spatial):
            size, out = pair(b, [range(1, b.size(d) + 1) for d in spatial])
        else:
            out = tuple(b.pick([d, 1]) if not b.known(d) else d for d in spatial)
            size = literal(per_axis(out))
        b.step(b.call(f"adaptive_avg_pool{n}d", x.name, size), (*x.shape[:2], *out))
    else:
        form = free(b) and b.flag()  # the layer form, MaxPool2d(...), declared and called
        w = window(b, x.shape[2:], pool=True, where="decl" if form else "forward")
        args = dict(
            w.keywords,
            count_include_pad=tune(b, "bool", [True, False], "decl" if form else "forward")
            if kind == "avg" and b.flag()
            else None,
        )
        kernel = literal(args.pop("kernel"))
        if form:
            layer = b.layer(render(f"{kind.capitalize()}Pool{n}d", kernel, **args), "pool")
            b.step(b.call(layer, x.name), (*x.shape[:2], *w.out))
        else:
            b.step(
                b.call(f"{kind}_pool{n}d", x.name, kernel, *keywords(**args)),
                (*x.shape[:2], *w.out),
            )


def norm_kinds(b: Builder, x: Value) -> dict[str, list[int]]:
    """The norms that apply to x, each with its choices: GroupNorm its group counts,
    LayerNorm2d one (over more than one channel),
    LayerNorm and RMSNorm their numbers of normalised (known, trailing) axes. Never a group
    of one value: the result would be the bias plus rounding noise, which a later norm
    amplifies."""
    kinds = {}
    if x.rank >= 2 and b.known(x.shape[1]):
        c, spatial = b.size(x.shape[1]), b.numel(x.shape[2:])
        if x.rank <= 5 and (spatial * b.size(x.shape[0]) > 1 or not b.train):
            kinds["BatchNorm"] = [1]  # batch statistics need two values per channel
        groups = [g for g in range(1, c + 1) if c % g == 0 and c // g * spatial > 1]
        if groups:
            kinds["GroupNorm"] = groups
        if x.rank <= 5 and c > 1:
            kinds["LayerNorm2d"] = [1]
    trailing = next((i for i, d in enumerate(reversed(x.shape)) if not b.known(d)), x.rank)
    axes = [n for n in range(1, trailing + 1) if b.numel(x.shape[x.rank - n :]) > 1]
    if axes:
        kinds["LayerNorm"] = kinds["RMSNorm"] = axes
    return kinds


@family(lambda b, x: layer_ok(b, x) and bool(norm_kinds(b, x)), weight=2)
def norm(b: Builder) -> None:
    """BatchNorm, GroupNorm, LayerNorm2d (channel axis 1), LayerNorm and RMSNorm over the
    last known axes."""
    x = b.x
    kinds = norm_kinds(b, x)
    kind = b.pick(sorted(kinds))
    eps = tune(b, "float", [1e-3, 1e-5], "decl") if b.flag() else None
    if kind == "BatchNorm":
        momentum = tune(b, "float", [0.01, 0.5, 0.1], "decl") if b.flag() else None
        layer = render("BatchNorm", eps=eps, momentum=momentum)
    elif kind in ("LayerNorm", "RMSNorm"):
        axes = num(b, kinds[kind], "decl")
        with_bias = bias(b) if kind == "LayerNorm" else None
        layer = render(kind, eps=eps, axes=omit_one(axes) if b.flag() else axes, bias=with_bias)
    elif kind == "LayerNorm2d":
        layer = render("LayerNorm2d", eps=eps, bias=bias(b))
    else:
        layer = render("GroupNorm", num(b, kinds[kind], "decl"), eps=eps)
    b.step(b.call(b.layer(layer, "norm"), x.name), x.shape)


@family(lambda b, x: layer_ok(b, x) and x.rank >= 2 and any(b.known(d) for d in x.shape[1:]))
def free_tensor(b: Builder) -> None:
    """x combined with a Parameter (sometimes frozen) or a float Buffer of x's trailing sizes,
    each known one kept or 1 (a ConvNeXt layer scale [C, 1, 1], a position embedding); a
    Buffer may be computed at compile time from an expression (`Buffer(expr)`)."""
    x = b.x
    axes = b.int(1, x.rank - 1)
    shape = [b.decl(d) if b.known(d) and b.flag() else 1 for d in x.shape[x.rank - axes :]]
    dims = f"[{', '.join(dim_text(d) if isinstance(d, Dim) else str(d) for d in shape)}]"
    kind = b.pick(["Parameter", "Parameter", "Buffer", "computed Buffer"])
    if kind == "computed Buffer":
        count = " * ".join(f"({dim_text(d)})" if isinstance(d, Dim) else str(d) for d in shape)
        table = f'cast(reshape(arange({count}), {dims}) % 7, "f32") * 0.25 - 0.5'
        layer = f"Buffer({table})"
    elif kind == "Buffer":
        layer = render("Buffer", dims, init=b.pick([None, "ones"]))
    else:
        init = b.pick(["zeros", "ones", "constant", "normal", "uniform", "trunc_normal"])
        draws = {
            "constant": {"value": tune(b, "float", [0.5, 1e-3, -2.0], "decl")},
            "normal": {"std": 0.5},
            "uniform": {"a": -0.5, "b": 1.5},
            "trunc_normal": {"std": 1.0, "a": -1.5, "b": 1.0},
        }.get(init, {})
        frozen = False if b.flag() else None
        layer = render("Parameter", dims, init=init, **draws, trainable=frozen)
    name = b.layer(layer, "p")
    op = b.pick(["+", "*", "-"])
    b.step(f"{x.name} {op} {name}", x.shape)


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
    if b.flag() and i < x.rank - 1:
        new = (d * x.shape[i + 1],)
        shape = (*x.shape[:i], *new, *x.shape[i + 2 :])
    else:
        size = b.size(d)
        p = b.pick([f for f in range(1, size + 1) if size % f == 0]) if b.known(d) else 1
        new = b.pick([(p, floordiv(d, p)), (floordiv(d, p), p)])
        shape = (*x.shape[:i], *new, *x.shape[i + 1 :])
    text = [dim_text(b.decl(v)) if b.known(v) else dim_text(v) for v in shape]
    hole = b.int(0, len(text) - 1)
    rest = math.prod(shape[:hole] + shape[hole + 1 :])
    if b.flag() and floordiv(math.prod(x.shape), rest) == shape[hole]:  # what check can solve
        text[hole] = "-1"
    b.step(b.call("reshape", x.name, f"[{', '.join(text)}]"), shape)


@family(lambda b, x: x.rank >= 2)
def permute(b: Builder) -> None:
    """permute (negative axes sometimes) or transpose of two axes."""
    x = b.x
    if b.flag():
        perm = b.permutation(range(x.rank))
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
    ones = [i for i, d in enumerate(x.shape) if isinstance(d, int) and d == 1]
    if b.flag() and ones and x.rank > 1:
        axis = b.pick(ones)
        text = str(axis - x.rank if b.flag() else axis)
        b.step(b.call("squeeze", x.name, text), x.shape[:axis] + x.shape[axis + 1 :])
    else:
        axis, text = b.axis(x.rank, extra=1)
        b.step(b.call("unsqueeze", x.name, text), (*x.shape[:axis], 1, *x.shape[axis:]))


@family(lambda b, x: x.rank >= 1 and small(b, x))
def pad(b: Builder) -> None:
    """Constant padding of the last 1-3 axes, sometimes then pooled; each pad may be a
    hyperparameter (zero in some instances)."""
    x = b.x
    pairs = [(num(b, range(0, 3)), num(b, range(0, 3))) for _ in range(b.int(1, min(3, x.rank)))]
    shape = x.shape[: x.rank - len(pairs)] + tuple(
        d + lo + hi for d, (lo, hi) in zip(x.shape[x.rank - len(pairs) :], pairs, strict=True)
    )
    flat = ", ".join(dim_text(v) for pair_ in pairs for v in pair_)
    value = [f"value={tune(b, 'float', [1.5, -2.0]).text}"] if b.flag() else []
    b.step(b.call("pad", x.name, f"[{flat}]", *value), shape)
    if 3 <= x.rank <= 4 and b.flag():
        pool(b)  # explicit padding, then pooling


@family(lambda b, x: 3 <= x.rank <= 5 and small(b, x))
def upsample(b: Builder) -> None:
    """upsample by integer factors, nearest, or bilinear on [B, C, H, W]."""
    x = b.x
    scale, s = pair(b, [range(1, 4 if x.rank == 3 else 3)] * (x.rank - 2))
    chosen = b.pick([None, "nearest", *["bilinear"] * 3 * (x.rank == 4)])
    mode = [f"mode={tune(b, 'str', [chosen]).text}"] if chosen else []
    b.step(
        b.call("upsample", x.name, scale, *mode),
        (*x.shape[:2], *(d * si for d, si in zip(x.shape[2:], s, strict=True))),
    )


def slice_item(b: Builder, d) -> tuple[str, object]:
    """One axis of an index: (text, size), size None for an index that drops the axis.
    Bounds stay in range at this instance's size (the checker assumes so for symbolic
    sizes); a start is negative or not in every instance."""
    n = b.size(d)
    kind = b.pick(["all", "index", "slice"])
    if kind == "all":
        return ":", d
    negative = b.flag()
    if kind == "index":
        return dim_text(num(b, range(-n, 0) if negative else range(0, n))), None
    start = num(b, range(-n, 0) if negative else range(0, n))
    first = d + start if negative else start
    lo = b.size(first)
    ends = ["end"] + (["width"] * (not negative) + ["stop", "cut"]) * (lo < n - 1)
    end_kind = b.pick(ends)
    if end_kind == "end":
        stop, end = "", d
    elif end_kind == "width":
        width = num(b, range(1, n - lo + 1))
        stop, end = dim_text(start + width), first + width
    elif end_kind == "stop":
        end = num(b, range(lo + 1, n + 1))
        stop = dim_text(end)
    else:
        cut = num(b, range(1, n - lo))
        stop, end = dim_text(-cut) if isinstance(cut, int) else f"0 - {dim_text(cut)}", d - cut
    step = num(b, [1, 1, 2, 3]) if b.flag() else 1
    begin = "" if isinstance(start, int) and start == 0 and b.flag() else dim_text(start)
    text = f"{begin}:{stop}" + ("" if step == 1 else f":{dim_text(step)}")
    return text, floordiv(end - first + step - 1, step)


@family(lambda b, x: x.rank >= 1)
def index(b: Builder) -> None:
    """Indexing and slicing x[...], sometimes with a new axis (`none`); at least one axis
    of x stays."""
    x = b.x
    items = [slice_item(b, d) for d in x.shape]
    if all(size is None for _, size in items):
        items[-1] = (":", x.shape[-1])
    while len(items) > 1 and items[-1][0] == ":" and b.flag():
        items.pop()
    taken = len(items)
    if x.rank < 5 and b.int(0, 3) == 0:  # a new axis of size 1 (`x[none]`, `x[:, none]`)
        items.insert(b.int(0, len(items)), ("none", 1))
    shape = tuple(size for _, size in items if size is not None) + x.shape[taken:]
    b.step(f"{x.name}[{', '.join(text for text, _ in items)}]", shape)


@family(lambda b, x: x.rank >= 1 and small(b, x))
def concat(b: Builder) -> None:
    """concat of x with a transformed copy or a leading slice of it along a random axis."""
    x = b.x
    axis, text = b.axis(x.rank)
    m = num(b, range(1, b.size(x.shape[axis]) + 1))
    other, size = b.pick(
        [(f"sigmoid({x.name})", x.shape[axis]), (f"{x.name}[{':, ' * axis}:{dim_text(m)}]", m)]
    )
    parts = b.permutation([x.name, other] + [x.name] * b.int(0, 1))
    total = sum((size if p == other else x.shape[axis] for p in parts), start=0)
    b.step(f"concat([{', '.join(parts)}], {text})", (*x.shape[:axis], total, *x.shape[axis + 1 :]))


@family(lambda b, x: 1 <= x.rank <= 4 and small(b, x))
def stack(b: Builder) -> None:
    """stack of x with transformed copies along a new axis (sizes of x only)."""
    x = b.x
    axis, text = b.axis(x.rank, extra=1)
    parts = b.permutation([x.name, f"tanh({x.name})"] + [f"{x.name} * 0.5"] * b.int(0, 1))
    shape = (*x.shape[:axis], len(parts), *x.shape[axis:])
    b.step(f"stack([{', '.join(parts)}]{'' if axis == 0 and b.flag() else ', ' + text})", shape)


def _one_or_tuple(values: list) -> str:
    texts = [dim_text(v) for v in values]
    return texts[0] if len(texts) == 1 else f"({', '.join(texts)})"


@family(lambda b, x: x.rank >= 1)
def roll(b: Builder) -> None:
    """roll along one or two axes by shifts of either sign, beyond the size too; or cumsum
    of bounded values along an axis."""
    x = b.x
    if b.flag():
        axis, text = b.axis(x.rank)
        b.step(b.call("cumsum", f"tanh({x.name})", text), x.shape)
        return
    axes = [b.axis(x.rank)[1] for _ in range(b.int(1, min(2, x.rank)))]
    shifts = [num(b, range(-7, 8)) for _ in axes]
    b.step(b.call("roll", x.name, _one_or_tuple(shifts), _one_or_tuple(axes)), x.shape)


def divisible(b: Builder, d, n: int) -> bool:
    return b.size(d) % n == 0 if b.known(d) else floordiv(d, n) * n == d


def _chunks(d: int, n: int) -> list[int]:
    """torch.chunk's part sizes of a known size d in n chunks."""
    part = -(-d // n)
    return [min(part, d - i) for i in range(0, d, part)]


def _pieces(b: Builder, x: Value) -> list[tuple[str, int, int, list]]:
    """(op, axis, n, part sizes) of each split and chunk x allows: split in equal parts;
    chunk of a known size (torch.chunk: the last part smaller, maybe fewer parts), or of a
    symbolic one divisible by construction."""
    out = []
    for i, d in enumerate(x.shape):
        for n in (2, 3, 4):
            if divisible(b, d, n):
                equal = [floordiv(d, n)] * n
                out += [("split", i, n, equal)] * (n < 4) + [("chunk", i, n, equal)]
            elif isinstance(d, int) and d >= 2:
                out.append(("chunk", i, n, _chunks(d, n)))
    return out


@family(lambda b, x: bool(_pieces(b, x)))
def split(b: Builder) -> None:
    """split into n equal parts, or chunk, merged back: a gated product or a sum (equal
    parts), or the parts concatenated in reverse order."""
    x = b.x
    op, axis, n, sizes = b.pick(_pieces(b, x))
    text = str(axis - x.rank if b.flag() else axis)
    parts = [b.fresh("p") for _ in sizes]
    args = [str(n)] + ([] if op == "chunk" and axis == 0 and b.flag() else [text])
    b.lines.append(f"{', '.join(parts)} = {b.call(op, x.name, *args)}")
    part = (*x.shape[:axis], sizes[0], *x.shape[axis + 1 :])
    merge = b.pick(["gate", "sum", "reverse"] if len(set(sizes)) == 1 else ["reverse"])
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
    axes = b.subset(x.rank, 1, x.rank if keep else x.rank - 1)
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
    if b.flag() and outer(b) and b.plain(x.shape[-1]):
        w = b.arg((x.shape[-1], b.int(1, 8)))
        expr = b.pick(["{a} @ {c}", "matmul({a}, {c})"]).format(a=x.name, c=w.name)
        b.step(expr, (*x.shape[:-1], w.shape[1]))
    else:
        t = b.let(f"tanh({x.name})", x.shape)
        b.step(f"{t.name} @ transpose({t.name}, -1, -2)", (*x.shape[:-1], x.shape[-2]))


# ---------------------------------------------------------------- sequence models


def mask_arg(b: Builder, scores: tuple, batch: bool = False, keyword: str = "mask") -> list[str]:
    """`mask=m` for a new bool input broadcasting to `scores` [..., Tq, Tk], or nothing;
    with `batch` (MultiHeadAttention) of the scores' rank. Every query may attend the first
    key (parity's masks keep it), so no row is empty. `keyword="bias"`: a float input added
    to the scores instead."""
    if not (b.flag() and outer(b) and b.plain(scores[-1])):
        return []
    rank = len(scores) if batch else b.int(1, len(scores))
    lead = [d if b.plain(d) and b.flag() else 1 for d in scores[-rank:-1]]
    dtype = "bool" if keyword == "mask" else None
    return [f"{keyword}={b.arg([*lead, scores[-1]], dtype).name}"]


def causal(b: Builder) -> list[str]:
    return [f"causal={flag(b).text}"] if b.flag() else []


@family(lambda b, x: x.rank >= 2, weight=2)
def attention(b: Builder) -> None:
    """scaled_dot_product_attention of x with itself (values sometimes tanh(x)), with a
    mask and/or causal (a condition: a hyperparameter or constant in templates), a float
    bias and a scale."""
    x = b.x
    v = b.let(f"tanh({x.name})", x.shape).name if b.flag() else x.name
    scores = (*x.shape[:-1], x.shape[-2])
    args = mask_arg(b, scores) + causal(b) + mask_arg(b, scores, keyword="bias")
    if b.flag():
        args.append(f"scale={tune(b, 'float', [0.125, 0.5, 2.0]).text}")
    b.step(render("scaled_dot_product_attention", x.name, x.name, v, *args), x.shape)


@family(lambda b, x: layer_ok(b, x) and x.rank == 3 and b.known(x.shape[2]), weight=3)
def multi_head_attention(b: Builder) -> None:
    """MultiHeadAttention (attention dropout): self-attention, or keys/values from a new
    input [B, S, dim]; masks [B, Tk] or [B, Tq, Tk]; causal."""
    x = b.x
    dim = x.shape[2]
    size = b.size(dim)
    heads = num(b, [h for h in range(1, size + 1) if size % h == 0], "decl")
    dropout = tune(b, "float", [0.1, 0.3], "decl") if b.flag() else None
    layer = b.layer(
        render("MultiHeadAttention", b.decl(dim), heads, bias=bias(b), dropout=dropout), "mha"
    )
    kv = x
    if b.flag() and outer(b) and b.plain(x.shape[0]) and b.plain(dim):
        kv = b.arg((x.shape[0], b.dim("S", 1, 6), dim))
    scores = (x.shape[0], *((x.shape[1],) if b.flag() else ()), kv.shape[1])
    args = mask_arg(b, scores, batch=True) + causal(b)
    b.step(render(layer, x.name, kv.name, kv.name, *args), x.shape)


@family(lambda b, x: layer_ok(b, x) and x.rank == 3 and b.known(x.shape[2]), weight=3)
def recurrent(b: Builder) -> None:
    """LSTM or GRU (layers, bidirectional); with state=true the final states become extra
    outputs."""
    x = b.x
    kind, hidden = b.pick(["LSTM", "GRU"]), num(b, range(1, 9), "decl")
    layers = num(b, (1, 2), "decl") if b.flag() else 1
    bidirectional = b.flag()
    layer = b.layer(
        render(
            kind,
            hidden,
            layers=omit_one(layers),
            bidirectional=tune(b, "bool", [bidirectional], "decl")
            if bidirectional or b.flag()
            else None,
        ),
        "rnn",
    )
    y = (*x.shape[:2], hidden * (1 + bidirectional))
    if b.flag() and outer(b):
        names = [b.fresh("h") for _ in range(3 if kind == "LSTM" else 2)]
        b.lines.append(f"{', '.join(names)} = {layer}({x.name}, state=true)")
        state = (layers * (1 + bidirectional), x.shape[0], hidden)
        b.x = Value(names[0], y, x.dtype)
        b.extras += [Value(name, state, x.dtype) for name in names[1:]]
    else:
        b.step(b.call(layer, x.name), y)


@family(lambda b, x: x.rank >= 2 and b.known(x.shape[-1]))
def positions(b: Builder) -> None:
    """Adds an Embedding of arange(n) or of new ids, or arange(n) as floats, along axis -2."""
    x = b.x
    n, dim = x.shape[-2], x.shape[-1]
    tables = (["arange"] + ["ids"] * (outer(b) and b.plain(n))) * (free(b) and x.dtype == "f32")
    kind = b.pick([*tables, "float"])
    if kind == "float":
        dtype = tune(b, "str", [x.dtype]).text
        b.step(f"{x.name} + unsqueeze(cast(arange({dim_text(n)}), {dtype}), -1) * 0.25", x.shape)
        return
    vocab = num(b, range(b.size(n), b.size(n) + 4), "decl")
    table = b.layer(render("Embedding", vocab, b.decl(dim), init=init(b)), "emb")
    ids = f"arange({dim_text(n)})" if kind == "arange" else b.arg((n,), "i64").name
    b.step(f"{x.name} + {table}({ids})", x.shape)

"""Composition families: branches, sub-models (several differently configured instances of
one template, shared, stacked, generated, conditional), Sequentials (nested, with model
children and function steps, indexed with `seq[i]`), conditional layers and expressions,
`if` statements and `for` loops.

Steps inside an `if` branch declare no layers (an instance that skips the branch would
never call them: E-UNUSED), except pure sub-models; statements inside a block add no
inputs or outputs; blocks keep the shape of the value they rebind, as written, so they
hold whatever branch or trip count an instance takes.
"""

from __future__ import annotations

import math

from dualnet.verify.fuzzing.builder import Builder, Diverged, Tape, Value, dim_text, render
from dualnet.verify.fuzzing.consts import count, flag, num, tune
from dualnet.verify.fuzzing.ops import (
    ACTIVATIONS,
    channel_groups,
    math_op,
    norm_kinds,
    options,
    window,
)
from dualnet.verify.fuzzing.steps import family, free, layer_ok, one_step
from dualnet.verify.fuzzing.templates import Instance, Template, instance, template

MAX_DEPTH = 2  # nesting of branches, blocks and sub-models
SAME_SHAPE_TRIES = 3


def broadcast(a: tuple, c: tuple) -> tuple | None:
    """NumPy broadcasting of two shapes, None when they clash."""
    out = []
    for i in range(1, max(len(a), len(c)) + 1):
        da, dc = (a[-i] if i <= len(a) else 1), (c[-i] if i <= len(c) else 1)
        if da != dc and 1 not in (da, dc):
            return None
        out.append(dc if da == 1 else da)
    return tuple(reversed(out))


def merge(b: Builder, main: Value, other: Value) -> None:
    """main combined with other (+, -, * when other broadcasts to it, concat when they
    differ in one axis, else main plus other's mean as one value) becomes x."""
    differ = [i for i, (p, q) in enumerate(zip(main.shape, other.shape, strict=False)) if p != q]
    if broadcast(main.shape, other.shape) == main.shape:
        b.step(f"{main.name} {b.pick(['+', '-', '*'])} {other.name}", main.shape)
    elif main.rank == other.rank and len(differ) == 1 and b.flag():
        axis = differ[0]
        b.step(
            f"concat([{main.name}, {other.name}], {axis})",
            (*main.shape[:axis], main.shape[axis] + other.shape[axis], *main.shape[axis + 1 :]),
        )
    else:
        b.step(f"{main.name} + mean(flatten({other.name}, 0), 0, keepdims=true)", main.shape)


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
    if shape is not None and b.numel(shape) <= 4 * 3000:
        op = b.pick(["+", "-", "*"])
        b.step(f"{skip.name} {op} {x.name}" if b.flag() else f"{x.name} {op} {skip.name}", shape)
    elif skip.rank == x.rank and len(differ) == 1:
        axis = differ[0]
        b.step(
            f"concat([{skip.name}, {x.name}], {axis})",
            (*x.shape[:axis], skip.shape[axis] + x.shape[axis], *x.shape[axis + 1 :]),
        )


# ---------------------------------------------------------------- sub-models


def submodel_ok(b: Builder, x: Value) -> bool:
    return b.depth < MAX_DEPTH


def attempt(b: Builder, make):
    """`make()`, or None with b as it was when the instance diverges."""
    saved = b.snapshot()
    try:
        return make()
    except Diverged:
        b.restore(saved)
        return None


@family(submodel_ok, weight=4, construct="templates")
def submodel(b: Builder) -> None:
    """The next one or two steps as a model of their own (a template), used as a layer:
    once; by several instances with their own hyperparameters (parallel on x, on a
    resized x, or chained); one instance called twice; instances stacked in a Sequential,
    listed or generated (`Sequential(Block(..i..) for i in range(n))`); or conditional
    (`Block(..) if cond else Identity()`)."""
    x = b.x
    t = template(b, x)
    stacks = free(b) and "sequential" in b.files.constructs
    if stacks and b.flag():
        return generate(b, t)
    first = instance(b, t, x)
    same = first.shape == x.shape
    use = b.pick(
        ["once", "configs", "configs"]
        + ["stacked"] * stacks
        + ["shared", "conditional"] * (same and free(b))
    )
    if use == "stacked":
        return stack(b, t, first)
    layer = b.layer(
        first.text
        if use != "conditional"
        else f"{first.text} if {flag(b, 'decl').text} else Identity()",
        "block",
    )
    b.step(f"{layer}({layer}({x.name}))" if use == "shared" else b.call(layer, x.name), first.shape)
    if use == "configs":
        for _ in range(b.int(1, 2)):
            attempt(b, lambda: another(b, t, x))


def another(b: Builder, t: Template, x: Value) -> None:
    """One more instance of t: on x, on x after a step, or on the main value; its output
    merged into (or replacing) the main value."""
    main = b.x
    kind = b.pick(["parallel", "resized", "chained"])
    source = main if kind == "chained" else x
    if kind == "resized":
        b.x = x
        one_step(b)
        source, b.x = b.x, main
    inst = instance(b, t, source)
    layer = b.layer(inst.text, "block")
    out = b.let(b.call(layer, source.name), inst.shape)
    if kind == "chained":
        b.x = out
    else:
        merge(b, main, out)


def stack(b: Builder, t: Template, first: Instance) -> None:
    """`Sequential(Block(a1), Block(a2), ...)`, each instance taking the previous output."""
    x, items = b.x, [first]
    for _ in range(b.int(1, 2)):
        inst = attempt(b, lambda: instance(b, t, Value("_", items[-1].shape, x.dtype)))
        if inst is None:
            break
        items.append(inst)
    layer = b.layer(f"Sequential({', '.join(i.text for i in items)})", "stack")
    use_sequential(b, layer, [i.shape for i in items])


def generate(b: Builder, t: Template) -> None:
    """`Sequential(Block(args) for i in range(n))`: the arguments are written once for all
    elements (the caller's draws for them replayed, `i` in scope), each element taking the
    previous one's output; n is how many elements fit."""
    x = b.x
    b.bind("i", 0, "int", "decl")
    b.loop, args, shapes, text = True, None, [], None
    try:
        for i in range(b.int(1, 3)):
            b.env["i"] = i
            tape = Tape(b.tape.draw, parent=b.tape) if args is None else args.replaying()
            value = Value("_", shapes[-1] if shapes else x.shape, x.dtype)
            try:
                inst = instance(b, t, value, tape)
            except Diverged:
                if args is None:
                    raise
                break
            if text not in (None, inst.text):
                break
            args, text = args or tape, inst.text
            shapes.append(inst.shape)
    finally:
        b.loop = False
        b.unbind("i")
    n = count(b, [len(shapes)], "decl")[0].text
    layer = b.layer(f"Sequential({text} for i in range({n}))", "stack")
    use_sequential(b, layer, shapes)


# ---------------------------------------------------------------- Sequential


def use_sequential(b: Builder, layer: str, shapes: list, names: list[str] = ()) -> None:
    """Call a Sequential whose children give `shapes`: as one layer, child by child with
    `seq[i]` or `seq["name"]` (children named `names`; nested calls, or a `for i in
    range(n)` loop when every child keeps the shape), or iterating over it with `for child
    in seq`."""
    x, n = b.x, len(shapes)
    same = all(s == x.shape for s in shapes)
    use = b.pick(["call", "index"] + ["loop", "iterate"] * same)
    if use == "call":
        b.step(b.call(layer, x.name), shapes[-1])
    elif use == "index":
        expr = x.name
        for i in range(n):
            key = f'"{names[i]}"' if names and b.flag() else i - n if b.flag() else i
            expr = f"{layer}[{key}]({expr})"
        b.step(expr, shapes[-1])
    else:
        y = b.let(x.name, x.shape)
        var = b.fresh("i")
        head = (
            f"for {var} in range({dim_text(num(b, [n]))})"
            if use == "loop"
            else f"for {var} in {layer}"
        )
        call = f"{layer}[{var}]" if use == "loop" else var
        b.lines += [f"{head} {{", f"    {y.name} = {call}({y.name})", "}"]
        b.x = y


FUNCTIONS = (
    *("relu", "gelu", "tanh", "sigmoid", "leaky_relu", "clamp", "silu", "elu"),
    *("relu6", "hardsigmoid", "hardswish", "mish", "sin", "erf"),
)
AFTER_LAYER = {"linear", "conv", "norm"}  # a model or a Sequential right after these too


@family(
    lambda b, x: free(b) and x.rank >= 1 and b.depth < MAX_DEPTH, weight=3, construct="sequential"
)
def sequential(b: Builder) -> None:
    """A Sequential of layers (Linear, Conv, norms, Dropout), functions (bare or partly
    applied: `clamp(0.0, 6.0)`, `max_pool2d(2)`, `flatten`), sub-model instances and
    nested Sequentials; or a generated stack of shape-keeping layers."""
    x = b.x
    named = b.pick([False, False, True])  # children named as `Sequential({"name": ...})`
    if b.pick([True, False, False]):
        text = same_layer(b, x)
        if text is not None:
            n = count(b, range(1, 4), "decl")[0]
            key = 'f"step-{i}": ' if named else ""
            layer = b.layer(
                f"Sequential({{{key}{text} for i in range({n.text})}})"
                if named
                else f"Sequential({text} for i in range({n.text}))",
                "stack",
            )
            names = [f"step-{i}" for i in range(n.value)] if named else []
            return use_sequential(b, layer, [x.shape] * n.value, names)
    items, shapes = children(b, x, 0)
    if named:
        names = [f"c{i}" if b.flag() else f"{i}-c" for i in range(len(items))]
        pairs = ", ".join(f'"{k}": {v}' for k, v in zip(names, items, strict=True))
        layer = b.layer(f"Sequential({{{pairs}}})", "seq")
        return use_sequential(b, layer, shapes, names)
    layer = b.layer(f"Sequential({', '.join(items)})", "seq")
    use_sequential(b, layer, shapes)


def children(b: Builder, x: Value, depth: int) -> tuple[list[str], list]:
    """A Sequential's children from x, and the shape after each."""
    items, shapes, last = [], [], ""
    for _ in range(b.int(1, 4) if depth else b.int(2, 4)):
        v = Value("_", shapes[-1] if shapes else x.shape, x.dtype)
        kinds = child_kinds(b, v, depth, last in AFTER_LAYER)
        last = b.pick(kinds)
        text, shape = CHILDREN[last](b, v, depth)
        items.append(text)
        shapes.append(shape)
    return items, shapes


def child_kinds(b: Builder, v: Value, depth: int, after_layer: bool) -> list[str]:
    kinds = ["function"] * 2 + ["dropout"]
    if layer_ok(b, v) and v.rank >= 1 and b.known(v.shape[-1]):
        kinds += ["linear"] * 2
    if layer_ok(b, v) and 3 <= v.rank <= 5 and b.known(v.shape[1]):
        kinds += ["conv"] * 2
    if layer_ok(b, v) and set(norm_kinds(b, v)) & {"BatchNorm", "LayerNorm"}:
        kinds.append("norm")
    if v.rank == 4 and all(b.size(d) >= 2 for d in v.shape[2:]):
        kinds.append("pool")
    if v.rank >= 2:
        kinds.append("flatten")
    if depth < 1 and b.depth < MAX_DEPTH:
        blocks = ["nested"] + ["model"] * (submodel_ok(b, v) and "templates" in b.files.constructs)
        if after_layer and b.flag():
            return blocks
        kinds += blocks
    return kinds


def child_function(b: Builder, v: Value, depth: int) -> tuple[str, tuple]:
    fn = b.pick(FUNCTIONS)
    args = options(b, ACTIVATIONS.get(fn, ()), "decl", least=int(fn == "clamp"))
    return (f"{fn}({', '.join(args)})" if args else fn), v.shape


def child_dropout(b: Builder, v: Value, depth: int) -> tuple[str, tuple]:
    if b.flag():
        return "Identity()", v.shape
    return f"Dropout({tune(b, 'float', [0.1, 0.2, 0.5], 'decl').text})", v.shape


def child_linear(b: Builder, v: Value, depth: int) -> tuple[str, tuple]:
    out = num(b, range(1, 13), "decl")
    return render("Linear", out), (*v.shape[:-1], out)


def child_conv(b: Builder, v: Value, depth: int) -> tuple[str, tuple]:
    groups, out = channel_groups(b, v.shape[1])
    w = window(b, v.shape[2:], pool=False)
    return render(
        f"Conv{v.rank - 2}d",
        out,
        **w.keywords,
        groups=None if isinstance(groups, int) and groups == 1 else groups,
    ), (v.shape[0], out, *w.out)


def child_norm(b: Builder, v: Value, depth: int) -> tuple[str, tuple]:
    kinds = sorted(set(norm_kinds(b, v)) & {"BatchNorm", "LayerNorm"})
    return f"{b.pick(kinds)}()", v.shape


def child_pool(b: Builder, v: Value, depth: int) -> tuple[str, tuple]:
    k = num(b, range(1, min(3, *(b.size(d) for d in v.shape[2:])) + 1), "decl")
    out = tuple((d - k) // k + 1 for d in v.shape[2:])
    form = b.pick(["max_pool2d", "avg_pool2d", "MaxPool2d", "AvgPool2d"])
    return f"{form}({dim_text(k)})", (*v.shape[:2], *out)


def child_flatten(b: Builder, v: Value, depth: int) -> tuple[str, tuple]:
    return "flatten", (v.shape[0], math.prod(v.shape[1:]))


def child_model(b: Builder, v: Value, depth: int) -> tuple[str, tuple]:
    inst = instance(b, template(b, v), v)
    return inst.text, inst.shape


def child_nested(b: Builder, v: Value, depth: int) -> tuple[str, tuple]:
    items, shapes = children(b, v, depth + 1)
    return f"Sequential({', '.join(items)})", shapes[-1]


CHILDREN = {
    "function": child_function,
    "dropout": child_dropout,
    "linear": child_linear,
    "conv": child_conv,
    "norm": child_norm,
    "pool": child_pool,
    "flatten": child_flatten,
    "model": child_model,
    "nested": child_nested,
}


# ---------------------------------------------------------------- conditional layers


def same_layer(b: Builder, x: Value) -> str | None:
    """A layer that keeps x's shape (Linear, a "same" Conv, a norm, Dropout), or None."""
    kinds = ["dropout"]
    if layer_ok(b, x) and b.known(x.shape[-1]) and x.rank >= 1:
        kinds.append("linear")
    if layer_ok(b, x) and 3 <= x.rank <= 5 and b.known(x.shape[1]):
        kinds.append("conv")
    if layer_ok(b, x) and norm_kinds(b, x):
        kinds.append("norm")
    if not free(b):
        return None
    kind = b.pick(kinds)
    if kind == "dropout":
        return child_dropout(b, x, 0)[0]
    if kind == "linear":
        return render("Linear", b.decl(x.shape[-1]))
    if kind == "conv":
        kernel = num(b, range(1, 4), "decl")
        return render(
            f"Conv{x.rank - 2}d",
            b.decl(x.shape[1]),
            kernel=kernel,
            padding=tune(b, "str", ["same"], "decl"),
        )
    kinds = norm_kinds(b, x)
    kind = b.pick(sorted(kinds))
    if kind == "GroupNorm":
        return render("GroupNorm", num(b, kinds[kind], "decl"))
    return render(kind, axes=num(b, kinds[kind], "decl") if kind == "LayerNorm" else None)


@family(lambda b, x: free(b), weight=2, construct="conditionals")
def conditional_layer(b: Builder) -> None:
    """A layer declared as `A if cond else B`, called as one: a shape-keeping layer or
    Identity; ResNet's shortcut `Conv(out, 1, stride=s) if s != 1 or C != out else
    Identity()`; MobileNet's expansion `Conv(C * t, 1) if t != 1 else Identity()`."""
    x = b.x
    kinds = ["same"]
    if layer_ok(b, x) and 3 <= x.rank <= 5 and b.known(x.shape[1]):
        kinds += ["shortcut", "expand"]
    kind = b.pick(kinds)
    if kind == "same":
        text = same_layer(b, x)
        if text is None:
            return
        cond = flag(b, "decl").text
        layer = (
            f"{text} if {cond} else Identity()" if b.flag() else f"Identity() if {cond} else {text}"
        )
        b.step(b.call(b.layer(layer, "cond"), x.name), x.shape)
        return
    c, n = b.decl(x.shape[1]), x.rank - 2
    if kind == "shortcut":
        out = num(b, range(1, 13), "decl")
        s = num(b, (1, 2), "decl")
        layer = (
            f"{render(f'Conv{n}d', out, 1, stride=s)} if {dim_text(s)} != 1 or "
            f"{dim_text(c)} != {dim_text(out)} else Identity()"
        )
        shape = (x.shape[0], out, *((d - 1) // s + 1 for d in x.shape[2:]))
    else:
        t = num(b, (1, 2, 3), "decl")
        layer = f"{render(f'Conv{n}d', c * t, 1)} if {dim_text(t)} != 1 else Identity()"
        shape = (x.shape[0], x.shape[1] * t, *x.shape[2:])
    b.step(b.call(b.layer(layer, "cond"), x.name), shape)


UNARY = (
    "relu({x})",
    "tanh({x})",
    "{x} * 2.0",
    "-{x}",
    "{x}",
    "sigmoid({x}) - 0.5",
    "abs({x})",
    "{x} * {x}",
)


@family(lambda b, x: True, construct="conditionals")
def conditional_expression(b: Builder) -> None:
    """`f(x) if cond else g(x)` with shape-keeping f and g; sometimes both call one
    shape-keeping layer."""
    x = b.x
    shared = same_layer(b, x) if b.flag() else None
    layer = b.layer(shared, "shared") if shared else None
    first, second = (b.pick(UNARY).format(x=x.name) for _ in range(2))
    if layer:
        first, second = f"{layer}({first})", f"{layer}({second})"
    b.step(f"{first} if {flag(b).text} else {second}", x.shape)


# ---------------------------------------------------------------- statements


def same_shape_step(b: Builder) -> None:
    """A step that keeps x's shape as written (so in every instance); else math."""
    x = b.x
    for _ in range(SAME_SHAPE_TRIES):
        saved = b.snapshot()
        one_step(b)
        if b.x.shape == x.shape and b.x.dtype == x.dtype:
            return
        b.restore(saved)
    math_op(b)


def block(b: Builder, y: Value, fill, branch: bool) -> list[str]:
    """The statements `fill()` writes on y in a nested block, ending with y rebound (no new
    inputs or outputs; with `branch`, no layer declarations)."""
    saved, scope = (b.lines, b.x, b.guarded, b.branch), set(b.where)
    b.lines, b.x, b.guarded, b.branch = [], y, True, b.branch or branch
    b.depth += 1
    try:
        fill()
        lines = b.lines + ([f"{y.name} = {b.x.name}"] if b.x.name != y.name else [])
    finally:
        b.lines, b.x, b.guarded, b.branch = saved
        b.depth -= 1
    for name in set(b.where) - scope:  # the block's forward constants end with it
        if b.where[name] == "forward":
            b.unbind(name)
    return [f"    {line}" for line in lines]


@family(lambda b, x: b.depth < MAX_DEPTH, weight=2, construct="statements")
def if_statement(b: Builder) -> None:
    """`if c { ... } else if c2 { ... } else { ... }` on a copy of x: each branch one or
    two shape-keeping steps; sometimes every branch calls one shape-keeping layer declared
    outside (so every instance calls it)."""
    x = b.x
    shared = same_layer(b, x) if b.flag() else None
    layer = b.layer(shared, "shared") if shared else None
    y = b.let(x.name, x.shape)
    arms = 1 + b.int(0, 1)
    conditions = [flag(b) for _ in range(arms)]
    closed = layer is not None or b.flag()  # a final else
    lines = []
    for i in range(arms + closed):

        def fill(i: int = i) -> None:
            if layer:
                b.step(f"{layer}({b.pick(UNARY).format(x=b.x.name)})", b.x.shape)
            for _ in range(b.int(0 if layer else 1, 2)):
                same_shape_step(b)

        head = (
            f"if {conditions[i].text}"
            if i == 0
            else f"else if {conditions[i].text}"
            if i < arms
            else "else"
        )
        body = block(b, y, fill, branch=True)
        lines += [f"{'} ' if i else ''}{head} {{", *body]
    b.lines += [*lines, "}"]
    b.x = y


@family(lambda b, x: b.depth < MAX_DEPTH, weight=2, construct="statements")
def for_loop(b: Builder) -> None:
    """`for i in range(n)` on a copy of x: shape-keeping steps (layers called n times),
    sometimes scaled by i or with an `if` on i inside."""
    x = b.x
    n, _ = count(b, range(1, 4))
    var = b.fresh("i")
    y = b.let(x.name, x.shape)

    def fill() -> None:
        for _ in range(b.int(1, 2)):
            same_shape_step(b)
        use = b.pick(["none", "scale", "if"])
        if use == "scale":
            b.step(f"{b.x.name} * (0.5 + {var} * 0.25)", b.x.shape)
        elif use == "if":
            z = b.x
            cond = f"{var} {b.pick(['==', '<', '>=', '!='])} {b.int(0, 2)}"
            body = block(b, z, lambda: math_op(b), branch=True)
            b.lines += [f"if {cond} {{", *body, "}"]

    b.lines += [f"for {var} in range({n.text}) {{", *block(b, y, fill, branch=False), "}"]
    b.x = y

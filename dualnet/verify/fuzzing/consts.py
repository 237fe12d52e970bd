"""Compile-time values as programs write them: literals, file constants, hyperparameters
(each instance's value comes from its caller), constants in a model's body or forward
(aliases, sums, products, tuple elements, conditional expressions), names already in
scope, and conditions.

Each helper takes the values that are valid at this point of this instance and returns how
the source writes one of them: sizes (`num`) as an `int` for a literal, else the `Dim` of
the name that holds it, so that shapes computed from it are written with that name and hold
in every instance; other values as `Const`s. The form is a structural draw; a
hyperparameter's value is each instance's own.
"""

from __future__ import annotations

from hypothesis import strategies as st

from dualnet.ir.dims import sym
from dualnet.verify.fuzzing.builder import Builder, Const, dim_text, literal

MAX_NEST = 2  # compile-time expressions inside compile-time expressions
MODES = ("batch", "layer", "none")  # string settings that conditions compare


def tuple_type(n: int) -> str:
    return f"({', '.join(['int'] * n)})"


def names(b: Builder, type_: str, where: str, fits) -> list[str]:
    """The compile-time names of a type visible in `where` whose value fits, file
    constants included (bound here when picked)."""
    found = [
        n
        for n, t in b.types.items()
        if t == type_ and b.visible(n, where) and fits(b.env[n] if t == "int" else b.values[n])
    ]
    return found + [
        n
        for n, (t, v) in b.files.visible_consts(b.file).items()
        if t == type_ and n not in b.types and fits(v)
    ]


def named(b: Builder, candidates: list[str]) -> str:
    name = b.pick(candidates)
    if name not in b.types:
        type_, value = b.files.visible_consts(b.file)[name]
        b.bind(name, value, type_, "sig")
    return name


def forms(b: Builder, where: str, found: bool) -> list[str]:
    """How a value may be written here (in a template, likeliest as a hyperparameter);
    generators' elements declare nothing."""
    if "values" not in b.files.constructs:
        return ["literal"]
    declares = not b.loop
    return (
        ["literal"] * 3
        + ["name"] * 2 * found
        + ["const"]
        + ["hyper"] * declares * (1 if b.ask is None else 4)
        + ["derived"] * (declares and b.nest < MAX_NEST and where != "sig")
    )


def num(b: Builder, choices, where: str = "forward"):
    """A size among `choices`: an `int` when written as a literal, else the `Dim` of the
    compile-time name that holds it."""
    choices = sorted(set(choices))
    found = names(b, "int", where, lambda v: v in choices)
    form = b.pick(
        forms(b, where, bool(found))
        + ["element"] * ("hyper" in forms(b, where, False) and b.ask is not None)
    )
    if form == "literal":
        return b.pick(choices)
    if form == "element":  # of a new tuple hyperparameter
        name, i = b.fresh("hp"), b.int(0, 1)
        value = hyper(b, name, tuple_type(2), [choices, choices])
        return sym(element(b, name, i, value[i]))
    if form == "name":
        return sym(named(b, found))
    if form == "const":
        return sym(file_const(b, "int", choices))
    if form == "hyper":
        name = b.fresh("hp")
        hyper(b, name, "int", choices)
        return sym(name)
    return sym(derived(b, "int", choices, where))


def tuple_elements(b: Builder, values, where: str) -> list[tuple[str, int]]:
    """(tuple name, index) of every visible tuple element whose value is among `values`."""
    return [
        (n, i)
        for n, t in b.types.items()
        if t.startswith("(") and b.visible(n, where)
        for i, v in enumerate(b.values[n])
        if v in values
    ]


def count(b: Builder, choices, where: str = "forward") -> tuple[Const, object]:
    """An int no shape is written with (a loop's count, a sub-model's argument): a size
    from `num`, a tuple's element `t[i]`, `d + k` or a conditional expression; and its
    size (None when it is no size)."""
    choices = sorted(set(choices))
    elements = tuple_elements(b, choices, where)
    shifts = [k for k in (0, 1, 2) if b.loop and b.env["i"] + k in choices]
    form = b.pick(
        ["num"] * 3
        + ["element"] * bool(elements)
        + ["index"] * 3 * bool(shifts)
        + ["by index"] * 3 * b.loop
        + ["shift", "cond"] * (b.nest < MAX_NEST and "values" in b.files.constructs)
    )
    if form == "index":  # a generator's variable
        k = b.pick(shifts)
        return Const(f"i + {k}" if k else "i", b.env["i"] + k), None
    if form == "by index":
        return by_index(b, lambda: count(b, choices, where)[0]), None
    if form == "element":
        name, i = b.pick(elements)
        return Const(f"{name}[{i}]", b.values[name][i]), None
    if form == "shift":
        k = b.pick([1, 2])
        inner, _ = nested(b, lambda: count(b, [v - k for v in choices], where))
        return Const(f"{inner.text} + {k}", inner.value + k), None
    if form == "cond":
        expr, value = conditional(b, lambda: count(b, choices, where)[0], where)
        return Const(f"({expr})", value), None
    d = num(b, choices, where)
    return Const(dim_text(d), b.size(d)), None if b.loop else d  # i is no size outside


def tune(b: Builder, type_: str, options, where: str = "forward") -> Const:
    """A float, bool or str among `options`."""
    options = list(options)
    found = names(b, type_, where, lambda v: v in options)
    form = b.pick(
        forms(b, where, bool(found))
        + ["by index"] * 3 * b.loop
        + ["inline"] * (b.nest < MAX_NEST and "values" in b.files.constructs)
    )
    if form == "literal":
        value = b.pick(options)
        return Const(literal(value), value)
    if form == "by index":
        return by_index(b, lambda: tune(b, type_, options, where))
    if form == "name":
        name = named(b, found)
    elif form == "const":
        name = file_const(b, type_, options)
    elif form == "hyper":
        name = b.fresh("hp")
        hyper(b, name, type_, options)
    elif form == "derived":
        name = derived(b, type_, options, where)
    else:
        expr, value = conditional(b, lambda: tune(b, type_, options, where), where)
        return Const(f"({expr})", value)
    return Const(name, b.values[name])


def flag(b: Builder, where: str = "forward") -> Const:
    """A condition known at compile time: a bool, a comparison, `not`, `and`, `or`."""
    ints = names(b, "int", where, lambda v: True)
    deeper = b.nest < MAX_NEST and "values" in b.files.constructs
    form = b.pick(
        ["bool"] * 2 + ["compare"] * 2 * bool(ints) + ["mode"] + ["not", "and", "or"] * deeper
    )
    if form == "bool":
        return tune(b, "bool", [True, False], where)
    if form == "mode":  # a string setting, as `norm == "batch"`
        mode, op = tune(b, "str", MODES, where), b.pick(["==", "!="])
        other = b.pick(MODES)
        return Const(f"{mode.text} {op} {literal(other)}", (mode.value == other) == (op == "=="))
    if form == "compare":
        name = named(b, ints)
        op = b.pick(["==", "!=", "<", ">=", ">"])
        others = [n for n in names(b, "int", where, lambda v: True) if n != name]
        other = b.pick(others + [str(b.env[name] + d) for d in (-1, 0, 1)])
        right = b.env[named(b, [other])] if other in others else int(other)
        value = {
            "==": b.env[name] == right,
            "!=": b.env[name] != right,
            "<": b.env[name] < right,
            ">=": b.env[name] >= right,
            ">": b.env[name] > right,
        }[op]
        return Const(f"{name} {op} {other}", value)
    if form == "not":
        first, _ = nested(b, lambda: (flag(b, where), None))
        return Const(f"not ({first.text})", not first.value)
    (first, second), _ = nested(b, lambda: ((flag(b, where), flag(b, where)), None))
    value = first.value and second.value if form == "and" else first.value or second.value
    return Const(f"({first.text}) {form} ({second.text})", value)


def pair(
    b: Builder, axes: list, where: str = "forward", typed: bool = False
) -> tuple[Const, tuple]:
    """One int per axis, each among its `axes` choices: written as one size for all, a
    tuple, a tuple hyperparameter, or `e if cond else (e1, e2)`; and each axis's size.
    `typed`: always a tuple (the value of a tuple-typed hyperparameter)."""
    shared = [] if typed else sorted(set.intersection(*(set(c) for c in axes)))
    several = len(axes) > 1  # a 1-tuple type such as `(int)` does not exist
    declares = several and not b.loop
    values = "values" in b.files.constructs
    form = b.pick(
        ["single"] * 2 * bool(shared)
        + ["tuple"] * several
        + ["hyper"] * (declares and values) * (1 if b.ask is None else 5)
        + ["cond"] * (bool(shared) and declares and values and b.nest < MAX_NEST and where != "sig")
    )
    if form == "single":
        d = num(b, shared, where)
        return Const(dim_text(d), (b.size(d),) * len(axes)), (d,) * len(axes)
    if form == "tuple":
        ds = tuple(num(b, c, where) for c in axes)
        return Const(literal(ds), tuple(b.size(d) for d in ds)), ds
    if form == "hyper":
        name = b.fresh("hp")
        value = hyper(b, name, tuple_type(len(axes)), axes)
        ds = tuple(sym(element(b, name, i, v)) for i, v in enumerate(value))
        return Const(name, value), ds
    (common, rest, condition), _ = nested(
        b,
        lambda: (
            (num(b, shared, "decl"), tuple(num(b, c, "decl") for c in axes), flag(b, "decl")),
            None,
        ),
    )
    ds = []
    for r in rest:  # each axis's size as a body constant, so that shapes can name it
        name = b.fresh("c")
        b.body.append(f"{name} = {dim_text(common)} if {condition.text} else {dim_text(r)}")
        b.bind(name, b.size(common) if condition.value else b.size(r), "int", "decl")
        ds.append(sym(name))
    value = tuple(b.size(d) for d in ds)
    return Const(f"{dim_text(common)} if {condition.text} else {literal(rest)}", value), tuple(ds)


def file_const(b: Builder, type_: str, options) -> str:
    """A new file constant (declared once: replays take the first instance's)."""
    name = b.tape.take(
        lambda: b.files.constant(b.file, type_, b.fresh_draw(st.sampled_from(options))),
        lambda v: b.files.consts[b.file][v][1] in options,
    )
    b.bind(name, b.files.consts[b.file][name][1], type_, "sig")
    return name


def hyper(b: Builder, name: str, type_: str, spec) -> object:
    """A new hyperparameter. In the entry model it has a default; in a template its value
    comes from the caller (`b.ask`), sometimes with the first instance's as default."""
    if b.ask is None:
        value = tuple(b.pick(c) for c in spec) if type_.startswith("(") else b.pick(spec)
        b.hypers.append(f"{name}: {type_} = {literal(value)}")
    else:
        const, size = b.ask(type_, spec)
        b.asked.append((name, const, size))
        value = const.value
        default = b.remember(lambda: value) if b.flag() else None
        b.hypers.append(f"{name}: {type_}" + ("" if default is None else f" = {literal(default)}"))
        if default is not None:
            b.defaults[name] = default
    b.bind(name, value, type_, "sig")
    return value


def element(b: Builder, name: str, i: int, value: int) -> str:
    """Element i of a tuple as shapes write it: `hp2[0]` itself (types index tuples too), or
    a body constant holding it."""
    if b.flag():
        b.bind(f"{name}[{i}]", value, "int", "sig")
        return f"{name}[{i}]"
    const = b.fresh("c")
    b.body.append(f"{const} = {name}[{i}]")
    b.bind(const, value, "int", "decl")
    return const


def derived(b: Builder, type_: str, options, where: str) -> str:
    """A new constant computed from other compile-time values, in the model's body or (in
    forward) before the statement: an alias, `d + k`, `2 * d`, a tuple's element, `max`/`min`
    of two, or a conditional expression."""
    scope = "forward" if where == "forward" and b.flag() else "decl"
    name = b.fresh("n" if scope == "forward" else "c")
    (expr, value, size), _ = nested(b, lambda: (expression(b, type_, options, scope), None))
    (b.lines if scope == "forward" else b.body).append(f"{name} = {expr}")
    b.bind(name, value, type_, scope)
    if size is not None:
        b.defs[name] = size
    return name


def expression(b: Builder, type_: str, options, where: str) -> tuple[str, object, object]:
    """(text, value, the size it is when it is one of other names, else None)."""
    if type_ != "int":
        if b.flag():
            c = tune(b, type_, options, where)
            return c.text, c.value, None
        return (*conditional(b, lambda: tune(b, type_, options, where), where), None)
    halves = [v // 2 for v in options if v % 2 == 0]
    tuples = tuple_elements(b, options, where)
    kind = b.pick(
        ["alias", "plus", "cond", "extreme"] + ["times"] * bool(halves) + ["element"] * bool(tuples)
    )
    if kind == "alias":
        d = num(b, options, where)
        return dim_text(d), b.size(d), d
    if kind == "plus":
        k = b.pick([-2, -1, 1, 2])
        d = num(b, [v - k for v in options], where)
        text = (
            dim_text(d + k) if not isinstance(d, int) else f"{d} + {k}" if k > 0 else f"{d} - {-k}"
        )
        return text, b.size(d) + k, d + k
    if kind == "times":
        d = num(b, halves, where)
        return dim_text(2 * d), 2 * b.size(d), 2 * d
    if kind == "element":
        name, i = b.pick(tuples)
        return f"{name}[{i}]", b.values[name][i], None
    if kind == "extreme":  # max/min of two ints, computed when checked
        pick = b.pick([max, min])
        (a, c), _ = nested(
            b, lambda: ((count(b, options, where)[0], count(b, options, where)[0]), None)
        )
        return f"{pick.__name__}({a.text}, {c.text})", pick(a.value, c.value), None
    expr, value = conditional(b, lambda: count(b, options, where)[0], where)
    return expr, value, None


def conditional(b: Builder, draw, where: str) -> tuple[str, object]:
    """`a if cond else c`, with a and c from `draw()`."""
    (condition, a, c), _ = nested(b, lambda: ((flag(b, where), draw(), draw()), None))
    return f"{a.text} if {condition.text} else {c.text}", a.value if condition.value else c.value


def by_index(b: Builder, draw) -> Const:
    """`(a if i OP k else c)` in a generator's element (as `stride=2 if i == 0 else 1`)."""
    op, k = b.pick(["==", "<", ">="]), b.int(0, 2)
    (a, c), _ = nested(b, lambda: ((draw(), draw()), None))
    i = b.env["i"]
    hit = i == k if op == "==" else i < k if op == "<" else i >= k
    return Const(f"({a.text} if i {op} {k} else {c.text})", a.value if hit else c.value)


def nested(b: Builder, draw):
    """`draw()` one level deeper in compile-time expressions."""
    b.nest += 1
    try:
        return draw()
    finally:
        b.nest -= 1

"""A corpus of hostile names and file names, and programs that use them in every role a .dnet
name can play (issue 11): layer, hyperparameter (also passed by keyword), forward argument,
variable, loop variable, symbolic dimension, model. Many names share one program, so they
also meet each other there (`len` beside `len_`)."""

from __future__ import annotations

import builtins
import keyword

from dualnet.backends.keras.base_attrs import KERAS_BASE_ATTRS
from dualnet.backends.torch.module_attrs import NN_MODULE_ATTRS
from dualnet.ops import REGISTRY

# LANGUAGE.md §2: not names in .dnet
KEYWORDS = {
    "model",
    "forward",
    "return",
    "import",
    "from",
    "as",
    "const",
    "if",
    "else",
    "for",
    "in",
    "and",
    "or",
    "not",
    "true",
    "false",
    "none",
}
DNET_BUILTINS = {"Sequential", "Identity", "range"}
# The templates' own names, and the built-ins they call: kept out of the corpus.
TEMPLATE = {
    "zz_in",
    "zz_h",
    "zzB",
    "zzT",
    "zzNet",
    "zzBlock",
    "Linear",
    "relu",
    "range",
    "reshape",
    "f32",
    "tanh",
}

EXTRA = [
    # what generated code itself names: modules, helpers, locals, base-class arguments
    "self",
    "cls",
    "super",
    "kwargs",
    "args",
    "torch",
    "nn",
    "F",
    "math",
    "keras",
    "ops",
    "np",
    "_register",
    "_unchecked",
    "_Function",
    "_bn",
    "_mha",
    "_MultiheadAttention",
    "_attention",
    "_pad_same",
    "_avg_pool",
    "_Recurrent",
    "_BatchNorm",
    "_BatchAxis",
    "name",
    "dtype",
    "trainable",
    "inputs",
    "outputs",
    "training",
    "mask",
    # underscores, mangling and suffix collisions
    "_",
    "__",
    "___",
    "_x",
    "__x",
    "__x__",
    "x_",
    "x__",
    "len_",
    "len__",
    "H_",
    "B_",
    "x",
    "__init__",
    "__class__",
    "__dict__",
    "__call__",
    "__module__",
    "__name__",
    "__slots__",
    "__getattr__",
    "__setattr__",
    "__import__",
    "__builtins__",
    "__file__",
    # dualnet's own names
    "Conv2d",
    "Sequential",
    "Identity",
    "flatten",
    "i64",
    "Net",
    "Block",
    "Window",
]


def corpus() -> list[str]:
    """≥ 500 distinct names that are valid .dnet identifiers."""
    names = [
        *keyword.kwlist,
        *keyword.softkwlist,
        *dir(builtins),
        *sorted(NN_MODULE_ATTRS),
        *sorted(KERAS_BASE_ATTRS),
        *EXTRA,
    ]
    seen: dict[str, None] = {}
    for name in names:
        if name.isidentifier() and name.isascii() and name not in KEYWORDS and name not in TEMPLATE:
            seen.setdefault(name, None)
    return list(seen)


# Quoted names (issue 13), as written in a .dnet file: keywords of both languages, names that
# are no Python identifier, and names that meet after sanitising (`a-b`, `a_b`, `_a_b`).
QUOTED = [
    "`model`",
    "`forward`",
    "`for`",
    "`none`",
    "`class`",
    "`lambda`",
    "`block1-0`",
    "`0`",
    "`1x1`",
    "`-`",
    "`--`",
    "`-x`",
    "`x-`",
    "`a-b`",
    "a_b",
    "_a_b",
    "`_a_b_`",
    "`__init__`",
    "`__x`",
    "`self`",
    "`len-`",
    "len_",
    "`0-0`",
    "`training`",
    "`name`",
]


def chunks(names: list[str], size: int) -> list[list[str]]:
    return [names[i : i + size] for i in range(0, len(names), size)]


def layers(names: list[str]) -> str:
    """Each name a Linear layer, called in a chain: its weights are `NAME.weight`."""
    decls = "\n".join(f"    {n} = Linear(4)" for n in names)
    calls = "\n".join(f"        zz_h = {n}(zz_h)" for n in names)
    return (
        f"model zzNet() {{\n{decls}\n    forward(zz_in: f32[zzB, 4]) -> f32[zzB, 4] {{\n"
        f"        zz_h = zz_in\n{calls}\n        return zz_h\n    }}\n}}\n"
    )


def hyperparameters(names: list[str]) -> str:
    """Each name a hyperparameter of a block, given by keyword, used in a layer size and in
    forward."""
    params = ", ".join(f"{n}: int = 1" for n in names)
    total = " + ".join(names)
    given = ", ".join(f"{n}={i % 3 + 1}" for i, n in enumerate(names))
    return (
        f"model zzBlock({params}) {{\n    fc = Linear({total})\n"
        f"    forward(zz_in: f32[zzB, 4]) {{ return fc(zz_in) * ({total}) }}\n}}\n"
        f"model zzNet() {{\n    b = zzBlock({given})\n"
        f"    forward(zz_in: f32[zzB, 4]) {{ return b(zz_in) }}\n}}\n"
    )


def arguments(names: list[str]) -> str:
    """Each name a forward argument of a block, given by keyword."""
    params = ", ".join(f"{n}: f32[zzB, 4]" for n in names)
    given = ", ".join(f"{n}=zz_in" for n in names)
    total = " + ".join(names)
    return (
        f"model zzBlock() {{\n    forward({params}) {{ return relu({total}) }}\n}}\n"
        f"model zzNet() {{\n    b = zzBlock()\n"
        f"    forward(zz_in: f32[zzB, 4]) {{ return b({given}) }}\n}}\n"
    )


def variables(names: list[str]) -> str:
    """Each name a forward variable (tensors and compile-time numbers), and a loop variable."""
    lines = ["        zz_h = zz_in"]
    for i, n in enumerate(names):
        if i % 3 == 2:
            lines.append(f"        for {n} in range(2) {{ zz_h = zz_h + 1.0 }}")
        elif i % 3 == 1:
            lines.append(f"        {n} = {i}")
            lines.append(f"        zz_h = tanh(zz_h * {n})")
        else:
            lines.append(f"        {n} = relu(zz_h)")
            lines.append(f"        zz_h = {n} - 0.5")
    body = "\n".join(lines)
    return (
        f"model zzNet() {{\n    forward(zz_in: f32[zzB, 4]) -> f32[zzB, 4] {{\n{body}\n"
        f"        return zz_h\n    }}\n}}\n"
    )


def dimensions(names: list[str]) -> str:
    """Each name a symbolic dimension of a block, read at run time for a reshape (`_` is
    the unknown size there, not a name; a built-in's name is not a size)."""
    names = [n for n in names if n != "_" and n not in REGISTRY and n not in DNET_BUILTINS]
    blocks, calls = [], []
    for i in range(0, len(names) - 1, 2):
        a, b = names[i], names[i + 1]
        blocks.append(
            f"model zzBlock{i}() {{\n    forward(zz_in: f32[{a}, {b}, 4]) {{\n"
            f"        return reshape(zz_in, [{a} * {b}, 4])\n    }}\n}}\n"
        )
        calls.append((f"    b{i} = zzBlock{i}()", f"b{i}(zz_in)"))
    decls = "\n".join(c[0] for c in calls)
    total = " + ".join(c[1] for c in calls)
    return (
        "".join(blocks) + f"model zzNet() {{\n{decls}\n"
        f"    forward(zz_in: f32[zzB, zzT, 4]) {{ return {total} }}\n}}\n"
    )


def models(names: list[str]) -> str:
    """Each name a model (a class in the generated code)."""
    defs = "".join(
        f"model {n}() {{\n    fc = Linear(4)\n"
        f"    forward(zz_in: f32[zzB, 4]) {{ return relu(fc(zz_in)) }}\n}}\n"
        for n in names
    )
    decls = "\n".join(f"    m{i} = {n}()" for i, n in enumerate(names))
    calls = "\n".join(f"        zz_h = m{i}(zz_h)" for i in range(len(names)))
    return (
        defs + f"model zzNet() {{\n{decls}\n    forward(zz_in: f32[zzB, 4]) -> f32[zzB, 4] {{\n"
        f"        zz_h = zz_in\n{calls}\n        return zz_h\n    }}\n}}\n"
    )


ROLES = {
    "layer": layers,
    "hyperparameter": hyperparameters,
    "argument": arguments,
    "variable": variables,
    "dimension": dimensions,
    "model": models,
}

MARKER = "dualnet-hostile-marker"
# File names that would run code, or break a comment or docstring, if written unescaped.
FILE_NAMES = [
    f'x"""+str(__import__("os").system("touch {MARKER}"))+""".dnet',
    f"x'''+str(__import__('os').system('touch {MARKER}'))+'''.dnet",
    f"line\nimport os; os.system('touch {MARKER}')\n#.dnet",
    "back\\slash\\N{BULLET}\\x00.dnet",
    'quote"end.dnet',
    "tab\tand\rreturn.dnet",
    "unicode-modèle-模型-\u2028-\u202e.dnet",
    "# comment.dnet",
    "spaces and (brackets) [x].dnet",
    "F.pad(torch.x).dnet",  # a docstring that mentions `F.` and `torch.` imports nothing
    "a" * 200 + ".dnet",
]

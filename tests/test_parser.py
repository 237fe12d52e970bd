"""The grammar and the AST: every construct of LANGUAGE.md §2–6, spans, and syntax errors."""

import pytest

from dualnet.diagnostics import DualnetError
from dualnet.syntax import ast
from dualnet.syntax.parser import MAX_DEPTH, parse

SOURCE = """\
# comment
const D = 256
import "blocks.dnet" as blocks
from "x.dnet" import A, B as C

model M(n: int = 2, k: (int, int) = (3, 3), name: str = "same") {
    conv = Conv2d(D, kernel=k, padding=name)
    seq = Sequential(Block(c, stride=2 if i == 0 else 1) for i in range(n))
    forward(x: f32[B, 3, H * 2, W // 2 + 1], m: bool[B, _]) -> (f32[B], f32[]) {
        y = x |> conv |> relu |> max_pool2d(2)
        z: f32[B, 400] = flatten(y)
        a, b = split(x,
                     2, 1)
        for i in range(n) { h = layer(h, m) }
        if n > 1 and not false { q = -x ** 2 } else if n == 0 { q = x } else { q = x @ x }
        s = x[:, 1:-1, ::2, 0]
        return a[0], [1, 2.5, 1e-5, "s\\"x"]
    }
}
"""


def test_parses_every_construct():
    module = parse(SOURCE, "t.dnet")
    const, imp_as, imp_from, model = module.decls
    assert isinstance(const, ast.Const) and const.value.value == 256
    assert imp_as.alias == "blocks" and imp_as.names is None
    assert [(n.name, n.alias) for n in imp_from.names] == [("A", None), ("B", "C")]
    assert [h.name for h in model.hypers] == ["n", "k", "name"]
    forward = model.members[-1]
    assert isinstance(forward, ast.Forward)
    assert [a.name for a in forward.args] == ["x", "m"]
    assert isinstance(forward.returns, ast.TupleTypeExpr)
    kinds = [type(s).__name__ for s in forward.body]
    assert kinds == ["Assign", "Annotated", "Assign", "For", "If", "Assign", "Return"]


def test_pipe_is_left_associative_and_partial():
    module = parse(SOURCE, "t.dnet")
    pipe = module.decls[-1].members[-1].body[0].value
    assert isinstance(pipe, ast.Pipe) and isinstance(pipe.func, ast.Call)
    assert pipe.func.func.id == "max_pool2d"
    assert isinstance(pipe.value, ast.Pipe) and pipe.value.func.id == "relu"


def test_generator_and_conditional():
    seq = parse(SOURCE, "t.dnet").decls[-1].members[1].value
    gen = seq.args[0]
    assert isinstance(gen, ast.Generator) and gen.var == "i"
    cond = gen.element.keywords[0].value
    assert isinstance(cond, ast.Conditional) and cond.then.value == 2


def test_slices_and_precedence():
    body = parse(SOURCE, "t.dnet").decls[-1].members[-1].body
    index = body[5].value
    assert [type(i).__name__ for i in index.items] == ["Slice", "Slice", "Slice", "Literal"]
    full, inner, stepped, _ = index.items
    assert full.start is full.stop is full.step is None
    assert inner.start.value == 1 and isinstance(inner.stop, ast.Unary) and inner.step is None
    assert stepped.start is None and stepped.step.value == 2
    neg = body[4].body[0].value  # -x ** 2 is -(x ** 2)
    assert isinstance(neg, ast.Unary) and neg.operand.op == "**"


def test_string_escapes_and_numbers():
    ret = parse(SOURCE, "t.dnet").decls[-1].members[-1].body[-1]
    values = [i.value for i in ret.values[1].items]
    assert values == [1, 2.5, 1e-5, 's"x']


def test_spans_cover_the_source_text():
    module = parse(SOURCE, "t.dnet")
    stmt = module.decls[-1].members[-1].body[0]
    line = SOURCE.splitlines()[stmt.span.line - 1]
    assert (
        line[stmt.span.column - 1 : stmt.span.end_column - 1]
        == "y = x |> conv |> relu |> max_pool2d(2)"
    )
    call = stmt.value.func
    assert line[call.span.column - 1 : call.span.end_column - 1] == "max_pool2d(2)"


def test_newlines_inside_brackets_do_not_end_statements():
    module = parse("model M() {\n forward(x: f32[\n B]) {\n  return f(x,\n   1)\n }\n}\n", "t")
    assert module.decls[0].members[0].body[0].values[0].args[1].value == 1


def test_semicolons_separate_statements():
    module = parse("model M() { forward(x: f32[B]) { y = x; return y } }", "t")
    assert len(module.decls[0].members[0].body) == 2


@pytest.mark.parametrize(
    "text, found",
    [
        ("model M( {", "`{`"),
        ("model M() { forward(x: f32[B]) { return x }", "end of file"),
        ("const x = $", "'$'"),
        ('const x = "abc', "unterminated string"),
        ("model { }", "`{`"),
    ],
)
def test_syntax_errors_are_located(text, found):
    with pytest.raises(DualnetError) as info:
        parse(text, "t.dnet")
    diag = info.value.diagnostics[0]
    assert diag.code == "E-SYNTAX" and found in diag.message
    assert diag.span.file == "t.dnet" and diag.span.line >= 1


def test_deep_nesting_is_refused_without_recursion():
    text = "const x = " + "-" * 5000 + "1\n"
    with pytest.raises(DualnetError) as info:
        parse(text, "t.dnet")
    assert info.value.diagnostics[0].code == "E-DEPTH"
    assert str(MAX_DEPTH) in info.value.diagnostics[0].message


def test_nesting_below_the_cap_is_fine():
    parse("const x = " + "(" * 150 + "1" + ")" * 150 + "\n", "t.dnet")
    parse("const x = " + "-" * 150 + "1\n", "t.dnet")


def test_huge_integer_literal():
    with pytest.raises(DualnetError) as info:
        parse("const x = " + "9" * 100 + "\n", "t.dnet")
    assert info.value.diagnostics[0].code == "E-VALUE"

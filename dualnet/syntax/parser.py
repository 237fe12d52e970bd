"""Source text → AST. Lark's LALR parser builds a tree without recursion; converting it to the
AST walks an explicit stack and refuses nesting deeper than MAX_DEPTH with a diagnostic.
Depth counts nesting, not width: the left operand of a chain of the same operator
(`a + b - c`, `a and b and c`) is at its parent's depth; a chain has at most MAX_CHAIN
operands. Every token parsed
is charged to the front end's work budget (`dualnet.budget`)."""

from __future__ import annotations

import difflib
import functools
import keyword
import re
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from dualnet import budget
from dualnet.diagnostics import DualnetError, Span, error
from dualnet.syntax import ast

MAX_DEPTH = 200  # nesting of expressions, statements and types
MAX_STATEMENT_TOKENS = 100_000
INT_LIMIT = 2**63 - 1
_FOLDERS = ("LPAR", "LSQB")
_CLOSERS = ("RPAR", "RSQB")
# Left-associative chains of one operator (`a + b - c`, `a and b and c`): width, not depth.
# (`x |> f |> g` nests calls, and is counted as nesting.) A chain may have MAX_CHAIN operands:
# generated Python writes it as one expression, and CPython compiles about 2,800 at most.
_CHAINS = frozenset({"binary", "or_op", "and_op"})
MAX_CHAIN = 1000
_TOKEN_BATCH = 1024  # tokens charged to the work budget at a time
# What a quoted name may hold: the characters of state_dict names (`block1-0`, `0`) that
# PyTorch, Keras and TensorFlow's name scopes all accept; a `.` separates children.
QUOTED_NAME = re.compile(r"[A-Za-z0-9_-]+")


def grammar_text() -> str:
    """The grammar: the wheel's packaged copy, or the source checkout's grammar/ folder."""
    packaged = resources.files("dualnet").joinpath("dnet.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "grammar" / "dnet.lark").read_text("utf-8")


class _NewlineFilter:
    """Post-lexer: a newline inside ( ) or [ ] does not end a statement; a statement longer
    than MAX_STATEMENT_TOKENS, or tokens past the work budget, stop the parse early (the
    parser streams these tokens)."""

    always_accept = ("_NL",)

    def __init__(self):
        self.file = ""
        self.offset: tuple[int, int] | None = None  # (line, column) of an f-string's part

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = count = total = 0
        start = last = None
        for tok in stream:
            last = tok
            total += 1
            if total == _TOKEN_BATCH:
                budget.spend("token", total, _token_span(self.file, tok))
                total = 0
            if tok.type in _FOLDERS:
                depth += 1
            elif tok.type in _CLOSERS:
                depth = max(0, depth - 1)
            elif tok.type == "_NL" and depth:
                continue
            elif tok.type == "NAME" and tok.startswith("`"):
                tok = self._unquoted(tok)
            if self.offset is not None:  # a part of an f-string: on the f-string's line
                line, column = self.offset
                tok.line = tok.end_line = line
                tok.column, tok.end_column = tok.column + column, tok.end_column + column
            if depth == 0 and tok.type in ("_NL", "SEMICOLON"):
                count, start = 0, None
            else:
                count += 1
                start = start or tok
                if count > MAX_STATEMENT_TOKENS:
                    raise error(
                        "E-LIMIT",
                        f"statement longer than {MAX_STATEMENT_TOKENS:,} tokens",
                        _token_span(self.file, start),
                        "starts here",
                        ["split it into several statements"],
                    )
            yield tok
        budget.spend("token", total, _token_span(self.file, last) if last else None)

    def _unquoted(self, tok: Token) -> Token:
        """`` `block1-0` `` → the name `block1-0`, its span still covering the backticks."""
        inner = tok[1:-1]
        if not QUOTED_NAME.fullmatch(inner):
            bad = next((c for c in inner if not QUOTED_NAME.fullmatch(c)), None)
            dot = "; a `.` separates children: declare each child by itself" if bad == "." else ""
            raise error(
                "E-SYNTAX",
                "empty quoted name" if bad is None else f"{bad!r} in a quoted name",
                _token_span(self.file, tok),
                "not a name",
                [f"a quoted name holds letters, digits, `_` and `-`{dot}"],
            )
        return Token.new_borrow_pos("NAME", inner, tok)


_POSTLEX = _NewlineFilter()


@functools.cache
def _lark() -> Lark:
    # Spans come from the first and last token of each rule (all tokens kept), which is
    # cheaper than lark's propagate_positions and includes closing brackets.
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        postlex=_POSTLEX,
        keep_all_tokens=True,
        maybe_placeholders=False,
        cache=True,
        start=["start", "expr"],
    )


def decode_source(data: bytes, file: str) -> str:
    """UTF-8 decode (a leading byte-order mark is allowed) with a located diagnostic for
    invalid bytes; the column counts characters, as every other diagnostic does."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        line_start = before.rfind(b"\n") + 1
        column = len(data[line_start : exc.start].decode("utf-8-sig", errors="replace")) + 1
        span = Span(file, line, column, line, column + 1)
        raise error(
            "E-ENCODING",
            f"invalid UTF-8 byte 0x{data[exc.start]:02x}",
            span,
            "not UTF-8",
            ["dualnet source files must be UTF-8 encoded"],
        ) from None


def parse(text: str, file: str) -> ast.Module:
    """Parse one source file into an `ast.Module`, raising DualnetError on bad input."""
    return parse_with_tree(text, file)[0]


def parse_with_tree(text: str, file: str) -> tuple[ast.Module, Tree]:
    """`parse`, and the lark tree it came from: every token kept, with its position (the
    formatter lays the tree out again; the AST's checks have run on it)."""
    try:
        _POSTLEX.file = file  # spans of the post-lexer's own errors name this file
        tree = _lark().parse(text, start="start")
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, file) from None
    return _Converter(file).convert(tree), tree


def _fstring_part(text: str, file: str, line: int, column: int) -> ast.Expr:
    """The expression `text` inside an f-string's braces, which starts at (line, column)."""
    _POSTLEX.offset = (line, column - 1)
    try:
        tree = _lark().parse(text, start="expr")
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, file) from None
    finally:
        _POSTLEX.offset = None
    if isinstance(tree, Token):  # a lone name or number
        tree = Tree("name" if tree.type == "NAME" else "int_lit", [tree])
    return _Converter(file).convert(tree)


# ---------------------------------------------------------------- syntax errors

_TERMINAL_NAMES = {
    "NAME": "a name",
    "TRAIN": "`train`",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "_NL": "a newline",
    "$END": "end of file",
    "COMP_OP": "a comparison",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    for term in _lark().terminals:
        if term.name == name and term.pattern.type == "str":
            return repr(term.pattern.value).replace("'", "`")
    return name.lower()


def _expected_rank(text: str) -> tuple[int, str]:
    """Closing brackets and separators first, then words, then operators."""
    if text in ("`)`", "`]`", "`}`", "`,`", "`:`", "`=`", "a newline"):
        return 0, text
    return (1 if text[1:2].isalpha() or not text.startswith("`") else 2), text


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "end of line"
    return f"`{tok.value}`"


def _syntax_error(exc: UnexpectedInput, text: str, file: str) -> DualnetError:
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else "?"
        span = Span(file, exc.line, exc.column, exc.line, exc.column + 1)
        if char == "`":
            return error(
                "E-SYNTAX",
                "unterminated quoted name",
                span,
                "this name never ends",
                ["close it with a backtick on the same line"],
            )
        if char == '"':
            return error(
                "E-SYNTAX",
                "unterminated string",
                span,
                "this string never ends",
                ['close it with `"` on the same line'],
            )
        return error("E-SYNTAX", f"unexpected character {char!r}", span, "not valid here")
    word = _word_before(exc)
    if word is not None:
        return _not_a_declaration(word, file)
    accepted = set(getattr(exc, "accepts", None) or getattr(exc, "expected", None) or ())
    if "MODEL" in accepted and "NAME" in accepted:  # a declaration: the name is `train`
        accepted.discard("NAME")
        accepted.add("TRAIN")
    expected = sorted({_describe_terminal(t) for t in accepted}, key=_expected_rank)
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        tok = exc.token
        found = _describe_token(tok)
        end_col = tok.end_column if tok.end_line == tok.line else tok.column + 1
        span = Span(file, tok.line, tok.column, tok.line, max(end_col, tok.column + 1))
    else:
        found = "end of file"
        lines = text.splitlines() or [""]
        span = Span(file, len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2)
    shown = ", ".join(expected[:6]) + (", …" if len(expected) > 6 else "")
    if "NAME" in accepted and str(exc.token) in keywords() and exc.token.type != "NAME":
        return keyword_as_name(str(exc.token), span, f"here the grammar expects {shown}")
    message = f"unexpected {found}" + (f", expected {shown}" if expected else "")
    return error("E-SYNTAX", message, span, f"found {found}")


def _not_a_declaration(word: Token, file: str) -> DualnetError:
    """A name where a declaration starts (`foo = 3`): only `train` is read there."""
    close = difflib.get_close_matches(str(word), ["train"])
    return error(
        "E-SYNTAX",
        f"unexpected `{word}`, expected `const`, `from`, `import`, `model`, `train`",
        _token_span(file, word),
        f"found `{word}`",
        ["did you mean `train`?"] if close else ["a constant is declared `const NAME = value`"],
    )


def _word_before(exc: UnexpectedInput) -> Token | None:
    """The name that began a declaration when the next token failed: only a name is expected
    next exactly after a declaration's first word (`foo` of `foo = 3`), since everywhere
    else a name follows a keyword or punctuation."""
    stack = getattr(getattr(exc, "state", None), "value_stack", None)
    last = stack[-1] if stack else None
    expected = getattr(exc, "accepts", None) or getattr(exc, "expected", None) or ()
    if set(expected) == {"NAME"} and isinstance(last, Token):
        return last if last.type == "NAME" and last != "train" else None
    return None


def keyword_as_name(word: str, span: Span, *notes: str) -> DualnetError:
    """A keyword written where a name belongs (`model = ...`): say how to quote it."""
    return error(
        "E-SYNTAX",
        f"`{word}` is a keyword, not a name",
        span,
        "keyword",
        [f"quote it to use it as a name: `{word}` in backticks, as in `` `{word}`(x) ``", *notes],
    )


@functools.cache
def keywords() -> frozenset[str]:
    """The words the grammar reserves (`model`, `forward`, `return`, `if`, `true`, ...)."""
    return frozenset(
        t.pattern.value
        for t in _lark().terminals
        if t.pattern.type == "str" and t.pattern.value.isalpha()
    )


# ---------------------------------------------------------------- tree → AST


def _token_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


def _first_token(tree: Tree) -> Token | None:
    """The leftmost token below `tree`, found without recursion."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Token):
            return node
        stack.extend(reversed(node.children))
    return None


# Tokens that carry meaning for the AST; punctuation and keywords are dropped after their
# positions have been used for spans.
_MEANINGFUL = {
    "NAME",
    "FSTRING",
    "INT",
    "FLOAT",
    "STRING",
    "COMP_OP",
    "PLUS",
    "MINUS",
    "STAR",
    "SLASH",
    "DSLASH",
    "PERCENT",
    "AT",
}
_SLICE_TOKENS = _MEANINGFUL | {"COLON"}


class _NamedItem:
    """`name: type` inside a tuple type, before the tuple takes it apart."""

    def __init__(self, span: Span, name: str, type_):
        self.span, self.name, self.type = span, name, type_


def _unnamed(texpr) -> None:
    """Names belong to a forward's outputs only (`-> (logits: ..., ...)`)."""
    stack = [texpr]
    while stack:
        t = stack.pop()
        if isinstance(t, ast.TupleTypeExpr):
            if t.names:
                raise error(
                    "E-SYNTAX",
                    "only a forward's outputs are named",
                    t.span,
                    "named items",
                    ["-> (logits: f32[B, C], features: f32[B, D])"],
                )
            stack.extend(t.items)


class _Converter:
    """Bottom-up conversion with an explicit stack: no Python recursion on deep input."""

    def __init__(self, file: str):
        self.file = file

    def convert(self, tree: Tree) -> ast.Module:
        order: list[Tree] = []  # pre-order; reversed, every child comes before its parent
        stack: list[tuple[Tree, int, int]] = [(tree, 1, 1)]  # (node, depth, chain operands)
        while stack:
            node, depth, chain = stack.pop()
            order.append(node)
            for i, c in enumerate(node.children):
                if isinstance(c, Tree):
                    if i == 0 and c.data == node.data and c.data in _CHAINS:
                        if chain + 2 > MAX_CHAIN:  # `chain` operators, one more operand
                            raise error(
                                "E-LIMIT",
                                f"a chain of more than {MAX_CHAIN:,} operands",
                                _token_span(self.file, _first_token(c)),
                                "starts here",
                                ["split it with intermediate names"],
                            )
                        stack.append((c, depth, chain + 1))  # `a + b` of `a + b + c`: width
                        continue
                    if depth >= MAX_DEPTH:
                        first = _first_token(c)
                        span = _token_span(self.file, first) if first else None
                        raise error(
                            "E-DEPTH",
                            f"nesting deeper than {MAX_DEPTH} levels",
                            span,
                            "too deep",
                            ["split it up with intermediate names"],
                        )
                    stack.append((c, depth + 1, 1))
        done: dict[int, object] = {}
        extent: dict[int, tuple] = {}  # id(tree) → (line, col, end_line, end_col)
        handlers: dict[str, object] = {}
        for node in reversed(order):
            kids, first, last = [], None, None
            keep = _MEANINGFUL if node.data != "slice" else _SLICE_TOKENS
            for c in node.children:
                if isinstance(c, Tree):
                    place = extent.pop(id(c))
                    kids.append(done.pop(id(c)))
                else:
                    place = (c.line, c.column, c.end_line, c.end_column)
                    if c.type in keep:
                        kids.append(c)
                if place is not None:
                    first = first or place
                    last = place
            extent[id(node)] = place = (first[:2] + last[2:]) if first else None
            span = Span(self.file, *place) if place else Span(self.file, 1, 1, 1, 1)
            handler = handlers.get(node.data)
            if handler is None:
                handler = handlers[node.data] = getattr(self, node.data)
            done[id(node)] = handler(span, kids)
        return done[id(tree)]

    def atom(self, span, kids):  # "(" expr ")"
        return kids[0]

    dim_atom = atom

    # -- leaves
    def _name(self, tok: Token) -> str:
        return str(tok)

    def _int(self, tok: Token) -> int:
        if len(tok) > 19 or int(tok) > INT_LIMIT:
            raise error(
                "E-VALUE",
                "integer literal does not fit in 64 bits",
                _token_span(self.file, tok),
                "too large",
            )
        return int(tok)

    @staticmethod
    def _string(tok: Token) -> str:
        return tok[1:-1].replace('\\"', '"').replace("\\\\", "\\")

    # -- declarations
    def start(self, span, kids):
        return ast.Module(span, self.file, tuple(kids))

    def const_decl(self, span, kids):
        name, value = kids
        return ast.Const(span, ast.Name(_token_span(self.file, name), str(name)), value)

    def import_all(self, span, kids):
        path, alias = (*kids, None)[:2]
        return ast.Import(
            span,
            self._string(path),
            _token_span(self.file, path),
            str(alias) if alias is not None else None,
            None,
        )

    def import_from(self, span, kids):
        path, *names = kids
        return ast.Import(
            span, self._string(path), _token_span(self.file, path), None, tuple(names)
        )

    def import_name(self, span, kids):
        name, alias = (*kids, None)[:2]
        return ast.ImportName(span, str(name), str(alias) if alias is not None else None)

    def model_decl(self, span, kids):
        name, *rest = kids
        hypers = tuple(k for k in rest if isinstance(k, ast.Hyper))
        members = tuple(k for k in rest if isinstance(k, ast.LayerDecl | ast.Forward))
        return ast.Model(span, ast.Name(_token_span(self.file, name), str(name)), hypers, members)

    def train_decl(self, span, kids):
        word, name, *members = kids
        if str(word) != "train":
            raise _not_a_declaration(word, self.file)
        return ast.Train(
            span,
            ast.Name(_token_span(self.file, name), str(name)),
            tuple(m for m in members if isinstance(m, ast.TrainSetting)),
            tuple(m for m in members if isinstance(m, ast.TrainFunction)),
        )

    def train_setting(self, span, kids):
        name, value = kids
        return ast.TrainSetting(span, ast.Name(_token_span(self.file, name), str(name)), value)

    def train_function(self, span, kids):
        name, *rest = kids
        forward = self.forward_decl(span, rest)
        return ast.TrainFunction(span, ast.Name(_token_span(self.file, name), str(name)), forward)

    def hyper(self, span, kids):
        name, type_, default = (*kids, None)[:3]
        _unnamed(type_)
        return ast.Hyper(span, str(name), type_, default)

    def layer_decl(self, span, kids):
        name, value = kids
        return ast.LayerDecl(span, ast.Name(_token_span(self.file, name), str(name)), value)

    def forward_decl(self, span, kids):
        *head, body = kids
        args = tuple(a for a in head if isinstance(a, ast.Arg))
        returns = next((t for t in head if not isinstance(t, ast.Arg)), None)
        for item in returns.items if isinstance(returns, ast.TupleTypeExpr) else ():
            _unnamed(item)
        return ast.Forward(span, args, returns, body)

    def arg(self, span, kids):
        name, type_, default = (*kids, None, None)[:3]
        _unnamed(type_)
        return ast.Arg(span, str(name), type_, default)

    # -- statements
    def block(self, span, kids):
        return tuple(kids)

    def assign(self, span, kids):
        *targets, value = kids
        return ast.Assign(span, tuple(targets), value)

    def target(self, span, kids):
        return ast.Name(span, str(kids[0]))

    def annotated(self, span, kids):
        name, type_, value = kids
        _unnamed(type_)
        return ast.Annotated(span, ast.Name(_token_span(self.file, name), str(name)), type_, value)

    def return_stmt(self, span, kids):
        return ast.Return(span, tuple(k for k in kids if k is not None))

    def for_stmt(self, span, kids):
        var, iterable, body = kids
        return ast.For(span, ast.Name(_token_span(self.file, var), str(var)), iterable, body)

    def if_stmt(self, span, kids):
        cond, body, orelse = (*kids, None)[:3]
        if isinstance(orelse, ast.If):
            orelse = (orelse,)
        return ast.If(span, cond, body, orelse or ())

    # -- types
    def named_type(self, span, kids):
        return ast.NamedType(span, str(kids[0]))

    def tensor_type(self, span, kids):
        dtype, *dims = kids
        return ast.TensorTypeExpr(span, str(dtype), tuple(d for d in dims if d is not None))

    def named_item(self, span, kids):
        return _NamedItem(span, str(kids[0]), kids[1])

    def tuple_type(self, span, kids):
        named = [k for k in kids if isinstance(k, _NamedItem)]
        if len(kids) == 1 and not named:
            raise error(
                "E-SYNTAX", "a tuple type has two or more items", span, "one item", ["(int, int)"]
            )
        if named and len(named) != len(kids):
            raise error(
                "E-SYNTAX",
                "name every output or none",
                span,
                "some outputs unnamed",
                ["-> (logits: f32[B, C], features: f32[B, D])"],
            )
        names = tuple(k.name for k in named)
        for i, k in enumerate(named):
            if k.name in names[:i]:
                raise error("E-SYNTAX", f"output `{k.name}` is named twice", k.span, "repeated")
            if k.name.startswith("_") or keyword.iskeyword(k.name):
                raise error(
                    "E-SYNTAX",
                    f"output name `{k.name}` is a Python keyword or starts with `_`",
                    k.span,
                    "not a field name",
                    ["output names are PyTorch NamedTuple fields: plain identifiers"],
                )
        items = tuple(k.type for k in named) if named else tuple(kids)
        return ast.TupleTypeExpr(span, items, names)

    def dim_int(self, span, kids):
        return ast.DimInt(span, self._int(kids[0]))

    def dim_name(self, span, kids):
        return ast.DimName(span, str(kids[0]))

    def dim_any(self, span, kids):
        return ast.DimAny(span)

    def dim_index(self, span, kids):
        name, index = kids
        return ast.DimIndex(span, str(name), self._int(index))

    def dim_call(self, span, kids):
        func, *args = kids
        return ast.DimCall(span, str(func), tuple(args))

    def dim_binary(self, span, kids):
        left, op, right = kids
        return ast.DimBinary(span, str(op), left, right)

    # -- expressions
    def name(self, span, kids):
        return ast.Name(span, str(kids[0]))

    def int_lit(self, span, kids):
        return ast.Literal(span, self._int(kids[0]))

    def float_lit(self, span, kids):
        value = float(kids[0])
        if value == float("inf"):
            raise error("E-VALUE", "number literal is out of range", span, "too large")
        return ast.Literal(span, value)

    def str_lit(self, span, kids):
        return ast.Literal(span, self._string(kids[0]))

    def fstr_lit(self, span, kids):
        tok = kids[0]
        body, parts, start = tok[2:-1], [], 0
        while start < len(body):
            open_ = body.find("{", start)
            close = body.find("}", start)
            if close != -1 and (open_ == -1 or close < open_) or open_ != -1 and close == -1:
                at = close if open_ == -1 or -1 < close < open_ else open_
                col = tok.column + 2 + at
                raise error(
                    "E-SYNTAX",
                    "unmatched brace in an f-string",
                    Span(self.file, tok.line, col, tok.line, col + 1),
                    "unmatched",
                    ["an f-string's expressions are written in `{` `}`"],
                )
            text = body[start:] if open_ == -1 else body[start:open_]
            if text and not QUOTED_NAME.fullmatch(text):
                col = tok.column + 2 + start
                raise error(
                    "E-SYNTAX",
                    "an f-string's text holds letters, digits, `_` and `-`",
                    Span(self.file, tok.line, col, tok.line, col + len(text)),
                    "not part of a name",
                    ['an f-string names a child of a Sequential: `f"denselayer{i + 1}"`'],
                )
            if text:
                parts.append(text)
            if open_ == -1:
                break
            column = tok.column + 3 + open_
            parts.append(_fstring_part(body[open_ + 1 : close], self.file, tok.line, column))
            start = close + 1
        return ast.FString(span, tuple(parts))

    def true_lit(self, span, kids):
        return ast.Literal(span, True)

    def false_lit(self, span, kids):
        return ast.Literal(span, False)

    def none_lit(self, span, kids):
        return ast.Literal(span, None)

    def tuple_lit(self, span, kids):
        return ast.TupleExpr(span, tuple(k for k in kids if k is not None))

    def list_lit(self, span, kids):
        return ast.ListExpr(span, tuple(k for k in kids if k is not None))

    def conditional(self, span, kids):
        then, cond, orelse = kids
        return ast.Conditional(span, cond, then, orelse)

    def or_op(self, span, kids):
        return ast.BoolOp(span, "or", kids[0], kids[1])

    def and_op(self, span, kids):
        return ast.BoolOp(span, "and", kids[0], kids[1])

    def not_op(self, span, kids):
        return ast.Unary(span, "not", kids[0])

    def binary(self, span, kids):
        left, op, right = kids
        return ast.Binary(span, str(op), left, right)

    def is_op(self, span, kids):
        return ast.Binary(span, "is", kids[0], kids[1])

    def is_not_op(self, span, kids):
        return ast.Binary(span, "is not", kids[0], kids[1])

    def pow_op(self, span, kids):
        return ast.Binary(span, "**", kids[0], kids[1])

    def unary_op(self, span, kids):
        return ast.Unary(span, str(kids[0]), kids[1])

    def pipe_op(self, span, kids):
        return ast.Pipe(span, kids[0], kids[1])

    def call(self, span, kids):
        func, args = (*kids, [])[:2]
        if isinstance(args, ast.Generator | ast.NamedSteps):
            return ast.Call(span, func, (args,), ())
        positional = tuple(a for a in args if not isinstance(a, ast.Keyword))
        keywords = tuple(a for a in args if isinstance(a, ast.Keyword))
        return ast.Call(span, func, positional, keywords)

    def call_args(self, span, kids):
        return [k for k in kids if k is not None]

    def generator(self, span, kids):
        element, var, iterable = kids
        return ast.Generator(span, element, str(var), iterable)

    def named_generator(self, span, kids):
        key, element, var, iterable = kids
        return ast.Generator(span, element, str(var), iterable, key)

    def named_step(self, span, kids):
        return tuple(kids)

    def named_steps(self, span, kids):
        return ast.NamedSteps(span, tuple(k for k, _ in kids), tuple(v for _, v in kids))

    def keyword(self, span, kids):
        name, value = kids
        return ast.Keyword(span, str(name), value)

    def index(self, span, kids):
        value, *items = kids
        return ast.Index(span, value, tuple(items))

    def slice(self, span, kids):
        parts: list = [None]
        for k in kids:  # colons separate start, stop and step
            if isinstance(k, Token):
                parts.append(None)
            else:
                parts[-1] = k
        start, stop, step = (*parts, None, None)[:3]
        return ast.Slice(span, start, stop, step)

    def attribute(self, span, kids):
        value, name = kids
        return ast.Attribute(span, value, str(name))


sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * MAX_DEPTH + 1000))

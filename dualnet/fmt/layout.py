"""The lark tree of a .dnet file (every token kept) and its comments → a document in the
canonical layout (docs/formatting.md).

Comments are not in the tree (the grammar ignores them): they are found in the source text
and attached by position. A comment after code on its line trails the last token before it,
and is written after the outermost node that ends with that token; a comment on a line of
its own leads the next token, and is written on its own line before the outermost node that
starts with it (or before the closing bracket or brace it precedes)."""

from __future__ import annotations

import bisect
import re

from lark import Token, Tree

from dualnet.fmt.doc import (
    BREAK,
    HARD,
    LINE,
    SOFT,
    Bracket,
    Choice,
    Comment,
    Concat,
    Doc,
    Fill,
    Group,
    IfBreak,
    Indent,
)

# Strings and quoted names first, so that a `#` inside them starts no comment.
_COMMENTS = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`\n]*`|#[^\n]*')
_SKIPPED = frozenset({"_NL", "SEMICOLON"})
_DECLARATIONS = frozenset({"model_decl", "train_decl"})
# Nodes written without spaces between their parts.
_TIGHT = frozenset({"keyword", "slice", "attribute", "unary_op", "dim_index"})
_NO_SPACE_BEFORE = frozenset({",", ":"})
# Statements ending in a value, which may go between parentheses (`Choice`).
_VALUES = frozenset(
    {"assign", "annotated", "layer_decl", "train_setting", "const_decl", "return_stmt"}
)


_LEVELS = {"+": "+", "-": "+", "*": "*", "/": "*", "//": "*", "%": "*", "@": "*"}
_BREAKING = frozenset({"+", "and", "or"})  # chains broken inside brackets (not `*`, `==`)


def _level(node: Tree) -> tuple[str, str] | None:
    """A binary node's kind and precedence (`a + b` and `a - b` chain; `a * b` does not
    with them); None for other nodes."""
    if node.data not in ("binary", "or_op", "and_op", "dim_binary") or len(node.children) != 3:
        return None
    op = str(node.children[1])
    return node.data, _LEVELS.get(op, "==" if node.data == "binary" else op)


class Layout:
    """One file's tree and comments, laid out by `document()`."""

    def __init__(self, text: str, tree: Tree):
        self.text = text
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self.blanks = [0]  # blank lines among the first n lines
        for line in text.split("\n"):
            self.blanks.append(self.blanks[-1] + (not line.strip()))
        self.tokens: list[Token] = []
        self.first: dict[int, Token] = {}  # id(node) → its first and last tokens
        self.last: dict[int, Token] = {}
        self._index(tree)
        self.tree = tree
        self.leading: dict[int, list[tuple[int, str]]] = {}  # id(token) → (line, text)
        self.trailing: dict[int, Comment] = {}
        self.end_comments: list[tuple[int, str]] = []
        self.claimed: set[int] = set()  # tokens whose comments a node has taken
        self.depth = 0  # brackets around the node being laid out
        self.items: set[int] = set()  # the nodes that are a whole item between brackets
        self._attach_comments()

    # ------------------------------------------------------------ indexing

    def _index(self, tree: Tree) -> None:
        order: list[Tree] = []
        stack: list[Tree] = [tree]
        while stack:
            node = stack.pop()
            order.append(node)
            for c in reversed(node.children):
                if isinstance(c, Tree):
                    stack.append(c)
                elif c.type not in _SKIPPED:
                    self.tokens.append(c)
        self.tokens.sort(key=lambda t: t.start_pos)
        for node in reversed(order):
            kids = [c for c in node.children if isinstance(c, Tree) or c.type not in _SKIPPED]
            if not kids:
                continue
            a, b = kids[0], kids[-1]
            self.first[id(node)] = self.first.get(id(a)) if isinstance(a, Tree) else a
            self.last[id(node)] = self.last.get(id(b)) if isinstance(b, Tree) else b

    def _attach_comments(self) -> None:
        starts = [t.start_pos for t in self.tokens]
        for m in _COMMENTS.finditer(self.text):
            if not m.group().startswith("#"):
                continue
            line = self.line_of(m.start())
            comment = m.group().rstrip()
            i = bisect.bisect_left(starts, m.start())
            before = self.tokens[i - 1] if i else None
            if before is not None and before.end_line == line:
                column = m.start() - self.line_starts[line - 1]
                self.trailing[id(before)] = Comment(comment, column)
            elif i < len(self.tokens):
                self.leading.setdefault(id(self.tokens[i]), []).append((line, comment))
            else:
                self.end_comments.append((line, comment))

    def _line(self, item, end: bool = False) -> int:
        """The source line a node or token starts (or with `end`, ends) on."""
        if isinstance(item, Tree):
            item = (self.last if end else self.first)[id(item)]
        return item.end_line if end else item.line

    def line_of(self, pos: int) -> int:
        return bisect.bisect_right(self.line_starts, pos)

    def _blank_between(self, after: int, before: int) -> bool:
        """Whether a line strictly between source lines `after` and `before` is blank."""
        return before - after > 1 and self.blanks[before - 1] > self.blanks[after]

    # ------------------------------------------------------------ statements

    def document(self) -> Doc:
        """The whole file."""
        decls = [c for c in self.tree.children if isinstance(c, Tree)]
        parts = self._statements(decls, None, top=True)
        if self.end_comments:
            last_line = self.last[id(decls[-1])].end_line if decls else 0
            parts += self._comment_lines(self.end_comments, last_line, bool(decls))
        return Concat([*parts, HARD] if parts else [])

    def _statements(self, nodes: list[Tree], close: Token | None, top: bool = False) -> list:
        """Statements one a line, their own-line comments before them, blank lines kept
        (one at most; one always around a top-level model or train declaration)."""
        parts: list = []
        end = None  # the source line the previous item ended on
        prev_kind = None
        for node in nodes:
            first = self.first[id(node)]
            comments = self.leading.pop(id(first), [])
            force = (
                top
                and prev_kind is not None
                and (prev_kind in _DECLARATIONS or node.data in _DECLARATIONS)
            )
            start = comments[0][0] if comments else first.line
            if end is not None:
                parts.append(HARD)
                if force or self._blank_between(end, start):
                    parts.append(HARD)
            if comments:
                parts += self._comment_lines(comments, start, False)
                parts.append(HARD)
                if self._blank_between(comments[-1][0], first.line):
                    parts.append(HARD)
            parts.append(self.node(node))
            end, prev_kind = self.last[id(node)].end_line, node.data
        if close is not None and id(close) in self.leading:
            comments = self.leading.pop(id(close))
            parts += self._comment_lines(comments, end, end is not None)
        return parts

    def _comment_lines(self, comments: list[tuple[int, str]], end: int | None, after: bool):
        """Own-line comments, blank lines between them kept; after an item when `after`."""
        parts: list = []
        for line, text in comments:
            if after:
                parts.append(HARD)
                if end is not None and self._blank_between(end, line):
                    parts.append(HARD)
            parts.append(text)
            end, after = line, True
        return parts

    def _braced(self, kids: list) -> list:
        """`{`, the statements (or members) indented, `}`: kids from `{` to `}`."""
        open_, close = kids[0], kids[-1]
        body = [k for k in kids[1:-1] if isinstance(k, Tree)]
        inner = self._statements(body, close)
        head = self.token(open_)
        if not inner:
            return [head, self.token(close)]
        return [head, Indent([HARD, *inner]), HARD, self.token(close)]

    # ------------------------------------------------------------ nodes

    def node(self, node: Tree) -> Doc:
        """A node's document, with the comments it owns."""
        first, last = self.first.get(id(node)), self.last.get(id(node))
        before = None
        if first is not None and id(first) in self.leading:
            before = self.leading.pop(id(first))
        after = None
        if last is not None and id(last) not in self.claimed and id(last) in self.trailing:
            self.claimed.add(id(last))
            after = self.trailing[id(last)]
        doc = getattr(self, "n_" + node.data, self._inline)(node)
        if before is None and after is None:
            return doc
        parts = [p for line, text in before or () for p in (text, HARD)]
        return Concat([*parts, doc, *([after] if after else [])])

    def token(self, tok: Token, text: Doc | str | None = None) -> Doc | str:
        """A token as written in the source (a quoted name keeps its backticks), or `text`
        in its place, with the comments it owns."""
        text = self.text[tok.start_pos : tok.end_pos] if text is None else text
        before = self.leading.pop(id(tok), None)
        after = None
        if id(tok) not in self.claimed and id(tok) in self.trailing:
            self.claimed.add(id(tok))
            after = self.trailing[id(tok)]
        if before is None and after is None:
            return text
        parts = [p for line, c in before or () for p in (c, HARD)]
        return Concat([*parts, text, *([after] if after else [])])

    def _owns_comment(self, tok: Token) -> bool:
        """Whether `tok` would write a comment itself (one not taken by a node)."""
        return id(tok) in self.leading or (id(tok) in self.trailing and id(tok) not in self.claimed)

    def part(self, item) -> Doc | str:
        return self.node(item) if isinstance(item, Tree) else self.token(item)

    def _inline(self, node: Tree) -> Doc:
        """Parts separated by one space (none before `,` and `:`; none at all in TIGHT)."""
        kids = [c for c in node.children if isinstance(c, Tree) or c.type not in _SKIPPED]
        tight = node.data in _TIGHT or (
            node.data == "arg" and not any(isinstance(k, Token) and k == ":" for k in kids)
        )
        parts: list = []
        for i, k in enumerate(kids):
            if i and not tight and not (isinstance(k, Token) and k in _NO_SPACE_BEFORE):
                parts.append(" ")
            last = i == len(kids) - 1 and (node.data != "return_stmt" or len(kids) == 2)
            parts.append(self.value(k) if last and node.data in _VALUES else self.part(k))
        return Concat(parts)

    def value(self, node: Tree) -> Doc:
        """A statement's value, between parentheses on lines of their own when that is
        narrower (`Choice`); parentheses around the whole value in the source are dropped
        when it fits without them (unless comments sit on them)."""
        inner = node
        while isinstance(inner, Tree) and inner.data == "atom":
            lpar, within, rpar = inner.children
            if any(self._owns_comment(t) for t in (lpar, rpar)):
                break
            inner = within
        saved = dict(self.leading), set(self.claimed)
        self.depth += 1
        self.items.add(id(inner))
        parens = Concat(["(", Indent([HARD, self.part(inner)]), HARD, ")"])
        self.depth -= 1
        self.leading, self.claimed = saved
        return Choice(self.part(inner), parens)

    def _chain(self, node: Tree) -> Doc:
        """`a + b - c`: a left-nested chain of operators of one precedence, without
        recursion; inside brackets, a `+`/`-`, `and` or `or` chain (or any chain that is a
        whole item) is broken before each operator when too long."""
        operands = []
        breaks = self.depth and (_level(node)[1] in _BREAKING or id(node) in self.items)
        while True:
            left, op, right = node.children
            operands.append((op, right))
            if not (isinstance(left, Tree) and _level(left) == _level(node)):
                operands.append((None, left))
                break
            node = left
        parts: list = []
        gap = LINE if breaks else " "
        for op, operand in reversed(operands):
            if op is not None:
                parts += [gap, self.token(op), " "]
            parts.append(self.part(operand))
        return Group(parts)

    n_binary = n_or_op = n_and_op = n_dim_binary = _chain

    def n_pipe_op(self, node: Tree) -> Doc:
        """`x |> f |> g`; inside brackets, broken before each `|>` when too long."""
        steps = []
        while isinstance(node, Tree) and node.data == "pipe_op":
            value, op, step = node.children
            steps.append((op, step))
            node = value
        parts: list = []
        for op, step in reversed(steps):
            parts += [LINE if self.depth else " ", self.token(op), " ", self.part(step)]
        return Group([self.part(node), Indent(parts)])

    def n_conditional(self, node: Tree) -> Doc:
        """`a if c else b if d else e`; inside brackets, broken before each `else`."""
        parts: list = []
        while isinstance(node, Tree) and node.data == "conditional":
            then, if_, cond, else_, node = node.children
            parts += [self.part(then), " ", self.token(if_), " ", self.part(cond)]
            parts += [LINE if self.depth else " ", self.token(else_), " "]
        return Group([*parts, self.part(node)])

    def n_model_decl(self, node: Tree) -> Doc:
        kids = node.children
        lpar = kids.index(next(k for k in kids if isinstance(k, Token) and k == "("))
        rpar = kids.index(next(k for k in kids if isinstance(k, Token) and k == ")"))
        head = [self.token(kids[0]), " ", self.token(kids[1])]
        header = self.bracket(
            [kids[lpar]], kids[lpar + 1 : rpar], [kids[rpar]], trailing=True, rest_flat=True
        )
        return Concat([*head, header, " ", *self._braced(kids[rpar + 1 :])])

    def n_train_decl(self, node: Tree) -> Doc:
        kids = node.children
        head = [self.token(kids[0]), " ", self.token(kids[1]), " "]
        return Concat([*head, *self._braced(kids[2:])])

    def n_forward_decl(self, node: Tree) -> Doc:
        kids = node.children
        rpar = max(i for i, k in enumerate(kids) if isinstance(k, Token) and k == ")")
        header = self.bracket([kids[1]], kids[2:rpar], [kids[rpar]], trailing=True, rest_flat=True)
        parts = [self.token(kids[0]), header]
        for k in kids[rpar + 1 : -1]:
            parts += [" ", self.part(k)]
        return Concat([*parts, " ", self.node(kids[-1])])

    n_train_function = n_forward_decl

    def n_block(self, node: Tree) -> Doc:
        return Concat(self._braced(node.children))

    def n_call(self, node: Tree) -> Doc:
        callee, lpar, *args, rpar = node.children
        first = self.part(callee)
        if not args:  # `f()`
            return Concat([first, self.token(lpar), self.token(rpar)])
        args = args[0]
        kind = args.data
        if kind == "call_args":
            return Concat([first, self.bracket([lpar], args.children, [rpar], trailing=True)])
        inner = args.children
        if kind == "generator":
            return Concat([first, self.bracket([lpar], [args], [rpar], single=self.generator)])
        # `({...})`: the braces hug the parentheses
        body = inner[1:-1]
        if kind == "named_generator":
            return Concat(
                [
                    first,
                    self.bracket(
                        [lpar, inner[0]], [args], [inner[-1], rpar], single=self.named_generator
                    ),
                ]
            )
        return Concat(
            [first, self.bracket([lpar, inner[0]], body, [inner[-1], rpar], trailing=True)]
        )

    def generator(self, node: Tree) -> Doc:
        """`element for name in iterable`, broken before `for` when too long."""
        element, for_, name, in_, iterable = node.children
        loop = [self.token(for_), " ", self.token(name), " ", self.token(in_), " "]
        return Group([self.part(element), LINE, *loop, self.part(iterable)])

    def named_generator(self, node: Tree) -> Doc:
        key, colon, element, for_, name, in_, iterable = node.children[1:-1]
        loop = [self.token(for_), " ", self.token(name), " ", self.token(in_), " "]
        head = [self.part(key), self.token(colon), " ", self.part(element)]
        return Group([*head, LINE, *loop, self.part(iterable)])

    def n_index(self, node: Tree) -> Doc:
        value, lsqb, *rest = node.children
        return Concat([self.part(value), self.bracket([lsqb], rest[:-1], [rest[-1]])])

    def n_tuple_lit(self, node: Tree) -> Doc:
        kids = node.children
        return self.bracket([kids[0]], kids[1:-1], [kids[-1]], trailing=True, one_comma=True)

    def n_list_lit(self, node: Tree) -> Doc:
        kids = node.children
        return self.bracket([kids[0]], kids[1:-1], [kids[-1]], trailing=True)

    def n_tuple_type(self, node: Tree) -> Doc:
        kids = node.children
        return self.bracket([kids[0]], kids[1:-1], [kids[-1]], trailing=True, one_comma=True)

    def n_atom(self, node: Tree) -> Doc:
        kids = node.children
        return self.bracket([kids[0]], kids[1:-1], [kids[-1]])

    n_dim_atom = n_atom

    def n_tensor_type(self, node: Tree) -> Doc:
        name, lsqb, *rest = node.children
        return Concat([self.token(name), self.bracket([lsqb], rest[:-1], [rest[-1]])])

    n_dim_call = n_tensor_type

    # ------------------------------------------------------------ brackets

    def bracket(
        self,
        opens: list[Token],
        between: list,
        closes: list[Token],
        *,
        trailing: bool = False,
        one_comma: bool = False,
        rest_flat: bool = False,
        single=None,
    ) -> Doc:
        """Items between brackets: flat if they fit; else on one indented line of their own;
        else one a line with a trailing comma (where the grammar allows one). A trailing
        comma in the source keeps them one a line, as in black and ruff (not a one-item
        tuple's, which it needs)."""
        head = Concat([self.token(t) for t in opens])
        groups: list[list] = [[]]  # the items' parts
        commas: list[Token] = []
        for k in between:
            if isinstance(k, Token) and k == ",":
                commas.append(k)
                groups.append([])
            elif isinstance(k, Tree) or k.type not in _SKIPPED:
                groups[-1].append(k)
        source_trailing = bool(commas) and not groups[-1]
        if source_trailing:
            groups.pop()
        close_comments = []
        for t in closes:
            for _, text in self.leading.pop(id(t), ()):
                close_comments += [HARD, text]
        tail = Concat([self.token(t) for t in closes])
        self.depth += 1  # a line may break inside brackets
        self.items.update(id(g[0]) for g in groups if len(g) == 1)
        items = [single(g[0]) if single else Concat([self.part(k) for k in g]) for g in groups]
        seps = [self.token(c) for c in commas[: len(groups) - 1]]
        self.depth -= 1
        if not groups[0]:
            return Group([head, Indent(close_comments), SOFT, tail])
        needs_comma = one_comma and len(items) == 1 and source_trailing
        magic = source_trailing and not needs_comma
        body: list = []
        if magic:  # the source's line breaks between items kept, as many a line as fit
            run: list = [0]
            for i in range(1, len(items)):
                if self._line(groups[i][0]) > self._line(groups[i - 1][-1], end=True):
                    body += [
                        Fill([items[j] for j in run], [seps[j] for j in run[:-1]]),
                        seps[i - 1],
                        HARD,
                    ]
                    run = []
                run.append(i)
            body.append(Fill([items[j] for j in run], [seps[j] for j in run[:-1]]))
        else:
            for i, item in enumerate(items[:-1]):
                body += [item, seps[i], LINE]
            body.append(items[-1])
        if needs_comma:
            body.append(self.token(commas[0]))
            items = [Concat(body)]
        elif source_trailing:
            body.append(self.token(commas[-1], IfBreak(",") if trailing else ""))
        elif trailing:
            body.append(IfBreak(","))
        inner = Group([BREAK, *body] if magic else body)
        hanging = Group([head, Indent([SOFT, inner, *close_comments]), SOFT, tail])
        fill = Fill(items, seps[: len(items) - 1], rest_flat)
        hangs = magic or bool(close_comments) or head.hard  # or a comment after the opening
        return Bracket(hanging, head, fill, tail, hangs, rest_flat)

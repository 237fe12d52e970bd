"""The VS Code extension's TextMate grammar (editors/vscode/syntaxes/dnet.tmLanguage.json):
valid JSON whose regexes compile (the subset Python's `re` shares with Oniguruma), keywords
as the lark grammar reserves them, op names as the registry has them, and the scopes a
small TextMate tokeniser gives the zoo's tokens as lark's lexer reads them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from lark import Lark

from dualnet.ir.types import DTYPES
from dualnet.ops import REGISTRY
from dualnet.semantics.scope import BUILTINS
from dualnet.syntax.parser import grammar_text, keywords

ROOT = Path(__file__).resolve().parents[1]
GRAMMAR = json.loads((ROOT / "editors/vscode/syntaxes/dnet.tmLanguage.json").read_text())
ZOO = sorted((ROOT / "models").glob("*.dnet"))
LEXER = Lark(grammar_text(), parser="lalr", lexer="basic")


def rules() -> list[dict]:
    """The top-level patterns in order, includes resolved."""
    out = []
    todo = list(GRAMMAR["patterns"])
    while todo:
        rule = todo.pop(0)
        if "include" in rule:
            rule = GRAMMAR["repository"][rule["include"].removeprefix("#")]
        if "patterns" in rule:
            todo[:0] = rule["patterns"]
        else:
            out.append(rule)
    return out


RULES = [(re.compile(r["match"]), r) for r in rules()]


def tokenise(line: str) -> list[tuple[int, int, str]]:
    """(start, end, scope) per token: at each position the earliest match, the first rule
    on a tie, as TextMate does (match rules only: this grammar has no begin/end)."""
    out, pos = [], 0
    while pos < len(line):
        found = [
            (m.start(), i, m) for i, (rx, _) in enumerate(RULES) if (m := rx.search(line, pos))
        ]
        if not found:
            break
        _, i, m = min(found, key=lambda f: (f[0], f[1]))
        rule = RULES[i][1]
        if "captures" in rule:
            for group, capture in rule["captures"].items():
                out.append((m.start(int(group)), m.end(int(group)), capture["name"]))
        else:
            out.append((m.start(), m.end(), rule["name"]))
        pos = max(m.end(), pos + 1)
    return out


def words(name: str) -> set[str]:
    """The alternatives of a repository rule's `\\b(?:a|b|c)\\b`."""
    pattern = GRAMMAR["repository"][name]["match"]
    return set(re.search(r"\(\?:([\w|]+)\)", pattern).group(1).split("|"))


def test_valid_json_and_every_regex_compiles():
    assert GRAMMAR["scopeName"] == "source.dnet" and GRAMMAR["fileTypes"] == ["dnet"]
    assert len(RULES) == len(rules()) > 10
    for _, rule in RULES:  # Python-only syntax Oniguruma lacks
        assert "(?P" not in rule["match"] and "\\Z" not in rule["match"]


def test_keywords_are_the_lark_grammars():
    mine = set()
    for name in ("declaration-keywords", "control-keywords", "logical-keywords", "constants"):
        mine |= words(name)
    assert mine == set(keywords())
    assert "train" in GRAMMAR["repository"]["train-declaration"]["match"]  # a name elsewhere


def test_op_names_are_the_registrys():
    assert words("layers") == {n for n, op in REGISTRY.items() if op.is_layer}
    assert words("functions") == {n for n, op in REGISTRY.items() if not op.is_layer}
    assert words("builtins") == set(BUILTINS) - set(REGISTRY)
    assert words("dtypes") == set(DTYPES)


EXPECTED = {  # lark's token type → the scope the grammar gives it
    "INT": "constant.numeric.integer.dnet",
    "FLOAT": "constant.numeric.float.dnet",
    "STRING": "string.quoted.double.dnet",
    "FSTRING": "string.interpolated.dnet",
    "COMMENT": "comment.line.number-sign.dnet",
}


def expected_scope(token, line: str) -> str | None:
    if token.type in EXPECTED:
        return EXPECTED[token.type]
    if token.value in keywords():
        return "keyword" if token.value not in ("true", "false", "none") else "constant.language"
    after = line[token.end_column - 1 :]
    if token.type != "NAME" or re.match(r"\s*=[^=]", after) or line[: token.column - 1][-1:] == ".":
        return None  # a keyword argument's or attribute's name
    if token.value in DTYPES:
        return "storage.type.dtype.dnet"
    if token.value in REGISTRY:
        return "support.class.layer.dnet" if REGISTRY[token.value].is_layer else "support.function"
    return None


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.name)
def test_zoo_tokens_get_their_scopes(path):
    text = path.read_text()
    lines = text.split("\n")
    tokens = {i: tokenise(line) for i, line in enumerate(lines)}
    seen = set()
    for token in LEXER.lex(text, dont_ignore=True):
        line = lines[token.line - 1]
        want = expected_scope(token, line)
        if want is None:
            continue
        start = token.column - 1
        got = [s for a, b, s in tokens[token.line - 1] if a <= start < b]
        assert got and got[0].startswith(want), (path.name, token.line, token.value, got)
        if token.type in EXPECTED:  # the whole token, no more
            [(a, b)] = [(a, b) for a, b, s in tokens[token.line - 1] if a <= start < b]
            assert (a, b) == (start, token.end_column - 1), (path.name, token.line, token.value)
        seen.add(want.split(".")[0])
    assert {"comment", "keyword", "support"} <= seen


def test_a_line_of_each_kind():
    line = 'model Net(width: int = 64) { x: f32[B, 3] = relu(x) + 1.5  # "no string"'
    scopes = {line[a:b]: s for a, b, s in tokenise(line)}
    assert scopes["model"] == "keyword.declaration.dnet"
    assert scopes["Net"] == "entity.name.type.model.dnet"
    assert scopes["int"] == "support.type.dnet"
    assert scopes["64"] == "constant.numeric.integer.dnet"
    assert scopes["f32"] == "storage.type.dtype.dnet"
    assert scopes["relu"] == "support.function.op.dnet"
    assert scopes["1.5"] == "constant.numeric.float.dnet"
    assert scopes['# "no string"'] == "comment.line.number-sign.dnet"
    scopes = {line[a:b]: s for line in ["clamp(x, min=0.0)"] for a, b, s in tokenise(line)}
    assert scopes["clamp"] == "support.function.op.dnet"
    assert "min" not in scopes  # a keyword argument, not the op `min`


def test_the_extension_contributes_the_grammar():
    folder = ROOT / "editors/vscode"
    package = json.loads((folder / "package.json").read_text())
    [language] = package["contributes"]["languages"]
    [grammar] = package["contributes"]["grammars"]
    assert language["extensions"] == [".dnet"] and grammar["language"] == language["id"]
    assert grammar["scopeName"] == GRAMMAR["scopeName"]
    assert (folder / grammar["path"]).resolve() == folder / "syntaxes/dnet.tmLanguage.json"
    config = json.loads((folder / language["configuration"]).read_text())
    assert config["comments"]["lineComment"] == "#"
    assert package["main"] == "./extension.js" and (folder / "extension.js").is_file()

"""The line layout of generated code keeps its meaning: a split line is the same Python."""

from __future__ import annotations

import ast

import pytest

from dualnet.backends.common.line_layout import layout

LONG = "self.a_rather_long_attribute_name + self.another_rather_long_attribute_name + 1"


@pytest.mark.parametrize(
    "line",
    [
        f"y = f(x, (({LONG}, {LONG}),))",  # a one-tuple (found by the fuzzer: it lost its comma)
        f"y = f(x, ({LONG},))",
        f"y = f(x, [{LONG}, {LONG}, {LONG}])",
        f"return g({LONG}) if self.flag else h({LONG}, ({LONG},))",
    ],
)
def test_a_split_line_is_the_same_expression(line):
    lines = layout([line])
    assert len(lines) > 1
    body = "def f(self, x):\n" + "\n".join("    " + text for text in lines)
    original = "def f(self, x):\n    " + line
    assert ast.dump(ast.parse(body)) == ast.dump(ast.parse(original))

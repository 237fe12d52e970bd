"""Building one ONNX graph: unique value names, nodes named by the .dnet layer path that
produced them with the source line as doc_string, and initializers (arrays, made tensors
when the model is put together: `proto.make_model`).

The emitter sets `scope` (a layer path such as "layer1.0.conv1", or an op's value name) and
`doc` ("blocks.dnet:15") before lowering each IR node; every node and value the lowering adds
is named under that scope, so a graph reads like the .dnet model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dualnet.backends.onnx.proto import NodeProto, make_node
from dualnet.ir.dims import Dim


class GraphBuilder:
    def __init__(self, opset: int, float32_fallback: bool = True):
        self.opset = opset
        self.float32_fallback = float32_fallback  # see lowering._in_f32
        self.nodes: list[NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}  # name → array (C order)
        self.scope = ""
        self.doc = ""
        self._taken: set[str] = set()
        self._sizes: dict[Dim, str] = {}

    def fresh(self, hint: str) -> str:
        """A value or node name not used yet: `hint`, else `hint_1`, `hint_2`, ..."""
        name, n = hint, 0
        while name in self._taken:
            n += 1
            name = f"{hint}_{n}"
        self._taken.add(name)
        return name

    def reserve(self, name: str) -> str:
        """Claim an exact name (a graph input, an initializer with a state_dict name)."""
        if name in self._taken:
            raise ValueError(f"the name {name!r} is used twice")
        self._taken.add(name)
        return name

    def node(
        self, op_type: str, inputs: list[str | None], outputs: int = 1, domain: str = "", **attrs
    ) -> list[str]:
        """Add a node `op_type` on `inputs` ("" or None: an absent optional input) with
        attributes `attrs`; returns its output names (named under the scope). Trailing absent
        inputs are left out: ONNX Runtime fuses a Conv with the BatchNorm after it only when
        the Conv has no `""` bias."""
        base = f"{self.scope}/{op_type}" if self.scope else op_type
        names = [self.fresh(base if outputs == 1 else f"{base}:{i}") for i in range(outputs)]
        present = [x or "" for x in inputs]
        while present and not present[-1]:
            present.pop()
        node = make_node(
            op_type,
            present,
            names,
            name=self.fresh(f"node:{base}"),
            domain=domain or None,
            doc_string=self.doc or None,
            **{k: _plain(v) for k, v in attrs.items()},
        )
        self.nodes.append(node)
        return names

    def one(self, op_type: str, inputs: list[str | None], **attrs) -> str:
        """`node` for a node with one output: its name."""
        return self.node(op_type, inputs, 1, **attrs)[0]

    def producer(self, name: str) -> NodeProto | None:
        """The node computing value `name` (None for a graph input or an initializer)."""
        return next((n for n in reversed(self.nodes) if name in n.output), None)

    def constant_value(self, name: str) -> np.ndarray | None:
        """The array of initializer `name` (None if it is no initializer)."""
        return self.initializers.get(name)

    def initializer(self, name: str, array: np.ndarray) -> str:
        """An initializer named exactly `name` (a state_dict name)."""
        self.initializers[self.reserve(name)] = np.asarray(array, order="C")
        return name

    def constant(self, array, hint: str = "const") -> str:
        """A constant tensor (an initializer named under the scope)."""
        name = self.fresh(f"{self.scope}/{hint}" if self.scope else hint)
        self.initializers[name] = np.asarray(array, order="C")
        return name

    def ints(self, values, hint: str = "shape") -> str:
        """An int64 1-D constant (shapes, axes, pads)."""
        return self.constant(np.asarray(values, dtype=np.int64).reshape(-1), hint)

    def size(self, d: int | Dim, symbol: Callable[[str], str]) -> str:
        """An int64 [1] value holding size `d` at run time: an int, or a symbolic Dim computed
        from its symbols' values (`symbol(name)`: an int64 [1] value) with Mul, Add and Div
        (floor division of non-negative sizes). Each Dim is computed once per graph."""
        if isinstance(d, int):
            return self.ints([d], "size")
        if d not in self._sizes:
            terms = [self._term(mono, coeff, symbol) for mono, coeff in d.terms]
            total = terms[0]
            for term in terms[1:]:
                total = self.one("Add", [total, term])
            self._sizes[d] = total
        return self._sizes[d]

    def _term(self, mono: tuple, coeff: int, symbol: Callable[[str], str]) -> str:
        """coeff · Π atoms of one monomial (an atom: a symbol, or a floor division)."""
        factors = [
            symbol(a)
            if isinstance(a, str)
            else self.one("Div", [self.size(a.num, symbol), self.size(a.den, symbol)])
            for a in mono
        ]
        if coeff != 1 or not factors:
            factors.append(self.ints([coeff], "size"))
        product = factors[0]
        for factor in factors[1:]:
            product = self.one("Mul", [product, factor])
        return product


def _plain(value):
    """An attribute value as plain Python values: tuples as lists, and sizes (Tagged ints)
    and arguments the source wrote as expressions (Written) as the ints, floats and strings
    they hold."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    for kind in (str, float, int):
        if isinstance(value, kind) and not isinstance(value, bool):
            return kind(value)
    return value

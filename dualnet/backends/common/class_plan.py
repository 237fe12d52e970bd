"""Which model instances share one generated class.

A source backend writes one Python class per *class plan*: a model definition and the
instances it serves. Sharing is decided by what the writer writes, never assumed: the class
text is written once from each instance's own IR (its *unit*: an instance and one of its
forward graphs), and instances whose texts are identical share the class. Where they differ,
the plan is split into one class per distinct text, and every class is written again (a
parent's text names its children's classes), until nothing splits. A shared class is then
exactly the class each of its instances would get alone: correct for each by construction.

Instances with the same definition, hyperparameter values and input types have identical
IR, so each such *configuration* is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dualnet.ir.dims import Dim
from dualnet.ir.graph import Graph, ModelInstance


@dataclass(frozen=True, eq=False)
class Unit:
    """One instance and one of its forward graphs (None: the instance is never called)."""

    instance: ModelInstance
    graph: Graph | None


@dataclass(eq=False)
class ClassPlan:
    """One generated class: a model definition and the configurations it serves (each a list
    of instances with identical IR)."""

    decl: Any  # ast.Model
    configs: list[list[ModelInstance]]
    name: str = ""
    text: str = ""
    params: dict[str, str] = field(default_factory=dict)  # hyperparameter/dimension → name
    forward_args: dict[str, str] = field(default_factory=dict)  # argument → Python name
    required_dims: list[str] = field(default_factory=list)  # keyword-only inferred sizes

    @property
    def instances(self) -> list[ModelInstance]:
        return [inst for config in self.configs for inst in config]

    def units(self) -> list[Unit]:
        """The units the class is written from: each configuration's graphs."""
        out = []
        for config in self.configs:
            inst = config[0]
            out += [Unit(inst, g) for g in inst.graphs] or [Unit(inst, None)]
        return out


def configurations(entry: ModelInstance) -> tuple[list[Any], dict[int, list[list]]]:
    """Model definitions in children-first order (a definition after every definition any
    of its instances uses), and per definition (by id) its instances grouped by
    configuration, in first-seen order. Sequentials are not classes."""
    seen: dict[int, Any] = {}  # id(decl) → decl, first seen first
    uses: dict[int, dict[int, None]] = {}  # id(decl) → the definitions its instances use
    groups: dict[int, dict[Any, list[ModelInstance]]] = {}

    def visit(inst: ModelInstance, owner: Any) -> None:
        if inst.definition != "Sequential":
            if owner is not None:
                uses[id(owner)][id(inst.decl)] = None
            owner = inst.decl
            if id(owner) not in groups:
                groups[id(owner)], uses[id(owner)] = {}, {}
                seen[id(owner)] = owner
            groups[id(owner)].setdefault(_config_key(inst), []).append(inst)
        for child in inst.children.values():
            if isinstance(child, ModelInstance):
                visit(child, owner)

    visit(entry, None)
    decls: list[Any] = []
    done: set[int] = set()

    def place(key: int) -> None:
        if key in done:
            return
        done.add(key)  # before its uses: a recursive definition ends the walk
        for used in uses[key]:
            place(used)
        decls.append(seen[key])

    for key in seen:
        place(key)
    return decls, {k: list(v.values()) for k, v in groups.items()}


def _config_key(inst: ModelInstance) -> tuple:
    hyper = tuple((k, _plain(v)) for k, v in inst.hyper.items())
    graphs = tuple(
        tuple((v.type.dtype, tuple(_plain(d) for d in v.type.shape)) for v in g.inputs)
        for g in inst.graphs
    )
    return hyper, graphs, tuple(sorted(inst.call_dims))


def _plain(v) -> Any:
    """A value as a key: its type and value (1, 1.0 and True differ; tags do not matter)."""
    if isinstance(v, tuple | list):
        return (type(v).__name__, tuple(_plain(x) for x in v))
    if isinstance(v, Dim):
        return ("dim", str(v))
    if isinstance(v, bool) or v is None:
        return (type(v).__name__, v)
    if isinstance(v, int):
        return ("int", int(v))
    if isinstance(v, float):
        return ("float", repr(float(v)))
    return (type(v).__name__, str(v))


def recursive(decls: list[Any], groups: dict[int, list[list]]) -> bool:
    """Whether some definition contains an instance of itself (a class that names itself:
    its text depends on its own plan, so writing must be repeated until it settles)."""

    def contains(inst: ModelInstance, decl: Any) -> bool:
        return any(
            isinstance(c, ModelInstance) and (c.decl is decl or contains(c, decl))
            for c in inst.children.values()
        )

    return any(contains(config[0], decl) for decl in decls for config in groups[id(decl)])

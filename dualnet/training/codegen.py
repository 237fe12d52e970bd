"""What both frameworks' generated training files share: the roles of a `TrainSpec`'s models
(the trained model's inputs and outputs, the targets, the metrics' names), the loss and
metrics models emitted as a framework emits any model and merged into one file, and the
written file (`<stem>_<target>_train.py` beside the model's file)."""

from __future__ import annotations

import ast
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from dualnet.backends.common.escape import docstring
from dualnet.backends.common.python_class import fmt_literal
from dualnet.compiler import Program, emit
from dualnet.diagnostics import DualnetError, error
from dualnet.frontend import Summary
from dualnet.training.spec import TrainSpec
from dualnet.version import __version__

TARGETS = ("torch", "keras")


@dataclass(frozen=True)
class Roles:
    """The checked models of a spec and the names a training file uses: the model's forward
    inputs and outputs (`named_outputs`: named in its signature), the targets (the loss's
    arguments after the outputs) with their types, the metrics' names (empty without
    metrics; `named_metrics`: named in the signature)."""

    model: Summary
    loss: Summary
    metrics: Summary | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    named_outputs: bool
    targets: tuple[tuple[str, str], ...]
    metric_names: tuple[str, ...]
    named_metrics: bool


def roles(program: Program, spec: TrainSpec) -> Roles:
    """Check the spec's models in `program` and name their roles; E-TYPE when the loss or
    the metrics do not take the model's outputs and then the targets."""
    model = program.check(spec.model)
    plain = Program(program.path, program.include_dirs, program.max_params)  # no --hyper
    loss = plain.check(spec.loss)
    metrics = plain.check(spec.metrics) if spec.metrics else None
    outputs = tuple(model.graph.output_labels())
    n = len(outputs)
    targets = tuple((v.name, str(v.type)) for v in loss.graph.inputs[n:])
    for role in (loss, metrics):
        if role is None:
            continue
        args = role.graph.inputs
        if len(args) <= n or (role is metrics and [v.name for v in args[n:]] != _names(targets)):
            raise _bad_role(role, model, targets)
    if spec.targets and _names(spec.targets) != _names(targets):
        raise _bad_role(loss, model, spec.targets)
    if len(loss.graph.outputs) != 1 or loss.graph.outputs[0].type.shape:
        raise error(
            "E-TYPE",
            f"the loss `{spec.loss}` returns {', '.join(loss.output_types)}; a loss returns f32[]",
            loss.instance.span,
        )
    return Roles(
        model,
        loss,
        metrics,
        tuple(v.name for v in model.graph.inputs),
        outputs,
        bool(model.graph.output_names),
        targets,
        tuple(metrics.graph.output_labels()) if metrics else (),
        bool(metrics and metrics.graph.output_names),
    )


def _names(pairs) -> list[str]:
    return [name for name, _ in pairs]


def _bad_role(role: Summary, model: Summary, targets) -> DualnetError:
    wanted = ", ".join([*model.output_types, *(f"{n}: {t}" for n, t in targets)])
    return error(
        "E-TYPE",
        f"`{role.model}` does not take the outputs of `{model.model}`, then the targets",
        role.instance.span,
        notes=[f"its forward takes ({wanted})"],
    )


def role_sources(roles: Roles, target: str) -> tuple[list[str], list[str]]:
    """(imports, definitions) of the loss and metrics models emitted for `target`, merged:
    one import line each, one copy of each definition both carry (a helper, a shared
    sub-model); the module docstrings are dropped."""
    imports: list[str] = []
    definitions: dict[str, str] = {}
    for summary in (roles.loss, roles.metrics):
        if summary is None:
            continue
        text = emit(summary, target)[0]
        lines = text.splitlines()
        for node in ast.parse(text).body:
            chunk = "\n".join(lines[_first_line(node) - 1 : node.end_lineno])
            if isinstance(node, ast.Import | ast.ImportFrom):
                if chunk not in imports and not chunk.startswith("from __future__"):
                    imports.append(chunk)
            elif not isinstance(node, ast.Expr):  # the docstring
                name = _defined(node)
                if definitions.setdefault(name, chunk) != chunk:
                    raise error(
                        "E-BACKEND",
                        f"the loss and the metrics define `{name}` differently",
                        roles.loss.instance.span,
                        notes=["give the sub-models the loss and the metrics share one name each"],
                    )
    return imports, list(definitions.values())


def import_block(lines: set[str]) -> str:
    """Import lines in isort's order: the standard library's, then the others; in each,
    `import x` lines before `from x import y` lines."""

    def module(line: str) -> str:
        return line.split()[1].partition(".")[0]

    sections = [
        sorted(group, key=lambda line: (line.startswith("from"), module(line), line))
        for group in (
            [line for line in lines if module(line) in sys.stdlib_module_names],
            [line for line in lines if module(line) not in sys.stdlib_module_names],
        )
    ]
    return "\n\n".join("\n".join(s) for s in sections if s)


def _first_line(node: ast.stmt) -> int:
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])


def _defined(node: ast.stmt) -> str:
    if isinstance(node, ast.Assign):
        return ast.unparse(node.targets[0])
    return node.name  # a function or class


def constants(roles: Roles, accumulate: int) -> str:
    """The module constants both files start with."""
    rows = [
        ("INPUTS", tuple(roles.inputs), "the model's forward arguments, in order"),
        ("OUTPUTS", tuple(roles.outputs), "the model's outputs, the loss's first arguments"),
        ("TARGETS", tuple(_names(roles.targets)), "the loss's other arguments: " + _types(roles)),
        ("METRICS", tuple(roles.metric_names), "the metrics' names (named f32[] scalars)"),
        ("ACCUMULATE", accumulate, "batches per optimiser step, which takes their mean gradient"),
    ]
    return "\n".join(f"{name} = {fmt_literal(value)}  # {why}" for name, value, why in rows)


def headline(roles: Roles, spec: TrainSpec, framework: str, optimizer: str) -> str:
    """The docstring's first paragraph: the generator, the file (escaped: any name is safe
    in a docstring), the model, its loss and metrics, and the optimiser (`optimizer`)."""
    metrics = f", metrics {spec.metrics}" if spec.metrics else ""
    return textwrap.fill(
        f"{framework} training code generated by dualnet {__version__} from "
        f"{docstring(Path(roles.model.file).name)}: {spec.model} with the loss {spec.loss}"
        f"{metrics}; {optimizer}.",
        85,
    )


def _types(roles: Roles) -> str:
    return ", ".join(f"{n}: {t}" for n, t in roles.targets)


def assemble(header: list[str], body: list[str]) -> str:
    """A generated file: the docstring, `from __future__`, the imports and the constants
    one blank line apart, then the definitions two apart."""
    top = "\n\n".join(p.strip("\n") for p in header)
    return "\n\n\n".join([top, *(p.strip("\n") for p in body if p)]) + "\n"


def call(head: str, args: list[str], indent: int = 0, limit: int = 88) -> str:
    """`head(args)` on one line when it fits `limit`, else one argument a line with a magic
    trailing comma (ruff format's layout)."""
    pad = " " * indent
    one = f"{pad}{head}({', '.join(args)})"
    if len(one) <= limit:
        return one
    inner = "".join(f"{pad}    {a},\n" for a in args)
    return f"{pad}{head}(\n{inner}{pad})"

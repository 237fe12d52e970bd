"""The op registry: each built-in defined once — signature, shape and dtype rule,
differentiable inputs, parameters with initialisers, and a NumPy reference.

Each backend registers its lowering row on the op, `OpDef.lowerings[backend]`
(`dualnet.backends.rows`: the row types, `Rows.register`, and `lowering_row`, the one
lookup every emitter uses).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from dualnet import budget
from dualnet.diagnostics import DualnetError, Span, error
from dualnet.ir.dims import DimTooLarge
from dualnet.ir.graph import Init, ParamSpec
from dualnet.ir.types import SIZE_LIMIT, DType, TensorType

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()

# Tensor argument kinds (the others are checked and normalised by `dualnet.ops.binding`).
TENSOR_KINDS = ("tensor", "tensor?", "tensors")


@dataclass(frozen=True, slots=True)
class P:
    """One parameter of a signature."""

    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple = ()  # allowed values for `str` kinds
    dtypes: str = "any"  # for tensors: any | float | int | bool | number

    @property
    def is_tensor(self) -> bool:
        return self.kind in TENSOR_KINDS


@dataclass(frozen=True, slots=True)
class Signature:
    params: tuple[P, ...]

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __str__(self) -> str:
        parts = [
            p.name if p.default is REQUIRED else f"{p.name}={_show(p.default)}" for p in self.params
        ]
        return f"({', '.join(parts)})"


def sig(*params: P) -> Signature:
    return Signature(tuple(params))


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


@dataclass
class Ctx:
    """What a shape rule sees: input types, attributes, and a way to fail at the right place."""

    op: OpDef
    inputs: dict[str, Any]  # TensorType, list[TensorType] or None
    attrs: dict[str, Any]  # call attributes (functions) — normalised by the rule in place
    config: dict[str, Any]  # construction attributes (layers) — completed by the rule in place
    spans: dict[str, Span]
    span: Span | None
    params: dict[str, ParamSpec] = field(default_factory=dict)
    buffers: dict[str, ParamSpec] = field(default_factory=dict)

    def fail(
        self,
        message: str,
        arg: str | None = None,
        label: str = "",
        code: str = "E-SHAPE",
        notes: tuple[str, ...] = (),
        bare: bool = False,
    ) -> NoReturn:
        """Raise a diagnostic at `arg`'s span (else the call's), prefixed with the op name
        unless `bare` (operators such as `+` read better without it)."""
        raise error(
            code,
            message if bare else f"{self.op.name}: {message}",
            self.spans.get(arg, self.span) if arg else self.span,
            label,
            notes,
        )

    def param(
        self, name: str, shape: tuple, init: Init, dtype: DType = DType.f32, trainable: bool = True
    ) -> None:
        budget.spend("parameter", 1, self.span)
        self.params[name] = ParamSpec(self._static(name, shape), dtype, init, trainable)

    def buffer(self, name: str, shape: tuple, init: Init, dtype: DType = DType.f32) -> None:
        budget.spend("parameter", 1, self.span)
        self.buffers[name] = ParamSpec(self._static(name, shape), dtype, init, False)

    def _static(self, name: str, shape: tuple) -> tuple[int, ...]:
        for d in shape:
            if not isinstance(d, int):
                self.fail(
                    f"the size of `{name}` depends on the symbolic dimension `{d}`",
                    label="parameter sizes must be known at compile time",
                    notes=("give that dimension a concrete size in the model's forward signature",),
                )
            if d <= 0:
                self.fail(
                    f"parameter `{name}` would have the empty size {list(shape)}", code="E-VALUE"
                )
        return tuple(shape)


@dataclass(frozen=True, slots=True)
class Use:
    """What an op's MACs rule sees: one call's input types (by signature parameter, as
    `by_parameter` gives them; an omitted optional tensor is absent), output types and
    attributes (a layer's construction attributes included)."""

    inputs: dict[str, Any]
    outputs: tuple[TensorType, ...]
    attrs: dict[str, Any]


def no_macs(use: Use) -> int:
    """The MACs of an op PyTorch's FlopCounterMode does not count."""
    return 0


@dataclass
class OpDef:
    name: str
    signature: Signature  # call signature: tensor inputs then attributes
    infer: Callable[[Ctx], list[TensorType]]  # shape and dtype rule
    reference: Callable[..., Any]  # NumPy reference: (inputs, attrs[, params]) -> outputs
    differentiable: tuple[str, ...] = ()  # tensor inputs that carry gradients
    construct: Signature | None = None  # layers only: the constructor's signature
    # How the op uses its axes, which lets a backend run it on another axis order:
    # "channels" — axis 1 is channels, the axes after it spatial (convolutions, pooling,
    #   BatchNorm, GroupNorm, upsample): it may run channels-last, [B, *spatial, C];
    # "pointwise" — no axis of its own (element-wise ops, Dropout, Identity): any order its
    #   inputs share;
    # "attribute" — the axes its `axis` attribute names (reductions, softmax, concat, split);
    # "fixed" — the order is the meaning (flatten, matmul, Linear, attention, ...).
    axes: str = "fixed"
    doc: str = ""
    lowerings: dict[str, Any] = field(default_factory=dict)
    # Multiply-accumulates of one call: what torch.utils.flop_counter.FlopCounterMode counts
    # (its flops / 2: convolutions, matrix products, attention), an int or a symbolic `Dim`
    macs: Callable[[Use], Any] = no_macs

    @property
    def is_layer(self) -> bool:
        return self.construct is not None


REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    assert op.name not in REGISTRY, f"op {op.name} registered twice"
    REGISTRY[op.name] = op
    return op


def suggest(name: str, candidates) -> str | None:
    """The closest candidate for a misspelt name, if any is close enough."""
    found = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_keyword(op_name: str, keyword: str, signature: Signature, span: Span) -> DualnetError:
    hint = suggest(keyword, signature.names())
    notes = [f"did you mean `{hint}`?"] if hint else []
    notes.append(f"{op_name} takes {signature}")
    return error(
        "E-ARGS", f"{op_name} has no argument `{keyword}`", span, "unknown argument", notes
    )


def run_rule(
    op: OpDef,
    inputs: dict[str, Any],
    attrs: dict[str, Any],
    spans: dict[str, Span],
    span: Span | None,
    config: dict[str, Any] | None = None,
) -> tuple[list, Ctx]:
    """Run an op's shape and dtype rule; every result size must stay below SIZE_LIMIT."""
    ctx = Ctx(op, inputs, attrs, {} if config is None else config, spans, span)
    try:
        outputs = op.infer(ctx)
    except DimTooLarge:
        raise DimTooLarge.at(span) from None
    for out in outputs:
        for d in out.shape:
            if isinstance(d, int) and d < 0:
                ctx.fail(f"would produce the negative size {d} in {out}")
            if isinstance(d, int) and d == 0:
                ctx.fail(
                    f"would produce an empty axis (size 0) in {out}",
                    label="zero-sized axis",
                    notes=("dualnet tensors have no zero-sized axes",),
                )
        if out.static_numel() >= SIZE_LIMIT:
            ctx.fail(
                f"result {out} has more than 2**62 elements", code="E-LIMIT", label="too large"
            )
    for spec in (*ctx.params.values(), *ctx.buffers.values()):
        if spec.numel >= SIZE_LIMIT:
            ctx.fail(
                f"a parameter of shape {list(spec.shape)} has more than 2**62 elements",
                code="E-LIMIT",
                label="too large",
            )
    return outputs, ctx

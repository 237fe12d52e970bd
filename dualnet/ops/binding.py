"""Binding call arguments to a signature, and checking each against its declared kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dualnet.diagnostics import Span, error, shorten
from dualnet.ir.dims import Dim
from dualnet.ir.types import DTYPES, DType, out_of_range
from dualnet.ops.common import INIT_CHOICES, INIT_FUNCTIONS, Initializer
from dualnet.ops.registry import REQUIRED, P, Signature, unknown_keyword


@dataclass(frozen=True, slots=True)
class Arg:
    """An evaluated argument and where it was written (`whole`: `name=value` of a keyword)."""

    value: Any
    span: Span
    whole: Span | None = None

    @property
    def keyword_span(self) -> Span:
        return self.whole or self.span


def describe(v: Any, depth: int = 0) -> str:
    """A value as diagnostics show it: its kind, then the value (long strings shortened,
    tuples and lists to 4 items and 2 levels); a language object (a layer, a model, a
    tensor) describes itself (`description()`)."""
    if isinstance(v, bool):
        return f"bool {'true' if v else 'false'}"
    if isinstance(v, int):
        return f"int {v}"
    if isinstance(v, float):
        return f"float {v:g}"
    if isinstance(v, str):
        return f'str "{shorten(v)}"'
    if v is None:
        return "none"
    if isinstance(v, Dim):
        return f"dimension {shorten(str(v))}"
    if isinstance(v, tuple | list):
        shown = v[:4] if depth < 2 else ()
        inner = ", ".join(describe(x, depth + 1) for x in shown)
        inner += ", …" if inner and len(v) > len(shown) else "…" if len(v) > len(shown) else ""
        return f"{'tuple' if isinstance(v, tuple) else 'list'} ({inner})"
    description = getattr(v, "description", None)
    return description() if callable(description) else type(v).__name__


def bind(
    name: str,
    signature: Signature,
    args: list[Arg],
    keywords: dict[str, Arg],
    span: Span | None,
    tensor_type=lambda v: None,
) -> tuple[dict[str, Any], dict[str, Span]]:
    """Match arguments to parameters; check and normalise each. `tensor_type(v)` returns the
    TensorType of an evaluated tensor value, or None when `v` is not a tensor."""
    params = signature.params
    if len(args) > len(params):
        extra = args[len(params)]
        raise error(
            "E-ARGS",
            f"{name} takes at most {_count(len(params), 'positional argument')}, found {len(args)}",
            extra.span,
            "extra argument",
            [f"{name} takes {signature}"],
        )
    given: dict[str, Arg] = {p.name: a for p, a in zip(params, args, strict=False)}
    by_name = {p.name: p for p in params}
    for key, arg in keywords.items():
        if key not in by_name:
            raise unknown_keyword(name, key, signature, arg.keyword_span)
        if key in given:
            raise error(
                "E-ARGS",
                f"{name}: argument `{key}` given twice",
                arg.keyword_span,
                "already given by position",
            )
        given[key] = arg
    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    for p in params:
        arg = given.get(p.name)
        if arg is None:
            if p.default is REQUIRED:
                raise error(
                    "E-ARGS",
                    f"{name}: missing argument `{p.name}`",
                    span,
                    f"`{p.name}` is required",
                    [f"{name} takes {signature}"],
                )
            values[p.name] = p.default
            continue
        values[p.name] = coerce(name, p, arg, tensor_type)
        spans[p.name] = arg.span
    return values, spans


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


_KIND_TEXT = {
    "tensor": "a tensor",
    "tensor?": "a tensor or none",
    "tensors": "a list of tensors",
    "int": "an int",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "ints": "an int or a tuple of ints",
    "dims": "a list of sizes",
    "dtype": "a dtype name",
    "size": "a size (int or dimension)",
    "padding": 'an int, a tuple of ints, "same" or "valid"',
    "init": "an initialiser: "
    + ", ".join(f'"{c}"' for c in INIT_CHOICES)
    + ", or a call "
    + ", ".join(f"{name}{signature}" for name, signature in INIT_FUNCTIONS.items()),
}


def coerce(op_name: str, p: P, arg: Arg, tensor_type) -> Any:
    """Check one argument against its parameter kind; return the normalised value. An
    explicit `none` is the default where the default is none (`RMSNorm(eps=none)`)."""
    v = arg.value
    if v is None and p.default is None:
        return None
    ok, out = _COERCERS[p.kind](v, tensor_type)
    if ok and p.choices and out not in p.choices:
        ok = False
    if ok and p.is_tensor and p.dtypes != "any":
        types = out if isinstance(out, list) else [out] if out is not None else []
        bad = [
            t
            for t in types
            if not isinstance(t, _ScalarTensor) and not _dtype_ok(tensor_type(t).dtype, p.dtypes)
        ]
        if bad:
            article = "an" if p.dtypes[0] in "aeiou" else "a"
            raise error(
                "E-DTYPE",
                f"{op_name}: argument `{p.name}` expects {article} {p.dtypes} "
                f"tensor, found {describe(bad[0])}",
                arg.span,
                f"{p.dtypes} expected",
            )
    if ok and p.kind == "float" and out_of_range(out, DType.f32):  # ONNX keeps floats as f32
        raise error(
            "E-VALUE",
            f"{op_name}: argument `{p.name}`: {out_of_range(out, DType.f32)}",
            arg.span,
            "out of range for f32",
        )
    if not ok:
        expected = _KIND_TEXT.get(p.kind, p.kind)
        if p.choices:
            expected = "one of " + ", ".join(
                f'"{c}"' if isinstance(c, str) else str(c) for c in p.choices
            )
        raise error(
            "E-TYPE",
            f"{op_name}: argument `{p.name}` expects {expected}, found {describe(v)}",
            arg.span,
            f"expected {expected}",
        )
    return out.value if isinstance(out, _ScalarTensor) else out


class _ScalarTensor:
    """A Python number in a tensor slot; the evaluator turns it into a constant node."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _dtype_ok(dtype, want: str) -> bool:
    return {
        "float": dtype.is_float,
        "int": dtype.is_int,
        "bool": dtype.value == "bool",
        "number": dtype.value != "bool",
    }[want]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tensor(v, tt):
    if tt(v) is not None:
        return True, v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return True, _ScalarTensor(v)
    return False, None


def _tensor_opt(v, tt):
    return (True, None) if v is None else _tensor(v, tt)


def _tensors(v, tt):
    if isinstance(v, list | tuple) and v and all(tt(x) is not None for x in v):
        return True, list(v)
    return False, None


def _int(v, tt):
    return _is_int(v), v


def _float(v, tt):
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    return ok, float(v) if ok else None


def _bool(v, tt):
    return isinstance(v, bool), v


def _str(v, tt):
    return isinstance(v, str), v


def _ints(v, tt):
    if _is_int(v):
        return True, v
    if isinstance(v, list | tuple) and v and all(_is_int(x) for x in v):
        return True, tuple(v)
    return False, None


def _size(v, tt):
    return (_is_int(v) or isinstance(v, Dim)), v


def _dims(v, tt):
    if isinstance(v, list | tuple) and all(_is_int(x) or isinstance(x, Dim) for x in v):
        return True, tuple(v)
    return False, None


def _dtype(v, tt):
    return (isinstance(v, str) and v in DTYPES), DTYPES.get(v) if isinstance(v, str) else None


def _padding(v, tt):
    if v in ("same", "valid"):
        return True, v
    return _ints(v, tt)


def _any(v, tt):
    return True, v


def _init(v, tt):
    return (isinstance(v, str) and v in INIT_CHOICES) or isinstance(v, Initializer), v


_COERCERS = {
    "tensor": _tensor,
    "tensor?": _tensor_opt,
    "tensors": _tensors,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "str": _str,
    "ints": _ints,
    "size": _size,
    "dims": _dims,
    "dtype": _dtype,
    "padding": _padding,
    "any": _any,
    "init": _init,
}

"""Shape-rule helpers shared by the op families."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dualnet.ir.dims import Dim
from dualnet.ir.graph import Init
from dualnet.ir.types import DType, TensorType, out_of_range
from dualnet.ops.registry import Ctx, P, sig

SQRT5 = math.sqrt(5.0)


def expand(ctx: Ctx, value, n: int, name: str, where: dict | None = None) -> tuple[int, ...]:
    """An int or an n-tuple of ints as an n-tuple (kernel, stride, dilation...)."""
    if isinstance(value, int):
        return (value,) * n
    if len(value) != n:
        ctx.fail(
            f"`{name}` needs 1 or {n} values, found {len(value)}",
            name,
            f"{len(value)} values",
            code="E-VALUE",
        )
    return tuple(value)


def positive(ctx: Ctx, values: tuple[int, ...], name: str, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if any(v < low for v in values):
        ctx.fail(
            f"`{name}` must be {'non-negative' if allow_zero else 'positive'}, found "
            f"{values if len(values) > 1 else values[0]}",
            name,
            "out of range",
            code="E-VALUE",
        )


def probability(ctx: Ctx, name: str) -> None:
    """E-VALUE unless the config's `name` is a dropout probability, in [0, 1)."""
    if not 0.0 <= ctx.config[name] < 1.0:
        ctx.fail(
            f"`{name}` must be in [0, 1), found {ctx.config[name]}",
            name,
            "out of range",
            code="E-VALUE",
        )


def fits_in(ctx: Ctx, attr: str, dtype: DType) -> None:
    """E-VALUE when the scalar attribute `attr` (None: absent) is no value of `dtype`."""
    value = ctx.attrs[attr]
    why = None if value is None else out_of_range(value, dtype)
    if why is not None:
        ctx.fail(f"`{attr}`: {why}", attr, f"out of range for {dtype}", code="E-VALUE")


def require_rank(ctx: Ctx, arg: str, t: TensorType, ranks: tuple[int, ...], what: str) -> None:
    if t.rank not in ranks:
        want = " or ".join(str(r) for r in ranks)
        ctx.fail(f"expects a rank-{want} input {what}, found {t}", arg, f"rank {t.rank}")


def norm_axis(ctx: Ctx, axis: int, rank: int, arg: str = "axis", extra: int = 0) -> int:
    """A possibly negative axis as an index in [0, rank + extra)."""
    n = rank + extra
    if not -n <= axis < n:
        ctx.fail(
            f"axis {axis} is out of range for a rank-{rank} tensor",
            arg,
            f"valid axes are {-n}..{n - 1}",
            code="E-VALUE",
        )
    return axis % n


def conv_out(n, k: int, s: int, d: int, before: int, after: int):
    """Output length of a convolution or pooling window (floor mode)."""
    return (n + before + after - d * (k - 1) - 1) // s + 1


def same_pads(n, k: int, s: int, d: int) -> tuple[int, int] | None:
    """TensorFlow's "same" padding: (before, after), the odd pixel at the end. None when the
    total depends on a symbolic size (only possible for stride > 1)."""
    if isinstance(n, Dim) and s != 1:
        return None
    out = (n + s - 1) // s
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def resolve_padding(ctx: Ctx, padding, spatial: tuple, kernel, stride, dilation):
    """Padding as an explicit ((before, after), ...) per spatial axis, or None per axis where
    "same" depends on a symbolic size. Returns (pads, output sizes)."""
    n = len(spatial)
    if padding == "same":
        pads = tuple(
            same_pads(x, k, s, d)
            for x, k, s, d in zip(spatial, kernel, stride, dilation, strict=True)
        )
    elif padding == "valid":
        pads = ((0, 0),) * n
    else:
        p = expand(ctx, padding, n, "padding")
        positive(ctx, p, "padding", allow_zero=True)
        pads = tuple((v, v) for v in p)
    out = []
    for x, k, s, d, pad in zip(spatial, kernel, stride, dilation, pads, strict=True):
        o = (x + s - 1) // s if pad is None else conv_out(x, k, s, d, *pad)
        if isinstance(o, int) and o <= 0:
            ctx.fail(
                f"the window (kernel {k}, dilation {d}) does not fit in a size-{x} input "
                "with this padding",
                "kernel" if "kernel" in ctx.spans else None,
                "window larger than the input",
            )
        out.append(o)
    return pads, tuple(out)


def broadcast(ctx: Ctx, a: TensorType, b: TensorType, verb: str = "broadcast") -> tuple:
    """NumPy broadcasting of two shapes; a failure reads "cannot <verb> A and B"."""
    ra, rb, rank = a.rank, b.rank, max(a.rank, b.rank)
    out, clash = [], None
    for i in range(rank):
        da = a.shape[ra - 1 - i] if i < ra else 1
        db = b.shape[rb - 1 - i] if i < rb else 1
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            clash = (rank - 1 - i, da, db)  # scanning from the right: the last is the first axis
    if clash is not None:
        axis, da, db = clash
        ctx.fail(
            f"cannot {verb} {a} and {b}",
            label=f"dimension {axis}: {da} vs {db}",
            bare=verb != "broadcast",
        )
    return tuple(reversed(out))


def same_dtype(ctx: Ctx, *types: TensorType, verb: str | None = None) -> DType:
    """The common element type; a mismatch reads "cannot <verb> A and B" when a verb is given."""
    first = types[0]
    for t in types[1:]:
        if t.dtype != first.dtype:
            message = (
                f"cannot {verb} {first} and {t}" if verb else f"mixes {first.dtype} and {t.dtype}"
            )
            ctx.fail(
                message,
                label=f"{first.dtype} vs {t.dtype}",
                code="E-DTYPE",
                bare=bool(verb),
                notes=('convert one side with cast(x, "...")',),
            )
    return first.dtype


def fan_in_init(fan_in: int) -> tuple[Init, Init]:
    """PyTorch's default for Linear and Conv: weight kaiming_uniform(a=√5), bias ±1/√fan_in."""
    return (
        Init("kaiming_uniform", (("a", SQRT5), ("fan_in", fan_in))),
        Init("uniform", (("bound", 1.0 / math.sqrt(fan_in)),)),
    )


@dataclass(frozen=True)
class Initializer:
    """An `init=` written as a call with arguments, `normal(std=0.02)`: torch.nn.init's
    function of that name (`args`: every argument of `INIT_FUNCTIONS[scheme]`, in order)."""

    scheme: str
    args: tuple[tuple[str, float], ...]

    def written(self) -> tuple[tuple[str, float], ...]:
        """The arguments that differ from their defaults."""
        defaults = {p.name: p.default for p in INIT_FUNCTIONS[self.scheme].params}
        return tuple((k, v) for k, v in self.args if v != defaults[k])

    def __str__(self) -> str:
        return f"{self.scheme}({', '.join(f'{k}={v!r}' for k, v in self.written())})"

    def description(self) -> str:
        return f"initialiser {self}"


# The initialisers written as calls, with their arguments (torch.nn.init's names; `value` is
# constant_'s `val`, as a Parameter's init="constant" names it).
INIT_FUNCTIONS = {
    "normal": sig(P("mean", "float", 0.0), P("std", "float", 1.0)),
    "trunc_normal": sig(
        P("mean", "float", 0.0), P("std", "float", 1.0), P("a", "float", -2.0), P("b", "float", 2.0)
    ),
    "uniform": sig(P("a", "float", 0.0), P("b", "float", 1.0)),
    "constant": sig(P("value", "float")),
    "kaiming_uniform": sig(P("a", "float", 0.0)),
    "kaiming_normal": sig(P("a", "float", 0.0)),
    "xavier_uniform": sig(P("gain", "float", 1.0)),
    "xavier_normal": sig(P("gain", "float", 1.0)),
}


def _drawn(ctx: Ctx, init: Initializer, fan_in: int, fan_out: int) -> Init:
    """The `Init` of an initialiser call, its arguments checked."""
    args = dict(init.args)
    if args.get("std", 1.0) <= 0:
        ctx.fail(f"{init}: `std` must be positive", "init", "out of range", code="E-VALUE")
    if "b" in args and not args["a"] < args["b"]:
        ctx.fail(f"{init}: needs a < b", "init", "empty range", code="E-VALUE")
    if init.scheme.startswith("kaiming"):
        return Init(init.scheme, (("a", args["a"]), ("fan_in", fan_in)))
    if init.scheme.startswith("xavier"):
        return Init(init.scheme, (("fan_in", fan_in), ("fan_out", fan_out), ("gain", args["gain"])))
    return Init("uniform_range" if init.scheme == "uniform" else init.scheme, init.args)


def init_choice(
    ctx: Ctx, name: str | Initializer | None, default: Init, fan_in: int, fan_out: int
) -> Init:
    """The initialiser an `init=` argument selects (None keeps the layer's default)."""
    if isinstance(name, Initializer):
        return _drawn(ctx, name, fan_in, fan_out)
    if name is None or name == "default":
        return default
    return {
        "kaiming_uniform": Init("kaiming_uniform", (("a", 0.0), ("fan_in", fan_in))),
        "kaiming_normal": Init("kaiming_normal", (("a", 0.0), ("fan_in", fan_in))),
        "xavier_uniform": Init("xavier_uniform", (("fan_in", fan_in), ("fan_out", fan_out))),
        "xavier_normal": Init("xavier_normal", (("fan_in", fan_in), ("fan_out", fan_out))),
        "normal": Init("normal", (("std", 1.0),)),
        "zeros": Init("zeros"),
        "ones": Init("ones"),
    }[name]


def fan_in_params(ctx: Ctx, weight_shape: tuple, fan_in: int, fan_out: int, out: int) -> None:
    """A Linear's or convolution's weight and optional bias [out]: PyTorch's initialisers
    (`fan_in_init`) unless `init=` / `bias_init=` choose others."""
    cfg = ctx.config
    w_init, b_init = fan_in_init(fan_in)
    ctx.param("weight", weight_shape, init_choice(ctx, cfg["init"], w_init, fan_in, fan_out))
    if cfg["bias"]:
        chosen = cfg["bias_init"]
        ctx.param("bias", (out,), b_init if chosen in (None, "default") else Init(chosen))


INIT_CHOICES = (
    "default",
    "kaiming_uniform",
    "kaiming_normal",
    "xavier_uniform",
    "xavier_normal",
    "normal",
    "zeros",
    "ones",
)
BIAS_INIT_CHOICES = ("default", "zeros", "ones")
# the `init=` and `bias_init=` parameters of Linear and the convolutions
WEIGHT_INITS = (
    P("init", "init", None),
    P("bias_init", "str", None, choices=BIAS_INIT_CHOICES),
)

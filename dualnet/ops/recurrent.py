"""Recurrent layers: LSTM and GRU, batch-first, with PyTorch's parameter names, gate order
and equations (zero initial state)."""

from __future__ import annotations

import math

from dualnet import budget
from dualnet.ir.graph import Init
from dualnet.ir.types import TensorType
from dualnet.ops.common import positive, require_rank
from dualnet.ops.lazy_numpy import np
from dualnet.ops.registry import Ctx, OpDef, P, register, sig

# name: (gates per step, gate order in the weight rows, results with state=true)
_KINDS = {"LSTM": (4, "ifgo"), "GRU": (3, "rzn")}  # gate rows, gate order


def param_names(layers: int, bidirectional: bool) -> list[tuple[int, int, str]]:
    """(layer, direction, suffix) in PyTorch's state_dict order."""
    dirs = 2 if bidirectional else 1
    return [(k, d, f"_l{k}{'_reverse' if d else ''}") for k in range(layers) for d in range(dirs)]


def _rnn_rule(kind: str):
    gates, order = _KINDS[kind]

    def infer(ctx: Ctx) -> list[TensorType]:
        x, cfg = ctx.inputs["x"], ctx.config
        require_rank(ctx, "x", x, (3,), "[B, T, F] (batch first)")
        features = x.shape[2]
        if not isinstance(features, int):
            ctx.fail(
                f"the feature size (axis 2) must be known, found `{features}`",
                "x",
                "symbolic feature size",
            )
        hidden, layers = cfg["hidden"], cfg["layers"]
        positive(ctx, (hidden,), "hidden")
        positive(ctx, (layers,), "layers")
        dirs = 2 if cfg["bidirectional"] else 1
        budget.spend("parameter", 4 * layers * dirs, ctx.span)  # before they are listed
        cfg.update(input_size=features, directions=dirs, gate_order=order, batch_first=True)
        if kind == "GRU":
            cfg["linear_before_reset"] = True
        init = Init("uniform", (("bound", 1.0 / math.sqrt(hidden)),))
        for k, _, sfx in param_names(layers, cfg["bidirectional"]):
            size_in = features if k == 0 else dirs * hidden
            ctx.param(f"weight_ih{sfx}", (gates * hidden, size_in), init)
            ctx.param(f"weight_hh{sfx}", (gates * hidden, hidden), init)
            ctx.param(f"bias_ih{sfx}", (gates * hidden,), init)
            ctx.param(f"bias_hh{sfx}", (gates * hidden,), init)
        batch, steps = x.shape[:2]
        y = x.with_shape((batch, steps, dirs * hidden))
        if not ctx.attrs.get("state", False):
            return [y]
        state = x.with_shape((layers * dirs, batch, hidden))
        return [y, state] + ([state] if kind == "LSTM" else [])

    return infer


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _rnn_reference(kind: str):
    def reference(inputs, attrs, params):
        x = inputs["x"]
        hidden, layers = attrs["hidden"], attrs["layers"]
        batch, steps = x.shape[:2]
        seq = x.astype(np.float64)
        h_n, c_n, outs = [], [], []
        for k, d, sfx in param_names(layers, attrs["bidirectional"]):
            if d == 0 and k > 0:
                seq, outs = np.concatenate(outs, axis=-1), []
            w_ih, w_hh = params[f"weight_ih{sfx}"], params[f"weight_hh{sfx}"]
            b_ih, b_hh = params[f"bias_ih{sfx}"], params[f"bias_hh{sfx}"]
            h = np.zeros((batch, hidden))
            c = np.zeros((batch, hidden))
            ys = np.zeros((batch, steps, hidden))
            for t in range(steps - 1, -1, -1) if d else range(steps):
                gi = seq[:, t] @ w_ih.T + b_ih
                gh = h @ w_hh.T + b_hh
                if kind == "LSTM":
                    i, f, g, o = np.split(gi + gh, 4, axis=-1)
                    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                    h = _sigmoid(o) * np.tanh(c)
                else:
                    ir, iz, i_n = np.split(gi, 3, axis=-1)
                    hr, hz, h_n_ = np.split(gh, 3, axis=-1)
                    r, z = _sigmoid(ir + hr), _sigmoid(iz + hz)
                    n = np.tanh(i_n + r * h_n_)
                    h = (1 - z) * n + z * h
                ys[:, t] = h
            outs.append(ys)
            h_n.append(h)
            c_n.append(c)
        results = [np.concatenate(outs, axis=-1)]
        if attrs.get("state", False):
            results.append(np.stack(h_n))
            if kind == "LSTM":
                results.append(np.stack(c_n))
        return [r.astype(x.dtype) for r in results]

    return reference


_DOCS = {
    "LSTM": "i, f, g, o = split(x Wᵢₕᵀ + bᵢₕ + h Wₕₕᵀ + bₕₕ); c' = σ(f)·c + σ(i)·tanh(g); "
    "h' = σ(o)·tanh(c')",
    "GRU": "r, z = σ(...); n = tanh(x Wᵢₙᵀ + bᵢₙ + r·(h Wₕₙᵀ + bₕₙ)); h' = (1 - z)·n + z·h "
    "(reset after the matmul: ONNX linear_before_reset=1)",
}

for _kind, (_gates, _order) in _KINDS.items():
    register(
        OpDef(
            name=_kind,
            signature=sig(P("x", "tensor", dtypes="float"), P("state", "bool", False)),
            construct=sig(
                P("hidden", "int"), P("layers", "int", 1), P("bidirectional", "bool", False)
            ),
            infer=_rnn_rule(_kind),
            reference=_rnn_reference(_kind),
            differentiable=("x",),
            doc=f"Batch-first {_kind} over x [B, T, F] from a zero state, PyTorch's equations: "
            f"{_DOCS[_kind]}. Gate rows in order {_order}; weight_ih_l{{k}}[_reverse] "
            f"[{_gates}·hidden, in], weight_hh_l{{k}} [{_gates}·hidden, hidden], bias_ih, "
            "bias_hh; all uniform(±1/√hidden). Layer k > 0 reads dirs·hidden features. "
            "y [B, T, dirs·hidden] (forward then reverse); with state=true also h"
            + (", c" if _kind == "LSTM" else "")
            + " [layers·dirs, B, hidden].",
        )
    )

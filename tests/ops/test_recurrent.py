"""LSTM and GRU: rules, PyTorch's parameter names/order/shapes/initialisers, and references
against torch.nn.LSTM/GRU and ONNX LSTM/GRU (gates reordered, GRU linear_before_reset=1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from opkit import B, T, close, fails, infer, onnx_node, randn, run_ref, tt

RNG = np.random.default_rng(5)
TORCH = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
# rows of ONNX's gate blocks, in PyTorch's block numbering
ONNX_ORDER = {
    "LSTM": [0, 3, 1, 2],  # PyTorch i f g o -> ONNX i o f c
    "GRU": [1, 0, 2],
}  # PyTorch r z n -> ONNX z r h


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_rules(kind):
    x = tt("f32", B, T, 8)
    out, ctx = infer(kind, {"x": x}, config={"hidden": 16})
    assert [str(t) for t in out] == ["f32[B, T, 16]"]
    assert ctx.config["input_size"] == 8 and ctx.config["batch_first"] is True
    assert ctx.config["gate_order"] == ("ifgo" if kind == "LSTM" else "rzn")
    if kind == "GRU":
        assert ctx.config["linear_before_reset"] is True
    cfg = {"hidden": 16, "layers": 2, "bidirectional": True}
    out, ctx = infer(kind, {"x": x}, config=cfg, state=True)
    n_state = 2 if kind == "LSTM" else 1
    assert [str(t) for t in out] == ["f32[B, T, 32]"] + ["f32[4, B, 16]"] * n_state
    fails(kind, {"x": tt("f32", B, T, sym_f())}, "E-SHAPE", config={"hidden": 16})
    fails(kind, {"x": tt("f32", B, 8)}, "E-SHAPE", config={"hidden": 16})
    fails(kind, {"x": x}, "E-VALUE", config={"hidden": 0})
    fails(kind, {"x": x}, "E-VALUE", config={"hidden": 4, "layers": 0})


def sym_f():
    from dualnet.ir.dims import sym

    return sym("F")


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True), (3, False)])
def test_params_are_pytorchs(kind, layers, bidirectional):
    hidden, features = 16, 8
    _, ctx = infer(
        kind,
        {"x": tt("f32", B, T, features)},
        config={"hidden": hidden, "layers": layers, "bidirectional": bidirectional},
    )
    module = TORCH[kind](features, hidden, layers, batch_first=True, bidirectional=bidirectional)
    state = module.state_dict()
    assert list(ctx.params) == list(state)  # same names, same order
    assert {k: s.shape for k, s in ctx.params.items()} == {
        k: tuple(v.shape) for k, v in state.items()
    }
    bound = 1 / math.sqrt(hidden)
    for name, spec in ctx.params.items():
        assert spec.init.scheme == "uniform"
        assert dict(spec.init.args)["bound"] == pytest.approx(bound)
        values = state[name].abs()  # PyTorch's own draw lies in the same range
        assert values.max() <= bound and (values.numel() < 64 or values.max() > 0.9 * bound)


def _torch_run(kind, params, x, layers, bidirectional, hidden):
    module = TORCH[kind](x.shape[2], hidden, layers, batch_first=True, bidirectional=bidirectional)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    with torch.no_grad():
        y, state = module(torch.from_numpy(x))
    states = state if isinstance(state, tuple) else (state,)
    return [y.numpy()] + [s.numpy() for s in states]


CONFIGS = [(1, False), (1, True), (2, False), (2, True)]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("layers,bidirectional", CONFIGS)
def test_reference_matches_torch(kind, layers, bidirectional):
    hidden = 5
    x = randn(RNG, 3, 6, 4)
    cfg = {"hidden": hidden, "layers": layers, "bidirectional": bidirectional}
    results, params, _ = run_ref(kind, {"x": x}, config=cfg, rng=RNG, state=True)
    expected = _torch_run(kind, params, x, layers, bidirectional, hidden)
    assert len(results) == len(expected)
    for r, e in zip(results, expected, strict=True):
        close(r, e)
    (y,), _, _ = run_ref(kind, {"x": x}, config=cfg, params=params)
    close(y, expected[0])


def _onnx_run(kind, params, x, layers, bidirectional, hidden):
    """Stack one ONNX node per layer (ONNX RNN nodes are single-layer)."""
    dirs = 2 if bidirectional else 1
    gates = 4 if kind == "LSTM" else 3
    order = ONNX_ORDER[kind]

    def reorder(w):
        blocks = np.split(w, gates, axis=0)
        return np.concatenate([blocks[i] for i in order], axis=0)

    seq = x.transpose(1, 0, 2)  # layout 0: [T, B, F]
    hs, cs = [], []
    for k in range(layers):
        sfx = [f"_l{k}", f"_l{k}_reverse"][:dirs]
        w = np.stack([reorder(params[f"weight_ih{s}"]) for s in sfx])
        r = np.stack([reorder(params[f"weight_hh{s}"]) for s in sfx])
        b = np.stack(
            [
                np.concatenate([reorder(params[f"bias_ih{s}"]), reorder(params[f"bias_hh{s}"])])
                for s in sfx
            ]
        )
        attrs = dict(hidden_size=hidden, direction="bidirectional" if bidirectional else "forward")
        if kind == "GRU":
            attrs["linear_before_reset"] = 1
        outs = onnx_node(kind, [seq, w, r, b], n_outputs=3 if kind == "LSTM" else 2, **attrs)
        y = outs[0]  # [T, dirs, B, H]
        seq = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], dirs * hidden)
        hs.append(outs[1])
        if kind == "LSTM":
            cs.append(outs[2])
    result = [seq.transpose(1, 0, 2), np.concatenate(hs)]
    return result + ([np.concatenate(cs)] if kind == "LSTM" else [])


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("layers,bidirectional", CONFIGS)
def test_reference_matches_onnx(kind, layers, bidirectional):
    hidden = 4
    x = randn(RNG, 2, 5, 3)
    cfg = {"hidden": hidden, "layers": layers, "bidirectional": bidirectional}
    results, params, _ = run_ref(kind, {"x": x}, config=cfg, rng=RNG, state=True)
    expected = _onnx_run(kind, params, x, layers, bidirectional, hidden)
    for r, e in zip(results, expected, strict=True):
        close(r, e)


def test_gru_reset_convention_matters():
    """linear_before_reset=0 (ONNX's default) gives a different result: the test can fail."""
    x = randn(RNG, 2, 5, 3)
    (y, h), params, _ = run_ref("GRU", {"x": x}, config={"hidden": 4}, rng=RNG, state=True)
    w, r = (
        np.stack([np.concatenate([np.split(params[n], 3)[i] for i in (1, 0, 2)])])
        for n in ("weight_ih_l0", "weight_hh_l0")
    )
    b = np.stack(
        [
            np.concatenate(
                [
                    np.concatenate([np.split(params[n], 3)[i] for i in (1, 0, 2)])
                    for n in ("bias_ih_l0", "bias_hh_l0")
                ]
            )
        ]
    )
    other = onnx_node(
        "GRU", [x.transpose(1, 0, 2), w, r, b], n_outputs=2, hidden_size=4, linear_before_reset=0
    )[1]
    assert not np.allclose(h, other[0], rtol=1e-4)

"""Convolutions: rules (TF "same" padding included), PyTorch's parameter shapes and
initialisers, and references against ONNX Conv / ConvTranspose and PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from opkit import B, C, H, W, close, fails, infer, onnx_node, randn, run_ref, shapes, tt

RNG = np.random.default_rng(7)


def _onnx_pads(pads):
    return [p[0] for p in pads] + [p[1] for p in pads]


# ---------------------------------------------------------------- rules


def test_conv2d_rules():
    out, ctx = infer(
        "Conv2d", {"x": tt("f32", B, 1, 28, 28)}, config={"out": 6, "kernel": 5, "padding": 2}
    )
    assert str(out[0]) == "f32[B, 6, 28, 28]"
    assert {k: s.shape for k, s in ctx.params.items()} == {"weight": (6, 1, 5, 5), "bias": (6,)}
    assert ctx.config["pads"] == ((2, 2), (2, 2)) and ctx.config["kernel"] == (5, 5)
    cfg = {"out": 16, "kernel": 3, "stride": 2, "padding": 1}
    assert shapes("Conv2d", {"x": tt("f32", B, 3, H, W)}, config=cfg) == [
        "f32[B, 16, (H + 1) // 2, (W + 1) // 2]"
    ]  # canonical form of (H - 1) // 2 + 1
    # TF "same": stride 2 on an even size pads (0, 1), the odd pixel at the end
    out, ctx = infer(
        "Conv2d",
        {"x": tt("f32", B, 3, 224, 224)},
        config={"out": 8, "kernel": 3, "stride": 2, "padding": "same"},
    )
    assert str(out[0]) == "f32[B, 8, 112, 112]" and ctx.config["pads"] == ((0, 1), (0, 1))
    out, ctx = infer(
        "Conv2d", {"x": tt("f32", B, 3, H, W)}, config={"out": 8, "kernel": 3, "padding": "same"}
    )
    assert str(out[0]) == "f32[B, 8, H, W]" and ctx.config["pads"] == ((1, 1), (1, 1))
    out, ctx = infer(
        "Conv2d",
        {"x": tt("f32", B, 3, H, W)},
        config={"out": 8, "kernel": 3, "stride": 2, "padding": "same"},
    )
    assert str(out[0]) == "f32[B, 8, (H + 1) // 2, (W + 1) // 2]"
    assert ctx.config["pads"] == (None, None)
    assert shapes(
        "Conv1d", {"x": tt("f32", B, 4, 10)}, config={"out": 2, "kernel": 3, "dilation": 2}
    ) == ["f32[B, 2, 6]"]
    assert shapes(
        "Conv3d", {"x": tt("f32", B, 2, 5, 6, 7)}, config={"out": 4, "kernel": (1, 2, 3)}
    ) == ["f32[B, 4, 5, 5, 5]"]


def test_conv_failures():
    cfg = {"out": 8, "kernel": 3}
    fails("Conv2d", {"x": tt("f32", B, C, H, W)}, "E-SHAPE", config=cfg)
    fails("Conv2d", {"x": tt("f32", B, 3, 2, 2)}, "E-SHAPE", config=cfg)
    fails("Conv2d", {"x": tt("f32", B, 3, 8)}, "E-SHAPE", config=cfg)
    fails("Conv2d", {"x": tt("f32", B, 6, 8, 8)}, "E-VALUE", config={**cfg, "groups": 4})
    fails("Conv2d", {"x": tt("f32", B, 6, 8, 8)}, "E-VALUE", config={**cfg, "kernel": (3, 3, 3)})
    fails("Conv2d", {"x": tt("f32", B, 6, 8, 8)}, "E-VALUE", config={**cfg, "stride": 0})
    fails("Conv2d", {"x": tt("f32", B, 6, 8, 8)}, "E-VALUE", config={**cfg, "padding": -1})


@pytest.mark.parametrize("cin,out,kernel,groups", [(3, 8, 3, 1), (8, 8, 3, 8), (4, 6, 5, 2)])
def test_conv_params_and_init_are_pytorchs(cin, out, kernel, groups):
    _, ctx = infer(
        "Conv2d",
        {"x": tt("f32", B, cin, 16, 16)},
        config={"out": out, "kernel": kernel, "groups": groups},
    )
    module = torch.nn.Conv2d(cin, out, kernel, groups=groups)
    state = module.state_dict()
    assert {k: s.shape for k, s in ctx.params.items()} == {
        k: tuple(v.shape) for k, v in state.items()
    }
    fan_in = cin // groups * kernel * kernel
    w, b = ctx.params["weight"].init, ctx.params["bias"].init
    assert w.scheme == "kaiming_uniform" and dict(w.args) == {"a": math.sqrt(5), "fan_in": fan_in}
    assert b.scheme == "uniform" and dict(b.args)["bound"] == pytest.approx(fan_in**-0.5)
    # kaiming_uniform(a=√5) has bound 1/sqrt(fan_in): PyTorch's own draw fits it
    assert state["weight"].abs().max() <= fan_in**-0.5
    _, ctx = infer(
        "Conv2d",
        {"x": tt("f32", B, cin, 16, 16)},
        config={"out": out, "kernel": kernel, "bias": False},
    )
    assert list(ctx.params) == ["weight"]


def test_conv_transpose_rules_and_params():
    out, ctx = infer(
        "ConvTranspose2d",
        {"x": tt("f32", B, 256, 8, 8)},
        config={"out": 128, "kernel": 2, "stride": 2},
    )
    assert str(out[0]) == "f32[B, 128, 16, 16]"
    module = torch.nn.ConvTranspose2d(256, 128, 2, stride=2)
    assert {k: s.shape for k, s in ctx.params.items()} == {
        k: tuple(v.shape) for k, v in module.state_dict().items()
    }
    # PyTorch's fan_in for a transposed conv is weight.size(1) * k*k = out/groups * k*k
    assert dict(ctx.params["weight"].init.args)["fan_in"] == 128 * 4
    cfg = {"out": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}
    assert shapes("ConvTranspose2d", {"x": tt("f32", B, 8, H, W)}, config=cfg) == [
        "f32[B, 4, 2 * H, 2 * W]"
    ]
    fails(
        "ConvTranspose2d",
        {"x": tt("f32", B, 8, 4, 4)},
        "E-VALUE",
        config={**cfg, "output_padding": 2},
    )
    fails(
        "ConvTranspose2d",
        {"x": tt("f32", B, 8, 4, 4)},
        "E-VALUE",
        config={**cfg, "padding": "same"},
    )
    fails("ConvTranspose2d", {"x": tt("f32", B, 8, 4)}, "E-SHAPE", config=cfg)


def test_conv_transpose_1d_3d_rules_and_params():
    cfg = {"out": 4, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}
    assert shapes("ConvTranspose1d", {"x": tt("f32", B, 8, H)}, config=cfg) == ["f32[B, 4, 2 * H]"]
    out, ctx = infer("ConvTranspose3d", {"x": tt("f32", B, 8, 3, H, W)}, config=cfg)
    assert str(out[0]) == "f32[B, 4, 6, 2 * H, 2 * W]"
    for n, x in ((1, tt("f32", B, 8, 5)), (3, tt("f32", B, 8, 2, 3, 4))):
        _, ctx = infer(f"ConvTranspose{n}d", {"x": x}, config={**cfg, "groups": 2})
        module = getattr(torch.nn, f"ConvTranspose{n}d")(8, 4, 3, groups=2)
        assert {k: s.shape for k, s in ctx.params.items()} == {
            k: tuple(v.shape) for k, v in module.state_dict().items()
        }
    fails("ConvTranspose1d", {"x": tt("f32", B, 8, 4, 4)}, "E-SHAPE", config=cfg)
    fails("ConvTranspose3d", {"x": tt("f32", B, 8, 4, 4)}, "E-SHAPE", config=cfg)
    fails(
        "ConvTranspose3d",
        {"x": tt("f32", B, 8, 4, 4, 4)},
        "E-VALUE",
        config={**cfg, "kernel": (2, 2)},
    )


# ---------------------------------------------------------------- references


CONV2D = [
    dict(out=4, kernel=3),
    dict(out=4, kernel=3, stride=2, padding=1),
    dict(out=6, kernel=(2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    dict(out=6, kernel=3, groups=3, padding=2, dilation=2),
    dict(out=4, kernel=3, stride=2, padding="same"),
    dict(out=4, kernel=4, padding="same"),
    dict(out=5, kernel=1, bias=False),
]


@pytest.mark.parametrize("cfg", CONV2D)
def test_conv2d_matches_onnx_and_torch(cfg):
    x = randn(RNG, 2, 3, 8, 9)
    (y,), params, ctx = run_ref("Conv2d", {"x": x}, config=cfg, rng=RNG)
    c = ctx.config
    inputs = [x, params["weight"]] + ([params["bias"]] if "bias" in params else [])
    expected = onnx_node(
        "Conv",
        inputs,
        strides=list(c["stride"]),
        pads=_onnx_pads(c["pads"]),
        dilations=list(c["dilation"]),
        group=c["groups"],
    )[0]
    close(y, expected, atol=1e-5)
    xt = F.pad(
        torch.from_numpy(x), [c["pads"][1][0], c["pads"][1][1], c["pads"][0][0], c["pads"][0][1]]
    )
    expected = F.conv2d(
        xt,
        torch.from_numpy(params["weight"]),
        None if "bias" not in params else torch.from_numpy(params["bias"]),
        stride=c["stride"],
        dilation=c["dilation"],
        groups=c["groups"],
    )
    close(y, expected.numpy(), atol=1e-5)


def test_conv1d_and_conv3d_match_onnx():
    x = randn(RNG, 2, 4, 11)
    (y,), params, ctx = run_ref(
        "Conv1d",
        {"x": x},
        rng=RNG,
        config=dict(out=6, kernel=3, stride=2, padding="same", groups=2),
    )
    expected = onnx_node(
        "Conv",
        [x, params["weight"], params["bias"]],
        strides=[2],
        pads=_onnx_pads(ctx.config["pads"]),
        group=2,
    )[0]
    close(y, expected, atol=1e-5)
    x = randn(RNG, 1, 2, 4, 5, 6)
    (y,), params, _ = run_ref(
        "Conv3d", {"x": x}, rng=RNG, config=dict(out=3, kernel=(2, 3, 3), padding=(0, 1, 1))
    )
    expected = onnx_node("Conv", [x, params["weight"], params["bias"]], pads=[0, 1, 1, 0, 1, 1])
    close(y, expected[0], atol=1e-5)


CONVT = [
    dict(out=4, kernel=2, stride=2),
    dict(out=4, kernel=3, stride=2, padding=1, output_padding=1),
    dict(out=6, kernel=3, stride=(2, 3), padding=(1, 0), output_padding=(0, 2), groups=3),
    dict(out=2, kernel=3, dilation=2, padding=1, bias=False),
    dict(out=3, kernel=(3, 2), stride=1, dilation=(2, 1), output_padding=(1, 0)),
]


@pytest.mark.parametrize("cfg", CONVT)
def test_conv_transpose2d_matches_onnx_and_torch(cfg):
    x = randn(RNG, 2, 3, 4, 5)
    (y,), params, ctx = run_ref("ConvTranspose2d", {"x": x}, config=cfg, rng=RNG)
    c = ctx.config
    w = torch.from_numpy(params["weight"])
    b = torch.from_numpy(params["bias"]) if "bias" in params else None
    expected = F.conv_transpose2d(
        torch.from_numpy(x),
        w,
        b,
        stride=c["stride"],
        padding=tuple(p[0] for p in c["pads"]),
        output_padding=c["output_padding"],
        groups=c["groups"],
        dilation=c["dilation"],
    )
    close(y, expected.numpy(), atol=1e-5)
    if any(o >= s for o, s in zip(c["output_padding"], c["stride"], strict=True)):
        return  # PyTorch allows output_padding < dilation; ONNX Runtime refuses ≥ stride
    # onnx.reference (1.23) cannot run grouped or dilated ConvTranspose: use ONNX Runtime
    inputs = [x, params["weight"]] + ([params["bias"]] if "bias" in params else [])
    expected = onnx_node(
        "ConvTranspose",
        inputs,
        strides=list(c["stride"]),
        pads=_onnx_pads(c["pads"]),
        dilations=list(c["dilation"]),
        output_padding=list(c["output_padding"]),
        group=c["groups"],
        runtime="ort",
    )[0]
    close(y, expected, atol=1e-5)
    if c["groups"] == 1 and c["dilation"] == (1, 1):
        expected = onnx_node(
            "ConvTranspose",
            inputs,
            strides=list(c["stride"]),
            pads=_onnx_pads(c["pads"]),
            output_padding=list(c["output_padding"]),
        )
        close(y, expected[0], atol=1e-5)


CONVT_ND = [  # (input spatial sizes, config)
    ((7,), dict(out=4, kernel=3, stride=2, padding=1, output_padding=1)),
    ((6,), dict(out=6, kernel=4, stride=3, padding=2, groups=3, dilation=2, output_padding=2)),
    ((5,), dict(out=2, kernel=1, bias=False)),
    ((3, 4, 5), dict(out=4, kernel=2, stride=2)),
    ((2, 3, 4), dict(out=6, kernel=(3, 2, 3), stride=(1, 2, 2), padding=(1, 0, 1), groups=3)),
    ((3, 3, 3), dict(out=2, kernel=3, stride=2, dilation=(1, 2, 1), output_padding=(1, 1, 0))),
]


@pytest.mark.parametrize("spatial,cfg", CONVT_ND)
def test_conv_transpose_1d_3d_match_torch_and_onnx_runtime(spatial, cfg):
    n = len(spatial)
    x = randn(RNG, 2, 3, *spatial)
    (y,), params, ctx = run_ref(f"ConvTranspose{n}d", {"x": x}, config=cfg, rng=RNG)
    c = ctx.config
    module = getattr(torch.nn, f"ConvTranspose{n}d")(
        3,
        c["out"],
        c["kernel"],
        stride=c["stride"],
        padding=tuple(p[0] for p in c["pads"]),
        output_padding=c["output_padding"],
        groups=c["groups"],
        dilation=c["dilation"],
        bias=c["bias"],
    )
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    with torch.no_grad():
        close(y, module(torch.from_numpy(x)).numpy(), atol=1e-5)
    if any(o >= s for o, s in zip(c["output_padding"], c["stride"], strict=True)):
        return  # ONNX Runtime refuses an output_padding ≥ stride
    inputs = [x, params["weight"]] + ([params["bias"]] if "bias" in params else [])
    expected = onnx_node(
        "ConvTranspose",
        inputs,
        strides=list(c["stride"]),
        pads=_onnx_pads(c["pads"]),
        dilations=list(c["dilation"]),
        output_padding=list(c["output_padding"]),
        group=c["groups"],
        runtime="ort",
    )[0]
    close(y, expected, atol=1e-5)

"""Normalisation layers: rules, parameter names/shapes/initialisers against PyTorch's
state_dict, and inference-mode references against ONNX and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opkit import B, C, H, T, W, close, fails, infer, onnx_node, randn, run_ref, tt

RNG = np.random.default_rng(4)


def _torch_state(module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if k != "num_batches_tracked"}


def _specs(ctx) -> dict:
    return {k: s.shape for k, s in {**ctx.params, **ctx.buffers}.items()}


def _load(module, params):
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=False)
    return module.eval()


# ---------------------------------------------------------------- BatchNorm


def test_batchnorm_rules_and_params():
    for x in (
        tt("f32", B, 64, H, W),
        tt("f32", B, 64),
        tt("f32", B, 64, T),
        tt("f32", B, 64, 2, H, W),
    ):
        out, ctx = infer("BatchNorm", {"x": x})
        assert out == [x]
    assert ctx.config == {"eps": 1e-5, "momentum": 0.1, "num_features": 64, "rank": x.rank}
    assert _specs(ctx) == _torch_state(torch.nn.BatchNorm2d(64))
    assert list(ctx.params) == ["weight", "bias"]
    assert list(ctx.buffers) == ["running_mean", "running_var"]
    inits = {k: s.init.scheme for k, s in {**ctx.params, **ctx.buffers}.items()}
    assert inits == {
        "weight": "ones",
        "bias": "zeros",
        "running_mean": "zeros",
        "running_var": "ones",
    }
    assert not any(s.trainable for s in ctx.buffers.values())
    fails("BatchNorm", {"x": tt("f32", B, C, H, W)}, "E-SHAPE")
    fails("BatchNorm", {"x": tt("f32", B)}, "E-SHAPE")
    fails("BatchNorm", {"x": tt("f32", B, 3, 2, 2, 2, 2)}, "E-SHAPE")
    fails("BatchNorm", {"x": tt("f32", B, 3)}, "E-VALUE", config={"momentum": 1.5})
    fails("BatchNorm", {"x": tt("f32", B, 3)}, "E-VALUE", config={"eps": -1.0})


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 5), (2, 3, 4, 5), (2, 3, 2, 3, 4)])
def test_batchnorm_matches_onnx_and_torch(shape):
    x = randn(RNG, *shape)
    (y,), params, _ = run_ref("BatchNorm", {"x": x}, config={"eps": 1e-3}, rng=RNG)
    expected = onnx_node(
        "BatchNormalization",
        [x, params["weight"], params["bias"], params["running_mean"], params["running_var"]],
        epsilon=1e-3,
    )[0]
    close(y, expected)
    cls = {
        2: torch.nn.BatchNorm1d,
        3: torch.nn.BatchNorm1d,
        4: torch.nn.BatchNorm2d,
        5: torch.nn.BatchNorm3d,
    }[len(shape)]
    bn = _load(cls(3, eps=1e-3), params)
    close(y, bn(torch.from_numpy(x)).detach().numpy())


# ---------------------------------------------------------------- LayerNorm


def test_layernorm_rules_and_params():
    out, ctx = infer("LayerNorm", {"x": tt("f32", B, T, 128)})
    assert str(out[0]) == "f32[B, T, 128]" and ctx.config["normalized_shape"] == (128,)
    assert _specs(ctx) == _torch_state(torch.nn.LayerNorm(128))
    assert {k: s.init.scheme for k, s in ctx.params.items()} == {"weight": "ones", "bias": "zeros"}
    _, ctx = infer("LayerNorm", {"x": tt("f32", B, T, 8, 16)}, config={"axes": 2})
    assert _specs(ctx) == _torch_state(torch.nn.LayerNorm((8, 16)))
    fails("LayerNorm", {"x": tt("f32", B, 8, T)}, "E-SHAPE", match="`T`")
    fails("LayerNorm", {"x": tt("f32", B, T, 8)}, "E-SHAPE", config={"axes": 2})
    fails("LayerNorm", {"x": tt("f32", 4, 8)}, "E-SHAPE", config={"axes": 3})
    fails("LayerNorm", {"x": tt("f32", 4, 8)}, "E-VALUE", config={"axes": 0})


def test_layernorm_without_bias_is_torchs():
    """LayerNorm(bias=false): no bias tensor (nn.LayerNorm(bias=False)), the same numbers."""
    _, ctx = infer("LayerNorm", {"x": tt("f32", B, 8, 16)}, config={"axes": 2, "bias": False})
    ln = torch.nn.LayerNorm((8, 16), bias=False)
    assert _specs(ctx) == _torch_state(ln)
    x = randn(RNG, 2, 8, 16)
    (y,), params, _ = run_ref("LayerNorm", {"x": x}, config={"axes": 2, "bias": False}, rng=RNG)
    close(y, _load(ln, params)(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "shape,axes", [((2, 5, 16), 1), ((2, 3, 4, 5), 2), ((2, 3, 4, 5), 3), ((6, 7), 2)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layernorm_matches_onnx_and_torch(shape, axes, dtype):
    x = (randn(RNG, *shape, dtype=dtype) * 3 + 1).astype(dtype)
    (y,), params, _ = run_ref("LayerNorm", {"x": x}, config={"axes": axes, "eps": 1e-12}, rng=RNG)
    scale, bias = (params[k].astype(dtype) for k in ("weight", "bias"))
    expected = onnx_node("LayerNormalization", [x, scale, bias], axis=-axes, epsilon=1e-12)[0]
    close(y, expected)
    ln = _load(torch.nn.LayerNorm(shape[-axes:], eps=1e-12), params)
    close(y, ln(torch.from_numpy(x.astype(np.float32))).detach().numpy().astype(dtype), atol=1e-5)


# ---------------------------------------------------------------- RMSNorm


def test_rmsnorm_rules_params_and_default_eps():
    out, ctx = infer("RMSNorm", {"x": tt("f32", B, T, 128)})
    assert str(out[0]) == "f32[B, T, 128]" and ctx.config["normalized_shape"] == (128,)
    assert _specs(ctx) == _torch_state(torch.nn.RMSNorm(128))
    assert {k: s.init.scheme for k, s in ctx.params.items()} == {"weight": "ones"}
    for dtype, torch_dtype in (("f32", torch.float32), ("f64", torch.float64)):
        _, ctx = infer("RMSNorm", {"x": tt(dtype, B, 8, 16)}, config={"axes": 2})
        assert ctx.config["eps"] == torch.finfo(torch_dtype).eps  # PyTorch's eps=None
    assert _specs(ctx) == _torch_state(torch.nn.RMSNorm((8, 16)))
    fails("RMSNorm", {"x": tt("f32", B, 8, T)}, "E-SHAPE", match="`T`")
    fails("RMSNorm", {"x": tt("f32", 4, 8)}, "E-VALUE", config={"axes": 0})
    fails("RMSNorm", {"x": tt("f32", 4, 8)}, "E-VALUE", config={"eps": -1.0})


@pytest.mark.parametrize("shape,axes", [((2, 5, 16), 1), ((2, 3, 4, 5), 2), ((6, 7), 2)])
@pytest.mark.parametrize("eps", [None, 1e-6])
def test_rmsnorm_matches_torch(shape, axes, eps):
    x = (randn(RNG, *shape) * 3 + 1).astype(np.float32)
    config = {"axes": axes} if eps is None else {"axes": axes, "eps": eps}
    (y,), params, _ = run_ref("RMSNorm", {"x": x}, config=config, rng=RNG)
    norm = _load(torch.nn.RMSNorm(shape[-axes:], eps=eps), params)
    close(y, norm(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


# ---------------------------------------------------------------- GroupNorm


def test_groupnorm_rules_and_params():
    out, ctx = infer("GroupNorm", {"x": tt("f32", B, 32, H, W)}, config={"groups": 8})
    assert str(out[0]) == "f32[B, 32, H, W]" and ctx.config["num_channels"] == 32
    assert _specs(ctx) == _torch_state(torch.nn.GroupNorm(8, 32))
    fails("GroupNorm", {"x": tt("f32", B, 30, H, W)}, "E-VALUE", config={"groups": 8})
    fails("GroupNorm", {"x": tt("f32", B, C, H, W)}, "E-SHAPE", config={"groups": 8})
    fails("GroupNorm", {"x": tt("f32", B, 8)}, "E-VALUE", config={"groups": 0})


@pytest.mark.parametrize(
    "shape,groups", [((2, 6, 4, 5), 3), ((2, 6, 7), 2), ((2, 4, 3, 3), 4), ((3, 4, 5), 1)]
)
def test_groupnorm_matches_onnx21_and_torch(shape, groups):
    x = randn(RNG, *shape)
    (y,), params, _ = run_ref("GroupNorm", {"x": x}, config={"groups": groups}, rng=RNG)
    # opset 21: per-channel scale and bias (opset 18 had per-group ones)
    expected = onnx_node(
        "GroupNormalization",
        [x, params["weight"], params["bias"]],
        num_groups=groups,
        epsilon=1e-5,
        opset=21,
    )[0]
    close(y, expected)
    gn = _load(torch.nn.GroupNorm(groups, shape[1]), params)
    close(y, gn(torch.from_numpy(x)).detach().numpy())

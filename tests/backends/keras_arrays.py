"""Array helpers shared by the Keras weight tests: the NumPy reference of one layer op with
random parameters, a relative closeness check, and the channels-first ↔ channels-last moves.
No framework is imported here."""

from __future__ import annotations

import numpy as np

from dualnet.ir.types import DType, TensorType
from dualnet.ops import REGISTRY
from dualnet.ops.registry import REQUIRED, run_rule

_DTYPES = {
    np.dtype(np.float32): DType.f32,
    np.dtype(np.int64): DType.i64,
    np.dtype(np.bool_): DType.bool,
}


def filled(signature, given: dict) -> dict:
    """The arguments of `signature` that `given` sets or that have a default."""
    return {
        p.name: given.get(p.name, p.default)
        for p in signature.params
        if not p.is_tensor and (p.name in given or p.default is not REQUIRED)
    }


def reference(op: str, inputs: dict, config: dict, call: dict | None = None, seed: int = 0):
    """Run `op`'s rule and NumPy reference on `inputs` with random parameters (variances
    positive). Returns (first output, params, completed config)."""
    o = REGISTRY[op]
    tensors = {p.name: inputs.get(p.name) for p in o.signature.params if p.is_tensor}
    types = {
        k: None if v is None else TensorType(_DTYPES[v.dtype], v.shape) for k, v in tensors.items()
    }
    _, ctx = run_rule(
        o, types, filled(o.signature, call or {}), {}, None, filled(o.construct, config)
    )
    rng = np.random.default_rng(seed)
    params = {}
    for name, spec in {**ctx.params, **ctx.buffers}.items():
        v = rng.standard_normal(spec.shape)
        params[name] = (np.abs(v) + 0.5 if "var" in name else v).astype(np.float32)
    result = o.reference(tensors, {**ctx.config, **ctx.attrs}, params)[0]
    return result, params, ctx.config


def close(actual, expected, tol: float = 1e-5) -> None:
    """Equal shapes, and max |a − e| / (1 + max |e|) at most `tol`."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = np.max(np.abs(actual - expected)) / (1 + np.max(np.abs(expected)))
    assert err <= tol, err


def channels_last(x):
    """[B, C, *spatial] → [B, *spatial, C]."""
    return np.moveaxis(x, 1, -1)


def channels_last_back(y):
    """[B, *spatial, C] → [B, C, *spatial]."""
    return np.moveaxis(y, -1, 1)

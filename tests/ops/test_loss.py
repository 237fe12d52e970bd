"""Losses and metrics (`dualnet/ops/loss.py`): the NumPy references against
torch.nn.functional itself (each backend's lowering is tested against the reference in
tests/backends), and the shape rules' diagnostics."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest

from dualnet.frontend import check_file
from dualnet.ops import REGISTRY
from tests.ops.opkit import B, C, fails, shapes, tt

torch = pytest.importorskip("torch")
F = torch.nn.functional
RNG = np.random.default_rng(5)


def _reference(op: str, inputs: dict, **attrs):
    defaults = {p.name: p.default for p in REGISTRY[op].signature.params if not p.is_tensor}
    return REGISTRY[op].reference(inputs, {**defaults, **attrs}, {})[0]


def _close(ours, theirs, dtype) -> None:
    theirs = theirs.detach().numpy()
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)


CLASS_SHAPES = [(8, 5), (3, 4, 6), (2, 3, 4, 5)]
CLASS_OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"ignore_index": 2, "label_smoothing": 0.3},
    {"ignore_index": -100, "label_smoothing": 0.2, "reduction": "sum"},
    {"ignore_index": 1, "label_smoothing": 0.05, "reduction": "none"},
]


def _labels(shape, ignore: int | None):
    n, c, *rest = shape
    labels = RNG.integers(0, c, (n, *rest))
    if ignore is not None:
        labels.reshape(-1)[::3] = ignore  # some ignored, never all
    return labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("options", CLASS_OPTIONS)
def test_cross_entropy_and_nll_are_pytorchs(dtype, shape, options):
    x = (RNG.standard_normal(shape) * 3).astype(dtype)
    labels = _labels(shape, options.get("ignore_index", -100))
    tx, tl = torch.from_numpy(x), torch.from_numpy(labels)
    ours = _reference("cross_entropy", {"input": x, "target": labels}, **options)
    _close(ours, F.cross_entropy(tx, tl, **options), dtype)
    plain = {k: v for k, v in options.items() if k != "label_smoothing"}
    log_probs = F.log_softmax(tx, 1)
    ours = _reference("nll", {"input": log_probs.numpy(), "target": labels}, **plain)
    _close(ours, F.nll_loss(log_probs, tl, **plain), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("options", CLASS_OPTIONS)
def test_class_weights_and_probability_targets_are_pytorchs(dtype, shape, options):
    x = (RNG.standard_normal(shape) * 3).astype(dtype)
    weight = (RNG.random(shape[1]) * 2 + 0.1).astype(dtype)
    labels = _labels(shape, options.get("ignore_index", -100))
    tx, tl, tw = torch.from_numpy(x), torch.from_numpy(labels), torch.from_numpy(weight)
    inputs = {"input": x, "target": labels, "weight": weight}
    ours = _reference("cross_entropy", inputs, **options)
    _close(ours, F.cross_entropy(tx, tl, weight=tw, **options), dtype)
    plain = {k: v for k, v in options.items() if k != "label_smoothing"}
    log_probs = F.log_softmax(tx, 1)
    ours = _reference("nll", {**inputs, "input": log_probs.numpy()}, **plain)
    _close(ours, F.nll_loss(log_probs, tl, weight=tw, **plain), dtype)
    probs = F.softmax(torch.from_numpy(RNG.standard_normal(shape).astype(dtype)), 1)
    soft = {k: v for k, v in options.items() if k != "ignore_index"}  # class indices only
    for w in (None, tw):
        given = {"input": x, "target": probs.numpy()} | ({} if w is None else {"weight": weight})
        ours = _reference("cross_entropy", given, **soft)
        _close(ours, F.cross_entropy(tx, probs, weight=w, **soft), dtype)


POINTWISE = {
    "mse": (F.mse_loss, {}),
    "l1": (F.l1_loss, {}),
    "smooth_l1": (F.smooth_l1_loss, {"beta": 0.4}),
    "huber": (F.huber_loss, {"delta": 0.7}),
    "binary_cross_entropy_with_logits": (F.binary_cross_entropy_with_logits, {}),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", POINTWISE)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(6,), (4, 3), (2, 3, 5)])
def test_pointwise_losses_are_pytorchs(dtype, op, reduction, shape):
    fn, options = POINTWISE[op]
    x = (RNG.standard_normal(shape) * 2).astype(dtype)
    t = RNG.random(shape).astype(dtype)  # in [0, 1]: also a probability for BCE
    ours = _reference(op, {"input": x, "target": t}, reduction=reduction, **options)
    theirs = fn(torch.from_numpy(x), torch.from_numpy(t), reduction=reduction, **options)
    _close(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_pos_weight_and_large_logits(dtype):
    x = (RNG.standard_normal((5, 4)) * 40).astype(dtype)  # exp(-x) overflows unless stable
    t = RNG.random((5, 4)).astype(dtype)
    w = (RNG.random(4) * 3).astype(dtype)
    for reduction in ("mean", "none"):
        ours = _reference(
            "binary_cross_entropy_with_logits",
            {"input": x, "target": t, "pos_weight": w},
            reduction=reduction,
        )
        theirs = F.binary_cross_entropy_with_logits(
            torch.from_numpy(x),
            torch.from_numpy(t),
            pos_weight=torch.from_numpy(w),
            reduction=reduction,
        )
        _close(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_is_pytorchs(dtype, reduction, log_target):
    x = F.log_softmax(torch.from_numpy(RNG.standard_normal((4, 6)).astype(dtype)), 1)
    p = F.softmax(torch.from_numpy(RNG.standard_normal((4, 6)).astype(dtype)), 1)
    if not log_target:
        p[0, 2] = 0  # 0 · log 0 = 0
    t = p.log() if log_target else p
    ours = _reference(
        "kl_div",
        {"input": x.numpy(), "target": t.numpy()},
        reduction=reduction,
        log_target=log_target,
    )
    with pytest.warns(UserWarning) if reduction == "mean" else nullcontext():
        theirs = F.kl_div(x, t, reduction=reduction, log_target=log_target)
    _close(ours, theirs, dtype)


@pytest.mark.parametrize("shape", CLASS_SHAPES)
def test_accuracy_and_top_k_count_the_hits(shape):
    x = RNG.standard_normal(shape).astype(np.float32)
    labels = _labels(shape, None)
    tx, tl = torch.from_numpy(x), torch.from_numpy(labels)
    hits = (tx.argmax(1) == tl).float().mean()
    _close(_reference("accuracy", {"input": x, "target": labels}), hits, np.float32)
    for k in (1, 2, shape[1]):  # no ties in random floats: topk's membership is the rule
        top = tx.topk(k, dim=1).indices
        hits = (top == tl.unsqueeze(1)).any(1).float().mean()
        ours = _reference("top_k_accuracy", {"input": x, "target": labels}, k=k)
        _close(ours, hits, np.float32)


def test_shapes_of_the_results():
    logits, labels = tt("f32", B, C), tt("i64", B)
    assert shapes("cross_entropy", {"input": logits, "target": labels}) == ["f32[]"]
    none = shapes("cross_entropy", {"input": logits, "target": labels}, reduction="none")
    assert none == ["f32[B]"]
    seg = {"input": tt("f64", B, 4, 8, 8), "target": tt("i64", B, 8, 8)}
    assert shapes("nll", seg, reduction="none") == ["f64[B, 8, 8]"]
    assert shapes("top_k_accuracy", seg, k=3) == ["f64[]"]
    pair = {"input": tt("f32", B, 3), "target": tt("f32", B, 3)}
    assert shapes("kl_div", pair, reduction="batchmean") == ["f32[]"]
    assert shapes("huber", pair, reduction="none") == ["f32[B, 3]"]


def test_bad_arguments_are_diagnosed():
    logits = tt("f32", B, 5)
    fails("cross_entropy", {"input": logits, "target": tt("i64", B, 5)}, code="E-SHAPE")
    fails("cross_entropy", {"input": logits, "target": tt("i32", B)}, code="E-DTYPE")
    fails("cross_entropy", {"input": tt("f32", B), "target": tt("i64", B)}, code="E-SHAPE")
    fails(
        "cross_entropy",
        {"input": logits, "target": tt("i64", B)},
        code="E-VALUE",
        label_smoothing=1.5,
    )
    fails("top_k_accuracy", {"input": logits, "target": tt("i64", B)}, code="E-VALUE", k=0)
    pair = {"input": tt("f32", B, 3), "target": tt("f32", B, 4)}
    fails("mse", pair, code="E-SHAPE")
    fails("mse", {"input": tt("f32", B, 3), "target": tt("f64", B, 3)}, code="E-SHAPE")
    same = {"input": tt("f32", B, 3), "target": tt("f32", B, 3)}
    fails("huber", same, code="E-VALUE", delta=0.0)
    weighted = {**same, "pos_weight": tt("f32", 4)}
    fails("binary_cross_entropy_with_logits", weighted, code="E-SHAPE")
    labels = tt("i64", B)
    fails(
        "cross_entropy", {"input": logits, "target": labels, "weight": tt("f32", 4)}, code="E-SHAPE"
    )
    fails("nll", {"input": logits, "target": labels, "weight": tt("f64", 5)}, code="E-SHAPE")
    fails("cross_entropy", {"input": logits, "target": tt("f32", B, 4)}, code="E-SHAPE")
    fails("cross_entropy", {"input": logits, "target": tt("f64", B, 5)}, code="E-SHAPE")


def test_probability_targets_reduce_over_the_examples():
    soft = {"input": tt("f32", B, C, 4), "target": tt("f32", B, C, 4)}
    assert shapes("cross_entropy", soft) == ["f32[]"]
    assert shapes("cross_entropy", soft, reduction="none") == ["f32[B, 4]"]
    weighted = {**soft, "weight": tt("f32", C)}
    assert shapes("cross_entropy", weighted, label_smoothing=0.1) == ["f32[]"]


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ('mse(x, y, reduction="batchmean")', "E-TYPE"),
        ("accuracy(x, labels, k=2)", "E-ARGS"),
        ("nll(x, y)", "E-DTYPE"),
        ("cross_entropy(x, labels, weight=y)", "E-SHAPE"),
    ],
)
def test_bad_calls_in_a_program(tmp_path, call, code):
    path = tmp_path / "m.dnet"
    path.write_text(
        "model M() {\n    forward(x: f32[B, 3], y: f32[B, 3], labels: i64[B]) -> f32[] {\n"
        f"        return {call}\n    }}\n}}\n"
    )
    diagnostics = check_file(str(path)).diagnostics
    assert [d.code for d in diagnostics] == [code], diagnostics

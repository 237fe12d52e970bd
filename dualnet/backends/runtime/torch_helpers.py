"""Runtime helpers of generated PyTorch files: real code that dualnet never imports.

A few lowerings cannot be one plain torch call: padding computed at run time, pooling and
attention rules where PyTorch's behaviour differs from dualnet's, BatchNorm's extra buffer,
a layer's `init=`; the emitter adds `_Function` (a Sequential step) and `_unchecked`.
`runtime_source.helper_sources` reads each top-level definition's text from this file, and
the emitter pastes the ones a generated file uses (with the helpers those use) after its
imports. So a helper uses only the generated file's imports (below) and other helpers, and
is formatted as generated files are (ruff's defaults: `ruff.toml`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _pad_same(x, kernel, stride, dilation=None, value=0.0):
    """Pads the spatial axes of `x` (2, 3, ...) by TensorFlow's "same" rule, computed from
    x's sizes at run time: per axis, a total of max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n,
    0), the odd pixel at the end."""
    dilation = dilation or (1,) * len(kernel)
    pads = []
    for n, k, s, d in zip(x.shape[2:], kernel, stride, dilation, strict=True):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        pads = [
            total // 2,
            total - total // 2,
        ] + pads  # F.pad lists the last axis first
    return F.pad(x, pads, value=value)


def _avg_pool(x, kernel, stride, pads=None):
    """Average pooling that divides by the number of unpadded elements under each window
    (count_include_pad=False), with asymmetric `pads` ((before, after) per spatial axis), or
    TensorFlow's "same" padding computed at run time when `pads` is None."""
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[len(kernel) - 1]
    ones = torch.ones_like(x[:1, :1])
    if pads is None:
        x, ones = _pad_same(x, kernel, stride), _pad_same(ones, kernel, stride)
    else:
        flat = [p for pair in reversed(pads) for p in pair]
        x, ones = F.pad(x, flat), F.pad(ones, flat)
    return pool(x, kernel, stride) / pool(ones, kernel, stride)


def _attention(q, k, v, mask=None, causal=False, bias=None, scale=None, dropout=0.0):
    """Scaled dot-product attention with a bool `mask` (true = may attend), an optional
    top-left causal rule, a float `bias` added to the scores and `dropout` on the weights. A
    query that may attend no key gets all-zero attention weights, so its result is 0
    (PyTorch alone would give NaN)."""
    if mask is None:
        mask = torch.ones(k.shape[-2], dtype=torch.bool, device=q.device)
    if mask.dim() == 1:  # a key mask [Tk]: PyTorch wants one of rank >= 2
        mask = mask[None]
    if causal:
        mask = (
            mask
            & torch.ones(
                q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device
            ).tril()
        )
    empty = ~mask.any(dim=-1, keepdim=True)
    keep = mask | empty
    if bias is not None:  # one float mask: the bias where allowed, -inf elsewhere
        keep = torch.where(keep, bias, float("-inf"))
    y = F.scaled_dot_product_attention(
        q, k, v, attn_mask=keep, dropout_p=dropout, scale=scale
    )
    return y.masked_fill(empty, 0.0)


def _bn(module):
    """`module`, a BatchNorm, without `num_batches_tracked` in its state_dict: dualnet's weight
    files hold weight, bias, running_mean and running_var only. The counter only matters when
    momentum is None, which dualnet never uses; it stays as a non-persistent buffer. Its
    backward gets its gradient in its output's layout (`_gradient_in_output_layout`)."""
    module.register_buffer(
        "num_batches_tracked", module.num_batches_tracked, persistent=False
    )
    module.register_load_state_dict_pre_hook(_skip_num_batches_tracked)
    module.register_forward_hook(_gradient_in_output_layout)
    return module


def _gradient_in_output_layout(
    module: nn.Module, args: tuple[torch.Tensor], output: torch.Tensor
) -> None:
    """A forward hook of every BatchNorm: the gradient that reaches its backward is first
    laid out as its output is. PyTorch's CPU BatchNorm backward computes wrong gradients
    when the two layouts differ around a size-1 axis (channels-last against contiguous:
    the gradient of an attention over [B, C, L, 1] is one); an upstream bug, shown in
    dualnet's tests/backends/test_upstream_bugs.py. The copy happens only then. (Typed, so
    that torch.jit.script compiles it; TorchScript has no tensor hooks.)"""
    if not torch.jit.is_scripting():
        _lay_out_gradient(output)


@torch.jit.unused
def _lay_out_gradient(output):
    if output.requires_grad:
        strides = output.stride()
        output.register_hook(lambda grad: _laid_out(grad, strides))


def _laid_out(grad, strides):
    """`grad` with `strides`: itself, or a copy where its own differ."""
    if grad.stride() == strides:
        return grad
    return torch.empty_strided(
        grad.shape, strides, dtype=grad.dtype, device=grad.device
    ).copy_(grad)


def _skip_num_batches_tracked(module, state_dict, prefix, *args):
    """BatchNorm adds `num_batches_tracked` to a state dict that lacks it (or a PyTorch
    checkpoint has one): drop it before loading."""
    state_dict.pop(prefix + "num_batches_tracked", None)


def _unpack_lstm(result):
    """nn.LSTM's (y, (h, c)) as (y, h, c)."""
    y, (h, c) = result
    return y, h, c


def _child(module, name):
    """Child `name` of a generated module, one held under another attribute too (a name
    nn.Module keeps for itself: `_state_names`)."""
    if name in module._modules:
        return module._modules[name]
    return module._modules[module._dualnet_attrs[name]]


def _state_names(module, names):
    """Gives children held under another attribute (`names`: attribute → .dnet name, for a
    name nn.Module keeps for itself, such as `training`) their .dnet names in state_dict and
    load_state_dict."""

    def renamed(state_dict, prefix, old, new):
        items = list(state_dict.items())
        state_dict.clear()
        for key, value in items:
            for a, b in zip(old, new, strict=True):
                if key.startswith(prefix + a + "."):
                    key = prefix + b + key[len(prefix + a) :]
                    break
            state_dict[key] = value

    attrs, dnet = list(names), list(names.values())
    module._dualnet_attrs = {b: a for a, b in names.items()}  # for `_child`
    module.register_state_dict_post_hook(
        lambda module, state_dict, prefix, local: renamed(
            state_dict, prefix, attrs, dnet
        )
    )
    module.register_load_state_dict_pre_hook(
        lambda module, state_dict, prefix, *args: renamed(
            state_dict, prefix, dnet, attrs
        )
    )
    return module


def _pad_first(module, pad):
    """`module` (a convolution, a step of an nn.Sequential) with its input padded by `pad`
    first, where nn.Conv's own `padding=` cannot say the padding; its parameters keep their
    names. Its forward is a method bound to it, so a copy (copy.deepcopy) runs its own."""
    module.pad_first = pad
    module.forward = _forward_padded.__get__(module)
    return module


def _forward_padded(self, x):
    return type(self).forward(self, self.pad_first(x))


def _init(module, scheme="default", bias="default", **kwargs):
    """`module` with its weight drawn by torch.nn.init's `scheme` with `kwargs` (dualnet's
    `init=`) and its bias, where it has one, set by `bias` (`bias_init=`: "zeros" or "ones");
    "default" keeps what PyTorch made."""
    schemes = {
        "kaiming_uniform": nn.init.kaiming_uniform_,
        "kaiming_normal": nn.init.kaiming_normal_,
        "xavier_uniform": nn.init.xavier_uniform_,
        "xavier_normal": nn.init.xavier_normal_,
        "normal": nn.init.normal_,
        "trunc_normal": nn.init.trunc_normal_,
        "uniform": nn.init.uniform_,
        "constant": nn.init.constant_,
        "zeros": nn.init.zeros_,
        "ones": nn.init.ones_,
    }
    if scheme != "default":
        schemes[scheme](module.weight, **kwargs)
    if bias != "default" and module.bias is not None:
        schemes[bias](module.bias)
    return module


class _LayerNorm2d(nn.LayerNorm):
    """torchvision's LayerNorm2d: nn.LayerNorm over the channel axis 1 of [B, C, ...]
    (weight and bias [C]), each position on its own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(
            x.movedim(1, -1), self.normalized_shape, self.weight, self.bias, self.eps
        )
        return x.movedim(-1, 1)


class _MultiheadAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention(batch_first=True), its parameters, names and dropout, called
    with dualnet's arguments and computed with F.linear and F.scaled_dot_product_attention
    (the module's own forward copies its inputs to sequence-first and back). `mask` is bool
    [B, Tk] or [B, Tq, Tk] with true = may attend, `causal` the top-left rule. A query that
    may attend no key gets out_proj's bias (PyTorch alone would give NaN)."""

    def forward(self, q, k, v, mask=None, causal=False):
        batch, length, dim = q.shape
        weights, biases = self.in_proj_weight.chunk(3), (None,) * 3
        if self.in_proj_bias is not None:
            biases = self.in_proj_bias.chunk(3)
        q, k, v = (  # one product each: a packed one costs copies in backward
            F.linear(x, w, b).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
            for x, w, b in zip((q, k, v), weights, biases, strict=True)
        )
        dropout = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=dropout, is_causal=causal
            )
        else:  # the mask of each batch element, for every head
            mask = mask[:, None, None] if mask.dim() == 2 else mask[:, None]
            y = _attention(q, k, v, mask, causal, dropout=dropout)
        y = y.transpose(1, 2).reshape(batch, length, dim)
        # a query that may attend no key: 0 from _attention, so out_proj gives its bias
        return F.linear(y, self.out_proj.weight, self.out_proj.bias)


class _StochasticDepth(nn.Dropout):
    """torchvision.ops.StochasticDepth: while training, zeroes each sample (mode "row") or
    the whole batch ("batch") with probability p and scales what is kept by 1 / (1 - p);
    identity in eval. An nn.Dropout, so what turns dropout off (p = 0) turns it off."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__(p)
        self.mode = mode

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        keep = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(
            1.0 - self.p
        )
        return x * keep.div_(1.0 - self.p)


class _Function(nn.Module):
    """A parameterless step of an nn.Sequential: applies `fn` to its input."""

    def __init__(self, fn, name: str) -> None:
        super().__init__()
        self.fn = fn
        self.name = name

    def extra_repr(self) -> str:
        return self.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _unchecked(model: str, where: str) -> nn.Module:
    """A configuration dualnet never checked: refuse it rather than guess sizes."""
    raise ValueError(
        f"{model}: dualnet checked no configuration that takes this branch "
        f"({where}); regenerate with such hyperparameters"
    )


def _top_k_accuracy(x, target, k):
    """The fraction of examples whose target class has fewer than k classes scoring
    strictly higher (the target wins ties): x [N, C, ...], target [N, ...]."""
    own = x.gather(1, target.unsqueeze(1))
    return ((x > own).sum(1) < k).to(x.dtype).mean()

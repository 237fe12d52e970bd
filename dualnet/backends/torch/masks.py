"""Given Dropout masks in a generated PyTorch module (`parity --same-dropout`;
`dualnet.verify.dropout_masks`): its call sites, and the masks in place of its own draws."""

from __future__ import annotations

import contextlib
from collections import Counter

import numpy as np
import torch

from dualnet.verify.dropout_masks import Calls, Site, mask_shape


def dropouts(module: torch.nn.Module) -> list[tuple[str, torch.nn.Dropout]]:
    """(path, layer) of each Dropout and StochasticDepth (an nn.Dropout with a `mode`) that
    drops anything (p > 0)."""
    return [
        (path, sub)
        for path, sub in module.named_modules()
        if isinstance(sub, torch.nn.Dropout) and sub.p > 0
    ]


def dropout_off(module: torch.nn.Module, sites: bool = True) -> None:
    """Switches off the attention dropout of every nn.MultiheadAttention in `module` and,
    with `sites`, every Dropout and StochasticDepth: training-mode comparisons, where each
    framework would draw its own masks."""
    for sub in module.modules():
        if isinstance(sub, torch.nn.MultiheadAttention):
            sub.dropout = 0.0
        elif sites and isinstance(sub, torch.nn.Dropout):
            sub.p = 0.0


def call_sites(module: torch.nn.Module, inputs: list[np.ndarray]) -> list[Site]:
    """The sites of one forward pass on `inputs`, in call order."""
    sites, calls = [], Counter()

    def record(path, sub, args):
        shape = mask_shape(tuple(args[0].shape), getattr(sub, "mode", None))
        sites.append(Site(path, calls[path], shape, float(sub.p)))
        calls[path] += 1

    handles = [
        sub.register_forward_pre_hook(lambda sub, args, path=path: record(path, sub, args))
        for path, sub in dropouts(module)
    ]
    try:
        with torch.no_grad():
            module(*(torch.from_numpy(x) for x in inputs))
    finally:
        for handle in handles:
            handle.remove()
    return sites


@contextlib.contextmanager
def given_masks(module: torch.nn.Module, sites: list[Site]):
    """While active, each site computes x · its given mask in training mode (eval mode is
    untouched); yields `feed(masks)`, which sets the masks of the next step (`draw`). On
    exit the layers are as they were."""
    given: dict[tuple[str, int], torch.Tensor] = {}
    calls = Calls(sites)
    layers = [(p, sub) for p, sub in dropouts(module) if p in calls.per_pass]
    owns = [vars(sub).get("forward") for _, sub in layers]
    for path, sub in layers:
        own = sub.forward

        def forward(x, sub=sub, own=own, path=path):
            return x * given[calls.next(path)] if sub.training else own(x)

        sub.forward = forward

    def feed(masks: dict[tuple[str, int], np.ndarray]) -> None:
        given.update({key: torch.from_numpy(mask) for key, mask in masks.items()})

    try:
        yield feed
    finally:
        for (_, sub), own in zip(layers, owns, strict=True):
            if own:
                sub.forward = own
            else:
                del sub.forward

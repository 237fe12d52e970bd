"""`dualnet check --summary`'s multiply-accumulates equal PyTorch's own count: the flops
`torch.utils.flop_counter.FlopCounterMode` records for the generated PyTorch module, halved.
Attention runs on PyTorch's math kernel there, whose matrix products the counter sees (its
fused CPU kernel goes uncounted; the CUDA ones are counted as the same products)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import dualnet
from dualnet.graph.summary import summarize
from dualnet.verify.parity import random_inputs
from reference.harness import MODELS


@pytest.mark.parametrize(
    ("file", "dims"),
    [("resnet18.dnet", {"B": 2}), ("bert_encoder.dnet", {"B": 2, "T": 16})],
)
def test_macs_match_flop_counter(file: str, dims: dict[str, int]) -> None:
    program = dualnet.load(str(MODELS / file))
    summary = program.check()
    _, totals = summarize(summary.instance, summary.graph, dims)
    module = program.torch().eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        module(*(torch.from_numpy(x) for x in random_inputs(summary, dims, seed=0).values()))
    assert counter.get_total_flops() % 2 == 0
    assert totals.macs == counter.get_total_flops() // 2

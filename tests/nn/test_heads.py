"""Invariant heads: the normalisation of pooled features, the live-unit count, and cards
written before heads were normalised."""

from __future__ import annotations

import torch
from torch import nn

from dwscli.nn.archs import ARCHS, get_arch
from dwscli.nn.heads import NetBatchNorm, invariant_head, live_head_units
from dwscli.nn.models import DWSNetConfig, InvariantDWSNet
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

SPEC = MLPSpec.parse("2-8-8-1:sine;w0=30")


def test_head_starts_with_a_batch_norm_over_nets_and_none_keeps_the_old_layout() -> None:
    normalised = invariant_head([12, 16, 3], "relu", norm="batch")
    assert isinstance(normalised[0], NetBatchNorm)
    plain = invariant_head([12, 16, 3], "relu", norm="none")
    assert [type(m) for m in plain] == [nn.Linear, nn.ReLU, nn.Linear]  # keys 0.*, 2.*


def test_batch_norm_standardises_each_feature_over_the_batch() -> None:
    norm = NetBatchNorm(4)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator) * torch.tensor([0.1, 1.0, 5.0, 100.0]) + 10.0
    y = norm(x)
    assert torch.allclose(y.mean(0), torch.zeros(4), atol=1e-3)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(4), atol=1e-2)
    # against float64 batch norm: float32 loses about 1e-5 to the offset of 10 on a spread of
    # 0.1 (seen up to 1.8e-5 over 300 seeds), while a wrong variance (unbiased) is off by 1e-2
    exact = nn.functional.batch_norm(x.double(), None, None, training=True)
    torch.testing.assert_close(y.detach().double(), exact, atol=1e-4, rtol=0)


def test_live_units_counts_units_that_fire_for_some_net() -> None:
    model = InvariantDWSNet(SPEC, DWSNetConfig(hidden_channels=4, num_layers=1, head_hidden=[6]))
    model.eval()
    nets = WeightSpace.random(SPEC, 16, generator=torch.Generator().manual_seed(0))
    first = next(m for m in model.head if isinstance(m, nn.Linear))
    with torch.no_grad():
        first.bias[:2] = -1e6  # two units below zero for every net
        first.bias[2:] = 1e6  # the others above zero for every net
    assert live_head_units(model, lambda: model(nets)) == (4, 6)
    with torch.no_grad():
        first.bias[:] = -1e6
    assert live_head_units(model, lambda: model(nets)) == (0, 6)


def test_a_card_without_head_norm_builds_the_old_head() -> None:
    for name, arch in ARCHS.items():
        if "invariant" not in arch.kinds:
            continue
        options, _ = arch.options_from_card({"out_features": 3})
        assert options.head_norm == "none", name
        fresh = arch.options_type()
        assert fresh.head_norm == "batch", name
    options, _ = get_arch("dws").options_from_card({"out_features": 3, "head_norm": "batch"})
    assert options.head_norm == "batch"

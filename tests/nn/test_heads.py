"""Invariant heads: the normalisation of pooled features, the live-unit count, and cards
written before heads were normalised."""

from __future__ import annotations

import torch
from torch import nn

from dwscli.nn.archs import ARCHS, get_arch
from dwscli.nn.heads import (
    NetBatchNorm,
    invariant_head,
    live_head_units,
    recalibrate_batch_norms,
)
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


def _stale_model() -> nn.Sequential:
    """Features on a large common offset, dropout before the norm, stale running statistics."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.5), NetBatchNorm(4), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].bias.fill_(30.0)
        model[2].running_mean.fill_(29.0)  # an exponential average that trails the weights
        model[2].running_var.fill_(7.0)
    return model


def test_recalibration_takes_the_statistics_of_the_current_weights() -> None:
    """Mean and unbiased variance of the norm's inputs pooled over every net of every batch
    (batches of any size, one of a single net), as the model computes them without dropout."""
    model = _stale_model()
    model.train()
    model[3].eval()  # a module in another mode than its parent keeps it
    generator = torch.Generator().manual_seed(2)
    batches = [torch.randn(n, 5, generator=generator) for n in (32, 1, 17, 32)]
    count = recalibrate_batch_norms(model, [lambda b=b: model(b) for b in batches])
    assert count == 1
    with torch.no_grad():  # the features the norm sees at evaluation: no dropout
        features = model[0](torch.cat(batches)).double()
    norm = model[2]
    torch.testing.assert_close(norm.running_mean.double(), features.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm.running_var.double(), features.var(0), atol=1e-5, rtol=1e-5)
    # the model is left as it was found, and later training averages as before
    assert [m.training for m in model] == [True, True, True, False]
    assert model.training and norm.momentum == 0.1


def test_recalibration_lets_one_net_at_a_time_score_like_its_batch() -> None:
    """In eval mode (one net at a time, as the CLI runs) the stale statistics shift every
    feature by whole spreads; recalibrated, each net's output matches the batch-normalised
    forward pass over all nets."""
    model = _stale_model()
    generator = torch.Generator().manual_seed(3)
    nets = torch.randn(256, 5, generator=generator)
    with torch.no_grad():
        model[1].eval()  # the batch-statistics reference without dropout
        model[2].train()
        reference = model(nets)
        model.eval()
        stale = torch.cat([model(net[None]) for net in nets])
    assert (stale - reference).abs().max() > 0.5
    recalibrate_batch_norms(model, [lambda: model(nets)])
    assert not model.training
    with torch.no_grad():
        fresh = torch.cat([model(net[None]) for net in nets])
    torch.testing.assert_close(fresh, reference, atol=2e-2, rtol=0)  # unbiased vs batch variance


def test_recalibration_leaves_norms_it_cannot_measure_alone() -> None:
    """No batch norm: nothing runs. A norm the forward pass skips (a pooled embedding skips
    the head), or one that sees a single net, keeps its statistics."""
    model = nn.Sequential(nn.Linear(3, 3))
    calls: list[int] = []
    assert recalibrate_batch_norms(model, [lambda: calls.append(1)]) == 0
    assert calls == []
    stale = _stale_model()
    nets = torch.randn(8, 5)
    assert recalibrate_batch_norms(stale, [lambda: stale[0](nets)]) == 0
    assert recalibrate_batch_norms(stale, [lambda: stale(nets[:1])]) == 0
    assert torch.equal(stale[2].running_mean, torch.full((4,), 29.0))
    assert torch.equal(stale[2].running_var, torch.full((4,), 7.0))


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

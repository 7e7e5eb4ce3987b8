"""The feature check of an invariant processor: the training nets' features span a subspace,
and an input whose features lie far outside it is out of distribution."""

from __future__ import annotations

import pytest
import torch

from dwscli.errors import DwsError
from dwscli.processors.feature_ood import (
    TENSOR_PREFIX,
    FeatureProfile,
    fit_feature_profile,
    flagged,
)


def _on_a_plane(count: int, seed: int, off: float = 0.0) -> torch.Tensor:
    """``count`` 20-D features near a 3-D subspace, pushed ``off`` along a direction outside."""
    g = torch.Generator().manual_seed(seed)
    plane = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(0)))[0]
    inside = torch.randn(count, 3, generator=g) * 5 @ plane[:, :3].T
    noise = 0.05 * torch.randn(count, 20, generator=g)
    return 2.0 + inside + noise + off * plane[:, 10]


def test_nets_off_the_training_subspace_are_flagged_and_held_in_ones_rarely() -> None:
    profile = fit_feature_profile(_on_a_plane(500, 1), _on_a_plane(300, 2), components=3)
    assert profile.basis.shape == (3, 20)
    assert float(flagged(profile, _on_a_plane(2000, 3)).double().mean()) < 0.03
    assert bool(flagged(profile, _on_a_plane(50, 4, off=3.0)).all())
    # a big move *within* the subspace is not off it: flagged about as rarely as held-in nets
    within = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(0)))[0]
    far_inside = _on_a_plane(500, 5) + 10.0 * within[:, 0]  # two spreads along the plane
    assert float(flagged(profile, far_inside).double().mean()) < 0.03
    nan = _on_a_plane(2, 6)
    nan[0, 0] = float("nan")
    assert flagged(profile, nan).tolist() == [True, False]


def test_the_stored_profile_flags_exactly_what_the_fitted_one_does() -> None:
    profile = fit_feature_profile(_on_a_plane(400, 1), _on_a_plane(200, 2), components=3)
    section = {"threshold": profile.threshold}
    back = FeatureProfile.from_tensors(profile.tensors(), section, "card")
    probe = torch.cat([_on_a_plane(300, 7), _on_a_plane(30, 8, off=0.2)])
    assert torch.equal(flagged(back, probe), flagged(profile, probe))
    with pytest.raises(DwsError, match=rf"card: .* needs tensor {TENSOR_PREFIX}basis"):
        FeatureProfile.from_tensors({f"{TENSOR_PREFIX}mean": profile.mean}, section, "card")
    with pytest.raises(DwsError, match=r"card: ood\.features\.threshold"):
        FeatureProfile.from_tensors(profile.tensors(), {"threshold": -1}, "card")
    wrong = {**profile.tensors(), f"{TENSOR_PREFIX}mean": torch.zeros(5)}
    with pytest.raises(DwsError, match=r"shapes do not match"):
        FeatureProfile.from_tensors(wrong, section, "card")

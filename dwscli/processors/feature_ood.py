"""Out-of-distribution check on what an invariant processor reads off a net: its pooled features.

The weight-statistics check (:mod:`dwscli.processors.ood`) says whether a net's weights look like
the training nets'. A zoo of many fitting recipes spreads those statistics so widely that the
check lets almost anything through, and a net whose weights look ordinary can still compute
something no training net computed (a sine net that never drew its sine). The processor's own
features see that: the training nets' features lie close to a low-dimensional subspace, and the
features of such a net do not.

The card's ``ood.features`` section and ``ood_features.*`` tensors in the processor's weights
file record the training nets' mean feature vector and the first ``components`` principal
directions of their features around it. A net's score is the length of the part of its
features (minus the mean) outside that subspace. The threshold is calibrated like the weights
check's: the split-conformal 99th percentile of the scores of held-in nets the subspace was not
fitted on (the validation split).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dwscli.errors import DwsError
from dwscli.processors.ood import FLAG_FRACTION, calibrated_threshold, described_check

#: Prefix of the profile's tensors in the processor's weights file.
TENSOR_PREFIX = "ood_features."
METHOD = "distance of the pooled features from the training nets' principal subspace"


@dataclass(frozen=True)
class FeatureProfile:
    """The training nets' features: their mean and principal directions, and the threshold."""

    mean: Tensor  # [D] float64
    basis: Tensor  # [K, D] float64, orthonormal rows
    threshold: float

    def scores(self, features: Tensor) -> Tensor:
        """``[B]`` the length of each net's centred features outside the subspace (NaN: inf)."""
        x = features.detach().to("cpu", torch.float64) - self.mean
        outside = x - (x @ self.basis.T) @ self.basis
        return torch.linalg.vector_norm(outside, dim=1).nan_to_num(nan=math.inf)

    def tensors(self) -> dict[str, Tensor]:
        """What the weights file stores (float32, as :func:`fit_feature_profile` already
        rounded them to)."""
        return {
            f"{TENSOR_PREFIX}mean": self.mean.float().contiguous(),
            f"{TENSOR_PREFIX}basis": self.basis.float().contiguous(),
        }

    @classmethod
    def from_tensors(
        cls,
        tensors: Mapping[str, Tensor],
        section: Mapping[str, Any],
        source: str,
        weights_source: str | None = None,
    ) -> FeatureProfile:
        """The profile from the weights file's tensors and the card's ``ood.features``
        (``source``: the card, named in errors; ``weights_source``: the weights file)."""
        stored = weights_source or source
        try:
            mean = tensors[f"{TENSOR_PREFIX}mean"].to("cpu", torch.float64)
            basis = tensors[f"{TENSOR_PREFIX}basis"].to("cpu", torch.float64)
        except KeyError as missing:
            raise DwsError(
                f"{stored}: the card's ood.features needs tensor {missing.args[0]} in the "
                "weights file"
            ) from None
        threshold = section.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise DwsError(f"{source}: ood.features.threshold: expected a number")
        if not (math.isfinite(threshold) and threshold > 0):
            raise DwsError(f"{source}: ood.features.threshold: expected a positive number")
        if mean.dim() != 1 or basis.dim() != 2 or basis.shape[1] != mean.shape[0]:
            raise DwsError(f"{stored}: ood.features: the mean and basis shapes do not match")
        for key, size in (("dim", mean.shape[0]), ("components", basis.shape[0])):
            if key in section and section[key] != size:
                raise DwsError(
                    f"{source}: ood.features.{key} is {section[key]!r}, but the weights file's "
                    f"check has {size}"
                )
        if not (bool(mean.isfinite().all()) and bool(basis.isfinite().all())):
            raise DwsError(f"{stored}: ood.features: the stored check is not finite")
        return cls(mean, basis, float(threshold))


def fit_feature_profile(
    train: Tensor, calibration: Tensor, components: int, fraction: float = FLAG_FRACTION
) -> FeatureProfile:
    """Mean and principal directions of the ``train`` features (``[N, D]``), the threshold
    from the ``calibration`` features (other nets). Both are rounded to float32 first, as the
    weights file stores them, so the profile read back flags exactly what this one does."""
    x = train.detach().to("cpu", torch.float64)
    if len(x) < 2:
        raise DwsError("the feature check needs at least 2 training nets")
    mean = x.mean(0).float().double()
    keep = max(1, min(components, min(x.shape) - 1))
    _, _, directions = torch.linalg.svd(x - mean, full_matrices=False)
    basis = directions[:keep].float().double()
    profile = FeatureProfile(mean, basis, 1.0)
    raw = calibrated_threshold(profile.scores(calibration), fraction)
    threshold = max(math.ceil(raw * 1e4) / 1e4, 1e-4)  # rounded up: never flags more
    return FeatureProfile(mean, basis, threshold)


def flagged(profile: FeatureProfile, features: Tensor) -> Tensor:
    """``[B]`` bool: the nets whose features lie too far outside the subspace."""
    return profile.scores(features) > profile.threshold


def fitted_feature_check(
    train: Tensor,
    val: Tensor,
    test: Tensor,
    components: int,
    *,
    chosen: Mapping[str, Any],
    fitted_extra: Mapping[str, Any] | None = None,
) -> tuple[FeatureProfile, dict[str, Any]]:
    """The check fitted on the ``train`` features, calibrated on ``val``, checked on ``test``
    (features of each split's nets that meet ``chosen``, e.g. ``{"where": "psnr=25.."}``),
    and its card section, which records all three."""
    profile = fit_feature_profile(train, val, components)

    def share(values: Tensor) -> float:
        return round(float(flagged(profile, values).double().mean()), 4)

    section = feature_section(
        profile,
        fitted_on={"split": "train", **(fitted_extra or {}), **chosen, "nets": len(train)},
        calibrated_on={"split": "val", **chosen, "nets": len(val), "flagged": share(val)},
        checked_on={"split": "test", **chosen, "nets": len(test), "flagged": share(test)},
    )
    return profile, section


def feature_section(
    profile: FeatureProfile,
    *,
    fitted_on: Mapping[str, Any],
    calibrated_on: Mapping[str, Any],
    checked_on: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card's ``ood.features`` section for ``profile``."""
    fields = {
        "method": METHOD,
        "components": int(profile.basis.shape[0]),
        "dim": int(profile.mean.shape[0]),
    }
    return described_check(
        fields,
        profile.threshold,
        fitted_on=fitted_on,
        calibrated_on=calibrated_on,
        checked_on=checked_on,
    )


def reason(score: float, threshold: float) -> str:
    """What a flagged net's warning says."""
    return (
        f"what the processor reads off it is unlike the training nets' (feature distance "
        f"{score / threshold:.2g}x the threshold)"
    )


__all__ = [
    "METHOD",
    "TENSOR_PREFIX",
    "FeatureProfile",
    "feature_section",
    "fit_feature_profile",
    "flagged",
    "reason",
]

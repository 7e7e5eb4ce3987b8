"""Out-of-distribution check: is an input net unlike every net a processor was trained on?

A processor says nothing reliable about nets unlike its training zoo, and nothing in its output
shows it. Its card therefore records what the training nets looked like (the ``ood`` section),
and every processor command scores each input against it.

What is recorded: per tensor ``W_i`` and ``b_i`` of a net, a few statistics that do not change
under hidden-neuron permutations (they are symmetric functions of the tensor's entries):

* ``log_rms``: log of the root mean square of the entries;
* ``mean``: the mean entry over that root mean square (scale-free), or the plain value of a
  one-entry tensor (an output bias), whose ratio would only be its sign;
* ``log_abs_mean``: log of the mean of ``|w|`` (with ``log_rms``, the shape of the entries'
  distribution: uniform, normal, heavy-tailed);
* ``log_abs_max``: log of the largest ``|w|``;
* ``log_rms_ratio``: log of the RMS over a neighbour's RMS: ``W_i`` over ``W_{i+1}`` (the last
  over the one before), ``b_i`` over ``W_i``. In a zoo whose nets differ in overall scale (a
  spread of init scales and weight decays) a single layer scaled out of line stands out here,
  where its own ``log_rms`` would still be in range.

For each statistic the card stores a robust centre and scale over the training split (median
and 1.4826 x the median absolute deviation, so that a few odd training nets do not widen it;
the scale has a floor, see :func:`fit_profile`). A net's score is its largest robust z-score
``|s - centre| / scale`` over all statistics; it is out of distribution when the score exceeds
the card's ``threshold``. The threshold is calibrated on nets the centre and scale were not
fitted on (the zoo's validation split): the split-conformal 99th percentile of their scores
(:func:`calibrated_threshold`), which flags at most 1 % of them, and in expectation at most 1 %
of further nets drawn like them. The card also records the flagged fraction on a third set (the
test split) as a check.

The warning names the statistic with the largest z-score and says how far off it is, as a
ratio for the log statistics (``W1 RMS 8.3x the training nets'``).

Section layout (written by ``dws train`` and ``scripts/calibrate_ood.py``)::

    ood:
      method: max robust z-score of per-tensor statistics (permutation-invariant)
      threshold: 6.2
      centre: {W1.log_rms: -1.2, W1.mean: 0.001, ...}
      scale: {W1.log_rms: 0.02, W1.mean: 0.003, ...}
      fitted_on: {split: train, nets: 800}
      calibrated_on: {split: val, nets: 100, flagged: 0.01}
      checked_on: {split: test, nets: 100, flagged: 0.01}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dwscli.errors import DwsError
from dwscli.weights.space import WeightSpace

#: The statistics of each tensor, in the order :func:`net_statistics` computes them.
STATISTICS = ("log_rms", "mean", "log_abs_mean", "log_abs_max", "log_rms_ratio")
#: How a statistic is named in a warning.
_SHOWN = {
    "log_rms": "RMS",
    "mean": "mean",
    "log_abs_mean": "mean |w|",
    "log_abs_max": "max |w|",
}
#: The most held-out calibration nets the threshold may flag.
FLAG_FRACTION = 0.01
#: 1.4826 x MAD estimates the standard deviation of normally distributed values.
MAD_TO_STD = 1.4826
#: Floor of a statistic's scale, so that a statistic constant over the training nets does not
#: make every tiny difference an outlier: 0.1 % for the log statistics and the mean's ratio.
SCALE_FLOOR = 1e-3
_EPS = 1e-12
METHOD = "max robust z-score of per-tensor statistics (permutation-invariant)"


def tensor_names(depth: int) -> list[str]:
    """``W1 … Wd, b1 … bd``: the names the card uses (as in its ``normalization`` section)."""
    return [f"W{i + 1}" for i in range(depth)] + [f"b{i + 1}" for i in range(depth)]


def statistic_names(depth: int) -> list[str]:
    """``W1.log_rms``, ``W1.mean``, …: one per tensor and statistic."""
    return [f"{tensor}.{stat}" for tensor in tensor_names(depth) for stat in STATISTICS]


def net_statistics(space: WeightSpace) -> Tensor:
    """``[B, S]`` float64: the statistics of each net, in :func:`statistic_names` order.

    Each is a symmetric function of one tensor's entries (or of several tensors' such
    functions), so permuting hidden neurons (which only reorders rows and columns) leaves it
    unchanged. Reductions run in float32 (cheap: every processor command scores every input),
    the statistics are float64.
    """
    batch = space.batch_size
    per_tensor: list[list[Tensor]] = []
    for tensor in [*space.weights, *space.biases]:
        flat = tensor.detach().reshape(batch, -1).to(torch.float32)
        entries = flat.shape[1]
        rms = (torch.linalg.vector_norm(flat, dim=1) / math.sqrt(entries)).double()
        mean = flat.mean(1).double()
        abs_mean = (torch.linalg.vector_norm(flat, ord=1, dim=1) / entries).double()
        abs_max = torch.maximum(flat.amax(1), -flat.amin(1)).double()
        per_tensor.append(
            [
                (rms + _EPS).log(),
                mean if entries == 1 else mean / (rms + _EPS),
                (abs_mean + _EPS).log(),
                (abs_max + _EPS).log(),
            ]
        )
    columns: list[Tensor] = []
    for index, stats in enumerate(per_tensor):
        reference = per_tensor[_neighbour(index, len(space.weights))][0]
        columns += [*stats, stats[0] - reference]
    return torch.stack(columns, 1).cpu()


def _neighbour(index: int, depth: int) -> int:
    """The tensor a tensor's RMS is compared with (``log_rms_ratio``), by position in
    ``W1 … Wd, b1 … bd``: ``W_{i+1}`` for ``W_i`` (``W_{d-1}`` for ``W_d``), ``W_i`` for
    ``b_i``."""
    if index >= depth:
        return index - depth
    if depth == 1:
        return index
    return index + 1 if index + 1 < depth else index - 1


def collect_statistics(spaces: Iterable[WeightSpace]) -> Tensor:
    """The statistics of every net of several batches, stacked."""
    parts = [net_statistics(space) for space in spaces]
    if not parts:
        raise DwsError("no nets to compute statistics of")
    return torch.cat(parts)


@dataclass(frozen=True)
class OodResult:
    """One net scored against a processor's training nets."""

    score: float | None  # None: not finite (NaN/Inf weights)
    in_distribution: bool
    reason: str | None  # what is most off, for a net out of distribution

    def fields(self) -> dict[str, Any]:
        """``ood_score``, ``in_distribution``, ``ood_reason`` as rows carry them."""
        return {
            "ood_score": None if self.score is None else round(self.score, 3),
            "in_distribution": self.in_distribution,
            "ood_reason": self.reason,
        }


#: Row fields of an input whose processor records no ``ood`` section.
UNCHECKED_FIELDS: dict[str, Any] = {"ood_score": None, "in_distribution": None, "ood_reason": None}


@dataclass(frozen=True)
class OodProfile:
    """The ``ood`` section of a card, ready to score nets."""

    names: list[str]
    centre: Tensor  # [S] float64
    scale: Tensor  # [S] float64, > 0
    threshold: float
    columns: Tensor  # positions of ``names`` among :func:`statistic_names` of the depth

    @classmethod
    def from_section(cls, section: Mapping[str, Any], depth: int, source: str) -> OodProfile:
        """The profile a card's ``ood`` section describes; a malformed one is a one-line error
        naming ``source`` and the key."""
        known = statistic_names(depth)
        centre = _number_map(section.get("centre"), "ood.centre", source)
        scale = _number_map(section.get("scale"), "ood.scale", source)
        threshold = section.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise DwsError(f"{source}: ood.threshold: expected a number, got {threshold!r}")
        if not math.isfinite(threshold) or threshold <= 0:
            raise DwsError(f"{source}: ood.threshold: expected a positive number")
        if not centre:
            raise DwsError(f"{source}: ood.centre: names no statistic")
        for name in centre:
            if name not in known:
                raise DwsError(
                    f"{source}: ood.centre: unknown statistic {name!r} for a {depth}-layer net"
                )
            if name not in scale:
                raise DwsError(f"{source}: ood.scale: missing {name!r}")
            if not scale[name] > 0:
                raise DwsError(f"{source}: ood.scale: {name} must be positive")
        names = [name for name in known if name in centre]
        return cls(
            names=names,
            centre=torch.tensor([centre[n] for n in names], dtype=torch.float64),
            scale=torch.tensor([scale[n] for n in names], dtype=torch.float64),
            threshold=float(threshold),
            columns=torch.tensor([known.index(n) for n in names], dtype=torch.long),
        )

    def z_scores(self, statistics: Tensor) -> Tensor:
        """``[B, S]`` robust z-scores of :func:`net_statistics` output."""
        return (statistics[:, self.columns] - self.centre) / self.scale

    def scores(self, statistics: Tensor) -> Tensor:
        """``[B]`` the largest |z| of each net (NaN weights give inf)."""
        z = self.z_scores(statistics).abs().nan_to_num(nan=math.inf)
        return z.amax(1)

    def assess(self, space: WeightSpace) -> list[OodResult]:
        """Score each net of ``space``; the ones above the threshold say what is off."""
        statistics = net_statistics(space)
        z = self.z_scores(statistics)
        scores = z.abs().nan_to_num(nan=math.inf).amax(1)
        entries = {
            name: int(tensor[0].numel())
            for name, tensor in zip(tensor_names(space.spec.depth), [*space.weights, *space.biases])
        }
        results = []
        for row, score in enumerate(scores.tolist()):
            finite = math.isfinite(score)
            if finite and score <= self.threshold:
                results.append(OodResult(score, True, None))
                continue
            reason = (
                self.explain(statistics[row], z[row], entries) if finite else "non-finite weights"
            )
            results.append(OodResult(score if finite else None, False, reason))
        return results

    def explain(self, statistics: Tensor, z: Tensor, entries: Mapping[str, int]) -> str:
        """What is most off in one net: its statistic with the largest |z|, against the
        training nets' (``entries``: the number of entries of each tensor)."""
        worst = int(z.abs().argmax())
        tensor, stat = self.names[worst].split(".", 1)
        value = float(statistics[self.columns[worst]])
        centre = float(self.centre[worst])
        if stat.startswith("log_"):
            ratio = _ratio_text(math.exp(value - centre))
            if stat == "log_rms_ratio":
                depth = len(entries) // 2
                names = tensor_names(depth)
                other = names[_neighbour(names.index(tensor), depth)]
                return f"{tensor} RMS / {other} RMS {ratio} the training nets'"
            return f"{tensor} {_SHOWN[stat]} {ratio} the training nets'"
        spread = float(self.scale[worst])
        shown = "value" if entries.get(tensor) == 1 else "mean/RMS"
        return f"{tensor} {shown} {value:.3g}; training nets {centre:.3g} ± {spread:.2g}"


def _ratio_text(ratio: float) -> str:
    """``8.3x``, ``0.12x``, ``1.2e+03x``: two significant digits."""
    return f"{ratio:.2g}x"


def _number_map(value: object, key: str, source: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise DwsError(f"{source}: {key}: expected a mapping of statistic names to numbers")
    out: dict[str, float] = {}
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise DwsError(f"{source}: {key}.{name}: expected a number, got {number!r}")
        if not math.isfinite(number):
            raise DwsError(f"{source}: {key}.{name}: expected a finite number")
        out[str(name)] = float(number)
    return out


def _round(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def robust_centre_scale(statistics: Tensor) -> tuple[Tensor, Tensor]:
    """Median and 1.4826 x MAD (at least :data:`SCALE_FLOOR`) of each statistic (column) over
    the nets (rows)."""
    centre = statistics.median(0).values
    scale = MAD_TO_STD * (statistics - centre).abs().median(0).values
    return centre, scale.clamp(min=SCALE_FLOOR)


def calibrated_threshold(scores: Tensor, fraction: float = FLAG_FRACTION) -> float:
    """The threshold that flags (score > threshold) at most ``fraction`` of ``scores``: the
    ``ceil((n + 1)(1 - fraction))``-th smallest of the ``n`` scores (the largest when that is
    past ``n``). This is the split-conformal quantile: a further net drawn like the calibration
    nets scores above it with probability at most ``fraction``, not only the calibration nets
    themselves. Non-finite scores count as above every threshold."""
    ordered = scores.sort().values
    finite = ordered[torch.isfinite(ordered)]
    if len(finite) == 0:
        raise DwsError("no calibration net has finite weights")
    rank = min(math.ceil((len(ordered) + 1) * (1.0 - fraction)), len(ordered))
    value = float(ordered[rank - 1])
    return value if math.isfinite(value) else float(finite.max())


def fit_profile(
    train: Tensor, calibration: Tensor, depth: int, fraction: float = FLAG_FRACTION
) -> OodProfile:
    """Centre and scale from the ``train`` statistics, the threshold from the
    ``calibration`` ones (other nets), each rounded as the card stores it, so that the profile
    read back from the card flags exactly what this one does."""
    centre, scale = robust_centre_scale(train)
    names = statistic_names(depth)
    section = {
        "centre": {n: _round(float(v)) for n, v in zip(names, centre)},
        "scale": {n: _round(float(v)) for n, v in zip(names, scale)},
        "threshold": 1.0,
    }
    unthresholded = OodProfile.from_section(section, depth, "ood")
    raw = calibrated_threshold(unthresholded.scores(calibration), fraction)
    # rounded up (4 decimals): rounding may then flag fewer calibration nets, never more
    threshold = math.ceil(raw * 1e4) / 1e4
    return OodProfile(
        unthresholded.names,
        unthresholded.centre,
        unthresholded.scale,
        max(threshold, 1e-4),
        unthresholded.columns,
    )


def flagged_fraction(profile: OodProfile, statistics: Tensor) -> float:
    """The fraction of nets (rows of their statistics) the profile flags."""
    if len(statistics) == 0:
        return 0.0
    return float((profile.scores(statistics) > profile.threshold).double().mean())


def described_check(
    fields: Mapping[str, Any],
    threshold: float,
    *,
    fitted_on: Mapping[str, Any],
    calibrated_on: Mapping[str, Any],
    checked_on: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A check's card section: ``fields``, its threshold and where it was fitted, calibrated
    and checked (shared by the weights check and the feature check)."""
    section: dict[str, Any] = {
        **fields,
        "threshold": threshold,
        "flag_fraction": FLAG_FRACTION,
        "fitted_on": dict(fitted_on),
        "calibrated_on": dict(calibrated_on),
    }
    if checked_on is not None:
        section["checked_on"] = dict(checked_on)
    return section


def profile_section(
    profile: OodProfile,
    *,
    fitted_on: Mapping[str, Any],
    calibrated_on: Mapping[str, Any],
    checked_on: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The card's ``ood`` section for ``profile``, with where it came from."""
    section = described_check(
        {"method": METHOD, "statistics": list(STATISTICS)},
        profile.threshold,
        fitted_on=fitted_on,
        calibrated_on=calibrated_on,
        checked_on=checked_on,
    )
    section.update(extra)
    section["centre"] = {n: float(v) for n, v in zip(profile.names, profile.centre.tolist())}
    section["scale"] = {n: float(v) for n, v in zip(profile.names, profile.scale.tolist())}
    return section


def build_section(
    train: Tensor,
    calibration: Tensor,
    depth: int,
    *,
    fitted_on: Mapping[str, Any],
    calibrated_on: Mapping[str, Any],
    check: tuple[Mapping[str, Any], Tensor] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Fit a profile and describe it as the card's ``ood`` section, with the flagged
    fractions of the calibration nets and (``check``: its description and statistics) of a
    separate set."""
    profile = fit_profile(train, calibration, depth)
    calibrated = {
        **calibrated_on,
        "nets": len(calibration),
        "flagged": round(flagged_fraction(profile, calibration), 4),
    }
    checked = None
    if check is not None:
        described, statistics = check
        checked = {
            **described,
            "nets": len(statistics),
            "flagged": round(flagged_fraction(profile, statistics), 4),
        }
    return profile_section(
        profile,
        fitted_on={**fitted_on, "nets": len(train)},
        calibrated_on=calibrated,
        checked_on=checked,
        **extra,
    )


#: At most this many nets of a split are read (evenly spaced): the medians and the 99th
#: percentile are well estimated long before, and a 70,000-net zoo stays quick.
MAX_NETS_PER_SPLIT = 5000


def spread_subset(ids: list[str], limit: int = MAX_NETS_PER_SPLIT) -> list[str]:
    """At most ``limit`` of ``ids``, evenly spaced (deterministic)."""
    if len(ids) <= limit:
        return list(ids)
    step = len(ids) / limit
    return [ids[int(k * step)] for k in range(limit)]


def split_ids(zoo: Any, split: str, where: str | None = None) -> list[str]:
    """The ids of a zoo's ``split``; with ``where`` (``train.where``), of its nets that meet it."""
    if where is None:
        return zoo.ids(split)
    from dwscli.data.zoo_splits import split_records

    return [str(record["id"]) for record in split_records(zoo, split, where)]


def split_statistics(
    zoo: Any, split: str, limit: int = MAX_NETS_PER_SPLIT, where: str | None = None
) -> Tensor:
    """The statistics of (up to ``limit``, evenly spaced) nets of a zoo's ``split`` (those that
    meet ``where``, when given)."""
    ids = spread_subset(split_ids(zoo, split, where), limit)
    if not ids:
        raise DwsError(f"{zoo.path}: split {split!r} is empty")
    return collect_statistics(zoo.get(ids[k : k + 1024]) for k in range(0, len(ids), 1024))


def zoo_section(
    zoo: Any,
    *,
    fit_split: str = "train",
    calibrate_split: str = "val",
    check_split: str | None = "test",
    limit: int = MAX_NETS_PER_SPLIT,
    where: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``ood`` section from a zoo (a :class:`dwscli.data.zoo.Zoo`): centre and scale from
    ``fit_split``, the threshold from ``calibrate_split``, the check on ``check_split``; with
    ``where`` (``train.where``), of each split only the nets that meet it.

    The threshold is calibrated on the validation split, not the test split, so that the test
    split's flagged fraction is an honest estimate of how often held-in nets are flagged.
    """
    depth = zoo.spec.depth
    if not split_ids(zoo, calibrate_split, where):  # a tiny zoo: the threshold from the fitted
        calibrate_split = fit_split
    chosen = {"where": where} if where is not None else {}
    check = None
    if check_split is not None and split_ids(zoo, check_split, where):
        check = (
            {"split": check_split, **chosen},
            split_statistics(zoo, check_split, limit, where),
        )
    return build_section(
        split_statistics(zoo, fit_split, limit, where),
        split_statistics(zoo, calibrate_split, limit, where),
        depth,
        fitted_on={"zoo": str(zoo.path), "split": fit_split, **chosen},
        calibrated_on={"split": calibrate_split, **chosen},
        check=check,
        **extra,
    )


def warning_text(path: object, processor: str, result: OodResult) -> str:
    """The one warning line (without ``warning:``) for an input out of distribution."""
    return f"{path}: out of distribution for {processor} ({result.reason})"


__all__ = [
    "FLAG_FRACTION",
    "MAX_NETS_PER_SPLIT",
    "METHOD",
    "STATISTICS",
    "UNCHECKED_FIELDS",
    "OodProfile",
    "OodResult",
    "build_section",
    "calibrated_threshold",
    "collect_statistics",
    "described_check",
    "fit_profile",
    "flagged_fraction",
    "net_statistics",
    "profile_section",
    "robust_centre_scale",
    "split_statistics",
    "spread_subset",
    "statistic_names",
    "tensor_names",
    "warning_text",
    "zoo_section",
]

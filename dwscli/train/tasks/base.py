"""What every training task provides: the :class:`Task` interface and shared metrics.

A task says which kind of model it trains (invariant: weights -> vector; equivariant: weights ->
weights), how many output features, which manifest labels/metrics are its targets, the loss *per
net* (the trainer reduces it, which is what keeps distributed training exact), the per-net values
evaluation collects, the metrics computed from them over a whole split, and which metric selects
the best checkpoint. Optional hooks: :meth:`Task.start_step` (data a step draws besides the nets,
e.g. the images of ``adapt``), :meth:`Task.train_input` (what the model sees in a step, e.g. two
views of each net for ``embed``), :meth:`Task.fit_eval` (a fit on training nets that the metrics
need, e.g. ``embed``'s linear probe), :meth:`Task.eval_forward` (what evaluation reads from the
model, e.g. ``embed``'s pooled features), :meth:`Task.card_fields` (top-level card keys) and
:meth:`Task.baselines` (systems fitted on the same split, side by side).

Each task lives in its own module of this package; :mod:`dwscli.train.tasks` lists them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor

from dwscli.data.zoo import Zoo, ZooBatch
from dwscli.errors import DwsError

if TYPE_CHECKING:
    from torch import nn

    from dwscli.train.netstore import SplitNets
    from dwscli.weights.space import WeightSpace

ModelKind = Literal["invariant", "equivariant"]
#: ``{system: {split: {metric: value}}}``, e.g. ``{"statnn": {"test": {"kendall_tau": 0.9}}}``
BaselineMetrics = dict[str, dict[str, dict[str, float]]]


class Task(ABC):
    """One training objective. Subclasses set the class attributes and ``Options``."""

    name: ClassVar[str]
    kind: ClassVar[ModelKind]
    Options: ClassVar[type]  # a dataclass of the task's options (the ``task:`` section)
    best_metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    #: True when :meth:`metrics` needs :meth:`fit_eval` on training nets first (``embed``)
    fits_on_train: ClassVar[bool] = False

    def __init__(self, options: Any, zoo: Zoo) -> None:
        self.options = options
        self.zoo = zoo

    @property
    @abstractmethod
    def out_features(self) -> int:
        """Output features of an invariant model (ignored for equivariant ones)."""

    @abstractmethod
    def target_keys(self) -> list[tuple[str, str]]:
        """``(group, key)`` pairs read from the manifest: group is ``labels`` or ``metrics``."""

    def check_targets(self, split: str, targets: Mapping[str, Tensor], ids: list[str]) -> None:
        """Refuse a split whose targets are missing (NaN) for some net."""
        for key, values in targets.items():
            if values.is_floating_point():
                bad = torch.isnan(values).nonzero().flatten()
                if len(bad):
                    raise DwsError(
                        f"{self.zoo.path}: net {ids[int(bad[0])]} ({split} split) has no "
                        f"value for {key!r}, which task {self.name} needs"
                    )

    @abstractmethod
    def loss(self, output: Any, batch: ZooBatch) -> Tensor:
        """Per-net loss ``[b]``; the trainer averages it over the (global) batch."""

    @abstractmethod
    def evaluate(self, output: Any, batch: ZooBatch) -> dict[str, Tensor]:
        """Per-net values ``{name: [b, ...]}`` to collect over a split; must hold ``loss``."""

    @abstractmethod
    def metrics(self, values: Mapping[str, Tensor]) -> dict[str, float]:
        """Metrics of a whole split from the collected per-net values."""

    def score(self, metrics: Mapping[str, float]) -> tuple[float, float]:
        """Larger is better: the task's best metric, then lower loss to break ties."""
        value = float(metrics.get(self.best_metric, math.nan))
        primary = -math.inf if math.isnan(value) else (value if self.higher_is_better else -value)
        loss = float(metrics.get("loss", math.nan))
        return primary, -math.inf if math.isnan(loss) else -loss

    def describe_output(self) -> dict[str, Any]:
        """The card's ``output`` section: what the processor's output means."""
        return {}

    def start_step(self, seed: int, epoch: int, step: int) -> None:  # noqa: B027 (optional hook)
        """Called before every training step (on every rank, with the same arguments).

        A task whose loss needs more than the nets (``adapt`` draws a batch of images) draws
        it here from ``(seed, epoch, step)``, so ranks agree and a resumed run sees the same.
        """

    def train_input(
        self, space: WeightSpace, seed: int, epoch: int, step: int, rank: int
    ) -> WeightSpace:
        """What the model sees in a training step (default: the augmented nets themselves).

        ``embed`` returns two random views of every net, stacked (``[2b]``), and its
        :meth:`loss` gets their outputs. Seeded from ``(seed, epoch, step, rank)``.
        """
        return space

    def eval_forward(self, model: nn.Module, space: WeightSpace) -> Any:
        """What evaluation reads from the model (default: its output). ``embed`` with
        ``embedding: pooled`` reads the pooled features before the head instead.

        Evaluation only (training calls the model itself), with the plain model, never the
        DistributedDataParallel wrapper, so its methods are reachable."""
        return model(space)

    def fit_eval(self, train_values: Mapping[str, Tensor]) -> None:  # noqa: B027 (optional)
        """Called before :meth:`metrics` when :attr:`fits_on_train`, with the current model's
        :meth:`evaluate` values on the trainer's training sample (``embed`` fits its linear
        probe on them)."""

    def card_fields(self) -> dict[str, Any]:
        """Extra top-level keys of the processor card (``adapt``: ``target_domain``)."""
        return {}

    def baselines(self, train: SplitNets, test: SplitNets) -> BaselineMetrics:
        """``{system: {"test": metrics}}`` of baselines fitted on ``train``, measured on
        ``test`` with this task's metrics (run once, at the end of training)."""
        return {}


# ------------------------------------------------------------------------------------------------
# Metrics


def kendall_tau(pred: Tensor, target: Tensor) -> float:
    from scipy.stats import kendalltau

    if len(pred) < 2:
        return math.nan
    tau = kendalltau(pred.double().numpy(), target.double().numpy()).statistic
    return float(tau)


def r2_score(pred: Tensor, target: Tensor) -> float:
    pred, target = pred.double(), target.double()
    total = ((target - target.mean()) ** 2).sum()
    if len(target) < 2 or total <= 0:
        return math.nan
    return float(1 - ((target - pred) ** 2).sum() / total)


__all__ = ["BaselineMetrics", "ModelKind", "Task", "kendall_tau", "r2_score"]

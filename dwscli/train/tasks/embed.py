"""``task: embed``: self-supervised embeddings of networks.

An invariant DWSNet maps each net to a vector of ``dim`` numbers. With ``embedding: output``
(the default) that output IS the embedding (what ``dws embed`` writes); with ``embedding:
pooled`` the embedding is the model's pooled invariant features before the head, and the head
that maps them to the ``dim`` numbers the loss sees is a projection head, as in SimCLR (the
probe, the card and ``dws embed`` all use the pooled features then).

Training is SimCLR-style contrastive learning: every net of a step gets two random *views*
(:meth:`EmbedTask.train_input`), each a random hidden-neuron permutation (a no-op for an
exactly invariant model, kept for models that are not), Gaussian
weight noise (std ``noise`` times each tensor's RMS) and weight dropout (probability
``dropout``), drawn with :mod:`dwscli.train.augment`'s functions from ``(seed, epoch, step,
rank)``. The loss is NT-Xent (normalised temperature-scaled cross-entropy, Chen et al. 2020) on
the cosine similarities of the ``2b`` outputs: each view must pick its partner among the other
``2b - 1``; a net's loss is the mean of its two views' losses. Under torchrun a process contrasts
its own nets only (the negatives are per process, unlike the other tasks' exactly global loss).

**Metric**: a linear probe. A ridge regression (on standardised embeddings, penalty ``ridge``
times the number of nets) is fitted on the embeddings of the trainer's *training sample*
(``train.normalizer_nets`` training nets, :meth:`Task.fit_eval`) to predict the manifest labels
``labels`` (default ``a`` and ``b`` of the sine zoo, ``a sin(b x)``), then scored on the split:
``probe_mse`` is the **mean over the labels of the per-label MSE** (``probe_mse_a``,
``probe_mse_b`` are reported too; the sum would be twice the mean for two labels). The DWSNets
reference code scores its 1.39 the same way (``np.square(labels - preds).mean()`` over the
(a, b) pairs, i.e. this mean), with an unpenalised least-squares probe on all training nets. Best
checkpoint: lowest validation ``probe_mse``. Evaluation draws no views, so ``loss`` there is the
probe's MSE (the same number as ``probe_mse``).

**Baseline** ``weights-probe``: the same probe on the flattened raw weights of the whole
training split, scored on the test split, the "no processor" reference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dwscli.data.zoo import Zoo, ZooBatch
from dwscli.errors import DwsError
from dwscli.nn.models import pooled_features
from dwscli.train.augment import weight_dropout, weight_noise
from dwscli.train.data import generator
from dwscli.train.tasks.base import BaselineMetrics, Task
from dwscli.weights.space import WeightSpace
from dwscli.weights.symmetry import apply_permutation, random_permutation

if TYPE_CHECKING:
    from dwscli.train.netstore import SplitNets


@dataclass(frozen=True)
class EmbedOptions:
    """The ``task:`` section of ``task: embed``."""

    dim: int = 16  # the model's output features: the embedding, or the projection (pooled)
    temperature: float = 0.1  # NT-Xent temperature
    noise: float = 0.3  # view: Gaussian weight noise, std relative to each tensor's RMS
    dropout: float = 0.2  # view: probability of zeroing each weight/bias entry
    permute: bool = True  # view: random hidden-neuron permutation
    labels: list[str] = field(default_factory=lambda: ["a", "b"])  # what the probe predicts
    ridge: float = 1.0e-3  # probe penalty, times the number of nets (standardised features)
    baselines: list[Literal["weights-probe"]] = field(default_factory=lambda: ["weights-probe"])
    # what the processor hands out as the embedding: the model's ``output`` (the ``dim`` numbers
    # the contrastive loss sees), or its ``pooled`` invariant features before the head, so the
    # head is a SimCLR projection head and the embedding keeps what the loss would discard
    embedding: Literal["output", "pooled"] = "output"


# ------------------------------------------------------------------------------------------------
# NT-Xent and the linear probe


def nt_xent(outputs: Tensor, temperature: float) -> Tensor:
    """Per-pair NT-Xent ``[b]`` of outputs ``[2b, d]`` whose rows i and i + b are two views of
    the same net (the mean of the two views' cross-entropies)."""
    pairs = outputs.shape[0] // 2
    z = F.normalize(outputs.float(), dim=1)
    similarity = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(self_mask, -math.inf)
    index = torch.arange(pairs, device=z.device)
    partner = torch.cat([index + pairs, index])
    per_view = F.cross_entropy(similarity, partner, reduction="none")
    return (per_view[:pairs] + per_view[pairs:]) / 2


@dataclass
class LinearProbe:
    """Ridge regression on standardised features: ``y = ((x - mean) / scale) @ coef + bias``."""

    mean: Tensor
    scale: Tensor
    coef: Tensor
    bias: Tensor

    @classmethod
    def fit(cls, chunks: Iterable[tuple[Tensor, Tensor]], ridge: float) -> LinearProbe:
        """Fit on ``(features [n, f], targets [n, k])`` chunks in one pass (float64 sums, so
        the whole training split never needs to be in memory at once)."""
        n, sx, sy, sxx, sxy = 0, None, None, None, None
        for x, y in chunks:
            x, y = x.double().flatten(1), y.double().reshape(len(y), -1)
            if sx is None:
                sx, sy = x.sum(0), y.sum(0)
                sxx, sxy = x.T @ x, x.T @ y
            else:
                sx, sy = sx + x.sum(0), sy + y.sum(0)
                sxx, sxy = sxx + x.T @ x, sxy + x.T @ y
            n += len(x)
        if n < 2 or sx is None or sy is None or sxx is None or sxy is None:
            raise DwsError("a linear probe needs at least 2 training nets")
        mean, target_mean = sx / n, sy / n
        cov = sxx - n * torch.outer(mean, mean)  # n x covariance
        cross = sxy - n * torch.outer(mean, target_mean)
        variance = cov.diagonal().clamp_min(0) / n
        # constant features (up to the round-off of the one-pass sums) carry nothing: left out
        keep = variance > 1e-10 * (mean.pow(2) + 1e-20)
        scale = torch.where(keep, variance.sqrt(), torch.ones_like(variance))
        coef = torch.zeros(len(mean), cross.shape[1], dtype=cross.dtype)
        if keep.any():
            index = keep.nonzero().flatten()
            gram = cov[index][:, index] / torch.outer(scale[index], scale[index])
            gram = gram + ridge * n * torch.eye(len(index), dtype=gram.dtype)
            coef[index] = torch.linalg.lstsq(gram, cross[index] / scale[index, None]).solution
        return cls(mean, scale, coef, target_mean)

    def predict(self, features: Tensor) -> Tensor:
        x = features.double().flatten(1)
        return ((x - self.mean) / self.scale) @ self.coef + self.bias


def probe_metrics(pred: Tensor, target: Tensor, labels: list[str]) -> dict[str, float]:
    """``probe_mse`` (mean over labels of the per-label MSE) and ``probe_mse_<label>``."""
    per_label = (pred.double() - target.double()).pow(2).mean(0)
    out = {"probe_mse": float(per_label.mean())}
    out.update({f"probe_mse_{k}": float(v) for k, v in zip(labels, per_label)})
    return out


# ------------------------------------------------------------------------------------------------


class EmbedTask(Task):
    """Invariant weights -> embedding, trained contrastively, scored by a linear probe."""

    name = "embed"
    kind = "invariant"
    Options = EmbedOptions
    best_metric = "probe_mse"
    higher_is_better = False
    fits_on_train = True
    options: EmbedOptions

    def __init__(self, options: EmbedOptions, zoo: Zoo) -> None:
        super().__init__(options, zoo)
        checks = [
            ("dim", options.dim >= 1, "at least 1"),
            ("temperature", options.temperature > 0, "positive"),
            ("noise", options.noise >= 0, "at least 0"),
            ("dropout", 0 <= options.dropout < 1, "at least 0 and below 1"),
            ("ridge", options.ridge >= 0, "at least 0"),
            ("labels", len(options.labels) > 0, "a non-empty list"),
            ("embedding", options.embedding in ("output", "pooled"), "'output' or 'pooled'"),
        ]
        for key, ok, text in checks:
            if not ok:
                raise DwsError(f"task.{key}: must be {text}, got {getattr(options, key)!r}")
        records = zoo.records()
        have = set((records[0].get("labels") or {}) if records else {})
        missing = [k for k in options.labels if k not in have]
        if missing:
            raise DwsError(
                f"{zoo.path}: task embed probes labels.{missing[0]}, which the zoo's nets lack "
                f"(they have: {', '.join(sorted(have)) or 'no labels'})",
                hint="set task.labels, e.g. [a, b] for a sine zoo",
            )
        self._probe: LinearProbe | None = None
        self._pooled_dim: int | None = None

    @property
    def out_features(self) -> int:
        return self.options.dim

    def target_keys(self) -> list[tuple[str, str]]:
        return [("labels", k) for k in self.options.labels]

    # training -----------------------------------------------------------------------------------
    def view(self, space: WeightSpace, g: torch.Generator) -> WeightSpace:
        """One random view of every net of ``space``."""
        o = self.options
        if o.permute and space.spec.hidden_widths:
            space = apply_permutation(space, random_permutation(space, g))
        if o.noise:
            space = weight_noise(space, o.noise, g)
        if o.dropout:
            space = weight_dropout(space, o.dropout, g)
        return space

    def train_input(
        self, space: WeightSpace, seed: int, epoch: int, step: int, rank: int
    ) -> WeightSpace:
        g = generator(seed, "embed-views", epoch, step, rank)
        return WeightSpace.stack([self.view(space, g), self.view(space, g)])

    def loss(self, output: Tensor, batch: ZooBatch) -> Tensor:
        if output.shape[0] != 2 * len(batch.ids):
            raise DwsError(
                f"task embed: expected two views of {len(batch.ids)} nets, got {output.shape[0]}"
            )
        return nt_xent(output, self.options.temperature)

    # evaluation ---------------------------------------------------------------------------------
    def eval_forward(self, model: nn.Module, space: WeightSpace) -> Tensor:
        if self.options.embedding == "output":
            return model(space)
        pooled = pooled_features(model)
        if pooled is None:
            raise DwsError(
                f"task.embedding: pooled needs a model with pooled features; "
                f"{type(model).__name__} has none",
                hint="use embedding: output, or an invariant DWS architecture",
            )
        features = pooled(space)
        # for the card: the model's width, not ours (the trainer evaluates before it writes
        # the card, so this is set by then)
        self._pooled_dim = int(features.shape[1])
        return features

    def _targets(self, values: Mapping[str, Tensor]) -> Tensor:
        return torch.stack([values[f"label_{k}"].double() for k in self.options.labels], 1)

    def evaluate(self, output: Tensor, batch: ZooBatch) -> dict[str, Tensor]:
        values = {"embedding": output.detach().float().cpu()}
        for key in self.options.labels:
            values[f"label_{key}"] = batch.targets[key].double()
        values["loss"] = torch.full((len(output),), math.nan, dtype=torch.float64)
        return values

    def fit_eval(self, train_values: Mapping[str, Tensor]) -> None:
        chunk = (train_values["embedding"], self._targets(train_values))
        self._probe = LinearProbe.fit([chunk], self.options.ridge)

    def metrics(self, values: Mapping[str, Tensor]) -> dict[str, float]:
        if self._probe is None:
            raise DwsError("task embed: metrics() before fit_eval() fitted the linear probe")
        pred = self._probe.predict(values["embedding"])
        out = probe_metrics(pred, self._targets(values), self.options.labels)
        out["loss"] = out["probe_mse"]
        return out

    # baselines ----------------------------------------------------------------------------------
    def baselines(self, train: SplitNets, test: SplitNets) -> BaselineMetrics:
        if "weights-probe" not in self.options.baselines:
            return {}
        labels = self.options.labels

        def chunks(nets: SplitNets) -> Iterable[tuple[Tensor, Tensor]]:
            for part in torch.arange(len(nets)).split(1024):
                batch = nets.batch(part)
                target = torch.stack([batch.targets[k].double() for k in labels], 1)
                yield batch.space.flatten(), target

        probe = LinearProbe.fit(chunks(train), self.options.ridge)
        pieces = [(probe.predict(x), y) for x, y in chunks(test)]
        pred = torch.cat([p for p, _ in pieces])
        target = torch.cat([y for _, y in pieces])
        metrics = probe_metrics(pred, target, labels)
        metrics["loss"] = metrics["probe_mse"]
        return {"weights-probe": {"test": metrics}}

    # the card -----------------------------------------------------------------------------------
    def describe_output(self) -> dict[str, Any]:
        pooled = self.options.embedding == "pooled"
        return {
            "type": "embedding",
            "embedding": self.options.embedding,
            "dim": self._pooled_dim if pooled else self.options.dim,
            "meaning": (
                "the invariant features before the head of a contrastively trained model (the "
                "pooled DWS features and any functional probes' features; with trunk: false "
                "the probes' alone), its head having served as the projection head in training"
                if pooled
                else "a self-supervised (contrastive) embedding of the input net"
            ),
            "probe": {
                "labels": [f"labels.{k}" for k in self.options.labels],
                "method": "ridge regression on standardised embeddings of the training sample",
                "metric": "probe_mse: mean over the labels of the per-label MSE",
            },
        }


__all__ = ["EmbedOptions", "EmbedTask", "LinearProbe", "nt_xent", "probe_metrics"]

"""Baselines the trainer fits beside a processor, on the same split, for the card's side by side.

StatNN (:mod:`dwscli.baselines.statnn`) for the ``accuracy`` task: weight statistics of the
training nets (computed in chunks, so a big zoo is never in memory at once) -> gradient boosting,
then predictions for the test nets. The trainer runs this once, after training, on one process,
with as many threads as torch uses (``dws train --threads``): scikit-learn's OpenMP pool would
otherwise take every core, which on a shared machine is much slower than one thread.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor

from dwscli.baselines.statnn import StatNN, weight_statistics
from dwscli.train.netstore import SplitNets


def split_statistics(nets: SplitNets, chunk: int = 1024) -> Tensor:
    """:func:`weight_statistics` of every net of ``nets``, in split order ``[n, features]``."""
    positions = torch.arange(len(nets))
    return torch.cat([weight_statistics(nets.batch(part).space) for part in positions.split(chunk)])


def torch_thread_budget() -> Any:
    """A context that limits native thread pools (OpenMP, BLAS) to torch's thread count."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(torch.get_num_threads())


def statnn_predictions(train: SplitNets, test: SplitNets, target: str) -> Tensor:
    """StatNN fitted on ``train``'s ``target`` values; its predictions for ``test`` (in order)."""
    features = split_statistics(train)
    with torch_thread_budget():
        model = StatNN.fit_features(features, train.targets[target].float())
        return model.predict_features(split_statistics(test))


__all__ = ["split_statistics", "statnn_predictions", "torch_thread_budget"]

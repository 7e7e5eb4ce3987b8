"""Every architecture side by side: ``dws compare CONFIG.yaml --archs dws,mlp`` and :func:`compare`.

    >>> from dwscli.compare import compare
    >>> result = compare("configs/fmnist-accuracy.yaml", ["dws", "mlp"], seeds=3, output="res")
    >>> result.summary[0]["mean"]["kendall_tau"]

Each arch of the trainer's registry (:data:`dwscli.nn.archs.ARCHS`) is trained through
:func:`dwscli.train.train` on the same zoo split with the same budget, once per seed, into
``<output>/runs/<arch>-s<seed>/``; then ``results.md``, ``results.csv`` and ``results.png`` are
written into ``<output>``. The pieces: :mod:`~dwscli.compare.plan` (the ``compare:`` config
section, per-run configs, checks before training), :mod:`~dwscli.compare.runner` (training,
reusing finished runs), :mod:`~dwscli.compare.tables` (the three output files and their format).
"""

from __future__ import annotations

from dwscli.compare.plan import BUDGET_KEYS, CompareSection, RunPlan
from dwscli.compare.runner import (
    CompareReporter,
    CompareResult,
    RunRecord,
    SilentReporter,
    compare,
)

__all__ = [
    "BUDGET_KEYS",
    "CompareReporter",
    "CompareResult",
    "CompareSection",
    "RunPlan",
    "RunRecord",
    "SilentReporter",
    "compare",
]

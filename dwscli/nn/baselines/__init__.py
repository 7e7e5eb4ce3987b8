"""Baseline weight-space architectures, side by side with DWSNets (DESIGN.md §6, issue 6).

One module per family; :data:`BASELINES` lists them for the trainer's architecture registry
(:mod:`dwscli.train.archs` registers every entry, so ``model: {arch: NAME}`` selects one):

=============  ===========================================================  =====================
name           what                                                         kinds
=============  ===========================================================  =====================
mlp            MLP on the flattened weights                                  invariant, equivariant
mlp-aug        the same, trained with random hidden permutations always      invariant, equivariant
mlp-align      the same, inputs weight-matched to a stored reference net     invariant, equivariant
inr2vec        per-layer row encoders, max-pooled (inr2vec)                  invariant
transformer    Transformer over neuron tokens with position embeddings       invariant
nfn-np         NFN layers, all neurons permutable (+ I/O embeddings)         invariant, equivariant
nfn-hnp        NFN layers, hidden neurons permutable                         invariant, equivariant
nft            NP mixing + self-attention across each layer's neurons        invariant, equivariant
graph          message passing over neurons (nodes) and weights (edges)      invariant, equivariant
statnn         weight statistics into an MLP                                 invariant
=============  ===========================================================  =====================

Every model takes a :class:`~dwscli.weights.space.WeightSpace` and returns ``[B, out_features]``
(invariant) or a WeightSpace of the input's shapes (equivariant: input + predicted change).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from dwscli.nn.baselines.common import KINDS, BaselineModel
from dwscli.nn.baselines.graph import GraphOptions, build_graph
from dwscli.nn.baselines.inr2vec import Inr2VecOptions, build_inr2vec
from dwscli.nn.baselines.mlp import MLPOptions, build_mlp, build_mlp_align, build_mlp_aug
from dwscli.nn.baselines.nfn import HNPOptions, NPOptions, build_nfn_hnp, build_nfn_np
from dwscli.nn.baselines.nft import NFTOptions, build_nft
from dwscli.nn.baselines.statnn import StatNNOptions, build_statnn
from dwscli.nn.baselines.transformer import TransformerOptions, build_transformer
from dwscli.weights.spec import MLPSpec

INVARIANT_ONLY = ("invariant",)


@dataclass(frozen=True)
class Baseline:
    """What the trainer's registry needs to know about one baseline architecture."""

    name: str
    options_type: type
    build: Callable[[MLPSpec, str, Any, int], nn.Module]
    kinds: tuple[str, ...]
    description: str
    #: the trainer permutes hidden neurons of every training batch whatever the config says
    force_permutation_augmentation: bool = False


BASELINES: tuple[Baseline, ...] = (
    Baseline("mlp", MLPOptions, build_mlp, KINDS, "MLP on flattened weights"),
    Baseline(
        "mlp-aug",
        MLPOptions,
        build_mlp_aug,
        KINDS,
        "MLP + permutation augmentation",
        force_permutation_augmentation=True,
    ),
    Baseline("mlp-align", MLPOptions, build_mlp_align, KINDS, "MLP + weight-matching alignment"),
    Baseline("inr2vec", Inr2VecOptions, build_inr2vec, INVARIANT_ONLY, "inr2vec-style encoder"),
    Baseline(
        "transformer",
        TransformerOptions,
        build_transformer,
        INVARIANT_ONLY,
        "Transformer over neuron tokens",
    ),
    Baseline("nfn-np", NPOptions, build_nfn_np, KINDS, "NFN, NP layers"),
    Baseline("nfn-hnp", HNPOptions, build_nfn_hnp, KINDS, "NFN, HNP layers"),
    Baseline("nft", NFTOptions, build_nft, KINDS, "neural functional transformer"),
    Baseline("graph", GraphOptions, build_graph, KINDS, "neural graph (message passing)"),
    Baseline("statnn", StatNNOptions, build_statnn, INVARIANT_ONLY, "weight statistics + MLP"),
)


def fit_baseline(model: nn.Module, space: Any) -> None:
    """The trainer's ``fit_normalizer`` for every baseline: :meth:`BaselineModel.fit`."""
    if not isinstance(model, BaselineModel):
        raise TypeError(f"not a baseline model: {type(model).__name__}")
    model.fit(space)


__all__ = ["BASELINES", "Baseline", "BaselineModel", "fit_baseline"]

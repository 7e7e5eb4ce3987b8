"""Baseline weight-space architectures, side by side with DWSNets.

One module per family; :data:`BASELINES` lists them as :class:`~dwscli.nn.arch.Arch` records,
and :data:`dwscli.nn.archs.ARCHS` lists them beside DWSNets (``model: {arch: NAME}`` selects
one):

=============  ===========================================================  =====================
name           what                                                         kinds
=============  ===========================================================  =====================
mlp            MLP on the flattened weights                                  invariant, equivariant
mlp-aug        the same, trained with random hidden permutations always      invariant, equivariant
mlp-align      the same, inputs weight-matched to a stored reference net     invariant, equivariant
inr2vec        per-layer row encoders, max-pooled (inr2vec)                  invariant, equivariant
transformer    Transformer over neuron tokens with position embeddings       invariant, equivariant
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

from typing import Any

from torch import nn

from dwscli.nn.arch import Arch
from dwscli.nn.baselines.common import BaselineModel
from dwscli.nn.baselines.graph import GraphOptions, build_graph
from dwscli.nn.baselines.inr2vec import Inr2VecOptions, build_inr2vec
from dwscli.nn.baselines.mlp import MLPOptions, build_mlp, build_mlp_align, build_mlp_aug
from dwscli.nn.baselines.nfn import HNPOptions, NPOptions, build_nfn_hnp, build_nfn_np
from dwscli.nn.baselines.nft import NFTOptions, build_nft
from dwscli.nn.baselines.statnn import StatNNOptions, build_statnn
from dwscli.nn.baselines.transformer import TransformerOptions, build_transformer

INVARIANT_ONLY = ("invariant",)


def fit_baseline(model: nn.Module, space: Any) -> None:
    """The ``fit_normalizer`` of every baseline: :meth:`BaselineModel.fit`."""
    if not isinstance(model, BaselineModel):
        raise TypeError(f"not a baseline model: {type(model).__name__}")
    model.fit(space)


def _baseline(name: str, options: type, build: Any, symmetry: Any, description: str, **more):
    return Arch(name, options, build, fit_baseline, symmetry, description, **more)


BASELINES: tuple[Arch, ...] = (
    _baseline("mlp", MLPOptions, build_mlp, "none", "MLP on flattened weights"),
    _baseline(
        "mlp-aug",
        MLPOptions,
        build_mlp_aug,
        "none",
        "MLP + permutation augmentation",
        force_permutation_augmentation=True,
    ),
    _baseline(
        "mlp-align",
        MLPOptions,
        build_mlp_align,
        "aligned",
        "MLP + weight-matching alignment",
    ),
    _baseline(
        "inr2vec",
        Inr2VecOptions,
        build_inr2vec,
        "none",
        "inr2vec-style encoder",
    ),
    _baseline(
        "transformer",
        TransformerOptions,
        build_transformer,
        "none",
        "Transformer over neuron tokens",
    ),
    _baseline("nfn-np", NPOptions, build_nfn_np, "hidden-permutations", "NFN, NP layers"),
    _baseline("nfn-hnp", HNPOptions, build_nfn_hnp, "hidden-permutations", "NFN, HNP layers"),
    _baseline("nft", NFTOptions, build_nft, "hidden-permutations", "neural functional transformer"),
    _baseline(
        "graph", GraphOptions, build_graph, "hidden-permutations", "neural graph (message passing)"
    ),
    _baseline(
        "statnn",
        StatNNOptions,
        build_statnn,
        "hidden-permutations",
        "weight statistics + MLP",
        kinds=INVARIANT_ONLY,
    ),
)


__all__ = ["BASELINES", "BaselineModel", "fit_baseline"]

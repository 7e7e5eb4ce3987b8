"""Every architecture has the symmetry it declares, checked because it is listed.

Each :class:`~dwscli.nn.arch.Arch` in :data:`~dwscli.nn.archs.ARCHS` says whether its models
respect permutations of the hidden neurons (``hidden-permutations``), undo them by aligning the
input to a reference net (``aligned``: exact for one hidden layer, where the matching is an
assignment problem solved exactly; a heuristic for deeper nets, so not checked there), or do
not (``none``). For
every architecture and every kind it can be built for, on nets of several depths: a symmetric
one's invariant models give the same output for a permuted input, and its equivariant models
permute their output alike (in float64, to rounding); a model declared ``none`` must see the
permutation, so that an accidental symmetrisation (pooling over everything, sorting, dropping
position embeddings) is caught as a wrong declaration. A new architecture is checked by this
test as soon as it is added to the list.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dwscli.nn.archs import ARCHS
from dwscli.nn.equivariance import equivariance_error
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

CASES = [(name, kind) for name, arch in ARCHS.items() for kind in arch.kinds]
SPECS = ["3-5-6-2", "2-4-3-5-1", "4-6-3"]
#: float64 models agree to rounding; StatNN's statistics are computed in float32
SYMMETRIC_TOLERANCE = 1e-5
#: a model without the symmetry differs by far more than rounding
ASYMMETRIC_AT_LEAST = 1e-3


def build(name: str, kind: str, spec: MLPSpec) -> torch.nn.Module:
    arch = ARCHS[name]
    options = arch.options_type()
    if "output_init_scale" in {f.name for f in dataclasses.fields(options)}:
        options = dataclasses.replace(options, output_init_scale=1.0)  # outputs of size ~1
    torch.manual_seed(0)
    model = arch.build(spec, kind, options, 4)
    sample = WeightSpace.random(spec, 6, generator=torch.Generator().manual_seed(1), scale=2.0)
    arch.fit_normalizer(model, sample)
    return model.eval()


def test_every_architecture_declares_a_known_symmetry() -> None:
    assert {arch.symmetry for arch in ARCHS.values()} <= {"hidden-permutations", "aligned", "none"}
    assert ARCHS["dws"].symmetry == "hidden-permutations"


@pytest.mark.parametrize("text", SPECS)
@pytest.mark.parametrize(("name", "kind"), CASES)
def test_every_architecture_has_the_symmetry_it_declares(name: str, kind: str, text: str) -> None:
    spec = MLPSpec.parse(text)
    symmetry = ARCHS[name].symmetry
    if symmetry == "aligned" and len(spec.hidden_widths) > 1:
        pytest.skip("weight matching is a heuristic for more than one hidden layer")
    model = build(name, kind, spec)
    error = equivariance_error(model, spec, invariant=kind == "invariant", as_space=True)
    if symmetry in ("hidden-permutations", "aligned"):
        assert error < SYMMETRIC_TOLERANCE, (name, kind, text, error)
    else:
        assert error > ASYMMETRIC_AT_LEAST, (name, kind, text, error)

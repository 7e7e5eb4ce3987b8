"""The DWS layer spans exactly the space of equivariant linear maps (docs/design.md)."""

from __future__ import annotations

import pytest
import torch

from dwscli.nn.equivariance import equivariance_error, equivariant_dimension, layer_span_dimension
from dwscli.nn.layers import DWSLayer, FixedShape
from dwscli.weights.spec import MLPSpec

# (spec, dimension of all equivariant linear maps): the dimension is recomputed numerically in
# the test; the number here is only what the name states, and the test asserts they agree.
CASES = [("2-3-4-2", 114), ("3-4-5-4-2", 196), ("2-3-2", 74)]


@pytest.mark.parametrize(("text", "dimension"), CASES, ids=[f"{t}-dim{d}" for t, d in CASES])
def test_full_layer_spans_all_equivariant_linear_maps(text: str, dimension: int) -> None:
    spec = MLPSpec.parse(text)
    torch.manual_seed(0)
    computed = equivariant_dimension(spec)
    span = layer_span_dimension(DWSLayer(FixedShape.of(spec), 1, 1, fixed_mixing="full"), spec)
    assert computed == dimension, f"{text}: null space of the constraints has dim {computed}"
    assert span == computed, f"{text}: layer spans {span} of {computed} equivariant dimensions"


@pytest.mark.parametrize("text", ["2-3-4-2", "3-4-5-4-2"])
def test_shared_mode_is_a_restricted_layer(text: str) -> None:
    spec = MLPSpec.parse(text)
    span = layer_span_dimension(DWSLayer(FixedShape.of(spec), 1, 1, fixed_mixing="shared"), spec)
    assert 0 < span < equivariant_dimension(spec)


def test_constraint_dimension_matches_counting_argument() -> None:
    """Independent check: orbits of the group on index pairs give the same dimension.

    For a permutation representation, the commutant's dimension is the number of orbits of the
    group on (output index, input index) pairs; counted here by brute force over all of G.
    """
    import itertools

    from dwscli.weights.space import WeightSpace
    from dwscli.weights.symmetry import apply_permutation

    spec = MLPSpec.parse("2-3-2-2")
    n = spec.num_parameters
    positions = WeightSpace.unflatten(torch.arange(n, dtype=torch.float64)[None], spec)
    seen: set[tuple[int, int]] = set()
    images = []
    for p1 in itertools.permutations(range(3)):
        for p2 in itertools.permutations(range(2)):
            perm = [torch.tensor([p1]), torch.tensor([p2])]
            images.append(apply_permutation(positions, perm).flatten()[0].long().tolist())
    orbits = 0
    for i in range(n):
        for j in range(n):
            if (i, j) in seen:
                continue
            orbits += 1
            for image in images:
                seen.add((image[i], image[j]))
    assert orbits == equivariant_dimension(spec)


def test_a_map_that_spans_more_is_not_equivariant() -> None:
    """Adding one dense, unconstrained block breaks equivariance (the other direction)."""
    spec = MLPSpec.parse("2-3-4-2")
    layer = DWSLayer(FixedShape.of(spec), 1, 1).double()
    extra = torch.randn(3, 3, dtype=torch.float64)

    def layer_plus_dense(features):
        out = layer(features)
        bias = torch.einsum("ij,bjc->bic", extra, features.biases[0])
        return type(out)(out.weights, [out.biases[0] + bias, *out.biases[1:]])

    assert equivariance_error(layer, spec) <= 1e-10
    assert equivariance_error(layer_plus_dense, spec) > 1e-3

"""Hidden-neuron permutations preserve the function; weight matching undoes them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dwscli.weights.functional import mlp_forward
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import (
    align,
    apply_permutation,
    compose_permutations,
    identity_permutation,
    invert_permutation,
    random_permutation,
    weight_matching,
)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sine"])
@pytest.mark.parametrize("widths", ["2-16-16-1", "3-7-5-6-2", "784-32-10"])
def test_random_permutation_preserves_function(activation: str, widths: str) -> None:
    spec = MLPSpec.parse(f"{widths}:{activation}")
    generator = torch.Generator().manual_seed(7)
    # float64: in float32, w0 = 30 amplifies the round-off of a different summation order.
    space = WeightSpace.random(spec, 4, generator=generator, dtype=torch.float64)
    perm = random_permutation(space, generator=generator)
    permuted = apply_permutation(space, perm)
    assert not torch.equal(permuted.flatten(), space.flatten())
    x = torch.rand(64, spec.input_dim, generator=generator, dtype=torch.float64) * 2 - 1
    assert (mlp_forward(permuted, x) - mlp_forward(space, x)).abs().max() <= 1e-6


def test_permutation_group_laws() -> None:
    spec = MLPSpec.parse("2-6-5-1")
    space = WeightSpace.random(spec, 3)
    p, q = random_permutation(space), random_permutation(space)
    both = apply_permutation(apply_permutation(space, p), q)
    assert torch.equal(
        both.flatten(), apply_permutation(space, compose_permutations(p, q)).flatten()
    )
    back = apply_permutation(apply_permutation(space, p), invert_permutation(p))
    assert torch.equal(back.flatten(), space.flatten())
    assert torch.equal(
        apply_permutation(space, identity_permutation(space)).flatten(), space.flatten()
    )


def test_weight_matching_recovers_a_permutation() -> None:
    spec = MLPSpec.parse("3-10-8-2:tanh")
    reference = WeightSpace.random(spec, 1, dtype=torch.float64)
    shuffled = apply_permutation(reference, random_permutation(reference))
    aligned = align(shuffled, reference)
    assert torch.allclose(aligned.flatten(), reference.flatten())


def test_weight_matching_brings_nets_closer_and_keeps_function() -> None:
    spec = MLPSpec.parse("2-12-12-1:relu")
    generator = torch.Generator().manual_seed(0)
    reference = WeightSpace.random(spec, 1, generator=generator)
    others = WeightSpace.random(spec, 5, generator=generator)
    aligned = align(others, reference)
    before = (others.flatten() - reference.flatten()).norm(dim=1)
    after = (aligned.flatten() - reference.flatten()).norm(dim=1)
    assert (after <= before + 1e-6).all() and (after < before).any()
    x = torch.randn(32, 2, generator=generator)
    assert (mlp_forward(aligned, x) - mlp_forward(others, x)).abs().max() <= 1e-5
    perm = weight_matching(others, reference)
    assert [tuple(p.shape) for p in perm] == [(5, 12), (5, 12)]


@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(1, 9), min_size=2, max_size=6),
    seed=st.integers(0, 2**16),
    activation=st.sampled_from(["relu", "tanh", "sine"]),
)
def test_permutation_preserves_function_property(
    widths: list[int], seed: int, activation: str
) -> None:
    spec = MLPSpec(tuple(widths), activation)
    generator = torch.Generator().manual_seed(seed)
    space = WeightSpace.random(spec, 2, generator=generator, dtype=torch.float64)
    permuted = apply_permutation(space, random_permutation(space, generator=generator))
    x = torch.randn(16, spec.input_dim, generator=generator, dtype=torch.float64)
    assert (mlp_forward(permuted, x) - mlp_forward(space, x)).abs().max() <= 1e-9

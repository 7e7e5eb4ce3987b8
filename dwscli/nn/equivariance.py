"""Equivariance checks that ship with the library (as e3nn's ``assert_equivariant`` does).

* :func:`equivariance_error` applies a module to features and to randomly permuted features and
  returns the largest difference between ``f(g·x)`` and ``g·f(x)`` (or ``f(x)`` for invariant
  modules).
* :func:`equivariant_dimension` computes, numerically, the dimension of the space of ALL linear
  maps on a weight space that commute with the hidden permutations: the null space of the
  stacked constraints ``ρ(g) ⊗ I − I ⊗ ρ(g)ᵀ`` over generators g of the group.
* :func:`layer_span_dimension` is the rank of a layer's parameter-to-linear-map Jacobian. A
  complete layer has the two dimensions equal.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from dwscli.nn.features import WSFeatures
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import random_permutation


def random_features(
    spec: MLPSpec,
    batch: int,
    channels: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> WSFeatures:
    weights = [
        torch.randn(batch, o, i, channels, generator=generator, dtype=dtype)
        for o, i in spec.weight_shapes
    ]
    biases = [
        torch.randn(batch, o, channels, generator=generator, dtype=dtype)
        for (o,) in spec.bias_shapes
    ]
    return WSFeatures(weights, biases)


def _max_difference(
    a: WSFeatures | Tensor | WeightSpace, b: WSFeatures | Tensor | WeightSpace
) -> float:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return float((a - b).abs().max())
    return max(float((x - y).abs().max()) for x, y in zip(a.tensors(), b.tensors()))


def equivariance_error(
    module: Callable,
    spec: MLPSpec,
    *,
    channels: int = 1,
    batch: int = 3,
    trials: int = 3,
    seed: int = 0,
    invariant: bool = False,
    dtype: torch.dtype = torch.float64,
    as_space: bool = False,
) -> float:
    """Largest |f(g·x) − g·f(x)| (or |f(g·x) − f(x)| when ``invariant``) over random x and g.

    ``as_space`` feeds :class:`WeightSpace` inputs (for whole models) instead of features.
    """
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    if isinstance(module, nn.Module):
        module = module.to(dtype)
    with torch.no_grad():
        for _ in range(trials):
            x = random_features(spec, batch, channels, generator=generator, dtype=dtype)
            space = x.to_space(spec) if as_space else None
            perm = random_permutation(
                space
                if space is not None
                else x.to_space(spec)
                if channels == 1
                else WeightSpace.random(spec, batch),
                generator=generator,
            )
            if as_space:
                assert space is not None
                from dwscli.weights.symmetry import apply_permutation

                out, out_perm = module(space), module(apply_permutation(space, perm))
                expected = out if invariant else apply_permutation(out, perm)
            else:
                out, out_perm = module(x), module(x.permute(perm))
                expected = out if invariant else out.permute(perm)
            worst = max(worst, _max_difference(out_perm, expected))
    return worst


# ------------------------------------------------------------------------------------------------
# Completeness


def _tensor_generators(spec: MLPSpec) -> list[list[Tensor]]:
    """Generators of the group, each as one index permutation per tensor W_1, b_1, …, W_L, b_L.

    For each hidden layer: a transposition (0 1) and an n-cycle, which together generate S_n.
    ``moved[i]`` is the old position of new entry i in the flattened tensor.
    """
    from dwscli.weights.symmetry import apply_permutation

    positions = WeightSpace(
        [torch.arange(o * i, dtype=torch.float64).reshape(1, o, i) for o, i in spec.weight_shapes],
        [torch.arange(o, dtype=torch.float64).reshape(1, o) for (o,) in spec.bias_shapes],
        spec,
    )
    generators = []
    for layer, width in enumerate(spec.hidden_widths):
        for cycle in (torch.tensor([1, 0, *range(2, width)]), torch.roll(torch.arange(width), 1)):
            perm = [torch.arange(w)[None] for w in spec.hidden_widths]
            perm[layer] = cycle[None]
            moved = apply_permutation(positions, perm)
            generators.append([t[0].reshape(-1).long() for t in moved.tensors()])
    return generators


def equivariant_dimension(spec: MLPSpec) -> int:
    """Dimension of {A : A ρ(g) = ρ(g) A for all g} on the weight space of ``spec``.

    Computed numerically as the null space of the stacked constraints (ρ(g) ⊗ I − I ⊗ ρ(g)ᵀ)
    vec(A) = 0 over generators g. Every ρ(g) is block diagonal (each tensor is permuted within
    itself), so the constraints decouple into one small system per block A_{T,S} (source tensor
    S, target tensor T): ρ_T(g) A_{T,S} = A_{T,S} ρ_S(g). The total is the sum of their nullities.
    """
    generators = _tensor_generators(spec)
    sizes = [w[0] * w[1] for w in spec.weight_shapes] + [b[0] for b in spec.bias_shapes]
    order = [t for pair in zip(range(spec.depth), range(spec.depth, 2 * spec.depth)) for t in pair]
    sizes = [sizes[t] for t in order]  # tensors() order is W_1, b_1, W_2, b_2, ...
    total = 0
    for target, n_t in enumerate(sizes):
        for source, n_s in enumerate(sizes):
            eye_t = torch.eye(n_t, dtype=torch.float64)
            eye_s = torch.eye(n_s, dtype=torch.float64)
            rows = [torch.zeros(1, n_t * n_s, dtype=torch.float64)]
            for moved in generators:
                rho_t, rho_s = eye_t[moved[target]], eye_s[moved[source]]
                # vec(rho_t A - A rho_s) with row-major vec: (rho_t ⊗ I - I ⊗ rho_sᵀ) vec(A)
                rows.append(torch.kron(rho_t, eye_s) - torch.kron(eye_t, rho_s.T.contiguous()))
            constraints = torch.cat(rows)
            total += n_t * n_s - int(torch.linalg.matrix_rank(constraints))
    return total


def layer_span_dimension(layer: nn.Module, spec: MLPSpec) -> int:
    """Rank of the Jacobian of θ ↦ A(θ), where A(θ) is the layer's linear map (bias excluded).

    The layer must have one input and one output channel. A(θ) is linear in the weight
    parameters, so its Jacobian columns are the maps for one-hot parameter vectors.
    """
    n = spec.num_parameters
    basis = WeightSpace.unflatten(torch.eye(n, dtype=torch.float64), spec)
    inputs = WSFeatures.from_space(basis)
    zero = WSFeatures.from_space(
        WeightSpace.unflatten(torch.zeros(1, n, dtype=torch.float64), spec)
    )
    params = [p for p in layer.parameters()]
    saved = [p.detach().clone() for p in params]
    columns = []
    layer = layer.double()
    with torch.no_grad():
        for p in params:
            p.zero_()
        for p in params:
            flat = p.view(-1)
            for k in range(flat.numel()):
                flat[k] = 1.0
                offset = layer(zero).to_space(spec).flatten()
                out = layer(inputs).to_space(spec).flatten() - offset
                columns.append(out.T.reshape(-1))
                flat[k] = 0.0
        for p, s in zip(params, saved):
            p.copy_(s)
    jacobian = torch.stack(columns, dim=1)
    return int(torch.linalg.matrix_rank(jacobian))


# ------------------------------------------------------------------------------------------------
# Checks run by `dws check-equivariance`

TOLERANCE = 1e-10
SELF_CHECK_SPECS = ("2-16-16-1:sine", "3-5-6-7-2", "4-6-5-7-6-3:tanh")


def check_row(module: str, spec: MLPSpec, kind: str, error: float) -> dict:
    return {
        "module": module,
        "spec": str(spec),
        "kind": kind,
        "max_error": error,
        "passed": error <= TOLERANCE,
    }


def self_check(seed: int = 0) -> list[dict]:
    """Equivariance/invariance errors (float64) of every building block and both models."""
    from dwscli.nn.layers import ChannelNorm, DWSLayer, FixedShape, InvariantPooling
    from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet, InvariantDWSNet

    torch.manual_seed(seed)
    rows = []
    for text in SELF_CHECK_SPECS:
        spec = MLPSpec.parse(text)
        fixed = FixedShape.of(spec)
        for mode in ("full", "shared"):
            layer = DWSLayer(fixed, 3, 4, fixed_mixing=mode)
            with torch.no_grad():
                for b in layer.biases:
                    b.normal_()
            error = equivariance_error(layer, spec, channels=3, seed=seed)
            rows.append(check_row(f"DWSLayer[{mode}]", spec, "equivariant", error))
            pool = InvariantPooling(fixed, 3, fixed_mixing=mode, stats="mean+max")
            error = equivariance_error(pool, spec, channels=3, seed=seed, invariant=True)
            rows.append(check_row(f"InvariantPooling[{mode}]", spec, "invariant", error))
            config = DWSNetConfig(
                hidden_channels=4, num_layers=2, fixed_mixing=mode, output_init_scale=1.0
            )
            model = InvariantDWSNet(spec, config).eval()
            error = equivariance_error(model, spec, seed=seed, invariant=True, as_space=True)
            rows.append(check_row(f"InvariantDWSNet[{mode}]", spec, "invariant", error))
            model = EquivariantDWSNet(spec, config).eval()
            error = equivariance_error(model, spec, seed=seed, as_space=True)
            rows.append(check_row(f"EquivariantDWSNet[{mode}]", spec, "equivariant", error))
        norm = ChannelNorm(fixed, 3)
        rows.append(
            check_row(
                "ChannelNorm",
                spec,
                "equivariant",
                equivariance_error(norm, spec, channels=3, seed=seed),
            )
        )
    return rows

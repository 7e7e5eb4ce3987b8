"""The neuron-permutation symmetry of MLP weights: permute, match, and check.

A permutation of hidden layer l is a LongTensor ``perm`` of shape ``[B, d_l]`` (one per net):
new neuron j is old neuron ``perm[:, j]``. Applying it permutes the rows of W_l and b_l and the
columns of W_{l+1}, which leaves the network's function unchanged. Input and output units are
never permuted.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dwscli.errors import DwsError
from dwscli.weights.space import WeightSpace

Permutation = list[Tensor]  # one [B, d_l] index tensor per hidden layer l = 1..L-1


def random_permutation(space: WeightSpace, generator: torch.Generator | None = None) -> Permutation:
    """An independent uniformly random permutation of every hidden layer of every net."""
    batch = space.batch_size
    return [
        torch.argsort(torch.rand(batch, width, generator=generator), dim=1).to(space.device)
        for width in space.spec.hidden_widths
    ]


def identity_permutation(space: WeightSpace) -> Permutation:
    return [
        torch.arange(width, device=space.device).expand(space.batch_size, width).clone()
        for width in space.spec.hidden_widths
    ]


def _take_rows(t: Tensor, perm: Tensor) -> Tensor:
    """``t[b, perm[b, j], ...]`` for a tensor ``[B, n, ...]``."""
    index = perm.reshape(*perm.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:])
    return torch.gather(t, 1, index)


def _take_cols(t: Tensor, perm: Tensor) -> Tensor:
    """``t[b, :, perm[b, j], ...]`` for a tensor ``[B, m, n, ...]``."""
    index = perm[:, None, :].reshape(perm.shape[0], 1, perm.shape[1], *([1] * (t.dim() - 3)))
    index = index.expand(-1, t.shape[1], -1, *t.shape[3:])
    return torch.gather(t, 2, index)


def permute_tensors(
    weights: list[Tensor], biases: list[Tensor], perm: Permutation
) -> tuple[list[Tensor], list[Tensor]]:
    """Permute lists of weight/bias tensors (batch first; trailing feature dims allowed).

    Works for plain weights ``[B, d_l, d_{l-1}]`` and for processor features with channels
    ``[B, d_l, d_{l-1}, C]`` alike, which is what the equivariance checks need.
    """
    depth = len(weights)
    if len(perm) != depth - 1:
        raise DwsError(f"permutation has {len(perm)} hidden layers, network has {depth - 1}")
    new_w, new_b = [], []
    for layer in range(depth):
        w, b = weights[layer], biases[layer]
        if layer < depth - 1:  # rows belong to hidden layer `layer + 1`
            w = _take_rows(w, perm[layer])
            b = _take_rows(b, perm[layer])
        if layer > 0:  # columns belong to hidden layer `layer`
            w = _take_cols(w, perm[layer - 1])
        new_w.append(w)
        new_b.append(b)
    return new_w, new_b


def apply_permutation(space: WeightSpace, perm: Permutation) -> WeightSpace:
    """The same functions with hidden neurons reordered by ``perm``."""
    weights, biases = permute_tensors(space.weights, space.biases, perm)
    return WeightSpace(weights, biases, space.spec)


def invert_permutation(perm: Permutation) -> Permutation:
    return [torch.argsort(p, dim=1) for p in perm]


def compose_permutations(first: Permutation, second: Permutation) -> Permutation:
    """The permutation that applies ``first`` and then ``second``."""
    return [torch.gather(a, 1, b) for a, b in zip(first, second)]


def _linear_sum_assignment():
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment


def weight_matching(
    space: WeightSpace, reference: WeightSpace, *, max_iterations: int = 50
) -> Permutation:
    """Permutation that aligns each net in ``space`` to ``reference`` (batch 1 or same batch).

    Coordinate ascent on the total weight similarity sum_l <W_l^ref, P_l W_l P_{l-1}^T> +
    <b_l^ref, P_l b_l>: each hidden layer in turn is solved exactly by Hungarian assignment
    with the other layers held fixed, until no layer changes (Ainsworth et al., Git Re-Basin).
    """
    if space.spec.widths != reference.spec.widths:
        raise DwsError(f"cannot match {space.spec} onto a reference of spec {reference.spec}")
    assign = _linear_sum_assignment()
    hidden = space.spec.hidden_widths
    result: list[list[Tensor]] = [[] for _ in hidden]
    for index in range(space.batch_size):
        ref_index = 0 if reference.batch_size == 1 else index
        ws = [w[index].double().cpu() for w in space.weights]
        bs = [b[index].double().cpu() for b in space.biases]
        rws = [w[ref_index].double().cpu() for w in reference.weights]
        rbs = [b[ref_index].double().cpu() for b in reference.biases]
        perms = [torch.arange(n) for n in hidden]
        for _ in range(max_iterations):
            changed = False
            for layer in range(len(hidden)):
                # Incoming: rows of W_{layer+1} with its columns already permuted.
                incoming = ws[layer]
                if layer > 0:
                    incoming = incoming[:, perms[layer - 1]]
                score = rws[layer] @ incoming.T + torch.outer(rbs[layer], bs[layer])
                # Outgoing: columns of W_{layer+2} with its rows permuted.
                outgoing = ws[layer + 1]
                if layer + 1 < len(hidden):
                    outgoing = outgoing[perms[layer + 1]]
                score = score + rws[layer + 1].T @ outgoing
                _, columns = assign(score.numpy(), maximize=True)
                new_perm = torch.as_tensor(columns, dtype=torch.long)
                if not torch.equal(new_perm, perms[layer]):
                    perms[layer], changed = new_perm, True
            if not changed:
                break
        for layer, p in enumerate(perms):
            result[layer].append(p)
    return [torch.stack(ps).to(space.device) for ps in result]


def align(space: WeightSpace, reference: WeightSpace) -> WeightSpace:
    """``space`` with every net permuted to match ``reference`` (the MLP + alignment baseline)."""
    return apply_permutation(space, weight_matching(space, reference))

"""Invariant heads: the MLP that maps pooled, permutation-invariant features to outputs.

Why the head normalises its input: pooled features of a weight space are dominated by a part
common to every net (at initialisation the between-net variation is a few percent of their mean
square). An optimiser step then moves every net's pre-activation in a hidden unit by about the
same amount, which is more than nets differ by, and a ReLU unit pushed below zero for all nets
never fires again. Within a few hundred steps most of the head is dead, every net gets the same
logits, and the loss sits at ln(classes). A batch norm over the pooled features removes the
common part and puts the differences between nets on a unit scale, so every unit keeps seeing
nets on both sides of zero. Batch statistics are taken over nets, so the head stays exactly
invariant to hidden-neuron permutations of each net.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from dwscli.errors import DwsError
from dwscli.nn.layers import activation_module

HEAD_NORMS = ("batch", "none")


def _world_size() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class NetBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` over the nets of a batch whose training statistics, under
    ``torch.distributed``, are taken over the global batch of every process (with gradients
    through the reduction), so data-parallel training matches one process. Torch's own
    ``SyncBatchNorm`` does this on GPUs only; this one works with any backend."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        # one formula for one process and many, so both give the same numbers
        world = _world_size()
        if world == 1:

            def all_reduce(t: Tensor) -> Tensor:
                return t

        else:
            from torch.distributed.nn.functional import all_reduce
        count = torch.tensor(float(x.shape[0]) * world, dtype=x.dtype, device=x.device)
        mean = all_reduce(x.sum(dim=0)) / count
        centred = x - mean
        var = all_reduce(centred.pow(2).sum(dim=0)) / count
        with torch.no_grad():
            momentum = self.momentum if self.momentum is not None else 0.1
            self.num_batches_tracked.add_(1)
            unbiased = var.detach() * count / (count - 1).clamp_min(1)
            self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        out = centred / torch.sqrt(var + self.eps)
        return out * self.weight + self.bias if self.affine else out


def head_input_norm(features: int, norm: str) -> nn.Module:
    """The normalisation applied to a head's input: ``batch`` (batch norm over nets) or
    ``none`` (identity; processors trained before heads were normalised)."""
    if norm == "batch":
        return NetBatchNorm(features)
    if norm == "none":
        return nn.Identity()
    raise DwsError(f"unknown head_norm {norm!r}; choose one of {', '.join(HEAD_NORMS)}")


def invariant_head(
    sizes: Sequence[int], activation: str, dropout: float = 0.0, *, norm: str = "batch"
) -> nn.Sequential:
    """``norm`` over ``sizes[0]`` features, then linear layers of ``sizes`` with ``activation``
    (and dropout) between them; no activation after the last."""
    layers: list[nn.Module] = []
    if norm != "none":
        layers.append(head_input_norm(sizes[0], norm))
    pairs = list(zip(sizes[:-1], sizes[1:]))
    for index, (a, b) in enumerate(pairs):
        layers.append(nn.Linear(a, b))
        if index < len(pairs) - 1:
            layers.append(activation_module(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def net_batch_norms(model: nn.Module) -> list[NetBatchNorm]:
    """The model's :class:`NetBatchNorm` layers, in module order."""
    return [m for m in model.modules() if isinstance(m, NetBatchNorm)]


@torch.no_grad()
def recalibrate_batch_norms(model: nn.Module, batches: Sequence[Callable[[], object]]) -> int:
    """Set the running statistics of the model's batch norms to the mean and (unbiased)
    variance of their inputs over every net that ``batches`` run through the model (each a
    callable that runs one forward pass), computed with the current weights; returns how many
    layers were recalibrated.

    Why: the running statistics are an exponential average over the last few dozen training
    steps. Pooled features of a weight space sit on an offset common to every net that is tens
    to hundreds of times their spread across nets, and while training moves that offset the
    average trails it by more than the nets differ, so an eval-mode forward pass (one net at a
    time, as the CLI runs) sees features shifted by whole spreads and can score near chance
    while the same weights, normalised with fresh statistics, do well. Statistics recomputed
    over a fixed sample of training nets right before each evaluation match the weights that
    are evaluated.

    The whole model runs in eval mode (no dropout, no batch-statistics collectives under
    ``torch.distributed``), and inputs are pooled over all batches, whatever their sizes. Norms
    are done in module order, one pass each, so a later norm sees inputs already normalised
    with the new statistics of the earlier ones. A norm that fewer than two nets reach (one the
    forward pass skips, as a pooled embedding skips the head) keeps its statistics. Every
    module's mode is restored.
    """
    norms = net_batch_norms(model)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    done = 0
    try:
        for norm in norms:
            measured = _input_statistics(norm, batches)
            if measured is None:
                continue
            mean, var = measured
            norm.running_mean.copy_(mean.to(norm.running_mean.dtype))
            norm.running_var.copy_(var.to(norm.running_var.dtype))
            done += 1
    finally:
        for module, training in modes.items():
            module.training = training
    return done


def _input_statistics(
    norm: nn.Module, batches: Sequence[Callable[[], object]]
) -> tuple[Tensor, Tensor] | None:
    """Mean and unbiased variance (float64) of ``norm``'s inputs over every net ``batches``
    run through it; None when fewer than two nets reach it."""
    totals: list[Tensor] = []

    def accumulate(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
        x = args[0].detach().double()
        count = torch.full_like(x[0], float(x.shape[0]))
        totals.append(torch.stack([x.sum(0), x.pow(2).sum(0), count]))

    handle = norm.register_forward_pre_hook(accumulate)
    try:
        for run in batches:
            run()
    finally:
        handle.remove()
    if not totals:
        return None
    total, total_sq, count = torch.stack(totals).sum(0)
    n = float(count[0])
    if n < 2:
        return None
    mean = total / n
    return mean, (total_sq - n * mean.pow(2)).clamp_min(0) / (n - 1)


def head_of(model: nn.Module) -> nn.Module | None:
    """The invariant head of a model (``head``, else the whole MLP ``net`` of flat-input
    baselines), or None for equivariant models, which have none."""
    if getattr(model, "invariant", True) is False or getattr(model, "kind", None) == "equivariant":
        return None
    for name in ("head", "net"):
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            return module
    return None


@torch.no_grad()
def live_head_units(model: nn.Module, run: Callable[[], object]) -> tuple[int, int] | None:
    """``(alive, total)`` hidden units of the model's invariant head while ``run()`` evaluates a
    batch of nets: a unit is alive when its pre-activation is positive for at least one net.

    Counts the outputs of every linear layer of the head but the last. None when the model has
    no invariant head or the head has no hidden layer.
    """
    head = head_of(model)
    if head is None:
        return None
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)][:-1]
    if not linears:
        return None
    fired: dict[int, Tensor] = {}

    def hook(index: int) -> Callable[[nn.Module, object, Tensor], None]:
        def record(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            alive = (output.reshape(-1, output.shape[-1]) > 0).any(dim=0)
            fired[index] = alive if index not in fired else fired[index] | alive

        return record

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(linears)]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    if not fired:
        return None
    alive = sum(int(v.sum()) for v in fired.values())
    total = sum(int(v.numel()) for v in fired.values())
    return alive, total


__all__ = [
    "HEAD_NORMS",
    "NetBatchNorm",
    "head_input_norm",
    "head_of",
    "invariant_head",
    "live_head_units",
    "net_batch_norms",
    "recalibrate_batch_norms",
]

"""Fitting many SIRENs at once: one image (or 1-D signal) per net, stacked tensors, one
optimiser state (Adam, or per net Adam or SGD with momentum).

The forward and backward passes are written by hand for the sine MLP. That avoids autograd's
bookkeeping and lets the elementwise work be done in place: the sine of each layer and, for the
backward, its cosine are computed from one saved pre-activation, gradients reuse buffers, and the
first layer's matmul with the shared coordinate grid is one small matmul for all nets. Nets stop
when they reach the PSNR target; finished nets are dropped from the chunk so the remaining work
shrinks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dwscli.data.stacked import StackedAdamW, StackedMixed, siren_init
from dwscli.weights.functional import sine_frequencies
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


@dataclass
class FitResult:
    space: WeightSpace
    mse: Tensor  # [N] final mean squared error in the target space
    steps: Tensor  # [N] optimisation steps each net took


def siren_loss_and_grads(
    space: WeightSpace, coords: Tensor, targets: Tensor, *, compiled: bool = False
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Per-net MSE ``[N]`` and its gradients (sum over nets) for sine MLPs.

    ``coords`` ``[P, d_0]`` are shared by every net; ``targets`` is ``[N, P, d_L]``.
    ``compiled`` runs a ``torch.compile``d version (fuses the elementwise work; the first call
    per shape pays the compilation).
    """
    w0_first, w0_hidden = sine_frequencies(space.spec)
    kernel = _compiled_kernel() if compiled else _sine_mlp_loss_grads
    return kernel(space.weights, space.biases, coords, targets, w0_first, w0_hidden)


def _sine_mlp_loss_grads(
    weights: list[Tensor],
    biases: list[Tensor],
    coords: Tensor,
    targets: Tensor,
    w0_first: float,
    w0_hidden: float,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    depth = len(weights)
    points = coords.shape[0]
    pre: list[Tensor] = []  # w0 * z for each hidden layer
    acts: list[Tensor] = []  # sin(w0 * z)
    h = coords
    for i in range(depth):
        if i == 0:  # [P, d0] x [N, d0, d1] -> [N, P, d1]: one matmul with the shared grid
            z = torch.matmul(coords, weights[0].transpose(1, 2)) + biases[0][:, None, :]
        else:
            z = torch.baddbmm(biases[i][:, None, :], h, weights[i].transpose(1, 2))
        if i == depth - 1:
            h = z
            break
        z = z * (w0_first if i == 0 else w0_hidden)
        pre.append(z)
        h = torch.sin(z)
        acts.append(h)
    residual = h - targets
    mse = residual.pow(2).mean(dim=(1, 2))
    grad = residual * (2.0 / (points * residual.shape[2]))
    weight_grads: list[Tensor] = []
    bias_grads: list[Tensor] = []
    for i in range(depth - 1, -1, -1):
        bias_grads.append(grad.sum(dim=1))
        if i == 0:
            weight_grads.append(torch.matmul(grad.transpose(1, 2), coords))
            break
        weight_grads.append(torch.bmm(grad.transpose(1, 2), acts[i - 1]))
        # d sin(w0 z)/dz = w0 cos(w0 z); pre[i-1] already holds w0 z.
        w0 = w0_first if i == 1 else w0_hidden
        grad = torch.bmm(grad, weights[i]) * torch.cos(pre[i - 1]) * w0
    return mse, weight_grads[::-1], bias_grads[::-1]


_COMPILED = None


def _compiled_kernel():
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = torch.compile(_sine_mlp_loss_grads, dynamic=True)
    return _COMPILED


def fit_sines(
    targets: Tensor,
    coords: Tensor,
    spec: MLPSpec,
    *,
    steps: int,
    lr: float | Tensor = 1e-4,
    mse_target: float | Tensor | None = None,
    generator: torch.Generator | None = None,
    init: WeightSpace | None = None,
    check_every: int = 25,
    compiled: bool = False,
    step_budget: Tensor | None = None,
    weight_decay: float | Tensor = 0.0,
    use_sgd: Tensor | None = None,
    momentum: float | Tensor = 0.9,
    batch: int | None = None,
    batch_generator: torch.Generator | None = None,
) -> FitResult:
    """Fit ``N`` sine MLPs, net n to ``targets[n]`` ``[P, d_L]`` on the shared ``coords``.

    Stops a net when its MSE is at most ``mse_target`` (checked every ``check_every`` steps; a
    per-net target of ``-inf`` never stops early) or after ``steps`` steps, or its own
    ``step_budget[n]`` steps when given. ``lr`` and ``weight_decay`` may be per net; ``use_sgd``
    (per net) steps those nets with SGD with ``momentum`` instead of Adam. ``batch`` fits on a
    random subset of that many points per step (the same subset for every net of the call,
    drawn from ``batch_generator``); the early-stop check then measures the full signal.
    """
    n = targets.shape[0]
    if targets.dim() == 2:
        targets = targets[..., None]
    generator = generator or torch.Generator().manual_seed(0)
    space = init.clone() if init is not None else siren_init(spec, n, generator)
    params = [*space.weights, *space.biases]
    optimizer: StackedAdamW | StackedMixed
    if use_sgd is not None and bool(use_sgd.any()):
        optimizer = StackedMixed(
            params,
            torch.as_tensor(lr, dtype=params[0].dtype).expand(n),
            use_sgd,
            momentum=momentum,
            weight_decay=weight_decay,
        )
    else:
        optimizer = StackedAdamW(params, lr, weight_decay=weight_decay)
    threshold = None
    if mse_target is not None:
        threshold = torch.as_tensor(mse_target, dtype=targets.dtype).expand(n).clone()
    budget = None if step_budget is None else torch.as_tensor(step_budget, dtype=torch.long)
    total_steps = steps if budget is None else min(steps, int(budget.max()))
    points = coords.shape[0]
    subset = batch is not None and batch < points
    batch_generator = batch_generator or torch.Generator().manual_seed(0)
    # Work on the still-active nets only: `index` maps chunk rows to original nets.
    index = torch.arange(n)
    steps_taken = torch.zeros(n, dtype=torch.long)
    out_w = [w.clone() for w in space.weights]
    out_b = [b.clone() for b in space.biases]
    active_targets = targets
    for step in range(1, total_steps + 1):
        current = WeightSpace(params[: spec.depth], params[spec.depth :], spec)
        if subset:
            pick = torch.randperm(points, generator=batch_generator)[:batch]
            mse, gw, gb = siren_loss_and_grads(
                current, coords[pick], active_targets[:, pick], compiled=compiled
            )
        else:
            mse, gw, gb = siren_loss_and_grads(current, coords, active_targets, compiled=compiled)
        optimizer.step([*gw, *gb])
        steps_taken[index] += 1
        last = step == total_steps
        check = threshold is not None and (last or step % check_every == 0)
        spent = budget is not None and bool((steps_taken[index] >= budget[index]).any())
        if not (check or spent or last):
            continue
        done = torch.zeros(index.numel(), dtype=torch.bool)
        if check:
            if subset:
                mse = evaluate_mse(current, coords, active_targets)
            done = mse <= threshold[index]  # type: ignore[index]
        if spent:
            done |= steps_taken[index] >= budget[index]  # type: ignore[index]
        if last and threshold is not None:
            done = torch.ones_like(done)
        if done.any():
            finished = index[done]
            for k in range(spec.depth):
                out_w[k][finished] = params[k][done]
                out_b[k][finished] = params[spec.depth + k][done]
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                index = keep[:0]
                break
            params = [p[keep].contiguous() for p in params]
            optimizer.params = params
            optimizer.keep(keep)
            index = index[keep]
            active_targets = active_targets[keep]
    for k in range(spec.depth if index.numel() else 0):  # nets still running at the end
        out_w[k][index] = params[k]
        out_b[k][index] = params[spec.depth + k]
    result = WeightSpace(out_w, out_b, spec)
    return FitResult(result, evaluate_mse(result, coords, targets), steps_taken)


def evaluate_mse(space: WeightSpace, coords: Tensor, targets: Tensor, chunk: int = 256) -> Tensor:
    """Per-net MSE ``[N]`` of the final weights (a plain forward, no gradients)."""
    from dwscli.weights.functional import mlp_forward

    if targets.dim() == 2:
        targets = targets[..., None]
    out = []
    with torch.no_grad():
        for start in range(0, space.batch_size, chunk):
            prediction = mlp_forward(space[start : start + chunk], coords)
            error = prediction - targets[start : start + chunk]
            out.append(error.pow(2).mean(dim=(1, 2)))
    return torch.cat(out)

"""Training many small MLPs at once as stacked tensors.

Every parameter is a tensor with the net index first (``[N, out, in]`` / ``[N, out]``), the
loss is the SUM over nets of each net's own loss, so each net's gradient is exactly its own, and
:class:`StackedAdamW` is elementwise with a learning rate and weight decay per net, so each net
gets exactly the update a separate AdamW would give it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


def _per_net(value: Tensor | float, n: int, like: Tensor) -> Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.dim() == 0:
        t = t.expand(n)
    return t.reshape(n, *([1] * (like.dim() - 1)))


class StackedAdamW:
    """AdamW over stacked per-net parameters, with per-net lr, weight decay and an active mask.

    Nets whose ``active`` entry is False are frozen: their parameters and moments do not move,
    and their step counters do not advance (so a net resumed later continues as if alone).
    """

    def __init__(
        self,
        params: list[Tensor],
        lr: Tensor | float,
        *,
        weight_decay: Tensor | float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = params
        self.n = int(params[0].shape[0])
        self.lr = torch.as_tensor(lr, dtype=params[0].dtype).expand(self.n).clone()
        self.weight_decay = (
            torch.as_tensor(weight_decay, dtype=params[0].dtype).expand(self.n).clone()
        )
        self.betas = betas
        self.eps = eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(self.n, dtype=params[0].dtype)

    @torch.no_grad()
    def step(self, grads: list[Tensor], active: Tensor | None = None) -> None:
        beta1, beta2 = self.betas
        if active is None:
            active = torch.ones(self.n, dtype=torch.bool)
        self.steps += active.to(self.steps.dtype)
        t = self.steps.clamp_min(1)
        correction1 = 1 - beta1**t
        correction2 = 1 - beta2**t
        step_size = self.lr * active.to(self.lr.dtype) / correction1
        decay = 1 - self.lr * self.weight_decay * active.to(self.lr.dtype)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            mask = _per_net(active.to(p.dtype), self.n, p)
            m.mul_(1 - (1 - beta1) * mask).add_(g * mask, alpha=1 - beta1)
            v.mul_(1 - (1 - beta2) * mask).addcmul_(g * mask, g, value=1 - beta2)
            denom = (v / _per_net(correction2, self.n, p)).sqrt_().add_(self.eps)
            p.mul_(_per_net(decay, self.n, p))
            p.addcdiv_(m * _per_net(step_size, self.n, p), denom, value=-1.0)

    def keep(self, index: Tensor) -> None:
        """Drop nets not in ``index`` from the optimiser state (after the caller compacts)."""
        self.m = [m[index] for m in self.m]
        self.v = [v[index] for v in self.v]
        self.steps = self.steps[index]
        self.lr = self.lr[index]
        self.weight_decay = self.weight_decay[index]
        self.n = int(index.numel())


def siren_init(spec: MLPSpec, n: int, generator: torch.Generator) -> WeightSpace:
    """SIREN initialisation (Sitzmann et al. 2020) for ``n`` nets.

    First layer U(-1/d_in, 1/d_in); later layers U(-sqrt(6/d_in)/w0, sqrt(6/d_in)/w0); biases
    like torch's Linear default U(-1/sqrt(d_in), 1/sqrt(d_in)).
    """
    from dwscli.weights.functional import sine_frequencies

    _, w0_hidden = sine_frequencies(spec)
    weights, biases = [], []
    for layer, (d_out, d_in) in enumerate(spec.weight_shapes):
        bound = 1.0 / d_in if layer == 0 else math.sqrt(6.0 / d_in) / w0_hidden
        weights.append((torch.rand(n, d_out, d_in, generator=generator) * 2 - 1) * bound)
        bias_bound = 1.0 / math.sqrt(d_in)
        biases.append((torch.rand(n, d_out, generator=generator) * 2 - 1) * bias_bound)
    return WeightSpace(weights, biases, spec)


def dwsnets_init(spec: MLPSpec, n: int, generator: torch.Generator) -> WeightSpace:
    """The DWSNets authors' INR initialisation for ``n`` sine nets.

    Every sine layer, the first included, is drawn U(-sqrt(6/d_in)/w0, sqrt(6/d_in)/w0) with zero
    biases; the plain linear output layer gets torch's ``nn.Linear`` default, U(-1/sqrt(d_in),
    1/sqrt(d_in)) for weights and bias. With w0 = 30 and two inputs the first layer starts about
    10x smaller than SIREN's usual U(-1/d_in, 1/d_in), so fitting moves it far from its start and
    the weights carry the image rather than the random draw.
    """
    from dwscli.weights.functional import sine_frequencies

    w0_first, w0_hidden = sine_frequencies(spec)
    weights, biases = [], []
    last = spec.depth - 1
    for layer, (d_out, d_in) in enumerate(spec.weight_shapes):
        if layer == last:
            bound = bias_bound = 1.0 / math.sqrt(d_in)
        else:
            bound = math.sqrt(6.0 / d_in) / (w0_first if layer == 0 else w0_hidden)
            bias_bound = 0.0
        weights.append((torch.rand(n, d_out, d_in, generator=generator) * 2 - 1) * bound)
        biases.append((torch.rand(n, d_out, generator=generator) * 2 - 1) * bias_bound)
    return WeightSpace(weights, biases, spec)


#: initialisation schemes by name: Sitzmann et al.'s SIREN scheme, and the DWSNets authors'
INITS = {"sitzmann": siren_init, "dwsnets": dwsnets_init}


def kaiming_init(
    spec: MLPSpec, n: int, generator: torch.Generator, scale: Tensor | float = 1.0
) -> WeightSpace:
    """torch.nn.Linear's default initialisation times a per-net ``scale``."""
    scale_t = torch.as_tensor(scale, dtype=torch.float32).expand(n)
    weights, biases = [], []
    for d_out, d_in in spec.weight_shapes:
        bound = 1.0 / math.sqrt(d_in)
        w = (torch.rand(n, d_out, d_in, generator=generator) * 2 - 1) * bound
        b = (torch.rand(n, d_out, generator=generator) * 2 - 1) * bound
        weights.append(w * scale_t[:, None, None])
        biases.append(b * scale_t[:, None])
    return WeightSpace(weights, biases, spec)

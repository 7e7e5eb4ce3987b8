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


class StackedSGD:
    """SGD with momentum over stacked per-net parameters, like ``torch.optim.SGD`` (dampening 0,
    weight decay added to the gradient) with a per-net lr, momentum, weight decay and an active
    mask (inactive nets do not move, and their momentum buffers keep their value)."""

    def __init__(
        self,
        params: list[Tensor],
        lr: Tensor | float,
        *,
        momentum: Tensor | float = 0.9,
        weight_decay: Tensor | float = 0.0,
    ) -> None:
        self.params = params
        self.n = int(params[0].shape[0])
        dtype = params[0].dtype
        self.lr = torch.as_tensor(lr, dtype=dtype).expand(self.n).clone()
        self.momentum = torch.as_tensor(momentum, dtype=dtype).expand(self.n).clone()
        self.weight_decay = torch.as_tensor(weight_decay, dtype=dtype).expand(self.n).clone()
        self.buffers = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, grads: list[Tensor], active: Tensor | None = None) -> None:
        live = torch.ones(self.n) if active is None else active.to(self.lr.dtype)
        for p, g, buf in zip(self.params, grads, self.buffers):
            mask = _per_net(live, self.n, p)
            direction = g + _per_net(self.weight_decay, self.n, p) * p
            # active: buf = momentum * buf + direction; inactive: buf unchanged
            momentum = _per_net(self.momentum, self.n, p)
            buf.mul_(1 - mask + mask * momentum).add_(direction * mask)
            p.sub_(buf * _per_net(self.lr * live, self.n, p))

    def keep(self, index: Tensor) -> None:
        """Drop nets not in ``index`` from the optimiser state (after the caller compacts)."""
        self.buffers = [b[index] for b in self.buffers]
        self.lr = self.lr[index]
        self.momentum = self.momentum[index]
        self.weight_decay = self.weight_decay[index]
        self.n = int(index.numel())


class StackedMixed:
    """Per-net choice between :class:`StackedAdamW` (``use_sgd`` False) and :class:`StackedSGD`
    over the same stacked parameters: each net is stepped by its own optimiser only (the other
    sees it as inactive), so a chunk of nets with different optimisers trains together."""

    def __init__(
        self,
        params: list[Tensor],
        lr: Tensor,
        use_sgd: Tensor,
        *,
        momentum: Tensor | float = 0.9,
        weight_decay: Tensor | float = 0.0,
    ) -> None:
        self.use_sgd = use_sgd.to(torch.bool).clone()
        self.adam = StackedAdamW(params, lr, weight_decay=weight_decay)
        self.sgd = StackedSGD(params, lr, momentum=momentum, weight_decay=weight_decay)

    @property
    def params(self) -> list[Tensor]:
        return self.adam.params

    @params.setter
    def params(self, value: list[Tensor]) -> None:
        self.adam.params = value
        self.sgd.params = value

    def step(self, grads: list[Tensor], active: Tensor | None = None) -> None:
        live = torch.ones(self.use_sgd.shape[0], dtype=torch.bool) if active is None else active
        self.adam.step(grads, live & ~self.use_sgd)
        self.sgd.step(grads, live & self.use_sgd)

    def keep(self, index: Tensor) -> None:
        self.adam.keep(index)
        self.sgd.keep(index)
        self.use_sgd = self.use_sgd[index]


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


def siren_zero_bias_init(spec: MLPSpec, n: int, generator: torch.Generator) -> WeightSpace:
    """SIREN's weight scheme (as :func:`siren_init`) with every bias zero, as many SIREN
    implementations do it."""
    space = siren_init(spec, n, generator)
    return WeightSpace(space.weights, [torch.zeros_like(b) for b in space.biases], spec)


def torch_linear_init(spec: MLPSpec, n: int, generator: torch.Generator) -> WeightSpace:
    """PyTorch's default ``nn.Linear`` initialisation for every layer: weights and biases
    U(-1/sqrt(d_in), 1/sqrt(d_in)) (what a net gets when nobody chose an initialisation)."""
    return kaiming_init(spec, n, generator)


#: initialisation schemes of sine nets by name: Sitzmann et al.'s SIREN scheme (uniform biases),
#: the same with zero biases, the DWSNets authors' scheme and torch's ``nn.Linear`` default
INITS = {
    "sitzmann": siren_init,
    "sitzmann-zero-bias": siren_zero_bias_init,
    "dwsnets": dwsnets_init,
    "torch-linear": torch_linear_init,
}


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


def he_normal_init(
    spec: MLPSpec, n: int, generator: torch.Generator, scale: Tensor | float = 1.0
) -> WeightSpace:
    """He (Kaiming) normal initialisation for ReLU nets, weights N(0, 2/d_in) and zero biases,
    times a per-net ``scale``."""
    scale_t = torch.as_tensor(scale, dtype=torch.float32).expand(n)
    weights, biases = [], []
    for d_out, d_in in spec.weight_shapes:
        w = torch.randn(n, d_out, d_in, generator=generator) * math.sqrt(2.0 / d_in)
        weights.append(w * scale_t[:, None, None])
        biases.append(torch.zeros(n, d_out))
    return WeightSpace(weights, biases, spec)


def xavier_uniform_init(
    spec: MLPSpec, n: int, generator: torch.Generator, scale: Tensor | float = 1.0
) -> WeightSpace:
    """Glorot (Xavier) uniform initialisation, weights U(±sqrt(6/(d_in+d_out))) and zero biases,
    times a per-net ``scale``."""
    scale_t = torch.as_tensor(scale, dtype=torch.float32).expand(n)
    weights, biases = [], []
    for d_out, d_in in spec.weight_shapes:
        bound = math.sqrt(6.0 / (d_in + d_out))
        w = (torch.rand(n, d_out, d_in, generator=generator) * 2 - 1) * bound
        weights.append(w * scale_t[:, None, None])
        biases.append(torch.zeros(n, d_out))
    return WeightSpace(weights, biases, spec)


#: initialisation schemes of ReLU classifiers by name, each taking a per-net scale
CLASSIFIER_INITS = {
    "torch-linear": kaiming_init,
    "he-normal": he_normal_init,
    "xavier-uniform": xavier_uniform_init,
}

"""``nfn-np`` and ``nfn-hnp``: neural functional networks (Zhou et al., NeurIPS 2023), plain torch.

Both layers map channels-last :class:`~dwscli.nn.features.WSFeatures` to the same weight space
with other channels, equivariantly, by summing per-entry linear maps of a few pooled statistics:

* **NP** (:class:`NPLinear`) treats *every* neuron set as permutable, inputs and outputs too: a
  W_i entry sees itself, the means of its row and column statistics (W_i's row/column means, the
  neighbouring b and W), and the global means of all tensors. Equivariant to a larger group than
  ours, hence to the hidden permutations. ``io_embed`` adds learned per-index embeddings to the
  input columns of W_1 and the output rows of W_L / b_L, which gives fixed neurons an identity.
* **HNP** (:class:`HNPLinear`) permutes only hidden neurons, as DWSNets do: the fixed input index
  of W_1 and output index of W_L are folded into the channels, so those layers mix freely across
  them (parameters grow as (d_0·C)², hence the smaller default width for wide inputs).

The layers mirror the reference package ``nfn`` term for term and name for name (its
``NPLinear``/``HNPLinear``, channels-first with Conv1d/Conv2d), so that tests can copy its
parameters and compare outputs; ``nfn`` is a test oracle only, never imported here.

Models: a stack of layers with a pointwise activation; invariant models pool (NP: the mean of
every tensor; HNP: keeping fixed indices) into an MLP head; equivariant ones end with a layer to
one channel and add the change to the input (residual).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dwscli.errors import DwsError
from dwscli.nn.baselines.common import BaselineModel, scale_parameters_
from dwscli.nn.features import WSFeatures
from dwscli.nn.heads import invariant_head
from dwscli.nn.layers import activation_module
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


def grouped_init_(*layers: nn.Linear) -> None:
    """U(±1/sqrt(total fan-in)) over linear maps whose outputs are summed (nfn's ``set_init_``)."""
    bound = math.sqrt(1.0 / sum(layer.in_features for layer in layers))
    with torch.no_grad():
        for layer in layers:
            layer.weight.uniform_(-bound, bound)
            if layer.bias is not None:
                layer.bias.uniform_(-bound, bound)


def _fold_cols(w: Tensor) -> Tensor:
    """``[B, r, c, C] -> [B, r, C·c]``: a row's entries folded into channels (channel-major)."""
    return w.transpose(2, 3).reshape(w.shape[0], w.shape[1], -1)


def _fold_rows(w: Tensor) -> Tensor:
    """``[B, r, c, C] -> [B, c, C·r]``: a column's entries folded into channels."""
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], w.shape[2], -1)


def _flat(v: Tensor) -> Tensor:
    """``[B, n, C] -> [B, C·n]`` (channel-major)."""
    return v.transpose(1, 2).reshape(v.shape[0], -1)


class NPLinear(nn.Module):
    """Linear NP layer: every neuron set (inputs and outputs too) treated as permutable."""

    def __init__(self, spec: MLPSpec, c_in: int, c_out: int, *, io_embed: bool = False) -> None:
        super().__init__()
        self.depth, self.c_in, self.c_out = spec.depth, c_in, c_out
        depth = spec.depth
        n_rc = 2 * depth
        for i in range(depth):
            row_in = c_in * (1 if i == 0 else 3)
            col_in = c_in * (2 if i == depth - 1 else 3)
            layers = {
                f"layer_{i}": nn.Linear(c_in, c_out),
                f"layer_{i}_rc": nn.Linear(n_rc * c_in, c_out),
                f"layer_{i}_r": nn.Linear(row_in, c_out),
                f"layer_{i}_c": nn.Linear(col_in, c_out),
                f"bias_{i}": nn.Linear(col_in, c_out),
                f"bias_{i}_rc": nn.Linear(n_rc * c_in, c_out),
            }
            for name, layer in layers.items():
                self.add_module(name, layer)
            grouped_init_(*(layers[f"layer_{i}{s}"] for s in ("", "_rc", "_r", "_c")))
            grouped_init_(layers[f"bias_{i}"], layers[f"bias_{i}_rc"])
        self.io_embed = io_embed
        if io_embed:
            self.in_embed = nn.Parameter(torch.randn(spec.input_dim, c_in))
            self.out_embed = nn.Parameter(torch.randn(spec.output_dim, c_in))
            self.out_bias_embed = nn.Parameter(torch.randn(spec.output_dim, c_in))

    def extra_repr(self) -> str:
        return f"in_channels={self.c_in}, out_channels={self.c_out}, io_embed={self.io_embed}"

    def _get(self, name: str) -> nn.Linear:
        return getattr(self, name)

    def forward(self, x: WSFeatures) -> WSFeatures:
        weights, biases = list(x.weights), list(x.biases)
        depth = len(weights)
        if self.io_embed:
            weights[0] = weights[0] + self.in_embed
            weights[-1] = weights[-1] + self.out_embed[:, None, :]
            biases[-1] = biases[-1] + self.out_bias_embed
        row_means = [w.mean(dim=1) for w in weights]  # [B, d_{i-1}, C]
        col_means = [w.mean(dim=2) for w in weights]  # [B, d_i, C]
        pooled = torch.cat(
            [w.mean(dim=(1, 2)) for w in weights] + [b.mean(dim=1) for b in biases], dim=-1
        )
        out_w, out_b = [], []
        for i in range(depth):
            row = [row_means[i]]
            if i > 0:
                row += [col_means[i - 1], biases[i - 1]]
            col = [col_means[i], biases[i]]
            if i < depth - 1:
                col.append(row_means[i + 1])
            col_t = torch.cat(col, dim=-1)
            z = (
                self._get(f"layer_{i}")(weights[i])
                + self._get(f"layer_{i}_rc")(pooled)[:, None, None]
                + self._get(f"layer_{i}_r")(torch.cat(row, dim=-1))[:, None]
                + self._get(f"layer_{i}_c")(col_t)[:, :, None]
            )
            u = self._get(f"bias_{i}")(col_t) + self._get(f"bias_{i}_rc")(pooled)[:, None]
            out_w.append(z)
            out_b.append(u)
        return WSFeatures(out_w, out_b)


class HNPLinear(nn.Module):
    """Linear HNP layer: only hidden neurons permutable; fixed indices folded into channels."""

    def __init__(self, spec: MLPSpec, c_in: int, c_out: int) -> None:
        super().__init__()
        depth, n_in, n_out = spec.depth, spec.input_dim, spec.output_dim
        if depth < 2:
            raise DwsError(f"nfn-hnp needs nets with a hidden layer, got {spec}")
        self.depth, self.n_in, self.n_out, self.c_in, self.c_out = depth, n_in, n_out, c_in, c_out
        rc = (n_in + 2 * n_out + 2 * depth) * c_in  # pooled global statistics
        rpt_in = (n_in + 2 + (n_out if depth == 2 else 0)) * c_in
        cpt_in = (n_out + 1 + (n_in if depth == 2 else 0)) * c_in
        self.w0_rpt = nn.Linear(rpt_in, n_in * c_out)
        self.w0_rbdcst = nn.Linear(rc, n_in * c_out)
        self.bias_0 = nn.Linear(rpt_in, c_out)
        self.bias_0_rc = nn.Linear(rc, c_out)
        grouped_init_(self.w0_rpt, self.w0_rbdcst)
        grouped_init_(self.bias_0, self.bias_0_rc)
        self.wfin_cpt = nn.Linear(cpt_in, n_out * c_out)
        self.wfin_cbdcst = nn.Linear(rc, n_out * c_out)
        self.bias_fin_rc = nn.Linear(rc, n_out * c_out)
        grouped_init_(self.wfin_cpt, self.wfin_cbdcst)
        grouped_init_(self.bias_fin_rc)
        for i in range(1, depth - 1):
            row_in = (3 + (n_in if i == 1 else 0)) * c_in
            col_in = (3 + (n_out if i == depth - 2 else 0)) * c_in
            layers = {
                f"layer_{i}": nn.Linear(c_in, c_out),
                f"layer_{i}_rc": nn.Linear(rc, c_out),
                f"layer_{i}_r": nn.Linear(row_in, c_out),
                f"layer_{i}_c": nn.Linear(col_in, c_out),
                f"bias_{i}": nn.Linear(col_in, c_out),
                f"bias_{i}_rc": nn.Linear(rc, c_out),
            }
            for name, layer in layers.items():
                self.add_module(name, layer)
            grouped_init_(*(layers[f"layer_{i}{s}"] for s in ("", "_rc", "_r", "_c")))
            grouped_init_(layers[f"bias_{i}"], layers[f"bias_{i}_rc"])

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.c_in}, out_channels={self.c_out}, n_in={self.n_in}, "
            f"n_out={self.n_out}, num_layers={self.depth}"
        )

    def _get(self, name: str) -> nn.Linear:
        return getattr(self, name)

    def forward(self, x: WSFeatures) -> WSFeatures:
        weights, biases = x.weights, x.biases
        depth, last = len(weights), len(weights) - 1
        batch = weights[0].shape[0]
        row_means = [w.mean(dim=1) for w in weights]
        col_means = [w.mean(dim=2) for w in weights]
        pooled = torch.cat(
            [w.mean(dim=(1, 2)) for w in weights]
            + [b.mean(dim=1) for b in biases]
            + [_flat(row_means[0]), _flat(col_means[-1]), _flat(biases[-1])],
            dim=-1,
        )
        out_w, out_b = [], []
        for i in range(depth):
            if i == 0:
                parts = [_fold_cols(weights[0]), row_means[1], biases[0]]
                if depth == 2:
                    parts.append(_fold_rows(weights[-1]))
                rpt = torch.cat(parts, dim=-1)  # [B, d_1, ·]
                z = self.w0_rpt(rpt) + self.w0_rbdcst(pooled)[:, None]
                z = z.reshape(batch, z.shape[1], self.c_out, self.n_in).transpose(2, 3)
                u = self.bias_0(rpt) + self.bias_0_rc(pooled)[:, None]
            elif i == last:
                parts = [_fold_rows(weights[-1]), col_means[-2]]
                if depth == 2:
                    parts.append(_fold_cols(weights[0]))
                cpt = torch.cat(parts, dim=-1)  # [B, d_{L-1}, ·]
                z = self.wfin_cpt(cpt) + self.wfin_cbdcst(pooled)[:, None]
                z = z.reshape(batch, z.shape[1], self.c_out, self.n_out).permute(0, 3, 1, 2)
                u = self.bias_fin_rc(pooled).reshape(batch, self.c_out, self.n_out)
                u = u.transpose(1, 2)
            else:
                row = [row_means[i], col_means[i - 1], biases[i - 1]]
                if i == 1:
                    row.append(_fold_cols(weights[0]))
                col = [col_means[i], biases[i], row_means[i + 1]]
                if i == depth - 2:
                    col.append(_fold_rows(weights[-1]))
                col_t = torch.cat(col, dim=-1)
                z = (
                    self._get(f"layer_{i}")(weights[i])
                    + self._get(f"layer_{i}_rc")(pooled)[:, None, None]
                    + self._get(f"layer_{i}_r")(torch.cat(row, dim=-1))[:, None]
                    + self._get(f"layer_{i}_c")(col_t)[:, :, None]
                )
                u = self._get(f"bias_{i}")(col_t) + self._get(f"bias_{i}_rc")(pooled)[:, None]
            out_w.append(z)
            out_b.append(u)
        return WSFeatures(out_w, out_b)


def np_pool(x: WSFeatures) -> Tensor:
    """``[B, 2L·C]``: the mean of every tensor (invariant to all neuron permutations)."""
    return torch.cat(
        [w.mean(dim=(1, 2)) for w in x.weights] + [b.mean(dim=1) for b in x.biases], -1
    )


def hnp_pool(x: WSFeatures) -> Tensor:
    """Means over hidden indices only: W_1 keeps its input index, W_L and b_L their outputs."""
    last = x.depth - 1
    parts = []
    for i, (w, b) in enumerate(zip(x.weights, x.biases)):
        if i == 0:
            parts.append(_flat(w.mean(dim=1)))
        elif i == last:
            parts.append(_flat(w.mean(dim=2)))
        else:
            parts.append(w.mean(dim=(1, 2)))
        parts.append(_flat(b) if i == last else b.mean(dim=1))
    return torch.cat(parts, dim=-1)


@dataclass
class NPOptions:
    """Options of ``nfn-np`` (the ``model:`` section)."""

    hidden_channels: int = 32
    num_layers: int = 3
    io_embed: bool = True  # learned embeddings of input/output neurons (their identity)
    head_hidden: list[int] = field(default_factory=lambda: [64])
    activation: str = "relu"
    dropout: float = 0.0
    # normalisation of the pooled features before the head (dwscli.nn.heads): "batch" or "none"
    head_norm: str = "batch"
    output_init_scale: float = 1e-2  # equivariant tasks: start near the identity


@dataclass
class HNPOptions:
    """Options of ``nfn-hnp``. ``hidden_channels: null`` (the default) picks 32, halved down to
    8 while d_0·C exceeds 2048: an HNP layer maps W_1's d_0·C folded channels to d_0·C, so its
    size grows as (d_0·C)² (a 196-input classifier gets 8 channels, a SIREN 32)."""

    hidden_channels: int | None = None
    num_layers: int = 3
    head_hidden: list[int] = field(default_factory=lambda: [64])
    activation: str = "relu"
    dropout: float = 0.0
    # normalisation of the pooled features before the head (dwscli.nn.heads): "batch" or "none"
    head_norm: str = "batch"
    output_init_scale: float = 1e-2


def hnp_channels(options: HNPOptions, spec: MLPSpec) -> int:
    if options.hidden_channels is not None:
        return options.hidden_channels
    channels = 32
    while channels > 8 and spec.input_dim * channels > 2048:
        channels //= 2
    return channels


class NeuralFunctional(BaselineModel):
    """A stack of NP or HNP layers; pooled MLP head (invariant) or residual output layer."""

    any_hidden_widths = True

    def __init__(
        self,
        spec: MLPSpec,
        kind: str,
        options: NPOptions | HNPOptions,
        out_features: int,
        *,
        variant: str,
    ) -> None:
        self.arch_name = f"nfn-{variant}"
        super().__init__(spec, kind, out_features, options)
        self.variant = variant
        if isinstance(options, HNPOptions):
            width = hnp_channels(options, spec)

            def make(a: int, b: int) -> nn.Module:
                return HNPLinear(spec, a, b)

        else:
            width = options.hidden_channels
            io_embed = options.io_embed

            def make(a: int, b: int) -> nn.Module:
                return NPLinear(spec, a, b, io_embed=io_embed)

        self.channels = width
        sizes = [1] + [width] * options.num_layers
        self.layers = nn.ModuleList(make(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = activation_module(options.activation)
        self.drop = nn.Dropout(options.dropout) if options.dropout > 0 else None
        if self.invariant:
            probe = WSFeatures(
                [torch.zeros(1, o, i, width) for o, i in spec.weight_shapes],
                [torch.zeros(1, o, width) for (o,) in spec.bias_shapes],
            )
            pooled = self.pool(probe).shape[-1]
            self.head = invariant_head(
                [pooled, *options.head_hidden, out_features],
                options.activation,
                norm=options.head_norm,
            )
        else:
            self.output = make(width, 1)
            scale_parameters_(self.output, options.output_init_scale)

    def pool(self, x: WSFeatures) -> Tensor:
        return hnp_pool(x) if self.variant == "hnp" else np_pool(x)

    def trunk(self, space: WeightSpace) -> WSFeatures:
        self.check_input(space)
        x = self.weight_normalizer.normalize(space)
        for layer in self.layers:
            x = layer(x).map(self.act)
            if self.drop is not None:
                x = x.map(self.drop)
        return x

    def forward(self, space: WeightSpace) -> Tensor | WeightSpace:
        x = self.trunk(space)
        if self.invariant:
            return self.head(self.pool(x))
        delta = self.output(x)
        return self.residual(
            space, [w[..., 0] for w in delta.weights], [b[..., 0] for b in delta.biases]
        )


def build_nfn_np(spec: MLPSpec, kind: str, options: NPOptions, out_features: int) -> nn.Module:
    return NeuralFunctional(spec, kind, options, out_features, variant="np")


def build_nfn_hnp(spec: MLPSpec, kind: str, options: HNPOptions, out_features: int) -> nn.Module:
    return NeuralFunctional(spec, kind, options, out_features, variant="hnp")


__all__ = [
    "HNPLinear",
    "HNPOptions",
    "NPLinear",
    "NPOptions",
    "NeuralFunctional",
    "build_nfn_hnp",
    "build_nfn_np",
    "hnp_pool",
    "np_pool",
]

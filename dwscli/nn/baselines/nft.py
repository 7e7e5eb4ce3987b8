"""``nft``: attention-based equivariant layers, in the spirit of Neural Functional Transformers
(Zhou et al., NeurIPS 2023).

A block interleaves two equivariant sub-layers on channels-last weight-space features, each with
a residual connection:

1. **weight-space mixing**: an NP layer (:class:`~dwscli.nn.baselines.nfn.NPLinear`) and an
   activation, which moves information between W_i, b_i and their neighbours;
2. **neuron self-attention**: for every neuron set k = 0..L, one token per neuron, made of what
   the network attaches to it (its incoming row of W_k averaged over the previous neurons, its
   bias b_k, its outgoing column of W_{k+1} averaged over the next neurons), layer-normalised;
   multi-head self-attention across the neurons of the set; the result is written back onto the
   neuron's row of W_k, its bias and its column of W_{k+1}, broadcast along the other index.

Attention without positional embeddings is permutation equivariant, so hidden neurons get none;
the fixed input and output neurons (sets 0 and L) get a learned embedding per index, since they
have an identity. Invariant models mean-pool every tensor into an MLP head; equivariant ones end
with an NP layer to one channel and add the change to the input (residual).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dwscli.errors import DwsError
from dwscli.nn.baselines.common import BaselineModel, scale_parameters_
from dwscli.nn.baselines.nfn import NPLinear, np_pool
from dwscli.nn.features import WSFeatures
from dwscli.nn.heads import invariant_head
from dwscli.nn.layers import activation_module
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


@dataclass
class NFTOptions:
    """Options of ``nft`` (the ``model:`` section)."""

    hidden_channels: int = 32
    num_blocks: int = 2
    num_heads: int = 4
    head_hidden: list[int] = field(default_factory=lambda: [64])
    activation: str = "relu"
    dropout: float = 0.0
    # normalisation of the pooled features before the head (dwscli.nn.heads): "batch" or "none"
    head_norm: str = "batch"
    output_init_scale: float = 1e-2  # equivariant tasks: start near the identity


class NeuronAttention(nn.Module):
    """Self-attention across the neurons of each neuron set, written back onto the weights."""

    def __init__(self, spec: MLPSpec, channels: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if channels % heads:
            raise DwsError(f"nft: hidden_channels {channels} is not divisible by num_heads {heads}")
        depth = spec.depth
        self.depth, self.heads, self.dropout = depth, heads, dropout
        # set k has an incoming row + bias (k >= 1) and an outgoing column (k < L)
        parts = [(2 if k > 0 else 0) + (1 if k < depth else 0) for k in range(depth + 1)]
        self.embed = nn.ModuleList(nn.Linear(p * channels, channels) for p in parts)
        self.norm = nn.ModuleList(nn.LayerNorm(channels) for _ in parts)
        self.qkv = nn.ModuleList(nn.Linear(channels, 3 * channels) for _ in parts)
        self.out = nn.ModuleList(nn.Linear(channels, p * channels) for p in parts)
        self.input_position = nn.Parameter(torch.randn(spec.input_dim, channels) * 0.02)
        self.output_position = nn.Parameter(torch.randn(spec.output_dim, channels) * 0.02)

    def attend(self, k: int, tokens: Tensor) -> Tensor:
        batch, n, channels = tokens.shape
        q, key, v = self.qkv[k](self.norm[k](tokens)).chunk(3, dim=-1)

        def heads(t: Tensor) -> Tensor:
            return t.reshape(batch, n, self.heads, -1).transpose(1, 2)

        drop = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(heads(q), heads(key), heads(v), dropout_p=drop)
        return out.transpose(1, 2).reshape(batch, n, channels)

    def forward(self, x: WSFeatures) -> WSFeatures:
        weights, biases = x.weights, x.biases
        depth = self.depth
        delta_w = [torch.zeros_like(w) for w in weights]
        delta_b = [torch.zeros_like(b) for b in biases]
        for k in range(depth + 1):
            parts = []
            if k > 0:
                parts += [weights[k - 1].mean(dim=2), biases[k - 1]]
            if k < depth:
                parts.append(weights[k].mean(dim=1))
            tokens = self.embed[k](torch.cat(parts, dim=-1))
            if k == 0:
                tokens = tokens + self.input_position
            elif k == depth:
                tokens = tokens + self.output_position
            pieces = self.out[k](self.attend(k, tokens)).chunk(len(parts), dim=-1)
            if k > 0:
                delta_w[k - 1] = delta_w[k - 1] + pieces[0][:, :, None]
                delta_b[k - 1] = delta_b[k - 1] + pieces[1]
            if k < depth:
                delta_w[k] = delta_w[k] + pieces[-1][:, None]
        return WSFeatures(delta_w, delta_b)


class NFTBlock(nn.Module):
    """x + act(NP(x)), then x + attention(x)."""

    def __init__(self, spec: MLPSpec, channels: int, options: NFTOptions) -> None:
        super().__init__()
        self.mix = NPLinear(spec, channels, channels)
        self.act = activation_module(options.activation)
        self.attention = NeuronAttention(spec, channels, options.num_heads, options.dropout)

    def forward(self, x: WSFeatures) -> WSFeatures:
        x = x + self.mix(x).map(self.act)
        return x + self.attention(x)


class NeuralFunctionalTransformer(BaselineModel):
    """NP embedding (with input/output identities) -> NFT blocks -> pooled head or residual."""

    arch_name = "nft"
    any_hidden_widths = True

    def __init__(self, spec: MLPSpec, kind: str, options: NFTOptions, out_features: int) -> None:
        super().__init__(spec, kind, out_features, options)
        channels = options.hidden_channels
        self.embed = NPLinear(spec, 1, channels, io_embed=True)
        self.blocks = nn.ModuleList(
            NFTBlock(spec, channels, options) for _ in range(options.num_blocks)
        )
        if self.invariant:
            pooled = 2 * spec.depth * channels
            self.head = invariant_head(
                [pooled, *options.head_hidden, out_features],
                options.activation,
                norm=options.head_norm,
            )
        else:
            self.output = NPLinear(spec, channels, 1)
            scale_parameters_(self.output, options.output_init_scale)

    def forward(self, space: WeightSpace) -> Tensor | WeightSpace:
        self.check_input(space)
        x = self.embed(self.weight_normalizer.normalize(space))
        for block in self.blocks:
            x = block(x)
        if self.invariant:
            return self.head(np_pool(x))
        delta = self.output(x)
        return self.residual(
            space, [w[..., 0] for w in delta.weights], [b[..., 0] for b in delta.biases]
        )


def build_nft(spec: MLPSpec, kind: str, options: NFTOptions, out_features: int) -> nn.Module:
    return NeuralFunctionalTransformer(spec, kind, options, out_features)


__all__ = ["NFTBlock", "NFTOptions", "NeuralFunctionalTransformer", "NeuronAttention", "build_nft"]

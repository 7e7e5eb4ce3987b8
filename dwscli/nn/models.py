"""DWSNet models: stacks of DWS layers with an invariant head or an equivariant output.

Both models take a :class:`~dwscli.weights.space.WeightSpace` (the input nets), normalise each
tensor with statistics fitted on a zoo (a scale per tensor, constant over hidden indices, so the
normalisation is itself equivariant), and run a trunk of residual DWS blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from dwscli.errors import DwsError
from dwscli.nn.features import WSFeatures
from dwscli.nn.heads import invariant_head
from dwscli.nn.layers import (
    ChannelNorm,
    DWSLayer,
    FixedMixing,
    FixedShape,
    InvariantPooling,
    Pointwise,
    activation_module,
)
from dwscli.nn.output_solve import OutputSolve, check_output_solve
from dwscli.nn.probes import PROBE_EDITS, FunctionalProbes, NeuronProbes
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


@dataclass
class DWSNetConfig:
    """Hyper-parameters of a DWSNet; stored in processor cards."""

    hidden_channels: int = 32
    num_layers: int = 4
    fixed_mixing: FixedMixing = "full"
    activation: str = "relu"
    norm: bool = False
    dropout: float = 0.0
    # invariant models
    out_features: int = 1
    pooling: str = "mean"
    head_hidden: list[int] = field(default_factory=lambda: [128])
    # normalisation of the pooled features before the head (see dwscli.nn.heads): "batch", or
    # "none" as in processors trained before it existed
    head_norm: str = "batch"
    # functional probes: run each input net on this many learned inputs. Invariant models feed
    # its outputs to the head beside the pooled DWS features; equivariant models give each
    # neuron what it computes on them, as features of the weights into and out of it (see
    # NeuronProbes). 0: weights only
    probes: int = 0
    probe_features: int = 64
    # probes carry their labels (see FunctionalProbes); None: when the nets are classifiers
    probe_labels: bool | None = False
    # INR and sine zoos: read each net only on the grid it was fitted on (pixel centres; a sine
    # zoo's evenly spaced inputs), the probe coordinates snapped to the nearest grid point.
    # SIRENs can fit their grid with a function that is noise between its points, and such a
    # net is read correctly only on the grid.
    probe_grid: bool = False
    # neuron probes of an INR editor (equivariant models, with probe_grid): also give each
    # neuron how its outputs at the probes line up with what this edit ("dilate" or "erode",
    # over a probe_edit_size square of pixels) would change there (see NeuronProbes)
    probe_edit: str | None = None
    probe_edit_size: int = 3
    # equivariant models
    residual: bool = True
    output_init_scale: float = 1e-2
    # learned d_0 x d_0 maps across the input units of W_1 in the output (0: none); see
    # InputUnitMixing: what "shared" fixed mixing cannot express, at O(d_0^2) parameters
    input_mixing: int = 0
    # learned templates over the input units of W_1 (0: none); see InputTemplates: what a
    # first-layer neuron's incoming row says as weighted sums over the input units, which
    # "shared" fixed mixing cannot form linearly
    input_templates: int = 0
    # equivariant models: the layers (1 = the first) whose weights and bias the model may
    # change; every other layer passes through exactly (None: all). An edit that lives in a few
    # layers (inverting an INR's image is its output layer alone) is then learned without
    # disturbing the rest of the net.
    edit_layers: list[int] | None = None
    # robust per-tensor input statistics and an asinh of the normalised weights (see
    # WeightNormalizer): for zoos whose nets differ in scale by an order of magnitude or more
    input_squash: bool = False
    # residual equivariant models: the unit of the predicted change of each layer: "zoo" (the
    # zoo's spread of that tensor) or "net" (the RMS of that layer's weights and bias in the
    # input net itself), for zoos whose nets differ in scale: a change the size of the zoo's
    # spread wrecks a net whose weights are ten times smaller
    delta_scale: str = "zoo"
    # invariant models with functional probes: False leaves out the DWS trunk, so the head
    # reads only what each net computes at the probes. Two nets that draw the same function get
    # the same features however they were fitted (optimiser, initialisation, step budget), which
    # a model that also reads the weights' statistics cannot promise for recipes it never saw.
    trunk: bool = True
    # INR editors (equivariant models): the edit ({op: dilate, size: 3}) whose output layer is
    # solved in closed form rather than predicted: the ridge least-squares fit, on the pixel
    # grid, of the edit of the input's rendering on the edited hidden layers (see OutputSolve)
    output_solve: dict | None = None
    # that fit's penalty, relative to the mean diagonal of each net's Gram matrix
    output_solve_ridge: float = 1e-6

    def __post_init__(self) -> None:
        self.output_solve = check_output_solve(self.output_solve, self.output_solve_ridge)
        if not self.trunk and self.probes <= 0:
            raise DwsError(
                "model.trunk: false leaves only the functional probes, but the model has none",
                hint="set model.probes (e.g. 64), or drop trunk: false",
            )
        if not self.trunk and self.input_templates > 0:
            raise DwsError(
                "model.input_templates feed the DWS trunk, which trunk: false leaves out",
                hint="drop input_templates, or trunk: false",
            )
        if self.probe_grid and self.probes <= 0:
            raise DwsError(
                "model.probe_grid snaps functional probes to the pixel grid, but the model has "
                "none",
                hint="set model.probes (e.g. 256), or drop probe_grid",
            )
        if self.delta_scale not in ("zoo", "net"):
            raise DwsError(f"model.delta_scale: {self.delta_scale!r} is not one of zoo, net")
        if self.delta_scale == "net" and not self.residual:
            raise DwsError(
                "model.delta_scale: net scales a change of the input net, but the model is "
                "not residual",
                hint="set model.residual: true, or drop delta_scale",
            )
        if self.probe_edit is not None:
            if self.probe_edit not in PROBE_EDITS:
                raise DwsError(
                    f"model.probe_edit: {self.probe_edit!r} is not one of {', '.join(PROBE_EDITS)}"
                )
            if not self.probe_grid:
                raise DwsError(
                    "model.probe_edit reads neighbouring pixels, so it needs model.probe_grid",
                    hint="set model.probe_grid: true (and model.probes)",
                )
            size = self.probe_edit_size
            if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
                raise DwsError(
                    f"model.probe_edit_size must be an odd positive integer, got {size!r}"
                )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DWSNetConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise DwsError(f"unknown model option(s): {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass
class DWSProbesConfig(DWSNetConfig):
    """:class:`DWSNetConfig` whose defaults add 512 functional probes (``arch: dws-probes``),
    labelled when the input nets are classifiers (more than one output)."""

    probes: int = 512
    probe_labels: bool | None = None


class WeightNormalizer(nn.Module):
    """Per-tensor affine normalisation ``(x - mean) / std`` with statistics from a zoo.

    Means and scales are scalars per tensor W_i / b_i, so they commute with permutations.

    ``squash`` (model option ``input_squash``) is for zoos whose nets differ in scale by an order
    of magnitude or more, as when nets come from several initialisation schemes: the statistics
    are then robust ones (median, and 1.4826 times the median absolute deviation, so that the
    bulk of the nets sets the unit rather than the largest ones), and every normalised value
    goes through asinh, linear near zero and logarithmic far out, so that a net ten times larger
    than the bulk shifts the features by a few units instead of tenfold. Both are element-wise
    or per tensor, so the model stays exactly equivariant.
    """

    def __init__(self, depth: int, squash: bool = False) -> None:
        super().__init__()
        self.squash = squash
        self.register_buffer("mean", torch.zeros(2 * depth))
        self.register_buffer("std", torch.ones(2 * depth))

    @torch.no_grad()
    def fit(self, space: WeightSpace) -> None:
        for k, t in enumerate([*space.weights, *space.biases]):
            values = t.float().reshape(-1)
            if self.squash:
                centre = values.median()
                spread = 1.4826 * (values - centre).abs().median()
                if spread <= 1e-12:  # over half the values equal (zero biases): use the std
                    spread = values.std()
                self.mean[k] = centre
                self.std[k] = spread.clamp_min(1e-8)
            else:
                self.mean[k] = values.mean()
                self.std[k] = values.std().clamp_min(1e-8)

    def normalize(self, space: WeightSpace) -> WSFeatures:
        tensors = [*space.weights, *space.biases]
        depth = space.spec.depth
        out = [self.normalize_tensor(k, t)[..., None] for k, t in enumerate(tensors)]
        return WSFeatures(out[:depth], out[depth:])

    def normalize_tensor(self, k: int, t: Tensor) -> Tensor:
        """Tensor k (order W_1..W_L, b_1..b_L), or any slice of it, in normalised units."""
        z = (t - self.mean[k]) / self.std[k]
        return torch.asinh(z) if self.squash else z

    def denormalize_delta(self, delta: WSFeatures) -> list[Tensor]:
        """Scale a change expressed in normalised units back to weight units."""
        tensors = [*delta.weights, *delta.biases]  # the order of mean/std: W_1..W_L, b_1..b_L
        return [t[..., 0] * self.std[k] for k, t in enumerate(tensors)]


class DWSBlock(nn.Module):
    """DWS layer -> channel norm -> activation -> dropout, with a residual when shapes allow."""

    def __init__(self, fixed: FixedShape, c_in: int, c_out: int, config: DWSNetConfig) -> None:
        super().__init__()
        self.layer = DWSLayer(fixed, c_in, c_out, fixed_mixing=config.fixed_mixing)
        self.norm = ChannelNorm(fixed, c_out) if config.norm else None
        self.act = Pointwise(activation_module(config.activation, inplace=True))
        self.drop = Pointwise(nn.Dropout(config.dropout)) if config.dropout > 0 else None
        self.residual = c_in == c_out

    def forward(self, x: WSFeatures) -> WSFeatures:
        y = self.layer(x)
        if self.norm is not None:
            y = self.norm(y)
        y = self.act(y)
        if self.drop is not None:
            y = self.drop(y)
        return y.add_into(x) if self.residual else y


class InputTemplates(nn.Module):
    """Learned weighted sums over the input units of each first-layer neuron's incoming row.

    Row h of W_1 lists what neuron h reads from each input unit (a pixel of a classifier, a
    coordinate of an INR). A weighted sum of that row with a fixed template, say the mean of
    the centre pixels minus the border ones, is a natural feature of the neuron. ``full`` fixed
    mixing can form it, at O(d_0² C²) parameters per layer (89 million for 196 pixels and 32
    channels); ``shared`` mixing treats the input units as a set and cannot form it linearly.
    This scores each normalised row against ``count`` learned templates and adds the scores,
    mapped to the trunk's channels, to the neuron's b_1 features after the first block. A score
    belongs to neuron h alone, so a hidden-neuron permutation permutes the scores with the
    neurons: the model stays exactly equivariant.
    """

    def __init__(self, d0: int, channels: int, count: int) -> None:
        super().__init__()
        self.templates = nn.Parameter(torch.empty(d0, count).uniform_(-1, 1) / d0**0.5)
        self.to_channels = nn.Linear(count, channels)

    def forward(self, first_weights: Tensor) -> Tensor:
        """Normalised W_1 ``[B, d_1, d_0]`` -> features of the first-layer neurons
        ``[B, d_1, channels]``."""
        return self.to_channels(first_weights @ self.templates)


class _DWSTrunk(nn.Module):
    def __init__(self, spec: MLPSpec, config: DWSNetConfig) -> None:
        super().__init__()
        self.spec = spec
        self.fixed = FixedShape.of(spec)
        self.config = config
        self.normalizer = WeightNormalizer(spec.depth, squash=config.input_squash)
        layers = config.num_layers if config.trunk else 0
        channels = [1] + [config.hidden_channels] * layers
        self.blocks = nn.Sequential(
            *(DWSBlock(self.fixed, a, b, config) for a, b in zip(channels[:-1], channels[1:]))
        )
        self.input_templates = (
            InputTemplates(self.fixed.input_dim, config.hidden_channels, config.input_templates)
            if config.input_templates > 0
            else None
        )

    def check_input(self, space: WeightSpace) -> None:
        self.fixed.check_widths(space.spec.widths, str(space.spec))

    def trunk(self, space: WeightSpace) -> WSFeatures:
        self.check_input(space)
        x = self.normalizer.normalize(space)
        neurons = self.neuron_features(space)
        if self.input_templates is None and neurons is None:
            return self.blocks(x)
        y = self.blocks[0](x)
        weights, biases = list(y.weights), list(y.biases)
        if self.input_templates is not None:
            biases[0] = biases[0] + self.input_templates(x.weights[0][..., 0])
        if neurons is not None:
            for layer, features in enumerate(neurons):  # [B, d_l, C]: layer l's neurons
                biases[layer] = biases[layer] + features
                weights[layer] = weights[layer] + features[:, :, None, :]
                if layer > 0:  # the weights out of the previous layer's neurons
                    weights[layer] = weights[layer] + neurons[layer - 1][:, None, :, :]
        return self.blocks[1:](WSFeatures(weights, biases))

    def neuron_features(self, space: WeightSpace) -> list[Tensor] | None:
        """Per-neuron features ``[B, d_l, C]`` for each layer l added after the first block
        (None: none; see :class:`NeuronProbes`)."""
        return None

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class InvariantDWSNet(_DWSTrunk):
    """Weights -> vector, unchanged by any hidden-neuron permutation of the input nets."""

    def __init__(self, spec: MLPSpec, config: DWSNetConfig | None = None) -> None:
        config = config or DWSNetConfig()
        super().__init__(spec, config)
        self.pool = (
            InvariantPooling(
                self.fixed,
                config.hidden_channels,
                fixed_mixing=config.fixed_mixing,
                stats=config.pooling,
            )
            if config.trunk
            else None
        )
        self.probes = FunctionalProbes(spec, config) if config.probes > 0 else None
        if config.output_solve is not None:
            raise DwsError(
                "model.output_solve solves an edited INR's output layer: it needs an "
                "equivariant model (an editor), not an invariant one",
                hint="drop model.output_solve",
            )
        probe_width = self.probes.out_features if self.probes is not None else 0
        pooled_width = self.pool.out_features if self.pool is not None else 0
        sizes = [pooled_width + probe_width, *config.head_hidden, config.out_features]
        self.head = invariant_head(sizes, config.activation, config.dropout, norm=config.head_norm)

    def embed(self, space: WeightSpace) -> Tensor:
        """The pooled invariant features (before the head): usable as an embedding."""
        if self.pool is None:  # trunk: false (the config guarantees probes)
            assert self.probes is not None
            return self.probes(space)
        pooled = self.pool(self.trunk(space))
        if self.probes is None:
            return pooled
        return torch.cat([pooled, self.probes(space)], dim=1)

    def forward(self, space: WeightSpace) -> Tensor:
        return self.head(self.embed(space))


class InputUnitMixing(nn.Module):
    """Learned linear maps across the input units of the first layer's weights.

    A change to a classifier's input domain that is linear in the pixels (rotation, blur,
    contrast) is undone by a d_0 x d_0 map applied to every row of W_1, and a shift of the
    inputs' mean (noise clamped to the pixel range) by a change of b_1 that is a weighted sum of
    W_1's row. In ``shared`` fixed mixing the DWS layers treat the input units as a set (keep or
    pool uniformly, plus a bias per unit), so they express neither; ``full`` mixing can, but with
    O(d_0^2 C^2) parameters per layer. This adds both at the output only: the trunk's W_1
    features ``[B, d_1, d_0, C]`` are projected to ``maps`` channels; each is mixed over d_0 by
    its own matrix into W_1's change, and read out over d_0 by its own weight vector into b_1's
    change. Both act on the input axis alone, so they commute with every hidden-neuron
    permutation. They start at zero, leaving an untrained processor's output unchanged.
    """

    def __init__(self, d0: int, channels: int, maps: int) -> None:
        super().__init__()
        self.select = nn.Linear(channels, maps, bias=False)
        self.mix = nn.Parameter(torch.zeros(maps, d0, d0))
        self.to_bias = nn.Parameter(torch.zeros(maps, d0))

    def forward(self, first_weights: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, d_1, d_0, C]`` features -> changes of W_1 ``[B, d_1, d_0]`` and of b_1
        ``[B, d_1]`` (normalised units)."""
        selected = self.select(first_weights)  # [B, d_1, d_0, maps]
        weights = torch.einsum("bhik,kij->bhj", selected, self.mix)
        bias = torch.einsum("bhik,ki->bh", selected, self.to_bias)
        return weights, bias


class EquivariantDWSNet(_DWSTrunk):
    """Weights -> weights of the same shape; permuting the input permutes the output alike.

    With ``residual`` the output is the input plus a change predicted by the trunk, scaled back
    to weight units; the last layer starts small (``output_init_scale``) so an untrained
    processor is close to the identity, which is what editing and adaptation want.
    """

    def __init__(self, spec: MLPSpec, config: DWSNetConfig | None = None) -> None:
        config = config or DWSNetConfig()
        if not config.trunk:
            raise DwsError(
                "model.trunk: false is for invariant models (an equivariant model's output "
                "comes from its trunk)",
                hint="drop trunk: false",
            )
        super().__init__(spec, config)
        self.output = DWSLayer(
            self.fixed, config.hidden_channels, 1, fixed_mixing=config.fixed_mixing
        )
        with torch.no_grad():
            for p in self.output.parameters():
                p.mul_(config.output_init_scale)

        self.input_mixing = (
            InputUnitMixing(self.fixed.input_dim, config.hidden_channels, config.input_mixing)
            if config.input_mixing > 0
            else None
        )
        self.frozen_layers = frozen_layers(config.edit_layers, spec.depth)
        self.probes = NeuronProbes(spec, config) if config.probes > 0 else None
        self.output_solve = (
            OutputSolve(spec, config.output_solve, config.output_solve_ridge)
            if config.output_solve is not None
            else None
        )
        if self.output_solve is not None and spec.depth - 1 in self.frozen_layers:
            raise DwsError(
                "model.output_solve sets the output layer, which model.edit_layers leaves out",
                hint=f"add layer {spec.depth} to edit_layers, or drop output_solve",
            )

    def neuron_features(self, space: WeightSpace) -> list[Tensor] | None:
        return None if self.probes is None else self.probes(space)

    def net_scales(self, space: WeightSpace) -> list[Tensor]:
        """Per net, in the order of the normalizer's tensors (W_1..W_L, b_1..b_L): the RMS of
        each layer's weights and bias together in that net over the zoo's spread of the tensor,
        shaped to multiply the change (``delta_scale: net``). The zoo's spread was already
        applied to the change, so this swaps it for the net's own scale. A permutation of
        hidden neurons leaves it unchanged, so the model stays equivariant."""
        layer_rms = [
            ((w.square().sum(dim=(1, 2)) + b.square().sum(dim=1)) / (w[0].numel() + b[0].numel()))
            .add(1e-24)
            .sqrt()
            for w, b in zip(space.weights, space.biases)
        ]
        rms = [*layer_rms, *layer_rms]
        scales = []
        for k, r in enumerate(rms):
            dims = 3 if k < space.spec.depth else 2
            scales.append((r / self.normalizer.std[k]).reshape([-1] + [1] * (dims - 1)))
        return scales

    def keep_frozen(self, space: WeightSpace, output: WeightSpace) -> WeightSpace:
        """``output`` with the layers the model may not edit (``edit_layers``) taken from the
        input unchanged."""
        if not self.frozen_layers:
            return output
        weights, biases = list(output.weights), list(output.biases)
        for layer in self.frozen_layers:
            weights[layer], biases[layer] = space.weights[layer], space.biases[layer]
        return WeightSpace(weights, biases, output.spec)

    def forward(self, space: WeightSpace) -> WeightSpace:
        features = self.trunk(space)
        change = self.output(features)
        if self.input_mixing is not None:
            weights, bias = self.input_mixing(features.weights[0])
            change = WSFeatures(
                [change.weights[0] + weights[..., None], *change.weights[1:]],
                [change.biases[0] + bias[..., None], *change.biases[1:]],
            )
        delta = self.normalizer.denormalize_delta(change)
        depth = space.spec.depth
        if self.config.delta_scale == "net":
            delta = [d * scale for d, scale in zip(delta, self.net_scales(space))]
        if self.config.residual:
            tensors = [t + d for t, d in zip([*space.weights, *space.biases], delta)]
        else:
            mean = self.normalizer.mean
            tensors = [d + mean[k] for k, d in enumerate(delta)]
        edited = self.keep_frozen(space, WeightSpace(tensors[:depth], tensors[depth:], space.spec))
        return edited if self.output_solve is None else self.output_solve(space, edited)


def frozen_layers(edit_layers: list[int] | None, depth: int) -> list[int]:
    """0-based indices of the layers outside ``edit_layers`` (1-based; None: every layer is
    editable), checked against the ``depth`` of the nets the model is built for."""
    if edit_layers is None:
        return []
    if not edit_layers:
        raise DwsError("model.edit_layers: name at least one layer (or null for all)")
    for layer in edit_layers:
        if not 1 <= layer <= depth:
            raise DwsError(
                f"model.edit_layers: layer {layer} does not exist; the nets have layers 1-{depth}"
            )
    return [k for k in range(depth) if k + 1 not in edit_layers]


def pooled_features(model: nn.Module) -> Callable[[WeightSpace], Tensor] | None:
    """The model's invariant features before its head (``embed``, else ``features``), or None.

    Only methods count: some baselines hold a *submodule* under one of these names (NFT's
    ``embed`` layer), which is callable but not a weights -> features map.
    """
    for name in ("embed", "features"):
        attribute = getattr(model, name, None)
        if callable(attribute) and not isinstance(attribute, nn.Module):
            return attribute
    return None

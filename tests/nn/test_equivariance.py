"""Every layer and model commutes with random hidden-neuron permutations (float64, ≤ 1e-10)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dwscli.errors import DwsError
from dwscli.nn.equivariance import equivariance_error, random_features, self_check
from dwscli.nn.features import WSFeatures
from dwscli.nn.layers import ChannelNorm, DWSLayer, FixedShape, InvariantPooling, Pointwise
from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet, InvariantDWSNet
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

TOL = 1e-10
# depths 3, 4 and 5 with several widths (and the degenerate depths 1 and 2)
SPECS = [
    "2-7-5-1:sine",
    "3-4-9-6-2",
    "2-5-6-7-8-3:tanh",
    "4-6-2",
    "5-3",
    "2-32-32-32-1:sine",
]
MODES = ["full", "shared"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(1234)


def _randomize_biases(layer: DWSLayer) -> DWSLayer:
    with torch.no_grad():
        for b in layer.biases:
            b.normal_()
    return layer


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", SPECS)
def test_dws_layer_is_equivariant(text: str, mode: str) -> None:
    spec = MLPSpec.parse(text)
    layer = _randomize_biases(DWSLayer(FixedShape.of(spec), 3, 5, fixed_mixing=mode))
    assert equivariance_error(layer, spec, channels=3, trials=4) <= TOL


@pytest.mark.parametrize("text", SPECS)
def test_pointwise_pieces_are_equivariant(text: str) -> None:
    spec = MLPSpec.parse(text)
    fixed = FixedShape.of(spec)
    norm = ChannelNorm(fixed, 4)
    with torch.no_grad():
        for p in norm.parameters():
            p.normal_()
    assert equivariance_error(norm, spec, channels=4) <= TOL
    assert equivariance_error(Pointwise(nn.GELU()), spec, channels=4) <= TOL


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stats", ["mean", "mean+max"])
@pytest.mark.parametrize("text", SPECS)
def test_pooling_is_invariant(text: str, mode: str, stats: str) -> None:
    spec = MLPSpec.parse(text)
    pool = InvariantPooling(FixedShape.of(spec), 4, fixed_mixing=mode, stats=stats)
    assert equivariance_error(pool, spec, channels=4, invariant=True) <= TOL


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", SPECS[:4])
def test_models_are_invariant_and_equivariant(text: str, mode: str) -> None:
    spec = MLPSpec.parse(text)
    config = DWSNetConfig(hidden_channels=6, num_layers=3, fixed_mixing=mode, output_init_scale=1.0)
    invariant = InvariantDWSNet(spec, config).eval()
    equivariant = EquivariantDWSNet(spec, config).eval()
    assert equivariance_error(invariant, spec, invariant=True, as_space=True) <= TOL
    assert equivariance_error(equivariant, spec, as_space=True) <= TOL


@pytest.mark.parametrize("text", ["3-4-9-6-2", "2-7-5-1:sine", "4-6-2"])
def test_functional_probes_keep_the_model_invariant(text: str) -> None:
    """Probe features depend on the function only: invariant, and they change the output."""
    spec = MLPSpec.parse(text)
    config = DWSNetConfig(hidden_channels=4, num_layers=2, probes=5, probe_features=8)
    model = InvariantDWSNet(spec, config).eval()
    assert equivariance_error(model, spec, invariant=True, as_space=True) <= TOL
    space = WeightSpace.random(spec, 3, dtype=torch.float64)
    model = model.double()
    before = model(space)
    with torch.no_grad():
        model.probes.inputs.add_(1.0)
    assert not torch.allclose(before, model(space))


def test_labelled_probes_see_how_often_a_net_is_right() -> None:
    """With labels, the head gets the fraction of probes a net classifies right, exactly."""
    spec = MLPSpec.parse("3-5-4")
    config = DWSNetConfig(hidden_channels=2, num_layers=1, probes=6, probe_labels=True)
    model = InvariantDWSNet(spec, config).double().eval()
    inputs = torch.randn(6, 3, dtype=torch.float64)
    space = WeightSpace.random(spec, 4, dtype=torch.float64)
    from dwscli.weights.functional import mlp_forward

    labels = torch.randint(0, 4, (6,))
    model.probes.init_from(inputs, labels)
    features = model.probes(space)
    predicted = mlp_forward(space, inputs).argmax(dim=2)
    assert torch.allclose(features[:, -1], (predicted == labels).double().mean(dim=1))
    assert equivariance_error(model, spec, invariant=True, as_space=True) <= TOL
    assert not model.probes.inputs.requires_grad  # a label keeps describing its input
    with pytest.raises(DwsError, match="need the labels"):
        model.probes.init_from(inputs)


def test_probes_start_from_the_inputs_they_are_given() -> None:
    spec = MLPSpec.parse("3-4-2")
    model = InvariantDWSNet(spec, DWSNetConfig(hidden_channels=2, num_layers=1, probes=4))
    inputs = torch.randn(6, 3)
    model.probes.init_from(inputs)
    assert torch.equal(model.probes.inputs.detach(), inputs[:4])
    with pytest.raises(DwsError, match="at least 4 inputs of dimension 3"):
        model.probes.init_from(torch.randn(2, 3))


def test_non_equivariant_module_is_caught() -> None:
    """The check itself can fail: a dense map over hidden indices is not equivariant."""
    spec = MLPSpec.parse("2-5-6-1")
    mixer = nn.Linear(5, 5).double()

    def mix_rows(features):
        first = mixer(features.weights[0].transpose(1, -1)).transpose(1, -1)
        return type(features)([first, *features.weights[1:]], features.biases)

    assert equivariance_error(mix_rows, spec) > 1e-3


def test_equivariant_output_is_not_trivially_the_input() -> None:
    spec = MLPSpec.parse("2-8-8-1:sine")
    model = EquivariantDWSNet(
        spec, DWSNetConfig(hidden_channels=4, num_layers=2, output_init_scale=1.0)
    )
    space = WeightSpace.random(spec, 2)
    out = model(space)
    assert (out.flatten() - space.flatten()).abs().max() > 1e-3


def test_hidden_widths_may_change_but_fixed_dims_may_not() -> None:
    spec = MLPSpec.parse("2-32-32-1:sine")
    model = InvariantDWSNet(spec, DWSNetConfig(hidden_channels=4, num_layers=2)).eval()
    wider = WeightSpace.random(MLPSpec.parse("2-64-16-1:sine"), 3)
    assert model(wider).shape == (3, 1)
    with pytest.raises(DwsError, match=r"expects 2-\*-\*-1"):
        model(WeightSpace.random(MLPSpec.parse("3-32-32-1"), 2))
    with pytest.raises(DwsError, match="does not fit"):
        model(WeightSpace.random(MLPSpec.parse("2-32-32-32-1"), 2))


def test_dropout_is_off_in_eval() -> None:
    spec = MLPSpec.parse("2-8-8-1")
    model = InvariantDWSNet(spec, DWSNetConfig(hidden_channels=4, num_layers=2, dropout=0.5))
    space = WeightSpace.random(spec, 4)
    model.eval()
    assert torch.equal(model(space), model(space))
    model.train()
    assert not torch.equal(model(space), model(space))


def test_layer_rejects_wrong_channels() -> None:
    spec = MLPSpec.parse("2-4-1")
    layer = DWSLayer(FixedShape.of(spec), 3, 3)
    with pytest.raises(DwsError, match="3 channels"):
        layer(random_features(spec, 1, 2, dtype=torch.float32))


def test_layer_repr_counts_weights() -> None:
    layer = DWSLayer(FixedShape(3, 2, 1), 1, 1)
    n = sum(p.numel() for p in layer.parameters())
    assert f"| {n} weights" in repr(layer)


def test_self_check_passes() -> None:
    rows = self_check(seed=3)
    assert rows and all(row["passed"] for row in rows)
    assert {row["kind"] for row in rows} == {"equivariant", "invariant"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", ["2-5-6-3", "3-4-5-6-2", "4-3", "2-3-4-5-6-1:tanh"])
def test_fused_layer_matches_plain_autograd(text: str, mode: str) -> None:
    """The hand-written backward of the fused layer equals autograd through the plain layer."""
    spec = MLPSpec.parse(text)
    layer = _randomize_biases(DWSLayer(FixedShape.of(spec), 3, 4, fixed_mixing=mode)).double()
    x = random_features(spec, 2, 3).map(lambda t: t.requires_grad_())
    fused, plain = layer(x), layer.reference_forward(x)
    for a, b in zip(fused.tensors(), plain.tensors()):
        assert torch.allclose(a, b, atol=1e-12)
    upstream = [torch.randn_like(t) for t in fused.tensors()]
    wrt = [*x.tensors(), *layer.parameters()]
    grads_fused = torch.autograd.grad(fused.tensors(), wrt, upstream)
    grads_plain = torch.autograd.grad(plain.tensors(), wrt, upstream)
    for a, b in zip(grads_fused, grads_plain):
        assert torch.allclose(a, b, atol=1e-12)


def test_fused_layer_passes_gradcheck() -> None:
    spec = MLPSpec.parse("2-3-4-1")
    layer = DWSLayer(FixedShape.of(spec), 2, 2).double()
    x = random_features(spec, 1, 2)

    def run(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = layer(type(x).from_tensors(tensors))
        return tuple(out.tensors())

    inputs = tuple(t.requires_grad_() for t in x.tensors())
    assert torch.autograd.gradcheck(run, inputs)


def _with_random_input_mixing(spec: MLPSpec, mode: str) -> EquivariantDWSNet:
    config = DWSNetConfig(
        hidden_channels=6, num_layers=2, fixed_mixing=mode, output_init_scale=1.0, input_mixing=3
    )
    model = EquivariantDWSNet(spec, config).eval()
    assert model.input_mixing is not None
    with torch.no_grad():
        model.input_mixing.mix.normal_()
        model.input_mixing.to_bias.normal_()
    return model


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", SPECS[:4])
def test_input_unit_mixing_keeps_the_model_equivariant(text: str, mode: str) -> None:
    spec = MLPSpec.parse(text)
    model = _with_random_input_mixing(spec, mode)
    assert equivariance_error(model, spec, as_space=True) <= TOL


def test_input_unit_mixing_starts_as_a_no_op_and_then_changes_only_the_first_layer() -> None:
    """Zero-initialised maps leave the output as without them; non-zero mixing matrices change
    only W_1, and non-zero bias read-outs only b_1."""
    spec = MLPSpec.parse("6-5-4-3")
    config = DWSNetConfig(hidden_channels=4, num_layers=2, fixed_mixing="shared")
    plain = EquivariantDWSNet(spec, config).eval()
    mixing = EquivariantDWSNet(spec, DWSNetConfig(**{**config.to_dict(), "input_mixing": 2}))
    mixing.load_state_dict(plain.state_dict(), strict=False)
    mixing.eval()
    space = WeightSpace.random(spec, 3).to(torch.float64)
    plain.double(), mixing.double()
    with torch.no_grad():
        before = plain(space)
        assert torch.equal(mixing(space).flatten(), before.flatten())
        mixing.input_mixing.mix.normal_()
        mixed = mixing(space)
        mixing.input_mixing.mix.zero_()
        mixing.input_mixing.to_bias.normal_()
        read_out = mixing(space)
    assert not torch.allclose(mixed.weights[0], before.weights[0])
    assert not torch.allclose(read_out.biases[0], before.biases[0])
    assert torch.equal(mixed.biases[0], before.biases[0])
    assert torch.equal(read_out.weights[0], before.weights[0])
    for out in (mixed, read_out):
        for k in range(1, spec.depth):
            assert torch.equal(out.weights[k], before.weights[k])
            assert torch.equal(out.biases[k], before.biases[k])


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("text", SPECS)
def test_edit_layers_pass_every_other_layer_through_exactly(text: str, residual: bool) -> None:
    """Only the named layers change (and stay equivariant); the others are the input's own
    tensors, under random permutations too. Naming a layer the nets lack is a one-line error."""
    spec = MLPSpec.parse(text)
    last = spec.depth
    config = DWSNetConfig(
        hidden_channels=4,
        num_layers=2,
        output_init_scale=1.0,
        residual=residual,
        edit_layers=[last],
    )
    model = EquivariantDWSNet(spec, config).eval()
    space = WeightSpace.random(spec, 3, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(space)
    for k in range(last - 1):
        assert torch.equal(out.weights[k], space.weights[k])
        assert torch.equal(out.biases[k], space.biases[k])
    assert not torch.equal(out.weights[-1], space.weights[-1])
    assert equivariance_error(model, spec, as_space=True) <= TOL
    with pytest.raises(DwsError, match=f"layer {last + 1} does not exist; the nets have layers"):
        EquivariantDWSNet(spec, DWSNetConfig(edit_layers=[last + 1]))
    with pytest.raises(DwsError, match="name at least one layer"):
        EquivariantDWSNet(spec, DWSNetConfig(edit_layers=[]))


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", SPECS)
def test_input_templates_keep_the_models_invariant_and_equivariant(
    text: str, mode: str, layers: int
) -> None:
    spec = MLPSpec.parse(text)
    config = DWSNetConfig(
        hidden_channels=5,
        num_layers=layers,
        fixed_mixing=mode,
        output_init_scale=1.0,
        input_templates=4,
    )
    invariant, equivariant = InvariantDWSNet(spec, config).eval(), EquivariantDWSNet(spec, config)
    for model in (invariant, equivariant):
        assert model.input_templates is not None
        with torch.no_grad():
            model.input_templates.templates.normal_()
    assert equivariance_error(invariant, spec, as_space=True, invariant=True) <= TOL
    assert equivariance_error(equivariant.eval(), spec, as_space=True) <= TOL


def test_input_templates_read_the_first_layer_rows() -> None:
    """Each first-layer neuron's score is its normalised row of W_1 against the templates;
    zero templates (and read-out bias) leave the model as without them, non-zero ones change
    its output, and the templates get gradient."""
    spec = MLPSpec.parse("6-5-4-1")
    config = DWSNetConfig(hidden_channels=4, num_layers=2, fixed_mixing="shared")
    plain = InvariantDWSNet(spec, config).double().eval()
    with torch.no_grad():
        plain.normalizer.mean.normal_()
        plain.normalizer.std.uniform_(0.5, 2.0)
    model = InvariantDWSNet(spec, DWSNetConfig(**{**config.to_dict(), "input_templates": 3}))
    model.load_state_dict(plain.state_dict(), strict=False)
    model.double().eval()
    templates = model.input_templates
    assert templates is not None
    space = WeightSpace.random(spec, 4).to(torch.float64)
    x = model.normalizer.normalize(space)
    rows = x.weights[0][..., 0]  # [B, 5, 6]: neuron h's row of W_1, pixels in order
    scores = templates(rows)
    expected = torch.einsum(
        "bhi,ik,ck->bhc", rows, templates.templates, templates.to_channels.weight
    )
    assert torch.allclose(scores, expected + templates.to_channels.bias)
    # the trunk adds neuron h's own score to neuron h's b_1 features after the first block
    with torch.no_grad():
        first = model.blocks[0](x)
        by_hand = model.blocks[1:](
            WSFeatures(first.weights, [first.biases[0] + scores, *first.biases[1:]])
        )
        trunk = model.trunk(space)
    for a, b in zip(trunk.tensors(), by_hand.tensors()):
        assert torch.allclose(a, b, atol=1e-12)
    with torch.no_grad():
        assert not torch.allclose(model(space), plain(space))
        templates.templates.zero_()
        templates.to_channels.bias.zero_()
        assert torch.allclose(model(space), plain(space), atol=1e-12)
        templates.templates.normal_()
    model.train()
    model(space).sum().backward()
    assert templates.templates.grad is not None
    assert templates.templates.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text", SPECS)
def test_squashed_inputs_keep_the_models_invariant_and_equivariant(text: str, mode: str) -> None:
    spec = MLPSpec.parse(text)
    config = DWSNetConfig(
        hidden_channels=5, num_layers=2, fixed_mixing=mode, output_init_scale=1.0, input_squash=True
    )
    invariant, equivariant = InvariantDWSNet(spec, config).eval(), EquivariantDWSNet(spec, config)
    for model in (invariant, equivariant):
        model.normalizer.fit(WeightSpace.random(spec, 16))
    assert equivariance_error(invariant, spec, as_space=True, invariant=True) <= TOL
    assert equivariance_error(equivariant.eval(), spec, as_space=True) <= TOL


def test_squashed_inputs_take_their_unit_from_the_bulk_and_grow_slowly() -> None:
    """With ``input_squash`` the statistics are robust (a tenth of the nets 100x larger barely
    moves them, where they multiply the plain std) and a normalised value grows like a log."""
    spec = MLPSpec.parse("3-6-2")
    bulk = WeightSpace.random(spec, 90).to(torch.float64)
    large = WeightSpace.random(spec, 10).to(torch.float64)
    mixed = WeightSpace(
        [torch.cat([a, 100 * b]) for a, b in zip(bulk.weights, large.weights)],
        [torch.cat([a, 100 * b]) for a, b in zip(bulk.biases, large.biases)],
        spec,
    )
    plain, squashed, reference = (
        InvariantDWSNet(spec, DWSNetConfig(input_squash=flag)).normalizer
        for flag in (False, True, True)
    )
    plain.fit(mixed)
    squashed.fit(mixed)
    reference.fit(bulk)
    ratio = squashed.std / reference.std
    assert ratio.min() > 0.8 and ratio.max() < 1.5
    assert (plain.std / reference.std).min() > 10
    x = torch.linspace(-50.0, 50.0, 101, dtype=torch.float64)
    z = squashed.normalize_tensor(0, x)
    assert torch.allclose(z, torch.asinh((x - squashed.mean[0]) / squashed.std[0]))
    assert z.abs().max() < 10 and torch.all(z[1:] > z[:-1])


def test_squashed_statistics_fall_back_to_the_std_when_most_values_are_equal() -> None:
    """Zero-initialised biases that barely moved: the median absolute deviation is 0, so the
    scale falls back to the standard deviation instead of blowing small values up."""
    spec = MLPSpec.parse("3-6-2")
    space = WeightSpace.random(spec, 50).to(torch.float64)
    biases = [torch.where(torch.rand_like(b) < 0.7, torch.zeros_like(b), b) for b in space.biases]
    normalizer = InvariantDWSNet(spec, DWSNetConfig(input_squash=True)).normalizer
    normalizer.fit(WeightSpace(space.weights, biases, spec))
    depth = spec.depth
    for k, b in enumerate(biases):
        assert normalizer.mean[depth + k] == 0
        assert torch.isclose(normalizer.std[depth + k], b.float().std(), rtol=1e-5)

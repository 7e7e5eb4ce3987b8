"""The baseline architectures of the registry: shapes, input checks, the trainer on tiny zoos,
and processors that reload to the same outputs.

``nfn`` (the reference NFN package, ``bench`` extra) is used as a test oracle only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dwscli.data.zoo import Zoo
from dwscli.data.zoo_make import InrZooConfig, make_inr_zoo
from dwscli.errors import DwsError
from dwscli.nn.archs import ARCHS, get_arch
from dwscli.nn.baselines.nfn import HNPLinear, NPLinear
from dwscli.nn.features import WSFeatures
from dwscli.processors.loading import load_processor
from dwscli.train import TrainConfig, TrainResult, train
from dwscli.train.card import write_processor
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import apply_permutation, random_permutation

BASELINES = sorted(name for name in ARCHS if name != "dws")
EQUIVARIANT_FAMILY = ["nfn-np", "nfn-hnp", "nft", "graph"]  # built from symmetric layers
SPEC = MLPSpec.parse("3-5-6-2")
TOLERANCE = 1e-10  # float64


def cases(names: list[str]) -> list[tuple[str, str]]:
    return [(name, kind) for name in names for kind in ARCHS[name].kinds]


def build(name: str, kind: str, spec: MLPSpec = SPEC, out: int = 4, **options: Any):
    arch = get_arch(name)
    model = arch.build(spec, kind, replace(arch.options_type(), **options), out)
    fit = WeightSpace.random(spec, 6, generator=torch.Generator().manual_seed(1), scale=2.0)
    arch.fit_normalizer(model, fit)
    return model.eval()


def batch(spec: MLPSpec = SPEC, size: int = 3, seed: int = 0, dtype=torch.float32) -> WeightSpace:
    return WeightSpace.random(
        spec, size, generator=torch.Generator().manual_seed(seed), dtype=dtype
    )


def same_shapes(a: WeightSpace, b: WeightSpace) -> bool:
    return a.spec == b.spec and all(x.shape == y.shape for x, y in zip(a.tensors(), b.tensors()))


# ------------------------------------------------------------------------------------------------
# the registry, shapes, input checks


def test_every_system_of_the_issue_is_registered() -> None:
    expected = {"dws", "mlp", "mlp-aug", "mlp-align", "inr2vec", "transformer"}
    expected |= {"nfn-np", "nfn-hnp", "nft", "graph", "statnn"}
    assert expected <= set(ARCHS)
    assert get_arch("mlp-aug").force_permutation_augmentation
    assert not any(ARCHS[n].force_permutation_augmentation for n in ARCHS if n != "mlp-aug")
    assert ARCHS["statnn"].kinds == ("invariant",)
    # the DWSNets paper's domain-adaptation baselines map weights to weights too
    for name in ("mlp", "mlp-aug", "mlp-align", "inr2vec", "transformer"):
        assert ARCHS[name].kinds == ("invariant", "equivariant")


@pytest.mark.parametrize(("name", "kind"), cases(BASELINES))
def test_outputs_have_the_right_shape_for_any_batch_size(name: str, kind: str) -> None:
    model = build(name, kind)
    for size in (1, 3):
        x = batch(size=size)
        with torch.no_grad():
            out = model(x)
        if kind == "invariant":
            assert out.shape == (size, 4)
            assert torch.isfinite(out).all()
        else:
            assert isinstance(out, WeightSpace) and same_shapes(out, x)
            assert all(torch.isfinite(t).all() for t in out.tensors())


def test_invariant_only_archs_refuse_equivariant_tasks() -> None:
    with pytest.raises(DwsError, match="statnn supports invariant tasks only"):
        build("statnn", "equivariant")


def test_nets_that_do_not_fit_are_refused() -> None:
    other_hidden = batch(MLPSpec.parse("3-4-7-2"))
    for name in EQUIVARIANT_FAMILY:  # hidden widths are free, as for DWSNets
        assert build(name, "invariant")(other_hidden).shape == (3, 4)
    with pytest.raises(DwsError, match=r"network 3-4-7-2:relu does not fit this mlp processor"):
        build("mlp", "invariant")(other_hidden)
    with pytest.raises(DwsError, match="does not fit this nfn-np processor"):
        build("nfn-np", "invariant")(batch(MLPSpec.parse("4-5-6-2")))


def test_bad_sizes_are_one_line_errors() -> None:
    with pytest.raises(DwsError, match=r"graph: model.hidden_channels: must be at least 1, got 0"):
        build("graph", "invariant", hidden_channels=0)
    with pytest.raises(DwsError, match=r"mlp-aug: model.dropout: must be in \[0, 1\)"):
        build("mlp-aug", "invariant", dropout=1.0)
    with pytest.raises(DwsError, match=r"nft: hidden_channels 6 is not divisible by num_heads 4"):
        build("nft", "invariant", hidden_channels=6)


def test_a_config_needs_only_the_arch_name(tmp_path: Path, inr_zoo: Path) -> None:
    base = {"name": "x", "task": "inr-classify", "zoo": str(inr_zoo), "output": str(tmp_path)}
    for name in BASELINES:
        config = TrainConfig.from_dict({**base, "model": {"arch": name}})
        assert config.model.options == ARCHS[name].options_type()
    with pytest.raises(DwsError, match=r"model\.hiden_channels: unknown key"):
        TrainConfig.from_dict({**base, "model": {"arch": "graph", "hiden_channels": 3}})


# ------------------------------------------------------------------------------------------------
# symmetry


# Whether each architecture has the symmetry it declares: tests/nn/test_arch_symmetry.py.


def test_transformer_position_embeddings_break_the_symmetry_of_tokens() -> None:
    """A net whose W_2 columns are all alike: a hidden permutation only reorders the layer-1
    tokens, which a Transformer without position embeddings could not see. Ours does."""
    spec = MLPSpec.parse("3-5-2")
    model = build("transformer", "invariant", spec).double()
    x = batch(spec, size=2, dtype=torch.float64)
    x.weights[1] = x.weights[1][:, :, :1].expand(-1, -1, 5).clone()
    perm = random_permutation(x, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        diff = (model(x) - model(apply_permutation(x, perm))).abs().max()
    assert float(diff) > 1e-4


@pytest.mark.parametrize("text", ["3-5-2", "3-5-6-2", "4-5-6-7-3", "2-4-3-5-6-1"])
@pytest.mark.parametrize("layer", ["np", "hnp"])
def test_nfn_layers_match_the_reference_package(text: str, layer: str) -> None:
    """Same parameters (copied from ``nfn``'s layer, channels-first Conv to channels-last
    Linear) give the same outputs: our NP/HNP layers are the NFN paper's, term for term."""
    pytest.importorskip("einops")
    nfn_layers = pytest.importorskip("nfn.layers")
    from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat

    spec = MLPSpec.parse(text)
    g = torch.Generator().manual_seed(0)
    x = WSFeatures(
        [torch.randn(2, o, i, 3, generator=g, dtype=torch.float64) for o, i in spec.weight_shapes],
        [torch.randn(2, o, 3, generator=g, dtype=torch.float64) for (o,) in spec.bias_shapes],
    )
    theirs_x = WeightSpaceFeatures(
        [w.permute(0, 3, 1, 2) for w in x.weights], [b.permute(0, 2, 1) for b in x.biases]
    )
    network = network_spec_from_wsfeat(theirs_x)
    if layer == "np":
        theirs = nfn_layers.NPLinear(network, 3, 4, io_embed=True).double()
        mine = NPLinear(spec, 3, 4, io_embed=True).double()
    else:
        theirs = nfn_layers.HNPLinear(network, 3, 4).double()
        mine = HNPLinear(spec, 3, 4).double()
    source = theirs.state_dict()
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.numel() for p in mine.parameters())
    assert set(source) == set(mine.state_dict())
    state = {}
    for key, target in mine.state_dict().items():
        value = source[key]
        if key == "in_embed":  # (1, C, 1, n_in) -> [n_in, C]
            value = value[0, :, 0, :].T
        elif key == "out_embed":  # (1, C, n_out, 1) -> [n_out, C]
            value = value[0, :, :, 0].T
        elif key == "out_bias_embed":  # (1, C, n_out) -> [n_out, C]
            value = value[0].T
        state[key] = value.reshape(target.shape)
    mine.load_state_dict(state)
    with torch.no_grad():
        expected, got = theirs(theirs_x), mine(x)
    for a, b in zip(expected.weights, got.weights):
        assert torch.allclose(a.permute(0, 2, 3, 1), b, atol=1e-12)
    for a, b in zip(expected.biases, got.biases):
        assert torch.allclose(a.permute(0, 2, 1), b, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# mlp-align


def test_mlp_align_keeps_its_reference_and_undoes_permutations() -> None:
    """One hidden layer: weight matching is one exact Hungarian assignment, so a permuted net
    aligns to exactly the same weights and gets exactly the same prediction."""
    spec = MLPSpec.parse("3-6-2")
    fit = batch(spec, size=4, seed=5, dtype=torch.float64)
    model = get_arch("mlp-align").build(spec, "invariant", get_arch("mlp-align").options_type(), 4)
    model = model.double()
    get_arch("mlp-align").fit_normalizer(model, fit)
    model.eval()
    assert torch.equal(model.state_dict()["reference_w1"], fit.weights[0][:1])
    assert torch.equal(model.state_dict()["reference_b2"], fit.biases[1][:1])
    x = batch(spec, size=4, seed=6, dtype=torch.float64)
    perm = random_permutation(x, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        out, out_perm = model(x), model(apply_permutation(x, perm))
    assert (out - out_perm).abs().max() < TOLERANCE
    # without alignment the same MLP sees the difference
    plain = get_arch("mlp").build(spec, "invariant", get_arch("mlp").options_type(), 4).double()
    plain.load_state_dict(model.state_dict(), strict=False)
    plain.eval()
    with torch.no_grad():
        assert (plain(x) - plain(apply_permutation(x, perm))).abs().max() > 1e-3


def test_equivariant_mlp_align_follows_the_input_order() -> None:
    """For weight-to-weight tasks the change is predicted in the aligned frame and permuted
    back: permuting the input permutes the output alike (one hidden layer: exact matching)."""
    spec = MLPSpec.parse("3-6-2")
    arch = get_arch("mlp-align")
    model = arch.build(spec, "equivariant", replace(arch.options_type(), output_init_scale=1.0), 1)
    model = model.double()
    arch.fit_normalizer(model, batch(spec, size=2, seed=8, dtype=torch.float64))
    model.eval()
    x = batch(spec, size=3, seed=9, dtype=torch.float64)
    perm = random_permutation(x, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        out, out_perm = model(x), model(apply_permutation(x, perm))
    expected = apply_permutation(out, perm).tensors()
    assert max(float((a - b).abs().max()) for a, b in zip(out_perm.tensors(), expected)) < 1e-10
    assert max(float((a - b).abs().max()) for a, b in zip(out.tensors(), x.tensors())) > 1e-3


# ------------------------------------------------------------------------------------------------
# processors: save, load, same outputs


@pytest.mark.parametrize(("name", "kind"), cases(BASELINES))
def test_processor_round_trip(name: str, kind: str, tmp_path: Path) -> None:
    arch = get_arch(name)
    options = arch.options_type()
    model = build(name, kind, out=3)
    card = {
        "name": "p",
        "version": "1",
        "task": "test",
        "model": {"kind": kind, "arch": name, "config": arch.card_config(options, 3)},
        "input": {"spec": str(SPEC)},
    }
    card_path, _ = write_processor(tmp_path, "p", card, model)
    processor = load_processor(str(card_path))
    assert processor.kind == kind and type(processor.model) is type(model)
    x = batch(size=2, seed=4)
    with torch.no_grad():
        a, b = model(x), processor.model(x)
    pairs = zip(a.tensors(), b.tensors()) if kind == "equivariant" else [(a, b)]
    for u, v in pairs:
        assert torch.equal(u, v)


def test_cards_with_unknown_archs_or_options_are_one_line_errors(tmp_path: Path) -> None:
    model = build("graph", "invariant", out=3)
    config = get_arch("graph").card_config(get_arch("graph").options_type(), 3)
    for arch, cfg, message in [
        ("gnn", config, "model.arch: unknown architecture 'gnn'"),
        ("graph", {**config, "channels": 4}, "model.config.channels: unknown key"),
        ("graph", {**config, "num_layers": "three"}, "model.config.num_layers: expected an"),
    ]:
        card = {
            "task": "accuracy",
            "model": {"kind": "invariant", "arch": arch, "config": cfg},
            "input": {"spec": str(SPEC)},
        }
        path, _ = write_processor(tmp_path, "bad", card, model)
        with pytest.raises(DwsError, match=message) as info:
            load_processor(str(path))
        assert str(path) in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------
# the real trainer on tiny zoos


@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zoos") / "inr"
    config = InrZooConfig(spec="2-8-8-1:sine;w0=30", steps=10, chunk=24, compiled=False)
    make_inr_zoo(out, "mnist", count=24, config=config, shard_size=24)
    return out


@pytest.fixture(scope="module")
def cached_domain_images() -> Iterator[None]:
    """The adapt task corrupts the whole data set per run; do it once for this module."""
    from dwscli.train.tasks import adapt

    load = adapt.load_domain_images
    cache: dict[tuple[str, str, Any], Any] = {}

    def cached(zoo: Zoo, corruption: str, options: Any) -> Any:
        key = (str(zoo.path), corruption, options)
        if key not in cache:
            cache[key] = load(zoo, corruption, options)
        return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adapt, "load_domain_images", cached)
        yield


def run(zoo: Path, out: Path, arch: str, task: Any, **settings: Any) -> TrainResult:
    config = {
        "name": f"tiny-{arch}",
        "task": task,
        "zoo": str(zoo),
        "output": str(out),
        "model": {"arch": arch},
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "device": "cpu", **settings},
    }
    return train(TrainConfig.from_dict(config))


def check_trained(result: TrainResult, arch: str, kind: str, spec: MLPSpec) -> Any:
    """The processor's parameters are finite and moved away from the seeded initialisation."""
    processor = load_processor(str(result.processor))
    card = yaml.safe_load(result.processor.read_text())
    assert card["model"]["arch"] == arch and card["model"]["kind"] == kind
    assert card["model"]["parameters"] == sum(p.numel() for p in processor.model.parameters())
    torch.manual_seed(0)  # the trainer builds the model right after seeding with train.seed
    options, out_features = get_arch(arch).options_from_card(card["model"]["config"])
    initial = get_arch(arch).build(spec, kind, options, out_features).state_dict()
    trained = processor.model.state_dict()
    params = dict(processor.model.named_parameters())
    assert all(torch.isfinite(p).all() for p in params.values())
    assert any(not torch.equal(trained[k], initial[k]) for k in params), "nothing was learned"
    return processor


@pytest.mark.parametrize("arch", BASELINES)
def test_trainer_runs_every_arch_on_an_invariant_task(
    arch: str, inr_zoo: Path, tmp_path: Path
) -> None:
    result = run(inr_zoo, tmp_path, arch, "inr-classify")
    assert math.isfinite(result.history[-1]["train_loss"])
    processor = check_trained(result, arch, "invariant", Zoo.open(inr_zoo).spec)
    # the processor reproduces the trained model's test metrics
    test = Zoo.open(inr_zoo).load("test")
    with torch.no_grad():
        logits = processor.model(test.space)
    loss = torch.nn.functional.cross_entropy(logits, test.targets["label"].long())
    assert math.isclose(float(loss), result.metrics["test"]["loss"], rel_tol=1e-5)


@pytest.mark.parametrize("arch", [n for n in BASELINES if "equivariant" in ARCHS[n].kinds])
def test_trainer_runs_every_arch_on_an_equivariant_task(
    arch: str, da_zoo: Path, tmp_path: Path, cached_domain_images: None
) -> None:
    task = {"name": "adapt", "images_per_step": 64, "val_images": 300, "eval_images": 300}
    result = run(da_zoo, tmp_path, arch, task, permutation_augmentation=False)
    assert math.isfinite(result.history[-1]["train_loss"])
    assert 0.0 <= result.metrics["test"]["adapted_acc"] <= 1.0
    check_trained(result, arch, "equivariant", Zoo.open(da_zoo).spec)


def test_mlp_aug_is_always_augmented(inr_zoo: Path, tmp_path: Path) -> None:
    """mlp-aug with augmentation switched off trains exactly as mlp with it switched on (same
    model, same seeded permutations), and not as mlp without it."""
    aug = run(inr_zoo, tmp_path / "a", "mlp-aug", "inr-classify", permutation_augmentation=False)
    on = run(inr_zoo, tmp_path / "b", "mlp", "inr-classify", permutation_augmentation=True)
    off = run(inr_zoo, tmp_path / "c", "mlp", "inr-classify", permutation_augmentation=False)
    weights = [load_processor(str(r.processor)).model.state_dict() for r in (aug, on, off)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])

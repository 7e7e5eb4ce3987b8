"""``task: inr-edit`` and ``task: embed`` through the trainer, the edit ops, the linear probe,
NT-Xent, the symmetry of the trained models, config errors, and the committed INR configs."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from dwscli.data.zoo import Zoo
from dwscli.data.zoo_make import InrZooConfig, SineZooConfig, make_inr_zoo, make_sine_zoo
from dwscli.errors import DwsError
from dwscli.image_edits import EDIT_OPS, EDIT_PARAMS, EditOp, edit_images
from dwscli.nn.archs import get_arch
from dwscli.train import TrainConfig, TrainResult, train
from dwscli.train.tasks import task_class
from dwscli.train.tasks.embed import EmbedOptions, EmbedTask, LinearProbe, nt_xent
from dwscli.train.tasks.inr_edit import InrEditOptions, InrEditTask
from dwscli.weights.functional import mlp_forward
from dwscli.weights.symmetry import apply_permutation, random_permutation

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
F64 = torch.float64


# ------------------------------------------------------------------------------------------------
# the edit ops


def _point(size: int = 9) -> torch.Tensor:
    image = torch.zeros(1, size, size)
    image[0, 4, 4] = 1.0
    return image


def test_dilate_of_a_pixel_is_a_block_and_erode_undoes_it() -> None:
    block = edit_images(_point(), "dilate")
    assert torch.equal(block[0, 3:6, 3:6], torch.ones(3, 3)) and block.sum() == 9
    big = edit_images(_point(), "dilate", size=5)
    assert torch.equal(big[0, 2:7, 2:7], torch.ones(5, 5)) and big.sum() == 25
    assert torch.equal(edit_images(block, "erode"), _point())
    assert torch.equal(edit_images(_point(), "erode"), torch.zeros(1, 9, 9))
    # borders: pixels outside the image do not count
    corner = torch.zeros(1, 4, 4)
    corner[0, 0, 0] = 0.5
    assert edit_images(corner, "dilate").sum() == 0.5 * 4
    assert edit_images(torch.ones(1, 4, 4), "erode").min() == 1.0


def test_contrast_sharpen_and_invert() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 8, 8, generator=g)
    contrast = edit_images(images, "contrast", factor=1.5)
    assert torch.allclose(contrast, (0.5 + 1.5 * (images - 0.5)).clamp(0, 1))
    flat = torch.full((2, 6, 6), 0.3)
    assert torch.allclose(edit_images(flat, "sharpen"), flat)  # nothing to sharpen
    sharp = edit_images(_point() * 0.5, "sharpen", amount=1.0)
    assert sharp[0, 4, 4] > 0.5 and sharp[0, 3, 4] == 0  # the peak rises, the ring is clamped
    assert torch.equal(edit_images(images, "invert"), 1 - images)
    assert torch.equal(edit_images(edit_images(images, "invert"), "invert"), images)
    for op in EDIT_OPS:  # deterministic, same shape, in [0, 1]
        a, b = edit_images(images, op), edit_images(images, op)
        assert torch.equal(a, b) and a.shape == images.shape
        assert a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize(
    ("op", "params", "fragment"),
    [
        (
            "blur",
            {},
            "unknown edit op 'blur'; choose one of dilate, erode, contrast, sharpen, invert",
        ),
        ("dilate", {"radius": 2}, "edit op dilate: unknown parameter 'radius'; it takes size"),
        ("dilate", {"size": 4}, "size must be an odd positive integer, got 4"),
        ("contrast", {"factor": "x"}, "factor must be a number"),
        ("invert", {"size": 3}, "edit op invert: unknown parameter 'size'; it takes none"),
    ],
)
def test_edit_mistakes_are_one_line_errors(op: str, params: dict[str, Any], fragment: str) -> None:
    with pytest.raises(DwsError) as info:
        edit_images(_point(), op, **params)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DwsError, match="expects float images"):
        edit_images(torch.zeros(9, 9), "dilate")


def test_ops_literal_and_params_agree() -> None:
    assert set(EDIT_PARAMS) == set(EDIT_OPS) and EditOp.__args__ == EDIT_OPS  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------
# zoos and runs


TINY = {"hidden_channels": 8, "num_layers": 2, "fixed_mixing": "shared"}


@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 small MNIST SIRENs (fitted briefly; enough for their digits to be visible)."""
    out = tmp_path_factory.mktemp("zoos") / "inr"
    config = InrZooConfig(
        spec="2-16-16-1:sine;w0=30", steps=120, psnr_target=25.0, chunk=48, compiled=False
    )
    make_inr_zoo(out, "mnist", count=48, config=config, shard_size=24)
    return out


@pytest.fixture(scope="module")
def sine_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 SIRENs of a sin(b x) (1-D inputs), loosely fitted."""
    out = tmp_path_factory.mktemp("zoos") / "sines"
    config = SineZooConfig(
        spec="1-16-16-1:sine;w0=30", points=64, steps=300, chunk=160, compiled=False
    )
    make_sine_zoo(out, count=160, config=config, shard_size=80)
    return out


def edit_config(zoo: Path, out: Path) -> dict[str, Any]:
    return {
        "name": "tiny-dilate",
        "task": {"name": "inr-edit", "op": "dilate", "refit_nets": 3, "refit_steps": 60},
        "zoo": str(zoo),
        "output": str(out),
        "model": TINY,
        "train": {
            "epochs": 6,
            "batch_size": 8,
            "lr": 1e-3,
            "device": "cpu",
            "permutation_augmentation": False,
        },
    }


@pytest.fixture(scope="module")
def edit_run(inr_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("edit")
    return train(TrainConfig.from_dict(edit_config(inr_zoo, out)))


def embed_config(zoo: Path, out: Path) -> dict[str, Any]:
    return {
        "name": "tiny-embed",
        "task": {"name": "embed", "dim": 8, "noise": 0.1, "dropout": 0.1},
        "zoo": str(zoo),
        "output": str(out),
        "model": {**TINY, "fixed_mixing": "full", "pooling": "mean+max", "head_hidden": [16]},
        "train": {
            "epochs": 8,
            "batch_size": 16,
            "lr": 3e-3,
            "device": "cpu",
            "permutation_augmentation": False,
        },
    }


@pytest.fixture(scope="module")
def embed_run(sine_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("embed")
    return train(TrainConfig.from_dict(embed_config(sine_zoo, out)))


def _model(result: TrainResult, zoo: Path, kind: str, out_features: int) -> torch.nn.Module:
    """The trained processor rebuilt from its card's config and weights, in float64."""
    card = yaml.safe_load(result.processor.read_text())
    arch = get_arch(card["model"]["arch"])
    config = {k: v for k, v in card["model"]["config"].items() if k not in arch.reserved}
    model = arch.build(Zoo.open(zoo).spec, kind, arch.options_type(**config), out_features)
    state = load_file(str(result.weights))
    # the feature check's tensors ride along in the file; they are not the model's
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("ood_features.")})
    return model.double().eval()


# ------------------------------------------------------------------------------------------------
# inr-edit


def test_inr_edit_learns_to_dilate(edit_run: TrainResult) -> None:
    test = edit_run.metrics["test"]
    assert set(test) == {"mse", "mse_no_edit", "improved_fraction", "loss"}
    # held-out nets: the edited INRs render closer to the dilated images than the inputs do
    assert test["mse"] < 0.9 * test["mse_no_edit"], test
    assert test["improved_fraction"] == 1.0
    losses = [h["train_loss"] for h in edit_run.history[1:]]
    assert losses[-1] < 0.85 * losses[0]
    # the slow route on the first test nets: refitted SIRENs and their time
    refit = edit_run.baselines["refit"]["test"]
    assert refit["nets"] == 3 and refit["seconds_per_net"] > 0 and refit["steps"] <= 60
    assert refit["mse"] < refit["mse_no_edit"]

    card = yaml.safe_load(edit_run.processor.read_text())
    assert card["task"] == "inr-edit"
    assert list(card)[:4] == ["name", "version", "task", "edit"]
    assert card["edit"] == {"op": "dilate", "size": 3}
    assert card["model"]["kind"] == "equivariant" and card["model"]["config"]["residual"]
    assert card["input"]["conventions"]["grid"] == [28, 28]
    assert card["output"]["type"] == "weights" and card["output"]["edit"]["op"] == "dilate"
    assert card["training"]["selected_on"] == "val mse"
    assert set(card["metrics"]["baselines"]["refit"]["test"]) >= {"mse", "seconds_per_net"}


def test_inr_edit_learns_to_invert(inr_zoo: Path, tmp_path: Path) -> None:
    """The negative is linear in weight space (negate the output layer), so a residual
    equivariant model gets most of the way there within a few epochs on held-out nets."""
    config = edit_config(inr_zoo, tmp_path)
    config["name"], config["task"] = "tiny-invert", {"name": "inr-edit", "op": "invert"}
    config["train"]["lr"] = 3e-3
    result = train(TrainConfig.from_dict(config))
    test = result.metrics["test"]
    assert test["mse"] < 0.25 * test["mse_no_edit"], test  # 0.16 when written
    assert test["improved_fraction"] == 1.0
    card = yaml.safe_load(result.processor.read_text())
    assert card["edit"] == {"op": "invert"}


def test_an_editor_with_a_solved_output_layer_trains_saves_and_edits(
    inr_zoo: Path, tmp_path: Path
) -> None:
    """``model.output_solve``: the trainer gives the solve the zoo's grid, the card records
    it, and the reloaded processor edits INRs with ``dws edit``'s API, bringing every test net
    at least as close to its dilation as no edit (the guard) and equivariantly."""
    from dwscli.api import edit
    from dwscli.weights.checkpoint import load_checkpoint

    config = edit_config(inr_zoo, tmp_path)
    config["name"] = "tiny-dilate-solved"
    config["model"] = {**TINY, "output_solve": {"op": "dilate"}}
    config["train"]["epochs"] = 2
    result = train(TrainConfig.from_dict(config))
    test = result.metrics["test"]
    assert test["mse"] < 0.8 * test["mse_no_edit"], test
    assert test["improved_fraction"] == 1.0
    card = yaml.safe_load(result.processor.read_text())
    assert card["model"]["config"]["output_solve"] == {"op": "dilate", "size": 3}
    state = load_file(str(result.weights))
    assert state["output_solve.grid"].tolist() == [28, 28, -1.0, 1.0, 0.5, 0.5]

    model = _model(result, inr_zoo, "equivariant", 1)
    space = Zoo.open(inr_zoo).load("test").space.to(F64)
    perm = random_permutation(space, torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = apply_permutation(model(space), perm)
        permuted = model(apply_permutation(space, perm))
    assert torch.allclose(permuted.flatten(), expected.flatten(), atol=1e-8)

    zoo = Zoo.open(inr_zoo)
    net = zoo.ids("test")[0]
    (source,) = zoo.export([net], tmp_path / "inrs")
    rows = edit([source], processor=str(result.processor), output=tmp_path / "out.safetensors")
    edited = load_checkpoint(Path(rows[0]["output"])).space
    with torch.no_grad():
        wanted = model(zoo.get([net]).to(F64))
    assert torch.allclose(edited.flatten().double(), wanted.flatten(), atol=1e-4)

    # a weights file whose stored grid disagrees with its card, or is damaged, is refused
    # when it is read, in one line naming the file
    from safetensors.torch import save_file

    from dwscli.processors.loading import load_processor

    for grid, message in (
        ([28, 28, 0.0, 1.0, 0.5, 0.5], "coord_min 0, but the card's input conventions say -1"),
        ([float("nan"), 28, -1.0, 1.0, 0.5, 0.5], "no valid pixel grid"),
        ([0, 0, 0, 0, 0, 0], "no pixel grid"),
    ):
        broken = tmp_path / "broken"
        broken.mkdir(exist_ok=True)
        shutil.copy(result.processor, broken / "tiny.yaml")
        damaged = {**state, "output_solve.grid": torch.tensor(grid, dtype=torch.float64)}
        save_file(damaged, str(broken / "tiny.safetensors"))
        with pytest.raises(DwsError, match=message) as caught:
            load_processor(str(broken / "tiny.yaml"))
        assert str(broken / "tiny.safetensors") in caught.value.message
        assert "\n" not in caught.value.message
    # a card whose edit is not the one its output solve draws
    save_file(state, str(broken / "tiny.safetensors"))
    card_text = result.processor.read_text().replace("op: dilate", "op: erode", 1)
    (broken / "tiny.yaml").write_text(card_text)
    with pytest.raises(DwsError, match=r"the card's edit is .*erode.*, but its output solve draws"):
        load_processor(str(broken / "tiny.yaml"))


def test_inr_edit_metrics_are_what_they_say(edit_run: TrainResult, inr_zoo: Path) -> None:
    """Recompute the test metrics here: render the processor's outputs and the inputs, dilate
    the inputs' renderings with a max-pool, compare."""
    from dwscli.weights.inr import InrConventions, render

    zoo = Zoo.open(inr_zoo)
    batch = zoo.load("test")
    model = _model(edit_run, inr_zoo, "equivariant", 1).float()
    with torch.no_grad():
        output = model(batch.space)
    conventions = InrConventions()
    inputs = render(batch.space, conventions)
    target = torch.nn.functional.max_pool2d(inputs[:, None], 3, 1, 1)[:, 0]
    mse = (render(output, conventions) - target).pow(2).mean((1, 2))
    reference = (inputs - target).pow(2).mean((1, 2))
    test = edit_run.metrics["test"]
    assert math.isclose(float(mse.double().mean()), test["mse"], rel_tol=1e-4)
    assert math.isclose(float(reference.double().mean()), test["mse_no_edit"], rel_tol=1e-4)


def test_inr_edit_model_is_equivariant(edit_run: TrainResult, inr_zoo: Path) -> None:
    model = _model(edit_run, inr_zoo, "equivariant", 1)
    space = Zoo.open(inr_zoo).load("val").space.to(F64)
    perm = random_permutation(space, torch.Generator().manual_seed(11))
    with torch.no_grad():
        out = model(space)
        out_of_permuted = model(apply_permutation(space, perm))
    expected = apply_permutation(out, perm)
    assert torch.allclose(out_of_permuted.flatten(), expected.flatten(), atol=1e-10)
    assert not torch.allclose(out.flatten(), space.flatten())  # it does change the weights
    # and the rendered output, hence the loss, is the same for the permuted input
    x = torch.rand(50, 2, dtype=F64) * 2 - 1
    assert torch.allclose(mlp_forward(out_of_permuted, x), mlp_forward(out, x), atol=1e-9)


def test_inr_edit_refuses_what_it_cannot_do(sine_zoo: Path, inr_zoo: Path) -> None:
    with pytest.raises(DwsError, match="needs a zoo of 2-D image INRs"):
        InrEditTask(InrEditOptions(), Zoo.open(sine_zoo))
    with pytest.raises(DwsError, match="size must be an odd positive integer"):
        InrEditTask(InrEditOptions(size=2), Zoo.open(inr_zoo))
    task = InrEditTask(InrEditOptions(op="contrast", factor=3.0), Zoo.open(inr_zoo))
    assert task.card_fields() == {"edit": {"op": "contrast", "factor": 3.0}}
    with pytest.raises(DwsError, match=r"task\.op: expected one of dilate, erode"):
        data = edit_config(inr_zoo, Path("/tmp/unused"))
        TrainConfig.from_dict({**data, "task": {"name": "inr-edit", "op": "blur"}})


# ------------------------------------------------------------------------------------------------
# embed


def test_embed_trains_and_probes(embed_run: TrainResult, sine_zoo: Path) -> None:
    test = embed_run.metrics["test"]
    assert set(test) == {"probe_mse", "probe_mse_a", "probe_mse_b", "loss"}
    assert all(math.isfinite(v) for v in test.values())
    assert math.isclose(test["probe_mse"], (test["probe_mse_a"] + test["probe_mse_b"]) / 2)
    # (whether the probe beats predicting the mean depends on the seed at this tiny size, so
    # it is not asserted; the metric itself is recomputed below)
    losses = [h["train_loss"] for h in embed_run.history[1:]]
    assert losses[-1] < losses[0]
    weights = embed_run.baselines["weights-probe"]["test"]
    assert math.isfinite(weights["probe_mse"])

    card = yaml.safe_load(embed_run.processor.read_text())
    assert card["task"] == "embed" and card["model"]["kind"] == "invariant"
    assert card["output"]["type"] == "embedding" and card["output"]["dim"] == 8
    assert card["training"]["selected_on"] == "val probe_mse"


def test_embed_probe_is_what_it_says(embed_run: TrainResult, sine_zoo: Path) -> None:
    """Embed every training net (the training sample is the whole split here) and the test nets
    with the processor, fit least squares with a little ridge, score: the card's numbers."""
    model = _model(embed_run, sine_zoo, "invariant", 8).float()
    zoo = Zoo.open(sine_zoo)
    train_batch, test_batch = zoo.load("train"), zoo.load("test")
    with torch.no_grad():
        train_emb, test_emb = model(train_batch.space), model(test_batch.space)

    def labels(batch: Any) -> torch.Tensor:
        return torch.stack([batch.targets["a"], batch.targets["b"]], 1).double()

    # the same ridge by sklearn-free normal equations on standardised embeddings
    x = train_emb.double()
    mean, std = x.mean(0), x.std(0, unbiased=False)
    xs = (x - mean) / std
    y = labels(train_batch)
    n = len(xs)
    coef = torch.linalg.solve(
        xs.T @ xs + 1e-3 * n * torch.eye(8, dtype=F64), xs.T @ (y - y.mean(0))
    )
    pred = ((test_emb.double() - mean) / std) @ coef + y.mean(0)
    per_label = (pred - labels(test_batch)).pow(2).mean(0)
    test = embed_run.metrics["test"]
    assert math.isclose(float(per_label.mean()), test["probe_mse"], rel_tol=1e-4)
    assert math.isclose(float(per_label[1]), test["probe_mse_b"], rel_tol=1e-4)


def test_embed_model_is_invariant(embed_run: TrainResult, sine_zoo: Path) -> None:
    model = _model(embed_run, sine_zoo, "invariant", 8)
    space = Zoo.open(sine_zoo).load("test").space.to(F64)
    perm = random_permutation(space, torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = model(space), model(apply_permutation(space, perm))
    assert a.shape == (space.batch_size, 8)
    assert torch.allclose(a, b, atol=1e-10)


@pytest.fixture(scope="module")
def pooled_embed_run(sine_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """``embedding: pooled``: the head is a projection head, the pooled features the embedding."""
    out = tmp_path_factory.mktemp("embed-pooled")
    config = embed_config(sine_zoo, out)
    config["name"] = "tiny-embed-pooled"
    config["task"] = {**config["task"], "embedding": "pooled"}
    config["train"] = {**config["train"], "epochs": 2}
    return train(TrainConfig.from_dict(config))


def test_pooled_embedding_is_the_pooled_features(
    pooled_embed_run: TrainResult, sine_zoo: Path, tmp_path: Path
) -> None:
    """The card says the embedding is pooled; the probe metric is a probe on ``model.embed``;
    ``dws embed`` with the processor writes those features, unchanged by permutations."""
    from dwscli.processors.embed import compute_embeddings

    card = yaml.safe_load(pooled_embed_run.processor.read_text())
    assert card["output"]["embedding"] == "pooled"
    model = _model(pooled_embed_run, sine_zoo, "invariant", 8).float()
    zoo = Zoo.open(sine_zoo)
    train_batch, test_batch = zoo.load("train"), zoo.load("test")

    def labels(batch: Any) -> torch.Tensor:
        return torch.stack([batch.targets["a"], batch.targets["b"]], 1).double()

    with torch.no_grad():
        train_emb, test_emb = model.embed(train_batch.space), model.embed(test_batch.space)
    assert train_emb.shape[1] > 8  # wider than the head's output: the pooled features
    assert card["output"]["dim"] == train_emb.shape[1]
    probe = LinearProbe.fit([(train_emb, labels(train_batch))], ridge=1e-3)
    mse = (probe.predict(test_emb) - labels(test_batch)).pow(2).mean()
    assert math.isclose(float(mse), pooled_embed_run.metrics["test"]["probe_mse"], rel_tol=1e-4)

    ids = zoo.splits["test"][:5]
    paths = zoo.export(ids, tmp_path / "nets")
    result = compute_embeddings(paths, processor=str(pooled_embed_run.processor), device="cpu")
    assert result.source == "pooled features"
    assert result.vectors.shape == (5, train_emb.shape[1])
    assert torch.allclose(result.vectors, test_emb[:5], atol=1e-5)

    space = zoo.get(ids, dtype=F64)
    perm = random_permutation(space, torch.Generator().manual_seed(7))
    double = model.double()
    with torch.no_grad():
        a, b = double.embed(space), double.embed(apply_permutation(space, perm))
    assert torch.allclose(a, b, atol=1e-10)


@pytest.fixture(scope="module")
def function_embed_run(sine_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """``trunk: false`` with ``probe_grid``: the embedding is the probes' features alone, read
    where the sines were fitted."""
    out = tmp_path_factory.mktemp("embed-function")
    config = embed_config(sine_zoo, out)
    config["name"] = "tiny-embed-function"
    config["task"] = {**config["task"], "embedding": "pooled"}
    config["model"] = {
        "arch": "dws", "probes": 8, "probe_features": 12, "probe_grid": True, "trunk": False,
        "head_hidden": [16],
    }  # fmt: skip
    config["train"] = {**config["train"], "epochs": 3, "ood_features": 3}
    return train(TrainConfig.from_dict(config))


def test_function_only_embedding_reads_the_sines_on_their_grid(
    function_embed_run: TrainResult, sine_zoo: Path, tmp_path: Path
) -> None:
    from dwscli.processors.embed import compute_embeddings

    card = yaml.safe_load(function_embed_run.processor.read_text())
    assert card["model"]["config"]["trunk"] is False and card["output"]["dim"] == 12
    model = _model(function_embed_run, sine_zoo, "invariant", 8)
    assert model.pool is None and card["model"]["parameters"] == sum(
        p.numel() for p in model.parameters()
    )
    # the probes sit on the zoo's 64 fitted points, as the saved processor keeps them
    grid = torch.linspace(-1, 1, 64, dtype=F64)
    where = model.probes.coordinates().detach()[:, 0]
    assert torch.cdist(where[:, None], grid[:, None]).amin(1).max() < 1e-6
    zoo = Zoo.open(sine_zoo)
    ids = zoo.splits["test"][:4]
    space = zoo.get(ids, dtype=F64)
    with torch.no_grad():
        embedded = model.embed(space)
    paths = zoo.export(ids, tmp_path / "nets")
    result = compute_embeddings(paths, processor=str(function_embed_run.processor), device="cpu")
    assert result.vectors.shape == (4, 12)
    assert torch.allclose(result.vectors.double(), embedded, atol=1e-5)
    assert math.isfinite(function_embed_run.metrics["test"]["probe_mse"])


def test_the_feature_check_is_written_loaded_and_flags_nets(
    function_embed_run: TrainResult, sine_zoo: Path, tmp_path: Path
) -> None:
    """``train.ood_features``: the card's ``ood.features`` and the weights file's subspace;
    the processor commands and ``dws evaluate`` flag the nets it puts far off."""
    from safetensors import safe_open

    from dwscli import api
    from dwscli.processors.embed import compute_embeddings
    from dwscli.processors.feature_ood import TENSOR_PREFIX
    from dwscli.processors.loading import load_processor

    card = yaml.safe_load(function_embed_run.processor.read_text())
    section = card["ood"]["features"]
    assert section["components"] == 3 and section["dim"] == 12 and section["threshold"] > 0
    assert section["calibrated_on"]["split"] == "val" and section["checked_on"]["split"] == "test"
    with safe_open(str(function_embed_run.weights), "pt") as stored:
        assert {f"{TENSOR_PREFIX}mean", f"{TENSOR_PREFIX}basis"} <= set(stored.keys())
    processor = load_processor(str(function_embed_run.processor))
    assert processor.feature_ood is not None
    assert processor.feature_ood.basis.shape == (3, 12)

    # held in: the processor's own test nets pass (the weights check, then the features')
    zoo = Zoo.open(sine_zoo)
    paths = zoo.export(zoo.splits["test"][:4], tmp_path / "nets")
    kept = compute_embeddings(paths, processor=str(function_embed_run.processor), device="cpu")
    assert [row["in_distribution"] for row in kept.ood] == [True] * 4
    # the same processor with a feature threshold no net meets: every input is flagged, with a
    # warning naming the file and saying the features are off (the score stays the weights')
    strict_dir = tmp_path / "strict"
    strict_dir.mkdir()
    card["ood"]["features"]["threshold"] = 1e-9
    (strict_dir / "strict.yaml").write_text(yaml.safe_dump({**card, "name": "strict"}))
    shutil.copy(function_embed_run.weights, strict_dir / "strict.safetensors")
    warnings: list[str] = []
    flagged = compute_embeddings(
        paths,
        processor=str(strict_dir / "strict.yaml"),
        device="cpu",
        on_warning=lambda path, text: warnings.append(text),
    )
    assert flagged.out_of_distribution == [str(p) for p in paths]
    assert [row["ood_score"] for row in flagged.ood] == [row["ood_score"] for row in kept.ood]
    assert len(warnings) == 4 and all(str(p) in w for p, w in zip(paths, warnings))
    assert all("unlike the training nets'" in w for w in warnings)
    strict = api.evaluate(str(strict_dir / "strict.yaml"), sine_zoo, split="test")
    assert strict.ood is not None and strict.ood["flagged_fraction"] == 1.0
    assert strict.ood["flagged_by_features"] == strict.nets
    # dws evaluate counts, beside the weights check, the nets only the feature check flags
    evaluated = api.evaluate(str(function_embed_run.processor), sine_zoo, split="test")
    space = zoo.get(zoo.splits["test"])
    assert processor.ood is not None
    passed = torch.tensor([r.in_distribution for r in processor.ood.assess(space)])
    with torch.no_grad():
        far = processor.feature_ood.scores(processor.model.embed(space))
    only_features = passed & (far > processor.feature_ood.threshold)
    assert evaluated.ood is not None
    assert evaluated.ood["flagged_by_features"] == int(only_features.sum())
    assert evaluated.ood["flagged"] == int((~passed).sum()) + int(only_features.sum())


def test_embed_views_and_loss(sine_zoo: Path) -> None:
    task = EmbedTask(EmbedOptions(noise=0.1, dropout=0.2), Zoo.open(sine_zoo))
    space = Zoo.open(sine_zoo).load("val").space
    views = task.train_input(space, 0, 1, 2, 0)
    again = task.train_input(space, 0, 1, 2, 0)
    n = space.batch_size
    assert views.batch_size == 2 * n and torch.equal(views.flatten(), again.flatten())
    assert not torch.allclose(views[:n].flatten(), views[n:].flatten())
    assert not torch.allclose(task.train_input(space, 0, 1, 3, 0).flatten(), views.flatten())
    # NT-Xent: as SimCLR defines it, by hand
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g)
    per_pair = nt_xent(z, 0.5)
    u = torch.nn.functional.normalize(z, dim=1)
    sim = (u @ u.T / 0.5).exp()
    manual = []
    for i in range(6):
        j = (i + 3) % 6
        manual.append(-math.log(sim[i, j] / (sim[i].sum() - sim[i, i])))
    expected = [(manual[i] + manual[i + 3]) / 2 for i in range(3)]
    assert torch.allclose(per_pair, torch.tensor(expected), atol=1e-5)
    # aligned pairs far from the others: small loss
    pairs = torch.eye(3).repeat(2, 1)
    assert nt_xent(pairs, 0.1).max() < 1e-3


def test_linear_probe_recovers_a_linear_map() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g, dtype=F64) * torch.tensor([1.0, 10, 0.1, 3, 1], dtype=F64)
    x[:, 4] = 2.0  # a constant feature must not break it
    w = torch.randn(5, 2, generator=g, dtype=F64)
    y = x @ w + torch.tensor([1.0, -3.0], dtype=F64)
    probe = LinearProbe.fit([(x, y)], ridge=0.0)
    assert torch.allclose(probe.predict(x), y, atol=1e-8)
    chunked = LinearProbe.fit([(x[:70], y[:70]), (x[70:], y[70:])], ridge=0.0)
    assert torch.allclose(chunked.predict(x), y, atol=1e-8)
    shrunk = LinearProbe.fit([(x, y)], ridge=10.0)  # heavy ridge: towards the mean
    assert (shrunk.predict(x) - y.mean(0)).abs().mean() < (y - y.mean(0)).abs().mean()


def test_embed_refuses_what_it_cannot_do(inr_zoo: Path, sine_zoo: Path) -> None:
    with pytest.raises(DwsError, match=r"probes labels\.a, which the zoo's nets lack"):
        EmbedTask(EmbedOptions(), Zoo.open(inr_zoo))
    with pytest.raises(DwsError, match=r"task\.dim: must be at least 1"):
        EmbedTask(EmbedOptions(dim=0), Zoo.open(sine_zoo))
    with pytest.raises(DwsError, match=r"task\.temperature: must be positive"):
        EmbedTask(EmbedOptions(temperature=0.0), Zoo.open(sine_zoo))
    with pytest.raises(DwsError, match=r"task\.embedding: must be 'output' or 'pooled'"):
        EmbedTask(EmbedOptions(embedding="head"), Zoo.open(sine_zoo))  # type: ignore[arg-type]
    pooled = EmbedTask(EmbedOptions(embedding="pooled"), Zoo.open(sine_zoo))
    space = Zoo.open(sine_zoo).load("val").space
    with pytest.raises(DwsError, match=r"task\.embedding: pooled needs a model with pooled"):
        pooled.eval_forward(torch.nn.Flatten(), space)
    # NFT keeps a layer (a submodule) under the name `embed`: not pooled features
    arch = get_arch("nft")
    nft = arch.build(Zoo.open(sine_zoo).spec, "invariant", arch.options_type(), 4)
    with pytest.raises(DwsError, match=r"pooled needs a model with pooled features; Neural"):
        pooled.eval_forward(nft, space)
    EmbedTask(EmbedOptions(labels=["label"]), Zoo.open(inr_zoo))  # any numeric label works


# ------------------------------------------------------------------------------------------------
# the committed configs


@pytest.mark.parametrize(
    "path", sorted((CONFIGS / "experiments").glob("*.yaml")), ids=lambda p: p.stem
)
def test_experiment_configs_validate(
    path: Path, inr_zoo: Path, da_zoo: Path, sine_zoo: Path
) -> None:
    """The configs behind docs/results/mnist-inr-classify-long, mlp-aug-dying-units.md,
    dilate-editor-limits.md, fmnist-accuracy-dws.md, nfn-np-eval-mode.md,
    inr-classify-diverse.md and sine-embed-diverse.md, pointed at a tiny zoo of their kind."""
    data = yaml.safe_load(path.read_text())
    assert data["name"] == path.stem
    if path.stem.startswith("sine-embed"):
        # version 2 of the shipped one was trained on the one-recipe zoo
        trained_on = "zoos/sines" if path.stem == "sine-embed-v2" else "zoos/sines-diverse"
        assert data["zoo"] == trained_on
        config = TrainConfig.from_dict({**data, "zoo": str(sine_zoo)}, source=str(path))
        assert config.task.name == "embed"
        get_arch(config.model.arch)
        return
    if path.stem.startswith("fmnist-accuracy"):
        assert data["zoo"] == "zoos/fmnist-clf"
        config = TrainConfig.from_dict({**data, "zoo": str(da_zoo)}, source=str(path))
        assert config.task.name == "accuracy"
        arch = get_arch(config.model.arch)
        arch.build(Zoo.open(da_zoo).spec, "invariant", config.model.options, 1)  # it builds
        return
    assert data["zoo"] in (
        "zoos/mnist-inr",
        "zoos/mnist-inr-dwsnets-6k",
        "zoos/mnist-inr-8k",
        "zoos/mnist-inr-shared6k",
        "zoos/mnist-inr-diverse",
        "zoos/mnist-inr-diverse-12k",
        "zoos/fmnist-inr",
    )
    config = TrainConfig.from_dict({**data, "zoo": str(inr_zoo)}, source=str(path))
    edit = any(op in path.stem for op in ("dilate", "erode", "invert"))
    assert config.task.name == ("inr-edit" if edit else "inr-classify")
    if path.stem.startswith("mnist-inr-long"):  # every training INR of the full zoo
        assert config.train.max_train_nets == 48000
    get_arch(config.model.arch)


@pytest.mark.parametrize(
    ("name", "task", "zoo", "fixture"),
    [
        ("mnist-inr-dilate", "inr-edit", "zoos/mnist-inr-diverse-12k", "inr_zoo"),
        ("mnist-inr-erode", "inr-edit", "zoos/mnist-inr-diverse-12k", "inr_zoo"),
        ("mnist-inr-invert", "inr-edit", "zoos/mnist-inr-8k", "inr_zoo"),
        ("sine-embed", "embed", "zoos/sines-diverse", "sine_zoo"),
        ("mnist-inr-classify", "inr-classify", "zoos/mnist-inr-diverse-12k", "inr_zoo"),
        ("fmnist-inr-classify", "inr-classify", "zoos/fmnist-inr-diverse", "inr_zoo"),
    ],
)
def test_committed_configs_validate(
    request: pytest.FixtureRequest, name: str, task: str, zoo: str, fixture: str
) -> None:
    """The configs as committed, pointed at a tiny zoo of the same kind: the schema accepts
    them, the task accepts its options, and the augmentations fit the zoo."""
    from dwscli.train.augment import check_zoo

    path = CONFIGS / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    assert data["name"] == name and data["zoo"] == zoo
    assert data["output"] == "dwscli/processors"
    tiny: Path = request.getfixturevalue(fixture)
    config = TrainConfig.from_dict({**data, "zoo": str(tiny)}, source=str(path))
    assert config.task.name == task
    opened = Zoo.open(tiny)
    task_class(task)(config.task.options, opened)
    if config.train.augment is not None:
        check_zoo(config.train.augment, opened.kind, opened.spec.input_dim, str(path))
    if task == "inr-classify" and not config.model.options.probe_grid:
        augment = config.train.augment
        assert augment is not None and augment.rotate > 0 and augment.translate > 0
    if config.model.options.probe_grid and task == "inr-classify":
        # version 2, on the recipe-diverse INRs that draw their image, read at pixel centres
        # only (no augmentation moves the grid), fine-tuned from version 1 as its config
        # (which writes to runs/experiments) writes it
        assert config.train.augment is None and config.train.where == "psnr=25.."
        assert data["version"] == 2 and config.model.options.probes > 0
        v1 = yaml.safe_load((CONFIGS / "experiments" / f"{name}-v1.yaml").read_text())
        assert v1["output"] == "runs/experiments" and v1["name"] == f"{name}-v1"
        assert config.train.init_from == f"runs/experiments/{name}-v1.yaml"
    solve = config.model.options.output_solve
    if task == "inr-edit" and solve is not None:
        # the editors with a closed-form output layer: the previous version, whose config
        # writes to runs/experiments, fine-tuned on the recipe-diverse INRs that draw their
        # image, with the solve drawing the task's own edit
        previous = f"{name}-v{int(data['version']) - 1}"
        assert config.train.init_from == f"runs/experiments/{previous}.yaml"
        before = yaml.safe_load((CONFIGS / "experiments" / f"{previous}.yaml").read_text())
        assert before["output"] == "runs/experiments" and before["name"] == previous
        assert before["model"] == {k: v for k, v in data["model"].items() if k != "output_solve"}
        assert solve["op"] == config.task.options.op and config.train.where == "psnr=25.."
        assert solve.get("size", 3) == config.task.options.size
    if task == "inr-edit":
        assert name == f"mnist-inr-{config.task.options.op}" and config.model.options.residual
    if task == "embed":
        assert config.task.options.labels == ["a", "b"]
        assert config.task.options.embedding == "pooled"
        # version 3: what the sines compute on their grid, no trunk, on the sines that fit;
        # version 2's config writes to runs/experiments
        model = config.model.options
        assert not model.trunk and model.probe_grid and model.probes > 0
        assert config.train.where == "mse=..0.1" and data["version"] == 3
        v2 = yaml.safe_load((CONFIGS / "experiments" / f"{name}-v2.yaml").read_text())
        assert v2["output"] == "runs/experiments" and v2["name"] == f"{name}-v2"


def test_a_feature_check_needs_pooled_features(inr_zoo: Path, tmp_path: Path) -> None:
    """An editor has no pooled features to check: a one-line error before any training."""
    config = edit_config(inr_zoo, tmp_path)
    config["train"] = {**config["train"], "ood_features": 4}
    with pytest.raises(DwsError, match=r"train\.ood_features checks an invariant model"):
        train(TrainConfig.from_dict(config))
    config["train"]["ood_features"] = -1
    with pytest.raises(DwsError, match=r"train\.ood_features: must be at least 0"):
        TrainConfig.from_dict(config)

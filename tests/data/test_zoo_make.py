"""Making zoos for real: SIRENs on real images, classifiers, sines; resume, parts, render."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dwscli.data.classifier_train import (
    ClassifierZooConfig,
    HparamRanges,
    preprocess,
    sample_hparams,
)
from dwscli.data.datasets import load_dataset
from dwscli.data.inr_fit import fit_sines, siren_loss_and_grads
from dwscli.data.stacked import StackedAdamW, siren_init
from dwscli.data.zoo import Zoo, merge_zoos
from dwscli.data.zoo_make import (
    InrZooConfig,
    SineZooConfig,
    make_classifier_zoo,
    make_inr_zoo,
    make_sine_zoo,
    sine_parameters,
)
from dwscli.weights.checkpoint import load_checkpoint
from dwscli.weights.functional import mlp_forward
from dwscli.weights.inr import InrConventions, psnr, render
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

SMALL_INR = InrZooConfig(steps=300, psnr_target=30.0, chunk=8, compiled=False)
SMALL_SINE = SineZooConfig(
    spec="1-16-16-1:sine;w0=30", points=64, steps=60, chunk=8, compiled=False
)
TINY_RANGES = HparamRanges(steps=(5, 40), subset=(200, 2000))
SMALL_CLF = ClassifierZooConfig(chunk=8, ranges=TINY_RANGES, eval_corruption="rotation")


def _tensors(zoo_dir: Path) -> dict[str, torch.Tensor]:
    zoo = Zoo.open(zoo_dir)
    return {"flat": zoo.get(zoo.ids()).flatten()}


def test_manual_siren_gradients_match_autograd() -> None:
    spec = MLPSpec.parse("2-8-8-1:sine;w0=30")
    space = siren_init(spec, 3, torch.Generator().manual_seed(0)).to(torch.float64)
    coords = torch.rand(20, 2, dtype=torch.float64) * 2 - 1
    targets = torch.randn(3, 20, 1, dtype=torch.float64)
    params = [t.clone().requires_grad_() for t in space.tensors()]
    leaf = WeightSpace(params[0::2], params[1::2], spec)
    loss = (mlp_forward(leaf, coords) - targets).pow(2).mean(dim=(1, 2))
    expected = torch.autograd.grad(loss.sum(), params)
    mse, gw, gb = siren_loss_and_grads(space, coords, targets)
    got = [t for pair in zip(gw, gb) for t in pair]
    assert torch.allclose(mse, loss.detach())
    for a, b in zip(expected, got):
        assert torch.allclose(a, b, atol=1e-12)


def test_stacked_adamw_equals_separate_optimisers() -> None:
    """One optimiser over the stack gives each net exactly what torch.optim.AdamW gives it."""
    torch.manual_seed(0)
    weights = torch.randn(3, 4, 5, dtype=torch.float64)
    lrs, decays = torch.tensor([1e-3, 1e-2, 3e-2]), torch.tensor([0.0, 1e-2, 1e-1])
    stacked = weights.clone()
    optimizer = StackedAdamW([stacked], lrs.double(), weight_decay=decays.double())
    singles = [weights[k].clone().requires_grad_() for k in range(3)]
    torch_opts = [
        torch.optim.AdamW([singles[k]], lr=float(lrs[k]), weight_decay=float(decays[k]))
        for k in range(3)
    ]
    for _ in range(5):
        grads = torch.randn(3, 4, 5, dtype=torch.float64)
        optimizer.step([grads])
        for k in range(3):
            singles[k].grad = grads[k].clone()
            torch_opts[k].step()
    for k in range(3):
        assert torch.allclose(stacked[k], singles[k].detach(), atol=1e-12)


def test_fitted_inrs_reach_the_psnr_target_on_real_images(mnist_test_head) -> None:
    images = mnist_test_head.float_images()[:12]
    conventions = InrConventions()
    spec = MLPSpec.parse("2-32-32-32-1:sine;w0=30")
    target_db = 30.0
    result = fit_sines(
        conventions.to_target(images.reshape(12, -1)),
        conventions.coordinates(),
        spec,
        steps=300,
        lr=3e-3,
        mse_target=10 ** (-target_db / 10) / conventions.output_scale**2,
        check_every=10,
    )
    quality = psnr(render(result.space, conventions), images)
    assert (quality >= target_db - 0.5).all(), quality
    assert (result.steps < 300).all()  # they stopped at the target, not at the budget


def test_inr_zoo_records_labels_and_psnr_and_renders_the_source_image(tmp_path: Path) -> None:
    from PIL import Image

    from dwscli.api import render_inrs

    zoo = make_inr_zoo(tmp_path / "zoo", "mnist", count=10, config=SMALL_INR, shard_size=5)
    assert zoo is not None and len(zoo) == 10
    train = load_dataset("mnist", "train")
    record = zoo.records()[3]
    assert record["labels"] == {
        "label": int(train.labels[3]),
        "image_index": 3,
        "image_split": "train",
    }
    assert record["metrics"]["psnr"] >= 29.5
    (exported,) = zoo.export([record["id"]], tmp_path / "out")
    checkpoint = load_checkpoint(exported)
    assert checkpoint.metadata["inr.grid"] == "28x28"
    png = tmp_path / "digit.png"
    render_inrs([exported], png, scale=1)
    pixels = torch.from_numpy(np.asarray(Image.open(png), dtype=np.float32))
    source = train.float_images()[3]
    assert psnr((pixels / 255)[None], source[None]).item() >= 29.0


def test_shared_init_zoo_starts_every_net_from_one_initialisation(tmp_path: Path) -> None:
    """``shared_init``: the nets differ only by what fitting changed, so they are far closer
    to each other than nets of the default zoo (each from its own start); both fit their
    images, and only a shared-init zoo records the option (older zoos keep their identity)."""
    from dataclasses import replace

    from dwscli.data.zoo_format import net_generator
    from dwscli.data.zoo_make import SHARED_INIT_INDEX, _stacked_init

    spec = MLPSpec.parse("2-8-8-1:sine;w0=30")
    start = siren_init(spec, 1, net_generator(5, SHARED_INIT_INDEX)).flatten()
    for nets in (range(0, 3), range(7, 9)):  # any shard or part draws the same start
        shared_start = _stacked_init(spec, nets, 5, shared=True).flatten()
        assert torch.equal(shared_start, start.expand(len(nets), -1))
    own_start = _stacked_init(spec, range(0, 3), 5).flatten()
    assert not torch.equal(own_start[0], own_start[1])

    config = InrZooConfig(steps=40, psnr_target=60.0, chunk=8, compiled=False)
    shared_config = replace(config, shared_init=True)
    own = make_inr_zoo(tmp_path / "own", "mnist", count=6, config=config, shard_size=6)
    shared = make_inr_zoo(tmp_path / "shared", "mnist", count=6, config=shared_config)
    assert own is not None and shared is not None

    def spread(zoo: Zoo) -> float:
        first = zoo.load(None).space.weights[0].flatten(1)
        return float((first - first.mean(0)).norm(dim=1).mean() / first.norm(dim=1).mean())

    assert spread(shared) < 0.1 * spread(own)
    for zoo in (own, shared):
        assert min(r["metrics"]["psnr"] for r in zoo.records()) > 20.0
    recorded = [json.loads((z.path / "zoo.json").read_text())["config"] for z in (own, shared)]
    assert "shared_init" not in recorded[0] and recorded[1]["shared_init"] is True


def test_classifier_accuracies_are_re_measured_independently(tmp_path: Path) -> None:
    zoo = make_classifier_zoo(
        tmp_path / "clf", "fashion-mnist", count=6, config=SMALL_CLF, shard_size=3
    )
    assert zoo is not None
    conventions = zoo.conventions
    test = load_dataset("fashion-mnist", "test")
    inputs = preprocess(
        test.float_images(), conventions["pool"], conventions["mean"], conventions["std"]
    )
    for record in zoo.records()[:3]:
        (path,) = zoo.export([record["id"]], tmp_path / "nets", force=True)
        net = load_checkpoint(path).space
        logits = mlp_forward(net, inputs)[0]
        measured = (logits.argmax(1) == test.labels).float().mean().item()
        assert math.isclose(measured, record["metrics"]["test_acc"], abs_tol=1e-4)
        assert "test_acc_rotation" in record["metrics"]
        assert record["hparams"] == {
            **sample_hparams(TINY_RANGES, 0, record["net"]),
            "epochs": record["hparams"]["epochs"],
        }


def test_classifier_hyperparameters_spread() -> None:
    values = [sample_hparams(HparamRanges(), 0, i) for i in range(200)]
    lrs = sorted(v["lr"] for v in values)
    assert lrs[10] < 3e-4 and lrs[-10] > 1e-2
    assert len({v["seed"] for v in values}) == 200


def test_sine_zoo_labels_are_the_fitted_wave(tmp_path: Path) -> None:
    zoo = make_sine_zoo(tmp_path / "sines", count=4, config=SMALL_SINE, shard_size=2)
    assert zoo is not None
    for record in zoo.records():
        a, b = sine_parameters(0, record["net"])
        assert record["labels"] == pytest.approx({"a": a, "b": b})
        assert 0 <= a <= 10 and 0 <= b <= 10


def test_resume_after_a_kill_gives_the_same_zoo(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    make_sine_zoo(whole, count=6, config=SMALL_SINE, shard_size=2)
    killed = tmp_path / "killed"
    make_sine_zoo(killed, count=6, config=SMALL_SINE, shard_size=2)
    # Simulate a kill: the last shard was written but not its manifest part, and the run
    # never finalised.
    (killed / "manifest.d" / "shard-00002.jsonl").unlink()
    (killed / "manifest.jsonl").unlink()
    (killed / "splits.json").unlink()
    before = (killed / "shards" / "shard-00000.safetensors").stat().st_mtime_ns
    make_sine_zoo(killed, count=6, config=SMALL_SINE, shard_size=2)
    assert (killed / "shards" / "shard-00000.safetensors").stat().st_mtime_ns == before  # kept
    for name in ("manifest.jsonl", "splits.json"):
        assert (killed / name).read_text() == (whole / name).read_text()
    for shard in sorted((whole / "shards").iterdir()):
        assert (killed / "shards" / shard.name).read_bytes() == shard.read_bytes()


def test_parts_merge_into_the_one_run_zoo(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    make_sine_zoo(whole, count=6, config=SMALL_SINE, shard_size=2)
    parts = []
    for i in (1, 2, 3):
        part = tmp_path / f"part{i}"
        assert make_sine_zoo(part, count=6, config=SMALL_SINE, shard_size=2, part=f"{i}/3") is None
        parts.append(part)
    merged = merge_zoos(parts, tmp_path / "merged")
    assert len(merged) == 6
    for name in ("manifest.jsonl", "splits.json"):
        assert (tmp_path / "merged" / name).read_text() == (whole / name).read_text()
    assert torch.equal(_tensors(tmp_path / "merged")["flat"], _tensors(whole)["flat"])


def test_zoo_commands_end_to_end(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from dwscli.cli.app import main

    zoo_dir = tmp_path / "sines"
    args = [
        "zoo",
        "sines",
        "--count",
        "4",
        "-o",
        str(zoo_dir),
        "--shard-size",
        "2",
        "--steps",
        "20",
    ]
    with pytest.raises(SystemExit) as done:
        main([*args, "--spec", "1-8-8-1:sine;w0=30", "--no-compile"])
    assert done.value.code == 0
    capfd.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["zoo", "info", str(zoo_dir), "--json"])
    assert done.value.code == 0
    info = json.loads(capfd.readouterr().out)
    assert info["nets"] == 4 and info["kind"] == "sine"
    assert set(info["labels"]) == {"a", "b"}
    out_dir = tmp_path / "exported"
    with pytest.raises(SystemExit) as done:
        main(
            ["zoo", "export", str(zoo_dir), "--split", "train", "--limit", "2", "-o", str(out_dir)]
        )
    assert done.value.code == 0
    assert len(list(out_dir.glob("*.safetensors"))) == 2
    shutil.rmtree(zoo_dir / "shards")
    with pytest.raises(SystemExit) as done:
        main(["zoo", "info", str(zoo_dir)])
    assert done.value.code == 1


def test_dataset_statistics_do_not_depend_on_the_thread_count() -> None:
    """A zoo resumed with other --threads must record the same conventions (regression)."""
    from dwscli.data.zoo_make import dataset_statistics

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = dataset_statistics("fashion-mnist")
        torch.set_num_threads(2)
        two = dataset_statistics("fashion-mnist")
    finally:
        torch.set_num_threads(previous)
    assert one == two
    assert 0.28 < one[0] < 0.29 and 0.35 < one[1] < 0.36

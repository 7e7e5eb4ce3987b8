"""INR fitting recipes: the ``dwsnets`` preset's initialisation, what a zoo made with it
records, that its exported nets render their images with the recipe's conventions, and that
``test_first`` changes only the order of work."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.data.datasets import load_dataset
from dwscli.data.stacked import dwsnets_init, siren_init
from dwscli.data.zoo_make import INR_RECIPES, _stacked_init, inr_recipe, make_inr_zoo
from dwscli.errors import DwsError
from dwscli.weights.checkpoint import load_checkpoint
from dwscli.weights.inr import InrConventions, psnr, render
from dwscli.weights.spec import MLPSpec


def test_dwsnets_init_draws_the_authors_ranges() -> None:
    spec = MLPSpec.parse("2-32-32-1:sine;w0=30")
    space = dwsnets_init(spec, 256, torch.Generator().manual_seed(0))
    for layer, (w, b) in enumerate(zip(space.weights, space.biases)):
        d_in = w.shape[2]
        if layer < spec.depth - 1:  # sine layers: U(±sqrt(6/d)/w0), zero biases
            bound = math.sqrt(6 / d_in) / 30
            assert torch.count_nonzero(b) == 0
        else:  # the linear output layer: nn.Linear's default for weights and bias
            bound = 1 / math.sqrt(d_in)
            assert 0.5 * bound < float(b.abs().max()) <= bound
        assert 0.9 * bound < float(w.abs().max()) <= bound
    # the first layer starts about 10x smaller than SIREN's own first layer
    siren = siren_init(spec, 256, torch.Generator().manual_seed(0))
    ratio = float(siren.weights[0].abs().max() / space.weights[0].abs().max())
    assert 8 < ratio < 10


def test_recipe_overrides_and_unknown_names() -> None:
    config = inr_recipe("dwsnets", steps=7, lr=None)
    assert config.steps == 7 and config.lr == INR_RECIPES["dwsnets"].lr
    assert config.spec == "2-32-32-1:sine;w0=30" and config.output_scale == 1.0
    try:
        inr_recipe("nope")
    except DwsError as error:
        assert "unknown INR recipe 'nope'" in error.message and "dwsnets" in error.message
    else:
        raise AssertionError("an unknown recipe must be refused")


def test_dwsnets_zoo_records_its_recipe_and_renders_its_images(tmp_path: Path) -> None:
    config = inr_recipe("dwsnets", steps=300, compiled=False, chunk=8)
    zoo = make_inr_zoo(tmp_path / "z", "mnist", count=8, config=config, shard_size=8)
    assert zoo is not None
    recorded = json.loads((zoo.path / "zoo.json").read_text())
    assert recorded["config"]["recipe"] == "dwsnets" and recorded["config"]["init"] == "dwsnets"
    assert recorded["conventions"]["output_scale"] == 1.0
    assert recorded["spec"] == "2-32-32-1:sine;w0=30"
    record = zoo.records()[0]
    assert record["hparams"]["recipe"] == "dwsnets"
    (exported,) = zoo.export([record["id"]], tmp_path / "out")
    checkpoint = load_checkpoint(exported)
    assert checkpoint.metadata["dws.zoo.recipe"] == "dwsnets"
    assert checkpoint.metadata["inr.output_scale"] == "1.0"
    # rendered with the conventions the file carries, the net draws its image
    conventions = InrConventions.from_metadata(checkpoint.metadata)
    image = load_dataset("mnist", "train").float_images()[record["labels"]["image_index"]]
    quality = psnr(render(checkpoint.space, conventions), image[None]).item()
    assert abs(quality - record["metrics"]["psnr"]) < 0.05 and quality > 15.0
    # fitting moved the small first layer far from its start: the weights carry the image
    start = _stacked_init(MLPSpec.parse(config.spec), range(0, 1), 0, init="dwsnets")
    moved = checkpoint.space.weights[0] - start.weights[0]
    assert float(moved.norm() / start.weights[0].norm()) > 0.2


def test_default_zoos_keep_their_identity(tmp_path: Path) -> None:
    """A zoo made with the default recipe records none of the newer options, so zoos made
    before they existed still resume; its exports say which recipe made them."""
    config = inr_recipe("default", steps=5, compiled=False)
    zoo = make_inr_zoo(tmp_path / "z", "mnist", count=2, config=config)
    recorded = json.loads((zoo.path / "zoo.json").read_text())["config"]
    assert not {"recipe", "init", "output_scale", "output_offset"} & set(recorded)
    (exported,) = zoo.export([zoo.records()[0]["id"]], tmp_path / "out")
    assert load_checkpoint(exported).metadata["dws.zoo.recipe"] == "default"


def test_test_first_changes_only_the_order_of_work(tmp_path: Path, monkeypatch) -> None:
    """Part 1/15001 of a 60,008-net zoo in shards of 4 holds shard 0 (training images) and
    shard 15001 (test images); ``test_first`` makes the test shard first, and both runs write
    the same bytes."""
    from dwscli.data.zoo import ZooWriter

    made: list[int] = []
    write_shard = ZooWriter.write_shard

    def recording(self, shard, *args, **kwargs):
        made.append(shard)
        return write_shard(self, shard, *args, **kwargs)

    monkeypatch.setattr(ZooWriter, "write_shard", recording)
    config = inr_recipe("dwsnets", steps=3, compiled=False, chunk=4)
    orders = {}
    for name, first in (("in-order", False), ("test-first", True)):
        made.clear()
        make_inr_zoo(
            tmp_path / name,
            "mnist",
            count=60_008,
            config=config,
            shard_size=4,
            part="1/15001",
            test_first=first,
        )
        orders[name] = list(made)
    assert orders == {"in-order": [0, 15001], "test-first": [15001, 0]}
    files = {n: sorted((tmp_path / n / "shards").glob("*.safetensors")) for n in orders}
    assert [p.name for p in files["in-order"]] == [p.name for p in files["test-first"]]
    assert len(files["in-order"]) == 2
    for left, right in zip(files["in-order"], files["test-first"]):
        assert left.read_bytes() == right.read_bytes()


def test_cli_recipe_option(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(
        app, ["zoo", "inrs", "-d", "mnist", "--recipe", "nope", "-o", str(tmp_path / "z")]
    )
    assert bad.exit_code == 1 and "unknown INR recipe" in bad.output
    assert not (tmp_path / "z").exists()

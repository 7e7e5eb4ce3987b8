"""Recipe-diverse zoos: per-net recipe draws, initialisation variants, the stacked optimisers,
per-net budgets, what a diverse zoo records (and that parts and one run agree), ``dws zoo info``
of the recipe distribution, and one-line errors for bad recipe files and options."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.data.datasets import load_dataset
from dwscli.data.inr_fit import fit_sines
from dwscli.data.recipes import PRESETS, draw_recipe, load_recipe_file
from dwscli.data.stacked import CLASSIFIER_INITS, INITS, StackedSGD, siren_init
from dwscli.data.zoo import Zoo, merge_zoos
from dwscli.data.zoo_make import SineZooConfig, inr_recipe, make_inr_zoo, make_sine_zoo
from dwscli.errors import DwsError
from dwscli.weights.inr import InrConventions
from dwscli.weights.spec import MLPSpec

SIREN = MLPSpec.parse("2-32-32-1:sine;w0=30")


def dws(*args: str):
    return CliRunner().invoke(app, list(args))


# ------------------------------------------------------------------------------------------------
# draws


def test_recipe_draws_are_pure_functions_of_seed_and_index_and_cover_every_variant() -> None:
    space = PRESETS["inr"]["diverse"]
    first = [draw_recipe(space, 7, i) for i in range(400)]
    assert first == [draw_recipe(space, 7, i) for i in range(400)]  # same (seed, index)
    assert first[::-1] == [draw_recipe(space, 7, i) for i in reversed(range(400))]  # any order
    assert first != [draw_recipe(space, 8, i) for i in range(400)]  # another zoo seed
    assert {r.optimizer for r in first} == {"adam", "sgd"}
    assert {r.init for r in first} == set(INITS)
    assert {r.batch for r in first} == set(space.batch)
    assert {r.target for r in first} == set(space.targets)  # None: no early stop included
    assert {r.weight_decay for r in first} == set(space.weight_decay)
    for name, (low, high) in (("adam", space.lr_adam), ("sgd", space.lr_sgd)):
        rates = [r.lr for r in first if r.optimizer == name]
        assert all(low <= lr <= high for lr in rates)
        assert max(rates) / min(rates) > 50  # log-uniform over two decades reaches both ends
        logs = torch.tensor(rates).log10()
        middle = math.log10(low) + 0.5 * (math.log10(high) - math.log10(low))
        assert 0.3 < float((logs < middle).float().mean()) < 0.7  # uniform in the log
    budgets = [r.steps for r in first]
    assert min(budgets) >= space.steps[0] and max(budgets) <= space.steps[1]
    assert all(r.momentum == (space.momentum if r.optimizer == "sgd" else 0.0) for r in first)


def test_narrowing_one_range_leaves_the_other_draws_as_they_were() -> None:
    space = PRESETS["inr"]["diverse"]
    narrow = replace(space, inits=("dwsnets",))
    for i in range(50):
        a, b = draw_recipe(space, 0, i), draw_recipe(narrow, 0, i)
        assert b.init == "dwsnets"
        assert (a.optimizer, a.lr, a.steps, a.target, a.batch) == (
            b.optimizer,
            b.lr,
            b.steps,
            b.target,
            b.batch,
        )


# ------------------------------------------------------------------------------------------------
# initialisations


def _uniform_bound_ok(values: torch.Tensor, bound: float) -> bool:
    """All within ±bound, reaching near it, with the std of U(-bound, bound)."""
    std = float(values.std())
    return (
        float(values.abs().max()) <= bound + 1e-7
        and float(values.abs().max()) > 0.9 * bound
        and abs(std - bound / math.sqrt(3)) < 0.05 * bound
    )


def test_each_sine_init_variant_matches_its_definition() -> None:
    n = 256
    w0 = 30.0
    for name, draw in INITS.items():
        space = draw(SIREN, n, torch.Generator().manual_seed(1))
        last = SIREN.depth - 1
        for layer, (w, b) in enumerate(zip(space.weights, space.biases)):
            d_in = w.shape[2]
            torch_bound = 1 / math.sqrt(d_in)
            if name in ("sitzmann", "sitzmann-zero-bias"):
                bound = 1 / d_in if layer == 0 else math.sqrt(6 / d_in) / w0
                bias_bound = 0.0 if name == "sitzmann-zero-bias" else torch_bound
            elif name == "dwsnets":
                bound = torch_bound if layer == last else math.sqrt(6 / d_in) / w0
                bias_bound = torch_bound if layer == last else 0.0
            else:  # torch-linear: nn.Linear's default everywhere
                assert name == "torch-linear"
                bound = bias_bound = torch_bound
            assert _uniform_bound_ok(w, bound), (name, layer)
            if bias_bound == 0.0:
                assert torch.count_nonzero(b) == 0, (name, layer)
            else:
                assert _uniform_bound_ok(b, bias_bound), (name, layer)
    # the zero-bias variant is SIREN's scheme with the biases zeroed, nothing else
    plain = INITS["sitzmann"](SIREN, 4, torch.Generator().manual_seed(3))
    zero = INITS["sitzmann-zero-bias"](SIREN, 4, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(plain.weights, zero.weights))


def test_each_classifier_init_variant_matches_its_definition() -> None:
    spec = MLPSpec.parse("196-64-32-10:relu")
    for name, draw in CLASSIFIER_INITS.items():
        space = draw(spec, 64, torch.Generator().manual_seed(0), 2.0)  # scale 2
        for w, b in zip(space.weights, space.biases):
            d_out, d_in = w.shape[1:]
            if name == "he-normal":
                assert abs(float(w.std()) - 2 * math.sqrt(2 / d_in)) < 0.03 * math.sqrt(2 / d_in)
                assert abs(float(w.mean())) < 0.01 and torch.count_nonzero(b) == 0
            elif name == "xavier-uniform":
                assert _uniform_bound_ok(w / 2, math.sqrt(6 / (d_in + d_out)))
                assert torch.count_nonzero(b) == 0
            else:
                assert _uniform_bound_ok(w / 2, 1 / math.sqrt(d_in))
                assert _uniform_bound_ok(b / 2, 1 / math.sqrt(d_in))


# ------------------------------------------------------------------------------------------------
# optimisers and per-net budgets


def test_stacked_sgd_is_torch_sgd_with_momentum_and_weight_decay() -> None:
    torch.manual_seed(0)
    start = torch.randn(3, 5, 4)
    lr, momentum, decay = torch.tensor([0.1, 0.01, 0.05]), torch.tensor([0.9, 0.5, 0.0]), 1e-2
    stacked = start.clone()
    optimizer = StackedSGD([stacked], lr, momentum=momentum, weight_decay=decay)
    singles = [start[k].clone().requires_grad_() for k in range(3)]
    references = [
        torch.optim.SGD([p], lr=float(lr[k]), momentum=float(momentum[k]), weight_decay=decay)
        for k, p in enumerate(singles)
    ]
    for step in range(5):
        grads = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(step))
        active = torch.tensor([True, step % 2 == 0, True])  # net 1 sits out odd steps
        optimizer.step([grads], active)
        for k, (p, ref) in enumerate(zip(singles, references)):
            if active[k]:
                p.grad = grads[k].clone()
                ref.step()
    for k in range(3):
        assert torch.allclose(stacked[k], singles[k].detach(), atol=1e-6)


def test_a_net_in_a_mixed_chunk_fits_as_it_would_alone() -> None:
    """Adam and SGD nets fitted together, each with its own lr, weight decay and budget, end
    exactly where each ends fitted on its own."""
    spec = MLPSpec.parse("2-8-8-1:sine;w0=30")
    coords = torch.rand(40, 2) * 2 - 1
    targets = torch.randn(4, 40, 1) * 0.3
    init = siren_init(spec, 4, torch.Generator().manual_seed(0))
    lr = torch.tensor([1e-3, 2e-2, 3e-3, 1e-2])
    use_sgd = torch.tensor([False, True, False, True])
    decay = torch.tensor([0.0, 1e-4, 1e-5, 0.0])
    budget = torch.tensor([30, 12, 20, 25])
    settings = dict(steps=40, check_every=5)
    together = fit_sines(
        targets,
        coords,
        spec,
        mse_target=torch.full((4,), -math.inf),
        init=init,
        lr=lr,
        use_sgd=use_sgd,
        weight_decay=decay,
        step_budget=budget,
        **settings,
    )
    assert together.steps.tolist() == budget.tolist()
    for k in range(4):
        alone = fit_sines(
            targets[k : k + 1],
            coords,
            spec,
            mse_target=torch.full((1,), -math.inf),
            init=init[k : k + 1],
            lr=lr[k : k + 1],
            use_sgd=use_sgd[k : k + 1],
            weight_decay=decay[k : k + 1],
            step_budget=budget[k : k + 1],
            **settings,
        )
        for a, b in zip(together.space[k : k + 1].tensors(), alone.space.tensors()):
            assert torch.allclose(a, b, atol=1e-6), k


def test_sgd_and_adam_both_fit_real_images_and_a_pixel_batch_fits_too() -> None:
    conventions = InrConventions(height=28, width=28, output_scale=1.0, output_offset=0.5)
    images = load_dataset("mnist", "train").float_images()[:6]
    targets = conventions.to_target(images.reshape(6, -1))
    coords = conventions.coordinates()
    init = INITS["sitzmann"](SIREN, 6, torch.Generator().manual_seed(0))
    before = fit_sines(targets, coords, SIREN, steps=0, init=init).mse
    use_sgd = torch.tensor([True, True, True, False, False, False])
    lr = torch.where(use_sgd, torch.tensor(1e-2), torch.tensor(1e-3))
    for batch in (None, 196):
        after = fit_sines(
            targets,
            coords,
            SIREN,
            steps=150,
            init=init,
            lr=lr,
            use_sgd=use_sgd,
            batch=batch,
            batch_generator=torch.Generator().manual_seed(0),
        )
        assert bool((after.mse < 0.3 * before).all()), (batch, after.mse / before)


def test_one_recipe_with_per_net_settings_is_the_single_recipe_fit() -> None:
    """The old call (one lr, no budgets) and the same settings spelled out per net agree
    exactly: zoos made with one recipe are made as before."""
    spec = MLPSpec.parse("2-8-8-1:sine;w0=30")
    coords = torch.rand(30, 2) * 2 - 1
    targets = torch.randn(5, 30, 1) * 0.3
    init = siren_init(spec, 5, torch.Generator().manual_seed(0))
    old = fit_sines(targets, coords, spec, steps=40, lr=3e-3, mse_target=0.05, init=init)
    new = fit_sines(
        targets,
        coords,
        spec,
        steps=40,
        lr=torch.full((5,), 3e-3),
        mse_target=torch.full((5,), 0.05),
        init=init,
        step_budget=torch.full((5,), 40),
        weight_decay=torch.zeros(5),
        use_sgd=torch.zeros(5, dtype=torch.bool),
    )
    assert torch.equal(old.steps, new.steps)
    assert all(torch.equal(a, b) for a, b in zip(old.space.tensors(), new.space.tensors()))


# ------------------------------------------------------------------------------------------------
# diverse zoos


def write_recipe(path: Path, **extra: object) -> Path:
    import yaml

    data = {"steps": [5, 40], "batch": ["full", 128], **extra}
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_diverse_inr_zoo_records_every_recipe_and_parts_make_the_same_zoo(
    tmp_path: Path,
) -> None:
    recipe = write_recipe(tmp_path / "fast.yaml")
    config = inr_recipe(str(recipe), spec="2-8-8-1:sine;w0=30", compiled=False, chunk=8)
    whole = make_inr_zoo(tmp_path / "whole", "mnist", count=12, config=config, shard_size=6)
    assert whole is not None
    meta = json.loads((whole.path / "zoo.json").read_text())
    assert meta["config"]["recipe"] == "fast" and meta["config"]["ranges"]["steps"] == [5, 40]
    # conventions are the base recipe's (dwsnets), one per zoo
    assert meta["conventions"]["output_scale"] == 1.0
    space = load_recipe_file(recipe, "inr")
    for index, record in enumerate(whole.records()):
        drawn = draw_recipe(space, 0, index)
        hp = record["hparams"]
        assert (hp["optimizer"], hp["lr"], hp["init"], hp["step_budget"]) == (
            drawn.optimizer,
            drawn.lr,
            drawn.init,
            drawn.steps,
        )
        assert hp["psnr_target"] == drawn.target and hp["weight_decay"] == drawn.weight_decay
        assert hp["pixels_per_step"] == (784 if drawn.batch is None else drawn.batch)
        assert record["metrics"]["steps"] <= drawn.steps
        if drawn.target is None:  # no early stop: the whole budget
            assert record["metrics"]["steps"] == drawn.steps
    for part in ("1/2", "2/2"):
        make_inr_zoo(
            tmp_path / part.replace("/", "of"),
            "mnist",
            count=12,
            config=config,
            shard_size=6,
            part=part,
        )
    merged = merge_zoos([tmp_path / "1of2", tmp_path / "2of2"], tmp_path / "merged")
    assert torch.equal(merged.get(merged.ids()).flatten(), whole.get(whole.ids()).flatten())
    assert merged.records() == whole.records()
    # a run killed after its first shard resumes into the same zoo
    shard = whole.path / "shards" / "shard-00001.safetensors"
    data = shard.read_bytes()
    shard.unlink()
    (whole.path / "manifest.d" / "shard-00001.jsonl").unlink()
    resumed = make_inr_zoo(whole.path, "mnist", count=12, config=config, shard_size=6)
    assert resumed is not None and shard.read_bytes() == data


def test_a_diverse_classifier_zoo_trains_with_both_optimisers_and_every_batch(
    tmp_path: Path,
) -> None:
    from dwscli.data.classifier_train import ClassifierZooConfig, HparamRanges
    from dwscli.data.zoo_make import make_classifier_zoo

    config = ClassifierZooConfig(
        chunk=16,
        ranges=HparamRanges(
            lr=(1e-3, 3e-3),
            init_scale=(0.8, 1.25),
            steps=(100, 150),
            subset=(3000, 6000),
            label_noise=(0.0, 0.05),
            dropout=(0.0, 0.1),
        ),
        recipe=PRESETS["classifier"]["diverse"],
    )
    zoo = make_classifier_zoo(tmp_path / "z", "mnist", count=16, config=config, shard_size=16)
    assert zoo is not None
    records = zoo.records()
    assert {r["hparams"]["optimizer"] for r in records} == {"adam", "sgd"}
    assert {r["hparams"]["init"] for r in records} <= set(CLASSIFIER_INITS)
    for record in records:
        hp = record["hparams"]
        assert hp["batch_size"] in (32, 64, 128, 256)
        assert hp["epochs"] == pytest.approx(hp["steps"] * hp["batch_size"] / hp["subset"])
        if hp["optimizer"] == "sgd":
            assert 1e-3 <= hp["lr"] <= 1e-1 and hp["momentum"] == 0.9
        assert record["metrics"]["test_acc"] > 0.12, hp  # chance is 0.1
    for optimizer in ("adam", "sgd"):  # both train: most nets far above chance
        accuracies = [
            r["metrics"]["test_acc"] for r in records if r["hparams"]["optimizer"] == optimizer
        ]
        assert sorted(accuracies)[len(accuracies) // 2] > 0.6, (optimizer, accuracies)


def test_a_diverse_sine_zoo_fits_with_both_optimisers(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "sines.yaml", steps=[150, 300], batch=["full", 32])
    config = SineZooConfig(
        spec="1-16-16-1:sine;w0=30",
        points=64,
        chunk=16,
        compiled=False,
        ranges=load_recipe_file(recipe, "sine"),
    )
    zoo = make_sine_zoo(tmp_path / "z", count=16, config=config, shard_size=16)
    assert zoo is not None
    records = zoo.records()
    assert {r["hparams"]["optimizer"] for r in records} == {"adam", "sgd"}
    signal = {r["id"]: (r["labels"]["a"] ** 2) / 2 for r in records}  # MSE of predicting 0
    for optimizer in ("adam", "sgd"):
        mine = [r for r in records if r["hparams"]["optimizer"] == optimizer]
        improved = [r["metrics"]["mse"] < 0.5 * signal[r["id"]] for r in mine]
        assert sum(improved) >= len(mine) / 2, optimizer


def test_zoo_info_shows_the_recipe_distribution(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "fast.yaml", steps=[5, 10])
    config = inr_recipe(str(recipe), spec="2-8-8-1:sine;w0=30", compiled=False)
    make_inr_zoo(tmp_path / "z", "mnist", count=20, config=config, shard_size=20)
    result = dws("zoo", "info", str(tmp_path / "z"), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    counts = info["categories"]["hparams"]
    zoo = Zoo.open(tmp_path / "z")
    for field in ("optimizer", "init"):
        expected: dict[str, int] = {}
        for record in zoo.records():
            value = record["hparams"][field]
            expected[value] = expected.get(value, 0) + 1
        assert counts[field] == expected
    assert sum(counts["optimizer"].values()) == 20
    lr = info["hparams"]["lr"]
    assert lr["count"] == 20 and lr["min"] < lr["median"] < lr["max"]
    targets = info["hparams"]["psnr_target"]
    nones = sum(r["hparams"]["psnr_target"] is None for r in zoo.records())
    assert targets["missing"] == nones and targets["count"] == 20 - nones
    table = dws("zoo", "info", str(tmp_path / "z"))
    assert table.exit_code == 0
    text = " ".join(table.stdout.split())
    assert "hparam optimizer" in text
    assert f"adam {counts['optimizer'].get('adam', 0)}" in text


# ------------------------------------------------------------------------------------------------
# bad recipes


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("optimiser: [adam]\n", "unknown key 'optimiser'"),
        ("optimizer: [adam, rmsprop]\n", "optimizer: unknown value 'rmsprop'"),
        ("lr: {adam: [1e-2, 1e-4]}\n", "lr.adam: low 0.01 is above high 0.0001"),
        ("lr: {adam: 0.1}\n", "lr.adam: expected [low, high]"),
        ("init: [kaiming]\n", "init: unknown value 'kaiming'"),
        ("batch: [0]\n", "batch: expected a positive whole number"),
        ("steps: [10.5, 20]\n", "steps: expected whole numbers"),
        ("momentum: 1.5\n", "momentum: must be below 1"),
        ("target: [-3]\n", "target: must be positive"),
        ("- a list\n", "a recipe file is a mapping"),
        ("optimizer: [adam\n", "not valid YAML"),
        ("base: siren\n", "base: unknown INR recipe 'siren'"),
    ],
)
def test_bad_recipe_files_are_one_line_errors_naming_the_file(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(DwsError) as caught:
        inr_recipe(str(path))
    assert str(path) in caught.value.message and fragment in caught.value.message
    result = dws(
        "zoo", "inrs", "-d", "mnist", "-n", "2", "--recipe", str(path), "-o", str(tmp_path / "z")
    )
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith(f"error: {path}: ") and fragment in lines[0]
    assert "Traceback" not in result.output and not (tmp_path / "z").exists()


def test_bad_recipe_options_are_one_line_errors(tmp_path: Path) -> None:
    out = str(tmp_path / "z")
    cases = [
        (
            ("zoo", "inrs", "-d", "mnist", "--recipe", "chaos", "-o", out),
            "unknown INR recipe 'chaos'",
        ),
        (
            ("zoo", "inrs", "-d", "mnist", "--recipe", "diverse", "--lr", "1e-3", "-o", out),
            "--lr sets one value",
        ),
        (("zoo", "sines", "--recipe", "chaos", "-o", out), "--recipe: unknown recipe 'chaos'"),
        (("zoo", "classifiers", "-d", "mnist", "--recipe", "chaos", "-o", out), "unknown recipe"),
        (
            ("zoo", "sines", "--recipe", "diverse", "--hold-out", "optimiser=sgd", "-o", out),
            "'optimiser' is not a recipe field",
        ),
        (("zoo", "sines", "--hold-out", "lr", "-o", out), "--hold-out: expected KEY=VALUE"),
        (("zoo", "sines", "--hold-out", "lr=3..1", "-o", out), "empty range"),
    ]
    for args, fragment in cases:
        result = dws(*args)
        assert result.exit_code != 0, args
        first = result.stderr.splitlines()[0]
        assert first.startswith("error: ") and fragment in first, (args, result.stderr)
        assert "Traceback" not in result.output
    assert not (tmp_path / "z").exists()


def test_a_recipe_file_based_on_default_keeps_the_default_conventions(tmp_path: Path) -> None:
    """The shipped INR processors read `default`-recipe nets (2-32-32-32-1, pixel = 0.5 + 0.5
    out): a diverse zoo for them is a recipe file with ``base: default``."""
    recipe = tmp_path / "default-diverse.yaml"
    recipe.write_text("base: default\n")
    config = inr_recipe(str(recipe))
    assert config.ranges is not None and config.ranges.base == "default"
    assert config.ranges.optimizers == PRESETS["inr"]["diverse"].optimizers
    assert config.spec == "2-32-32-32-1:sine;w0=30"
    assert (config.output_scale, config.output_offset) == (0.5, 0.5)
    assert config.recipe == "default-diverse"
    plain = inr_recipe("diverse")  # the preset keeps the dwsnets conventions
    assert (plain.spec, plain.output_scale) == ("2-32-32-1:sine;w0=30", 1.0)

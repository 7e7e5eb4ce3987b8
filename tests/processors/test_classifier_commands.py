"""dws predict-accuracy and dws adapt through the CLI, with small processors made here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml

from dwscli.cli.app import main
from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet, InvariantDWSNet
from dwscli.weights.checkpoint import load_checkpoint, save_space
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import apply_permutation, random_permutation

SPEC = MLPSpec.parse("12-8-8-4:relu")
CONFIG = DWSNetConfig(hidden_channels=4, num_layers=2, head_hidden=[8], output_init_scale=1.0)


def _write_processor(directory: Path, name: str, task: str) -> Path:
    torch.manual_seed(0)
    if task == "accuracy":
        model = InvariantDWSNet(SPEC, CONFIG)
        kind = "invariant"
    else:
        model = EquivariantDWSNet(SPEC, CONFIG)
        kind = "equivariant"
    model.normalizer.fit(WeightSpace.random(SPEC, 32))
    safetensors.torch.save_file(model.state_dict(), str(directory / f"{name}.safetensors"))
    card = {
        "name": name,
        "version": "1",
        "task": task,
        "model": {"kind": kind, "arch": "dws", "config": CONFIG.to_dict()},
        "input": {"spec": str(SPEC)},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def _nets(directory: Path, count: int, dtype: torch.dtype = torch.float32) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(1)
    paths = []
    for k in range(count):
        space = WeightSpace.random(SPEC, 1, generator=generator)
        path = directory / f"net{k}.safetensors"
        save_space(path, space, metadata={"owner": "test", "run": str(k)}, dtype=dtype)
        paths.append(path)
    return paths


def _run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    captured = capfd.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def test_predict_accuracy_is_invariant_to_permuting_the_files(tmp_path, capfd) -> None:
    card = _write_processor(tmp_path, "acc", "accuracy")
    paths = _nets(tmp_path / "nets", 5)
    permuted_dir = tmp_path / "permuted"
    permuted_dir.mkdir()
    for path in paths:
        checkpoint = load_checkpoint(path)
        permuted = apply_permutation(checkpoint.space, random_permutation(checkpoint.space))
        save_space(permuted_dir / path.name, permuted)
    code, out, _ = _run(
        ["predict-accuracy", str(tmp_path / "nets"), "-p", str(card), "--json"], capfd
    )
    assert code == 0
    original = json.loads(out)
    code, out, _ = _run(["predict-accuracy", str(permuted_dir), "-p", str(card), "--json"], capfd)
    again = json.loads(out)
    assert [Path(r["path"]).name for r in original] == [p.name for p in paths]  # input order
    for a, b in zip(original, again):
        assert a["predicted_accuracy"] == pytest.approx(b["predicted_accuracy"], abs=1e-5)
    assert len({r["predicted_accuracy"] for r in original}) > 1  # not a constant
    code, out, _ = _run(
        ["predict-accuracy", str(tmp_path / "nets"), "-p", str(card), "--csv"], capfd
    )
    header = "path,spec,predicted_accuracy,ood_score,in_distribution"
    assert out.splitlines()[0] == header and len(out.splitlines()) == 6


def test_adapt_is_equivariant_and_keeps_dtype_and_metadata(tmp_path, capfd) -> None:
    card = _write_processor(tmp_path, "adapt", "adapt")
    (path,) = _nets(tmp_path / "nets", 1, dtype=torch.float64)
    checkpoint = load_checkpoint(path)
    perm = random_permutation(checkpoint.space)
    permuted_path = tmp_path / "permuted.safetensors"
    save_space(permuted_path, apply_permutation(checkpoint.space, perm), dtype=torch.float64)
    out_a, out_b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert _run(["adapt", str(path), "-p", str(card), "-o", str(out_a)], capfd)[0] == 0
    assert _run(["adapt", str(permuted_path), "-p", str(card), "-o", str(out_b)], capfd)[0] == 0
    adapted, adapted_permuted = load_checkpoint(out_a), load_checkpoint(out_b)
    expected = apply_permutation(adapted.space, perm)
    assert torch.allclose(expected.flatten(), adapted_permuted.space.flatten(), atol=1e-5)
    assert not torch.allclose(adapted.space.flatten(), checkpoint.space.flatten())
    assert adapted.layout.dtypes == checkpoint.layout.dtypes  # float64 kept
    assert adapted.metadata["owner"] == "test" and adapted.metadata["run"] == "0"
    assert adapted.metadata["dws.processor"] == "adapt"
    assert adapted.metadata["dws.operation"] == "adapt"


def test_batch_mode_reports_bad_files_and_continues(tmp_path, capfd) -> None:
    card = _write_processor(tmp_path, "acc", "accuracy")
    paths = _nets(tmp_path / "nets", 3)
    (tmp_path / "nets" / "broken.safetensors").write_text("not a checkpoint")
    other = WeightSpace.random(MLPSpec.parse("5-8-4"), 1)
    save_space(tmp_path / "nets" / "wrong-spec.safetensors", other)
    code, out, err = _run(
        ["predict-accuracy", str(tmp_path / "nets"), "-p", str(card), "--json"], capfd
    )
    assert code == 1
    rows = json.loads(out)
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in paths)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("broken.safetensors" in line for line in errors)
    assert any("wrong-spec" in line and "expects 12-*-*-4:relu" in line for line in errors)
    code, out, err = _run(
        ["predict-accuracy", str(tmp_path / "nets"), "-p", str(card), "--fail-fast"], capfd
    )
    assert code == 1 and len([x for x in err.splitlines() if x.startswith("error:")]) == 1


def test_adapt_refuses_to_overwrite_and_needs_one_destination(tmp_path, capfd) -> None:
    card = _write_processor(tmp_path, "adapt", "adapt")
    paths = _nets(tmp_path / "nets", 2)
    before = paths[0].read_bytes()
    code, _, err = _run(["adapt", str(paths[0]), "-p", str(card), "-o", str(paths[0])], capfd)
    assert code == 1 and "error:" in err
    assert paths[0].read_bytes() == before
    code, _, err = _run(
        ["adapt", *map(str, paths), "-p", str(card), "-o", str(tmp_path / "x.safetensors")], capfd
    )
    assert code == 1 and "--out-dir" in err
    code, out, _ = _run(
        ["adapt", *map(str, paths), "-p", str(card), "--out-dir", str(tmp_path / "out"), "--json"],
        capfd,
    )
    assert code == 0 and len(json.loads(out)) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "net0.safetensors",
        "net1.safetensors",
    ]
    code, _, err = _run(["adapt", str(paths[0]), "-p", str(card)], capfd)
    assert code == 2


def test_adapt_never_writes_two_inputs_to_one_file(tmp_path, capfd) -> None:
    """Two inputs with one file name into one --out-dir: the first is written, the second is a
    per-file error, even with --force (which replaces only files from before the run)."""
    from safetensors.torch import load_file

    card = _write_processor(tmp_path, "adapt", "adapt")
    first = _nets(tmp_path / "a", 1)[0]
    second = _nets(tmp_path / "b", 2)[1].rename(tmp_path / "b" / first.name)
    out = tmp_path / "out"
    args = ["adapt", str(first), str(second), "-p", str(card), "--out-dir", str(out), "--force"]
    code, out_text, err = _run([*args, "--json"], capfd)
    assert code == 1
    assert "already written" in err and str(second) in err
    assert [Path(r["input"]) for r in json.loads(out_text)] == [first]
    written = load_file(str(out / first.name))
    alone = {}
    for name, path in (("first", first), ("second", second)):
        target = tmp_path / f"{name}.safetensors"
        assert _run(["adapt", str(path), "-p", str(card), "-o", str(target)], capfd)[0] == 0
        alone[name] = load_file(str(target))
    # the file in out/ is the first input's adaptation (up to batching round-off), not the second's
    assert all(torch.allclose(written[k], alone["first"][k], atol=1e-5) for k in written)
    assert not all(torch.allclose(written[k], alone["second"][k], atol=1e-3) for k in written)


def test_adapt_out_dir_with_some_outputs_taken_writes_the_others(tmp_path, capfd) -> None:
    """Many inputs into one --out-dir, two of whose outputs exist already: those two are
    per-file errors, reported in input order, and every other output is the one a run of that
    input alone writes."""
    from safetensors.torch import load_file

    card = _write_processor(tmp_path, "adapt", "adapt")
    paths = _nets(tmp_path / "in", 20)
    out = tmp_path / "out"
    out.mkdir()
    blocked = [paths[3], paths[11]]
    for path in blocked:
        (out / path.name).write_bytes(b"kept")
    args = ["adapt", *map(str, paths), "-p", str(card), "--out-dir", str(out), "--json"]
    code, out_text, err = _run(args, capfd)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert [str(out / b.name) in line for b, line in zip(blocked, errors)] == [True, True], err
    assert all((out / b.name).read_bytes() == b"kept" for b in blocked)
    written = [p for p in paths if p not in blocked]
    assert [Path(r["input"]) for r in json.loads(out_text)] == written
    (tmp_path / "alone").mkdir()
    for path in written[::6]:
        alone = tmp_path / "alone" / path.name
        code, _, err = _run(["adapt", str(path), "-p", str(card), "-o", str(alone)], capfd)
        assert code == 0, err
        expected, got = load_file(str(alone)), load_file(str(out / path.name))
        assert expected.keys() == got.keys()
        for key in expected:  # a batch of 20 and a batch of 1 round differently
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)


def test_processor_of_the_wrong_task_is_refused(tmp_path, capfd) -> None:
    card = _write_processor(tmp_path, "adapt", "adapt")
    paths = _nets(tmp_path / "nets", 1)
    code, _, err = _run(["predict-accuracy", str(paths[0]), "-p", str(card)], capfd)
    assert code == 1 and "not 'accuracy'" in err


# ------------------------------------------------------------------------------------------------
# the shipped processors on the shipped example (real data: Fashion-MNIST test images)


def _target_accuracy(path: Path, corruption: str) -> float:
    from dwscli.data.classifier_train import ImageData, accuracy, preprocess
    from dwscli.data.corruptions import corrupt
    from dwscli.data.datasets import load_dataset
    from dwscli.data.zoo_make import dataset_statistics

    mean, std = dataset_statistics("fashion-mnist")
    test = load_dataset("fashion-mnist", "test")
    images = corrupt(test.float_images(), corruption, 1)
    data = ImageData(preprocess(images, 2, mean, std), test.labels)
    return float(accuracy(load_checkpoint(path).space, data)[0])


def test_shipped_adapt_processor_recovers_the_example_on_its_target_domain(tmp_path, capfd) -> None:
    from dwscli.examples import example_path

    out = tmp_path / "adapted.safetensors"
    code, _, err = _run(["adapt", "example:fmnist-mlp", "-o", str(out)], capfd)
    assert code == 0, err
    domain = load_checkpoint(out).metadata["dws.target_domain"]
    assert (
        domain
        == yaml.safe_load(
            (Path(__file__).parents[2] / "dwscli/processors/fmnist-adapt-contrast.yaml").read_text()
        )["target_domain"]
    )
    before = _target_accuracy(example_path("fmnist-mlp"), domain)
    after = _target_accuracy(out, domain)
    assert after > before + 0.10, (before, after)  # at least +10 points, on one real net


SHIPPED_ADAPT_CARDS = sorted(
    path
    for path in (Path(__file__).parents[2] / "dwscli/processors").glob("*.yaml")
    if yaml.safe_load(path.read_text())["task"] == "adapt"
)


@pytest.mark.parametrize("card", SHIPPED_ADAPT_CARDS, ids=lambda p: p.stem)
def test_every_shipped_domain_adapts_the_example_through_target(card: Path, tmp_path, capfd):
    """``dws adapt --target DOMAIN`` picks each shipped adapt processor by its domain, and the
    adapted example gains on that domain's corrupted test images. Processors trained with a
    clean-image term must also keep the example's clean accuracy."""
    from dwscli.examples import example_path

    data = yaml.safe_load(card.read_text())
    domain = data["target_domain"]
    out = tmp_path / "adapted.safetensors"
    code, _, err = _run(["adapt", "example:fmnist-mlp", "--target", domain, "-o", str(out)], capfd)
    assert code == 0, err
    adapted = load_checkpoint(out)
    assert adapted.metadata["dws.target_domain"] == domain
    assert adapted.metadata["dws.processor"] == data["name"]
    source = example_path("fmnist-mlp")
    before, after = _target_accuracy(source, domain), _target_accuracy(out, domain)
    # on this one real net, at least half the mean gain the card measured on the zoo's test nets
    assert after - before > 0.5 * data["metrics"]["test"]["gain_points"] / 100, (before, after)
    if (data["training"]["config"]["task"] or {}).get("clean_weight"):
        clean_before, clean_after = _target_accuracy(source, "none"), _target_accuracy(out, "none")
        assert clean_after > clean_before - 0.05, (domain, clean_before, clean_after)


def test_shipped_accuracy_processor_is_close_on_the_example(capfd) -> None:
    from dwscli.examples import example_path

    code, out, err = _run(["predict-accuracy", "example:fmnist-mlp", "--json"], capfd)
    assert code == 0, err
    predicted = json.loads(out)[0]["predicted_accuracy"]
    measured = _target_accuracy(example_path("fmnist-mlp"), "none")
    assert abs(predicted - measured) < 0.05, (predicted, measured)


def test_api_twins_give_what_the_commands_give(tmp_path, capfd) -> None:
    from dwscli import api

    code, out, _ = _run(["predict-accuracy", "example:fmnist-mlp", "--json"], capfd)
    assert code == 0
    assert api.predict_accuracy("example:fmnist-mlp") == json.loads(out)
    written = api.adapt("example:fmnist-mlp", output=tmp_path / "a.safetensors")
    assert written[0]["output"] == str(tmp_path / "a.safetensors")
    code, _, _ = _run(["adapt", "example:fmnist-mlp", "-o", str(tmp_path / "b.safetensors")], capfd)
    a = load_checkpoint(tmp_path / "a.safetensors").space
    b = load_checkpoint(tmp_path / "b.safetensors").space
    assert code == 0 and all(torch.equal(x, y) for x, y in zip(a.weights, b.weights))

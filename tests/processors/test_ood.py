"""The out-of-distribution check (dwscli.processors.ood) and how every processor command uses it.

The "training nets" here are random MLPs of one recipe (U(±1/sqrt(fan_in)) weights and
biases); held-in nets are fresh draws of the same recipe, the others are the same nets scaled
or drawn from another initialisation. The processors are small random DWSNets: what is checked
is the check, not what the processors predict.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from dwscli import api
from dwscli.cli.app import main
from dwscli.errors import DwsError
from dwscli.nn.archs import get_arch
from dwscli.nn.models import DWSNetConfig
from dwscli.processors import ood
from dwscli.processors.card import ProcessorCard
from dwscli.processors.loading import load_processor
from dwscli.train.card import write_processor
from dwscli.weights.loadsave import save_space
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import apply_permutation, random_permutation

CLASSIFIER = MLPSpec.parse("12-8-8-4:relu")
INR = MLPSpec.parse("2-8-8-1:sine;w0=30")
OPTIONS = DWSNetConfig(hidden_channels=4, num_layers=2, head_hidden=[8], output_init_scale=1.0)


def _nets(spec: MLPSpec, count: int, seed: int) -> WeightSpace:
    return WeightSpace.random(spec, count, generator=torch.Generator().manual_seed(seed))


def _gaussian_init(spec: MLPSpec, count: int, seed: int) -> WeightSpace:
    """Another initialisation with the same variance as :func:`_nets` (normal, not uniform)."""
    generator = torch.Generator().manual_seed(seed)
    uniform = _nets(spec, count, seed)
    return uniform.map(
        lambda t: torch.randn(t.shape, generator=generator) * t.abs().amax() / 3**0.5
    )


def _scaled_first_layer(space: WeightSpace, factor: float) -> WeightSpace:
    scaled = space.clone()
    scaled.weights[0] = scaled.weights[0] * factor
    return scaled


def _section(spec: MLPSpec) -> dict:
    """An ``ood`` section fitted on 400 training nets, calibrated on 200 others."""
    return ood.build_section(
        ood.net_statistics(_nets(spec, 400, seed=10)),
        ood.net_statistics(_nets(spec, 200, seed=11)),
        spec.depth,
        fitted_on={"split": "train"},
        calibrated_on={"split": "val"},
    )


@pytest.fixture(scope="module")
def profile() -> ood.OodProfile:
    return ood.OodProfile.from_section(_section(CLASSIFIER), CLASSIFIER.depth, "test card")


def _ratio(reason: str) -> float:
    """``8.3`` of ``W1 RMS 8.3x the training nets'``."""
    match = re.search(r" ([0-9.e+-]+)x the training nets'\)?$", reason)
    assert match is not None, reason
    return float(match.group(1))


def _flagged(profile: ood.OodProfile, space: WeightSpace) -> float:
    return ood.flagged_fraction(profile, ood.net_statistics(space))


# ------------------------------------------------------------------------------------------
# the statistics and the score


def test_scores_are_invariant_to_hidden_permutations(profile: ood.OodProfile) -> None:
    nets = _nets(CLASSIFIER, 32, seed=5)
    generator = torch.Generator().manual_seed(0)
    permuted = apply_permutation(nets, random_permutation(nets, generator))
    assert not torch.equal(nets.weights[0], permuted.weights[0])  # the nets did change
    before, after = ood.net_statistics(nets), ood.net_statistics(permuted)
    torch.testing.assert_close(before, after, rtol=0, atol=1e-6)  # float32 sums, reordered
    torch.testing.assert_close(profile.scores(before), profile.scores(after), rtol=0, atol=1e-3)


def test_held_in_nets_pass_and_shifted_nets_are_flagged(profile: ood.OodProfile) -> None:
    held_in = _nets(CLASSIFIER, 1000, seed=20)  # neither fitted nor calibrated on
    assert _flagged(profile, held_in) <= 0.03
    assert _flagged(profile, _scaled_first_layer(held_in, 10.0)) == 1.0
    assert _flagged(profile, _scaled_first_layer(held_in, 2.0)) == 1.0
    assert _flagged(profile, _gaussian_init(CLASSIFIER, 200, seed=21)) >= 0.9


def test_the_reason_names_the_tensor_and_how_far_off_it_is(profile: ood.OodProfile) -> None:
    (result,) = profile.assess(_scaled_first_layer(_nets(CLASSIFIER, 1, seed=30), 10.0))
    assert not result.in_distribution and result.score is not None
    assert result.score > profile.threshold
    assert result.reason is not None and result.reason.startswith("W1 ")
    assert 8 < _ratio(result.reason) < 12  # x10, against the training nets' median
    assert result.fields() == {
        "ood_score": round(result.score, 3),
        "in_distribution": False,
        "ood_reason": result.reason,
    }


def test_non_finite_weights_are_out_of_distribution(profile: ood.OodProfile) -> None:
    nets = _nets(CLASSIFIER, 2, seed=31)
    nets.biases[1][0, 0] = float("nan")
    broken, fine = profile.assess(nets)
    assert broken == ood.OodResult(None, False, "non-finite weights")
    assert fine.in_distribution


def test_calibration_flags_at_most_one_percent_of_its_nets_and_holds_on_others() -> None:
    depth = CLASSIFIER.depth
    train = ood.net_statistics(_nets(CLASSIFIER, 400, seed=40))
    for count in (50, 100, 300):
        calibration = ood.net_statistics(_nets(CLASSIFIER, count, seed=41 + count))
        fitted = ood.fit_profile(train, calibration, depth)
        assert ood.flagged_fraction(fitted, calibration) <= 0.01  # by construction
        # the threshold is the calibration scores' conformal quantile, not a loose bound
        above = fitted.scores(calibration) > fitted.threshold - 1e-3
        assert above.any()
    # a separate set of held-in nets: about 1 % flagged (binomial spread on 2,000 nets)
    separate = ood.net_statistics(_nets(CLASSIFIER, 2000, seed=49))
    assert ood.flagged_fraction(fitted, separate) <= 0.025


def test_calibrated_threshold_is_the_conformal_quantile() -> None:
    scores = torch.arange(1, 201, dtype=torch.float64)  # 1 … 200
    assert ood.calibrated_threshold(scores) == 199.0  # ceil(201 * 0.99) = 199th smallest
    assert ood.calibrated_threshold(scores[:50]) == 50.0  # too few nets: the largest
    with_inf = torch.cat([scores, torch.tensor([float("inf")])])
    assert ood.calibrated_threshold(with_inf) == 200.0  # 201 nets: the 200th smallest


def test_the_card_section_reads_back_to_the_same_decisions(tmp_path: Path) -> None:
    section = _section(CLASSIFIER)
    card_path = _write_processor(tmp_path, "acc", "accuracy", CLASSIFIER, ood_section=section)
    text = card_path.read_text()
    assert "ood:" in text and yaml.safe_load(text)["ood"]["threshold"] == section["threshold"]
    processor = load_processor(str(card_path))
    assert processor.ood is not None
    fresh = ood.OodProfile.from_section(section, CLASSIFIER.depth, "fresh")
    nets = torch.cat([ood.net_statistics(_nets(CLASSIFIER, 300, seed=50))])
    assert torch.equal(processor.ood.scores(nets), fresh.scores(nets))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": "high"}, "ood.threshold: expected a number"),
        ({"threshold": -1.0}, "ood.threshold: expected a positive number"),
        ({"centre": {"W9.log_rms": 0.0}}, "ood.centre: unknown statistic 'W9.log_rms'"),
        ({"scale": {}}, "ood.scale: missing"),
        ({"centre": [1, 2]}, "ood.centre: expected a mapping"),
    ],
)
def test_a_malformed_section_is_a_one_line_error_naming_the_card(
    tmp_path: Path, change: dict, message: str
) -> None:
    section = {**_section(CLASSIFIER), **change}
    card_path = _write_processor(tmp_path, "bad", "accuracy", CLASSIFIER, ood_section=section)
    with pytest.raises(DwsError) as error:
        load_processor(str(card_path))
    assert str(card_path) in error.value.message and message in error.value.message


# ------------------------------------------------------------------------------------------
# the commands


def _write_processor(
    directory: Path,
    name: str,
    task: str,
    spec: MLPSpec,
    *,
    ood_section: dict | None = None,
    out_features: int = 1,
    extra: dict | None = None,
) -> Path:
    arch = get_arch("dws")
    kind = "equivariant" if task in ("adapt", "inr-edit") else "invariant"
    torch.manual_seed(0)
    model = arch.build(spec, kind, OPTIONS, out_features)
    arch.fit_normalizer(model, _nets(spec, 16, seed=3))
    card = {
        "name": name,
        "version": "1",
        "task": task,
        **(extra or {}),
        "model": {"kind": kind, "arch": "dws", "config": arch.card_config(OPTIONS, out_features)},
        "input": {"spec": str(spec)},
        **({"ood": ood_section} if ood_section is not None else {}),
    }
    card_path, _ = write_processor(directory, name, card, model)
    return card_path


def _files(directory: Path, spec: MLPSpec) -> tuple[Path, Path]:
    """``held-in.safetensors`` (a fresh net of the training recipe) and
    ``scaled.safetensors`` (another one with its first layer x10)."""
    directory.mkdir(parents=True, exist_ok=True)
    held_in = _nets(spec, 1, seed=60)
    metadata = {"inr.grid": "8x8"} if spec.activation == "sine" else {}
    a = save_space(directory / "held-in.safetensors", held_in, metadata=metadata)
    b = save_space(
        directory / "scaled.safetensors", _scaled_first_layer(held_in, 10.0), metadata=metadata
    )
    return a, b


def _run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    captured = capfd.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_predict_accuracy_warns_once_naming_the_file_and_fills_json_and_csv(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    card = _write_processor(
        tmp_path, "acc", "accuracy", CLASSIFIER, ood_section=_section(CLASSIFIER)
    )
    held_in, scaled = _files(tmp_path / "nets", CLASSIFIER)
    code, out, err = _run(["predict-accuracy", str(tmp_path / "nets"), "-p", str(card)], capfd)
    assert code == 0
    (line,) = _warnings(err)
    assert line.startswith(f"warning: {scaled}: out of distribution for acc (W1 ")
    assert 8 < _ratio(line) < 12

    code, out, _ = _run(
        ["predict-accuracy", str(held_in), str(scaled), "-p", str(card), "--json"], capfd
    )
    rows = json.loads(out)
    assert [r["in_distribution"] for r in rows] == [True, False]
    assert rows[0]["ood_score"] < rows[1]["ood_score"]
    assert rows[0]["ood_reason"] is None and rows[1]["ood_reason"].startswith("W1 ")

    code, out, err = _run(
        ["predict-accuracy", str(held_in), str(scaled), "-p", str(card), "--csv"], capfd
    )
    table = list(csv.DictReader(io.StringIO(out)))
    assert list(table[0]) == ["path", "spec", "predicted_accuracy", "ood_score", "in_distribution"]
    assert [r["in_distribution"] for r in table] == ["true", "false"]
    assert float(table[1]["ood_score"]) == rows[1]["ood_score"]
    assert len(_warnings(err)) == 1  # the warning goes to stderr with --csv too

    code, _, err = _run(
        ["predict-accuracy", str(scaled), "-p", str(card), "--no-ood-warnings"], capfd
    )
    assert code == 0 and _warnings(err) == []


def test_a_card_without_the_section_gives_empty_fields_and_no_warning(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    card = _write_processor(tmp_path, "plain", "accuracy", CLASSIFIER)
    assert ProcessorCard.read(card).ood is None
    _, scaled = _files(tmp_path / "nets", CLASSIFIER)
    code, out, err = _run(["predict-accuracy", str(scaled), "-p", str(card), "--json"], capfd)
    assert code == 0 and _warnings(err) == []
    (row,) = json.loads(out)
    assert row["ood_score"] is None and row["in_distribution"] is None
    code, out, _ = _run(["predict-accuracy", str(scaled), "-p", str(card), "--csv"], capfd)
    assert out.splitlines()[1].endswith(",,")


def test_adapt_rows_and_warnings(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    card = _write_processor(
        tmp_path, "adapt", "adapt", CLASSIFIER, ood_section=_section(CLASSIFIER)
    )
    _files(tmp_path / "nets", CLASSIFIER)
    out_dir = tmp_path / "adapted"
    code, out, err = _run(
        ["adapt", str(tmp_path / "nets"), "-p", str(card), "--out-dir", str(out_dir), "--json"],
        capfd,
    )
    assert code == 0
    rows = {Path(r["input"]).name: r for r in json.loads(out)}
    assert rows["held-in.safetensors"]["in_distribution"] is True
    assert rows["scaled.safetensors"]["in_distribution"] is False
    (line,) = _warnings(err)
    assert "scaled.safetensors: out of distribution for adapt" in line
    assert (out_dir / "scaled.safetensors").is_file()  # a warning, not a refusal


def test_the_inr_commands_and_their_api_twins_carry_the_fields(tmp_path: Path) -> None:
    section = _section(INR)
    classes = {"output": {"type": "logits", "classes": 3}}
    classifier = _write_processor(
        tmp_path, "clf", "inr-classify", INR, ood_section=section, out_features=3, extra=classes
    )
    editor = _write_processor(
        tmp_path, "ed", "inr-edit", INR, ood_section=section, extra={"edit": {"op": "dilate"}}
    )
    embedder = _write_processor(
        tmp_path, "emb", "embed", INR, ood_section=section, out_features=2,
        extra={"output": {"type": "embedding"}},
    )  # fmt: skip
    held_in, scaled = _files(tmp_path / "inrs", INR)
    heard: list[tuple[Path, str]] = []

    def listen(path: Path, message: str) -> None:
        heard.append((path, message))

    paths = [held_in, scaled]
    classified = api.classify(paths, processor=str(classifier), on_warning=listen)
    assert [r["in_distribution"] for r in classified] == [True, False]
    assert heard == [(scaled, heard[0][1])] and "for clf (" in heard[0][1]

    heard.clear()
    rows = api.edit(paths, processor=str(editor), out_dir=tmp_path / "ed", on_warning=listen)
    assert [r["in_distribution"] for r in rows] == [True, False]
    assert [p for p, _ in heard] == [scaled]

    heard.clear()
    summary = api.embed(paths, tmp_path / "e.jsonl", processor=str(embedder), on_warning=listen)
    assert summary["out_of_distribution"] == [str(scaled)]
    assert [p for p, _ in heard] == [scaled]

    # the same decision with the file's hidden neurons permuted
    space = _scaled_first_layer(_nets(INR, 1, seed=60), 10.0)
    permuted = apply_permutation(space, random_permutation(space, torch.Generator()))
    moved = save_space(tmp_path / "permuted.safetensors", permuted)
    (row,) = api.classify([moved], processor=str(classifier))
    assert row["in_distribution"] is False
    assert row["ood_score"] == pytest.approx(classified[1]["ood_score"], abs=1e-3)


# ------------------------------------------------------------------------------------------
# scripts/calibrate_ood.py: the section for an existing card


def _calibrate_script():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "calibrate_ood.py"
    spec = importlib.util.spec_from_file_location("calibrate_ood", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calibrate_script_adds_the_section_and_changes_nothing_else(
    tmp_path: Path, da_zoo: Path
) -> None:
    from dwscli.data.zoo import Zoo

    zoo = Zoo.open(da_zoo)
    card_path = _write_processor(tmp_path, "old", "accuracy", zoo.spec)
    before = yaml.safe_load(card_path.read_text())
    assert "ood" not in before and load_processor(str(card_path)).ood is None

    script = _calibrate_script()
    assert script.main([str(card_path), str(da_zoo), "--zoo-command", "dws zoo …"]) == 0
    after = yaml.safe_load(card_path.read_text())
    section = after.pop("ood")
    assert after == before
    sizes = {split: len(zoo.ids(split)) for split in ("train", "val", "test")}
    assert section["fitted_on"] == {"zoo": str(da_zoo), "split": "train", "nets": sizes["train"]}
    assert section["calibrated_on"]["nets"] == sizes["val"]
    assert section["calibrated_on"]["flagged"] <= 0.01
    assert section["checked_on"]["nets"] == sizes["test"]
    assert section["zoo_command"] == "dws zoo …"
    processor = load_processor(str(card_path))
    assert processor.ood is not None
    assert all(r.in_distribution for r in processor.ood.assess(zoo.get(zoo.ids("val"))))


def test_calibrate_script_refuses_a_zoo_that_does_not_fit(
    tmp_path: Path, da_zoo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card_path = _write_processor(tmp_path, "other", "accuracy", CLASSIFIER)
    text = card_path.read_text()
    assert _calibrate_script().main([str(card_path), str(da_zoo)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {da_zoo}: a 16-8-8-10:relu zoo does not")
    assert card_path.read_text() == text


def test_calibrate_script_keeps_a_feature_check(tmp_path: Path, da_zoo: Path) -> None:
    """Recalibrating the weights check leaves the trainer's feature check (card section and
    weights-file tensors) as it was, and the processor still loads with it."""
    from safetensors.torch import load_file, save_file

    from dwscli.data.zoo import Zoo
    from dwscli.nn.models import pooled_features
    from dwscli.processors.feature_ood import feature_section, fit_feature_profile

    zoo = Zoo.open(da_zoo)
    card_path = _write_processor(tmp_path, "feat", "accuracy", zoo.spec)
    script = _calibrate_script()
    assert script.main([str(card_path), str(da_zoo)]) == 0
    model = load_processor(str(card_path)).model
    embed = pooled_features(model)
    assert embed is not None
    with torch.no_grad():
        train, val = embed(zoo.get(zoo.ids("train"))), embed(zoo.get(zoo.ids("val")))
    profile = fit_feature_profile(train, val, components=2)
    weights = card_path.with_suffix(".safetensors")
    save_file({**load_file(str(weights)), **profile.tensors()}, str(weights))
    card = yaml.safe_load(card_path.read_text())
    card["ood"]["features"] = feature_section(
        profile, fitted_on={"split": "train"}, calibrated_on={"split": "val"}
    )
    card_path.write_text(yaml.safe_dump(card, sort_keys=False))
    assert load_processor(str(card_path)).feature_ood is not None

    assert script.main([str(card_path), str(da_zoo)]) == 0
    after = yaml.safe_load(card_path.read_text())
    assert after["ood"]["features"] == card["ood"]["features"]
    loaded = load_processor(str(card_path)).feature_ood
    assert loaded is not None and loaded.threshold == profile.threshold


def test_a_feature_check_that_does_not_fit_its_processor_is_a_one_line_error(
    tmp_path: Path, da_zoo: Path
) -> None:
    """Refused when the processor is read: a check on a model without pooled features, a
    card whose dim disagrees with the stored check, a stored check that is not finite."""
    from safetensors.torch import load_file, save_file

    from dwscli.data.zoo import Zoo
    from dwscli.processors.feature_ood import TENSOR_PREFIX, feature_section, fit_feature_profile
    from dwscli.processors.ood import zoo_section

    zoo = Zoo.open(da_zoo)
    g = torch.Generator().manual_seed(0)
    train, calibration = torch.randn(40, 6, generator=g), torch.randn(20, 6, generator=g)
    profile = fit_feature_profile(train, calibration, 2)
    section = feature_section(profile, fitted_on={"split": "train"}, calibrated_on={"split": "val"})
    weights_check = zoo_section(zoo)

    def with_check(name: str, task: str, tensors: dict, card_section: dict) -> Path:
        card_path = _write_processor(tmp_path, name, task, zoo.spec, ood_section=weights_check)
        weights = card_path.with_suffix(".safetensors")
        save_file({**load_file(str(weights)), **tensors}, str(weights))
        card = yaml.safe_load(card_path.read_text())
        card["ood"]["features"] = card_section
        card_path.write_text(yaml.safe_dump(card, sort_keys=False))
        return card_path

    editor = with_check("ed", "adapt", profile.tensors(), section)
    with pytest.raises(DwsError, match=r"ed\.yaml: ood\.features checks pooled features"):
        load_processor(str(editor))
    wrong_dim = with_check("dim", "accuracy", profile.tensors(), {**section, "dim": 7})
    with pytest.raises(DwsError, match=r"dim\.yaml: ood\.features\.dim is 7"):
        load_processor(str(wrong_dim))
    nan = {**profile.tensors(), f"{TENSOR_PREFIX}mean": torch.full((6,), float("nan"))}
    not_finite = with_check("nan", "accuracy", nan, section)
    with pytest.raises(DwsError, match=r"nan\.safetensors: ood\.features: .* not finite"):
        load_processor(str(not_finite))


def SECTION_OF(zoo: object) -> dict:
    from dwscli.processors.ood import zoo_section

    return zoo_section(zoo)


def test_calibrate_script_fits_a_feature_check_for_an_existing_processor(
    tmp_path: Path, da_zoo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--features K [--where ...]``: the check's tensors go into the weights file (the model's
    own tensors and the file's metadata unchanged), the card gets ``ood.features`` fitted on
    the nets that meet the condition, and the processor loads with a check that flags what an
    independently fitted profile flags."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from dwscli.data.zoo import Zoo
    from dwscli.data.zoo_splits import parse_hold_out, record_matcher
    from dwscli.nn.models import pooled_features
    from dwscli.processors.feature_ood import fit_feature_profile, flagged

    zoo = Zoo.open(da_zoo)
    card_path = _write_processor(tmp_path, "late", "accuracy", zoo.spec)
    weights = card_path.with_suffix(".safetensors")
    before_tensors = load_file(str(weights))
    with safe_open(str(weights), "pt") as handle:
        before_metadata = handle.metadata()
    before_card = yaml.safe_load(card_path.read_text())
    key = "test_acc"
    values = sorted(r["metrics"][key] for r in zoo.records("train"))
    where = f"{key}={values[len(values) // 3]}.."  # about two thirds of the nets
    matches = record_matcher(parse_hold_out(where, "test"))
    kept = {
        split: [r["id"] for r in zoo.records(split) if matches(r)] for split in ("train", "val")
    }
    assert 2 <= len(kept["train"]) < len(zoo.ids("train"))

    script = _calibrate_script()
    args = [str(card_path), str(da_zoo), "--features", "3", "--where", where]
    text = card_path.read_text()
    assert script.main(args) == 1  # it goes beside a weights check, and there is none yet
    assert "the card has none" in capsys.readouterr().err
    assert card_path.read_text() == text
    assert script.main([str(card_path), str(da_zoo)]) == 0
    before_card = yaml.safe_load(card_path.read_text())
    assert script.main(args) == 0, capsys.readouterr().err
    after = yaml.safe_load(card_path.read_text())
    section = after["ood"].pop("features")
    assert after == before_card  # nothing else changed
    assert section["components"] == 3 and section["fitted_on"]["where"] == where
    assert section["fitted_on"]["nets"] == len(kept["train"])
    tensors = load_file(str(weights))
    assert all(torch.equal(tensors[k], v) for k, v in before_tensors.items())
    with safe_open(str(weights), "pt") as handle:
        assert handle.metadata() == before_metadata

    processor = load_processor(str(card_path))
    assert processor.feature_ood is not None
    embed = pooled_features(processor.model)
    assert embed is not None
    with torch.no_grad():
        train, val = embed(zoo.get(kept["train"])), embed(zoo.get(kept["val"]))
        every = embed(zoo.get(zoo.ids("test")))
    independent = fit_feature_profile(train, val, 3)
    assert processor.feature_ood.threshold == independent.threshold
    assert torch.equal(flagged(processor.feature_ood, every), flagged(independent, every))


def test_calibrate_script_refuses_a_feature_check_for_an_editor(
    tmp_path: Path, small_inr_zoo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dwscli.data.zoo import Zoo

    zoo = Zoo.open(small_inr_zoo)
    card_path = _write_processor(tmp_path, "editor", "inr-edit", zoo.spec)
    text = card_path.read_text()
    assert _calibrate_script().main([str(card_path), str(small_inr_zoo), "--features", "2"]) == 1
    assert "has no pooled features to check" in capsys.readouterr().err
    assert card_path.read_text() == text
    with pytest.raises(SystemExit):  # --where without --features would be silently unused
        _calibrate_script().main([str(card_path), str(small_inr_zoo), "--where", "psnr=25.."])
    assert "it needs --features" in capsys.readouterr().err

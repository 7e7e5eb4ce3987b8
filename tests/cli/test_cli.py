"""The ``dws`` command line: startup speed, output streams, errors, and each command."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dwscli import __version__
from dwscli.cli.app import app
from dwscli.examples import example_path, list_examples
from dwscli.paths import expand_paths
from dwscli.weights.checkpoint import load_checkpoint
from dwscli.weights.functional import mlp_forward

REPO = Path(__file__).resolve().parents[2]


def dws(*args: str, stdin: str | None = None):
    """Run ``dws ARGS`` in-process, stdout and stderr kept apart."""
    return CliRunner().invoke(app, list(args), input=stdin)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines, "nothing on stderr"
    assert lines[0].startswith("error: "), result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def siren() -> Path:
    return example_path("tiny-siren")


# ---------------------------------------------------------------------------------------------
# startup: fast, and no torch


def test_examples_are_shipped_and_small() -> None:
    expected = {"fmnist-mlp", "fmnist-inr", "mnist-inr", "sine-inr", "tiny-relu", "tiny-siren"}
    assert set(list_examples()) == expected
    for name in list_examples():
        assert example_path(name).stat().st_size < 64_000


def test_trained_examples_do_what_their_metadata_says(mnist_test_head) -> None:
    """The classifier example reaches its recorded accuracy; the INR renders its digit."""
    from dwscli.data.classifier_train import ImageData, accuracy, preprocess
    from dwscli.data.datasets import load_dataset
    from dwscli.data.zoo_make import dataset_statistics
    from dwscli.weights.checkpoint import load_checkpoint
    from dwscli.weights.inr import InrConventions, psnr, render

    classifier = load_checkpoint(example_path("fmnist-mlp"))
    mean, std = dataset_statistics("fashion-mnist")
    test = load_dataset("fashion-mnist", "test")
    data = ImageData(preprocess(test.float_images(), 2, mean, std), test.labels)
    measured = float(accuracy(classifier.space, data)[0])
    assert abs(measured - float(classifier.metadata["test_acc"])) < 1e-3 and measured > 0.8
    inr = load_checkpoint(example_path("mnist-inr"))
    image = render(inr.space, InrConventions.from_metadata(inr.metadata))
    source = mnist_test_head.float_images()[:1]  # the example draws the first test digit
    assert float(psnr(image, source)[0]) > 30.0


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["inspect", "--help"]])
def test_help_and_version_do_not_import_torch(argv: list[str]) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from dwscli.cli.app import main
        try:
            main({argv!r})
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
        heavy = sorted(m for m in ("torch", "numpy", "safetensors") if m in sys.modules)
        print("HEAVY=" + ",".join(heavy))
        """
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "HEAVY=\n" in result.stdout, result.stdout[-300:]


def test_help_and_version_work_as_a_module() -> None:
    """``python -m dwscli`` answers; their speed comes from not importing torch (tested above),
    not from a timed test, which a loaded machine would make flaky."""
    for argv in (["--version"], ["--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "dwscli", *argv], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "dws" in result.stdout


def test_version() -> None:
    result = dws("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dws {__version__}"


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dwscli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == f"dws {__version__}"


@pytest.mark.parametrize("command", ["inspect", "permute", "check-equivariance", "processors"])
def test_every_command_has_examples_in_its_help(command: str) -> None:
    result = dws(command, "--help")
    assert result.exit_code == 0
    assert "Examples" in result.stdout
    assert f"dws {command}" in result.stdout


# ---------------------------------------------------------------------------------------------
# errors and exit codes


def test_usage_error_exits_2() -> None:
    result = dws("inspect", "--no-such-flag", "x")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_missing_argument_exits_2() -> None:
    assert dws("inspect").exit_code == 2
    assert dws("permute", "example:tiny-siren").exit_code == 2  # no -o


def test_unknown_command_exits_2() -> None:
    assert dws("frobnicate").exit_code == 2


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.safetensors"
    text.write_text("this is a text file, not a checkpoint\n" * 20)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    return {"missing": tmp_path / "missing.safetensors", "text": text, "empty": empty}


@pytest.mark.parametrize("kind", ["missing", "text", "empty"])
def test_inspect_bad_file_is_one_line_error(tmp_path: Path, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    result = dws("inspect", str(path))
    assert_one_line_error(result, str(path))
    assert result.stdout == ""


@pytest.mark.parametrize("kind", ["missing", "text", "empty"])
def test_permute_bad_file_is_one_line_error_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    out = tmp_path / "out" / "permuted.safetensors"
    out.parent.mkdir()
    result = dws("permute", str(path), "-o", str(out), "--seed", "1")
    assert_one_line_error(result, str(path))
    assert list(out.parent.iterdir()) == []


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = dws("--debug", "inspect", str(tmp_path / "missing.safetensors"))
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_unexpected_exception_is_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import dwscli.api

    def broken(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(dwscli.api, "processors", broken)
    result = dws("processors")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: internal error") and "boom second line" in lines[0]
    assert "--debug" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(RuntimeError, match="boom"):
        CliRunner().invoke(app, ["--debug", "processors"], catch_exceptions=False)


def test_keyboard_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    import dwscli.api

    def interrupted(*args: object, **kwargs: object) -> list[object]:
        raise KeyboardInterrupt

    monkeypatch.setattr(dwscli.api, "processors", interrupted)
    result = dws("processors")
    assert result.exit_code == 130
    assert "Traceback" not in result.stderr


def test_errors_in_a_real_process_have_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dwscli", "inspect", str(tmp_path / "nope.safetensors")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope.safetensors'}: no such file"
    ]
    assert result.stdout == ""


# ---------------------------------------------------------------------------------------------
# inspect


def test_inspect_table(siren: Path) -> None:
    result = dws("inspect", "example:tiny-siren")
    assert result.exit_code == 0, result.stderr
    assert "2-16-16-1:sine;w0=30" in result.stdout
    assert "337" in result.stdout  # parameters
    assert "float32" in result.stdout
    assert "dws.spec" in result.stdout  # where the activation came from
    assert result.stderr == ""


def test_inspect_json(siren: Path) -> None:
    result = dws("inspect", str(siren), "example:tiny-relu", "--json")
    assert result.exit_code == 0, result.stderr
    infos = json.loads(result.stdout)
    assert [info["spec"] for info in infos] == ["2-16-16-1:sine;w0=30", "4-16-16-3:relu"]
    first = infos[0]
    assert first["path"] == str(siren)
    assert first["depth"] == 3 and first["widths"] == [2, 16, 16, 1]
    assert first["parameters"] == 2 * 16 + 16 + 16 * 16 + 16 + 16 + 1
    assert first["dtypes"] == ["float32"]
    assert first["activation"] == "sine"
    assert first["activation_source"] == "metadata:dws.spec"
    assert first["metadata"]["dws.spec"] == "2-16-16-1:sine;w0=30"
    # the shipped processors whose input depth, widths and activation it has
    assert first["processors"] == ["fmnist-inr-classify-dws", "mnist-inr-classify-dws"]
    assert infos[1]["processors"] == []
    assert [layer["weight"] for layer in first["layout"]["layers"]] == [
        "layers.0.weight",
        "layers.1.weight",
        "layers.2.weight",
    ]


def test_inspect_activation_flag_fills_in_missing_metadata(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    path = tmp_path / "plain.safetensors"
    save_file(model.state_dict(), str(path))
    guessed = json.loads(dws("inspect", str(path), "--json").stdout)[0]
    assert guessed["activation_source"] == "default"
    given = json.loads(dws("inspect", str(path), "--activation", "tanh", "--json").stdout)[0]
    assert given["spec"] == "3-5-2:tanh" and given["activation_source"] == "argument"


def test_inspect_many_paths_skips_bad_ones(tmp_path: Path, siren: Path) -> None:
    bad = _bad_files(tmp_path)
    result = dws("inspect", str(siren), str(bad["text"]), "example:tiny-relu", "--json")
    assert result.exit_code == 1
    specs = [info["spec"] for info in json.loads(result.stdout)]
    assert specs == ["2-16-16-1:sine;w0=30", "4-16-16-3:relu"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(bad["text"]) in errors[0]
    assert "Traceback" not in result.stderr


def test_inspect_many_paths_table(siren: Path) -> None:
    result = dws("inspect", str(siren), "example:tiny-relu")
    assert result.exit_code == 0
    assert "4-16-16-3:relu" in result.stdout and "2-16-16-1:sine;w0=30" in result.stdout


def _copy_examples(folder: Path) -> list[Path]:
    folder.mkdir()
    copies = []
    for i, name in enumerate(["tiny-relu", "tiny-siren", "tiny-relu"]):
        target = folder / f"net{[2, 10, 1][i]}.safetensors"
        target.write_bytes(example_path(name).read_bytes())
        copies.append(target)
    (folder / "notes.txt").write_text("not a checkpoint")
    return copies


def test_inspect_directory_and_glob(tmp_path: Path) -> None:
    folder = tmp_path / "zoo"
    _copy_examples(folder)
    expected = [str(folder / f"net{i}.safetensors") for i in (1, 2, 10)]  # natural order
    by_dir = json.loads(dws("inspect", str(folder), "--json").stdout)
    assert [info["path"] for info in by_dir] == expected
    by_glob = json.loads(dws("inspect", str(folder / "net*.safetensors"), "--json").stdout)
    assert [info["path"] for info in by_glob] == expected


def test_inspect_reads_paths_from_stdin(tmp_path: Path, siren: Path) -> None:
    folder = tmp_path / "zoo"
    _copy_examples(folder)
    stdin = f"{siren}\n\n# a comment\n{folder / 'net2.safetensors'}\nexample:tiny-relu\n"
    result = dws("inspect", "-", "--json", stdin=stdin)
    assert result.exit_code == 0, result.stderr
    paths = [info["path"] for info in json.loads(result.stdout)]
    assert paths == [str(siren), str(folder / "net2.safetensors"), str(example_path("tiny-relu"))]


def test_inspect_empty_directory_and_glob_without_matches(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert_one_line_error(dws("inspect", str(tmp_path / "empty")), "no *.safetensors")
    assert_one_line_error(dws("inspect", str(tmp_path / "*.safetensors")), "no files match")


def test_unknown_example(tmp_path: Path) -> None:
    result = dws("inspect", "example:nope")
    assert_one_line_error(result, "nope")
    assert "tiny-siren" in result.stderr  # the hint lists what exists


def test_expand_paths_api(tmp_path: Path) -> None:
    import io

    folder = tmp_path / "zoo"
    _copy_examples(folder)
    listed = expand_paths(["-", str(folder / "net1*")], stdin=io.StringIO(f"{folder}\n"))
    assert [p.name for p in listed] == [
        "net1.safetensors",
        "net2.safetensors",
        "net10.safetensors",
        "net1.safetensors",
        "net10.safetensors",
    ]
    errors: list[str] = []
    kept = expand_paths(
        [str(tmp_path / "nothing-*.pt"), "example:tiny-siren"],
        on_error=lambda e: errors.append(e.message),
    )
    assert kept == [example_path("tiny-siren")] and len(errors) == 1


# ---------------------------------------------------------------------------------------------
# permute


@pytest.mark.parametrize("name", ["tiny-siren", "tiny-relu"])
def test_permute_preserves_the_function(tmp_path: Path, name: str) -> None:
    out = tmp_path / "permuted.safetensors"
    result = dws("permute", f"example:{name}", "-o", str(out), "--seed", "5", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["output"] == str(out) and report["seed"] == 5
    assert report["max_abs_difference"] < 1e-6

    original = load_checkpoint(example_path(name))
    permuted = load_checkpoint(out)
    assert permuted.spec == original.spec
    assert not all(
        torch.equal(a, b)
        for a, b in zip(original.space.weights, permuted.space.weights, strict=True)
    ), "the weights should change"
    inputs = torch.rand(512, original.spec.input_dim, generator=torch.Generator().manual_seed(0))
    inputs = inputs * 2 - 1
    difference = (mlp_forward(original.space, inputs) - mlp_forward(permuted.space, inputs)).abs()
    assert float(difference.max()) < 1e-6
    assert permuted.metadata["dws.operation"] == "permute"
    assert permuted.metadata["dws.seed"] == "5"
    assert list(permuted.tensors) == list(original.tensors)  # same keys


def test_permute_is_reproducible_by_seed(tmp_path: Path) -> None:
    outputs = [tmp_path / f"{name}.safetensors" for name in ("a", "b", "c")]
    for out, seed in zip(outputs, ("9", "9", "10"), strict=True):
        assert dws("permute", "example:tiny-relu", "-o", str(out), "--seed", seed).exit_code == 0
    a, b, c = (load_checkpoint(out) for out in outputs)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert a.metadata == b.metadata
    assert not all(torch.equal(a.tensors[k], c.tensors[k]) for k in a.tensors)


def test_permute_table_output(tmp_path: Path) -> None:
    result = dws("permute", "example:tiny-siren", "-o", str(tmp_path / "p.safetensors"))
    assert result.exit_code == 0, result.stderr
    assert "function preserved" in result.stdout and "yes" in result.stdout
    assert "wrote" in result.stderr


def test_permute_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    result = dws("permute", "example:tiny-siren", "-o", str(out), "--seed", "1")
    assert_one_line_error(result, "exists")
    assert "--force" in result.stderr
    assert out.read_bytes() == b"keep me"
    forced = dws("permute", "example:tiny-siren", "-o", str(out), "--seed", "1", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert load_checkpoint(out).spec == load_checkpoint(example_path("tiny-siren")).spec


def test_permute_never_writes_over_its_input(tmp_path: Path) -> None:
    source = tmp_path / "net.safetensors"
    source.write_bytes(example_path("tiny-relu").read_bytes())
    before = source.read_bytes()
    result = dws("permute", str(source), "-o", str(source), "--seed", "1")
    assert_one_line_error(result, "input")
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.safetensors"]  # no temp files


def test_permute_keeps_bias_free_layers_bias_free(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 6, bias=False), torch.nn.ReLU(), torch.nn.Linear(6, 2)
    )
    source = tmp_path / "nobias.safetensors"
    save_file(model.state_dict(), str(source))
    out = tmp_path / "permuted.safetensors"
    result = dws("permute", str(source), "-o", str(out), "--seed", "2", "--activation", "relu")
    assert result.exit_code == 0, result.stderr
    permuted = load_checkpoint(out)
    assert sorted(permuted.tensors) == ["0.weight", "2.bias", "2.weight"]
    inputs = torch.randn(64, 3)
    expected = model(inputs)
    assert torch.allclose(mlp_forward(permuted.space, inputs)[0], expected, atol=1e-6)
    info = json.loads(dws("inspect", str(out), "--json").stdout)[0]
    assert info["layout"]["bias_free_layers"] == [0]


def test_permute_wants_one_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "zoo"
    _copy_examples(folder)
    result = dws("permute", str(folder), "-o", str(tmp_path / "p.safetensors"))
    assert_one_line_error(result, "expected one checkpoint")


# ---------------------------------------------------------------------------------------------
# processors and check-equivariance


def test_processors_json_is_an_empty_list_when_none_ship(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dwscli.processors.registry as registry

    monkeypatch.setattr(registry, "PROCESSORS_DIR", tmp_path)
    result = dws("processors", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert "no processors shipped yet" in result.stderr
    result = dws("processors")
    assert result.exit_code == 0
    assert result.stdout == ""


def test_shipped_processors_are_listed_with_their_test_metrics() -> None:
    listed = json.loads(dws("processors", "--json").stdout)
    names = {card["name"] for card in listed}
    assert "fmnist-accuracy" in names
    card = next(c for c in listed if c["name"] == "fmnist-accuracy")
    assert card["metrics"]["test"]["kendall_tau"] > 0.5
    assert "statnn" in card["metrics"]["baselines"]


def test_processor_cards_and_fit(tmp_path: Path) -> None:
    from dwscli.processors.registry import list_processors
    from dwscli.weights.spec import MLPSpec

    (tmp_path / "inr-cls.yaml").write_text(
        "task: inr-classification\nversion: 2\nmodel: {kind: invariant}\n"
        "input: {spec: '2-32-32-1:sine;w0=30', dataset: mnist}\n"
        "metrics: {test: {accuracy: 0.9}}\n"
    )
    (tmp_path / "acc.yaml").write_text(
        "name: acc-pred\ntask: accuracy-prediction\nmodel: {kind: invariant}\n"
        "input: {spec: 4-16-16-3:relu}\n"
    )
    cards = list_processors(tmp_path)
    assert [card.name for card in cards] == ["acc-pred", "inr-cls"]
    siren = load_checkpoint(example_path("tiny-siren")).spec
    assert cards[1].fits(siren)  # hidden widths may differ
    assert not cards[0].fits(siren)
    assert cards[0].fits(MLPSpec.parse("4-64-64-3:relu"))
    assert not cards[0].fits(MLPSpec.parse("4-64-64-3:tanh"))
    assert not cards[0].fits(MLPSpec.parse("4-64-3:relu"))
    assert cards[1].to_dict()["metrics"] == {"test": {"accuracy": 0.9}}


def test_processors_command_lists_cards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dwscli.processors.registry as registry

    (tmp_path / "inr-cls.yaml").write_text(
        "task: inr-classification\nmodel: {kind: invariant}\n"
        "input: {spec: '2-16-16-1:sine;w0=30'}\nmetrics: {test: {accuracy: 0.9}}\n"
    )
    monkeypatch.setattr(registry, "PROCESSORS_DIR", tmp_path)
    listed = json.loads(dws("processors", "--json").stdout)
    assert [(card["name"], card["task"]) for card in listed] == [("inr-cls", "inr-classification")]
    table = dws("processors")
    assert "inr-classification" in table.stdout and "accuracy 0.9" in table.stdout
    inspected = json.loads(dws("inspect", "example:tiny-siren", "--json").stdout)[0]
    assert inspected["processors"] == ["inr-cls"]


def _fake_equivariance(monkeypatch: pytest.MonkeyPatch, passed: bool) -> None:
    """Checks that report ``passed`` (the library's: one passes, one does not when not)."""
    row = {"module": "Fake", "spec": "2-3-1:relu", "kind": "invariant", "max_error": 0.5}

    def self_check(seed: int = 0) -> list[dict]:
        return [{**row, "passed": True}, {**row, "module": "Other", "passed": passed}]

    def check_processor(name_or_path: str, seed: int = 0) -> list[dict]:
        return [{**row, "module": name_or_path, "passed": passed}]

    monkeypatch.setattr("dwscli.nn.equivariance.self_check", self_check)
    monkeypatch.setattr("dwscli.processors.equivariance.check_processor", check_processor)


def test_check_equivariance_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_equivariance(monkeypatch, passed=False)
    failed = dws("check-equivariance")
    assert failed.exit_code == 1 and "Other" in failed.stdout and "FAILED" in failed.stdout
    assert "1 of 2 checks failed" in failed.stderr
    by_name = dws("check-equivariance", "some-processor", "--json")
    assert by_name.exit_code == 1
    assert json.loads(by_name.stdout)[0]["module"] == "some-processor"
    _fake_equivariance(monkeypatch, passed=True)
    assert dws("check-equivariance").exit_code == 0


def test_check_equivariance_of_the_library() -> None:
    result = dws("check-equivariance", "--seed", "1", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows and all(row["passed"] for row in rows)
    assert {row["kind"] for row in rows} <= {"equivariant", "invariant"}
    assert all(row["max_error"] <= 1e-10 for row in rows)


def test_progress_rate_counts_only_this_runs_work(capsys: pytest.CaptureFixture[str]) -> None:
    """A resumed zoo run skips finished shards: they move the bar but not the rate (regression:
    the rate and ETA counted them as if made in the first second)."""
    import re
    import time

    from dwscli.cli.output import progress_bar

    with progress_bar(100, "nets") as advance:
        advance.skip(90)
        time.sleep(0.2)
        advance(10)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    rate = float(re.search(r"([\d.]+) nets/s", line).group(1))
    assert "100/100" in line and 10 < rate <= 10 / 0.2 + 1e-6

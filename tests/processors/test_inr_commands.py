"""dws classify, dws edit and dws embed through the CLI, with small random processors made here.

The processors are real DWSNets (built through the trainer's arch registry, random weights)
written with the trainer's card writer; the INRs are random SIRENs with INR metadata. What is
checked is what the commands promise whatever the weights: invariance (classify, embed) and
equivariance (edit) under random hidden permutations, file formats, and the refusals.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import safetensors
import torch

from dwscli import api
from dwscli.cli.app import main
from dwscli.data.zoo import conventions_metadata
from dwscli.image_edits import edit_images
from dwscli.nn.archs import get_arch
from dwscli.nn.models import DWSNetConfig
from dwscli.processors import registry
from dwscli.train.card import write_processor
from dwscli.weights.checkpoint import load_checkpoint, save_checkpoint, save_space
from dwscli.weights.inr import InrConventions, render
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import apply_permutation, random_permutation

IMAGE_SPEC = MLPSpec.parse("2-8-8-1:sine;w0=30")
SINE_SPEC = MLPSpec.parse("1-8-8-1:sine;w0=30")
IMAGE_CONVENTIONS = {
    "grid": [8, 8],
    "coord_range": [-1.0, 1.0],
    "output_scale": 0.5,
    "output_offset": 0.5,
}
SINE_CONVENTIONS = {
    "coord_range": [-math.pi, math.pi],
    "net_input_range": [-1.0, 1.0],
    "points": 200,
}
OPTIONS = DWSNetConfig(hidden_channels=4, num_layers=2, head_hidden=[8], output_init_scale=1.0)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
EMBED_DIM = 4


# ------------------------------------------------------------------------------------------
# helpers


def _processor(
    directory: Path,
    name: str,
    task: str,
    spec: MLPSpec = IMAGE_SPEC,
    *,
    out_features: int = 10,
    dataset: str = "mnist",
    conventions: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """A processor card + weights following the contract of the INR tasks."""
    arch = get_arch("dws")
    kind = "equivariant" if task == "inr-edit" else "invariant"
    torch.manual_seed(0)
    model = arch.build(spec, kind, OPTIONS, out_features)
    arch.fit_normalizer(
        model, WeightSpace.random(spec, 16, generator=torch.Generator().manual_seed(3))
    )
    card = {
        "name": name,
        "version": "1",
        "task": task,
        **(extra or {}),
        "model": {"kind": kind, "arch": "dws", "config": arch.card_config(OPTIONS, out_features)},
        "input": {
            "spec": str(spec),
            "widths": list(spec.widths),
            "activation": spec.activation,
            "zoo_kind": "inr",
            "dataset": dataset,
            "conventions": IMAGE_CONVENTIONS if conventions is None else conventions,
        },
    }
    card_path, _ = write_processor(directory, name, card, model)
    return card_path


def _classifier(
    directory: Path, name: str = "clf", dataset: str = "mnist", default_for: dict | None = None
) -> Path:
    extra: dict = {"output": {"type": "logits", "classes": 10, "target": "labels.label"}}
    if default_for is not None:
        extra["default_for"] = default_for
    return _processor(directory, name, "inr-classify", dataset=dataset, extra=extra)


def _editor(directory: Path, name: str = "dilate") -> Path:
    extra = {"edit": {"op": "dilate", "size": 3}, "output": {"type": "weights"}}
    return _processor(directory, name, "inr-edit", out_features=1, extra=extra)


def _embedder(directory: Path, name: str = "emb") -> Path:
    return _processor(
        directory,
        name,
        "embed",
        SINE_SPEC,
        out_features=EMBED_DIM,
        dataset=None,
        conventions=SINE_CONVENTIONS,
        extra={"output": {"type": "embedding", "dim": EMBED_DIM}},
    )


def _inrs(
    directory: Path,
    count: int,
    *,
    spec: MLPSpec = IMAGE_SPEC,
    conventions: dict | None = None,
    seed: int = 1,
    **metadata: str,
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    conventions = IMAGE_CONVENTIONS if conventions is None else conventions
    paths = []
    for k in range(count):
        space = WeightSpace.random(spec, 1, generator=generator)
        meta = {
            **conventions_metadata(conventions),
            "dws.zoo.label.label": str(k % 10),
            "a": f"{0.5 + 1.7 * k:.3f}",
            **metadata,
        }
        path = directory / f"inr{k}.safetensors"
        save_space(path, space, metadata=meta)
        paths.append(path)
    return paths


def _permuted_copies(paths: list[Path], directory: Path, seed: int = 7) -> list[Path]:
    """Each net with random hidden permutations (same function, same metadata)."""
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    out = []
    for path in paths:
        checkpoint = load_checkpoint(path)
        perm = random_permutation(checkpoint.space, generator)
        target = directory / path.name
        save_space(target, apply_permutation(checkpoint.space, perm), metadata=checkpoint.metadata)
        out.append(target)
    return out


def _run(args: list, capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``dws ARGS`` in this process (paths may be Path objects)."""
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    captured = capfd.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _check_png(path: Path) -> tuple[int, int]:
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.load()
        return image.size


@pytest.mark.parametrize("command", ["classify", "edit", "embed"])
def test_help_has_examples(command: str, capfd) -> None:
    code, out, _ = _run([command, "--help"], capfd)
    assert code == 0 and "Examples" in out and f"dws {command}" in out


# ------------------------------------------------------------------------------------------
# classify


def test_classify_is_invariant_to_hidden_permutations(tmp_path, capfd) -> None:
    card = _classifier(tmp_path / "procs", dataset="fashion-mnist")
    paths = _inrs(tmp_path / "inrs", 5)
    permuted = _permuted_copies(paths, tmp_path / "permuted")
    args = ["-p", str(card), "--top-k", "3", "--json"]
    code, out, _ = _run(["classify", str(tmp_path / "inrs"), *args], capfd)
    assert code == 0
    rows = json.loads(out)
    code, out, _ = _run(["classify", *map(str, permuted), *args], capfd)
    again = json.loads(out)
    assert [Path(r["path"]).name for r in rows] == [p.name for p in paths]  # input order
    for a, b in zip(rows, again):
        assert a["class"] == b["class"]
        for x, y in zip(a["top_k"], b["top_k"]):
            assert x["class"] == y["class"]
            assert x["probability"] == pytest.approx(y["probability"], abs=1e-5)
    row = rows[0]
    assert len(row["top_k"]) == 3 and row["top_k"][0]["class"] == row["class"]
    probabilities = [c["probability"] for c in row["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < probabilities[0] <= 1
    # Fashion-MNIST class names, and the true label from the metadata as a name
    assert row["class"] == FASHION_CLASSES[row["class_index"]]
    assert rows[1]["label"] == "Trouser"
    assert len({tuple(c["probability"] for c in r["top_k"]) for r in rows}) > 1  # not constant
    code, out, _ = _run(["classify", str(tmp_path / "inrs"), "-p", str(card), "--csv"], capfd)
    lines = list(csv.reader(out.splitlines()))
    assert lines[0][:5] == ["path", "processor", "class", "class_index", "probability"]
    assert [Path(line[0]).name for line in lines[1:]] == [p.name for p in paths]


def test_classify_picks_the_shipped_classifier_by_dataset(tmp_path, capfd, monkeypatch) -> None:
    shipped = tmp_path / "shipped"
    mnist_default = {"task": "inr-classify", "dataset": "mnist", "fallback": True}
    _classifier(shipped, "mnist-inr-classify", "mnist", default_for=mnist_default)
    fashion_default = {"task": "inr-classify", "dataset": "fashion-mnist"}
    _classifier(shipped, "fmnist-inr-classify", "fashion-mnist", default_for=fashion_default)
    monkeypatch.setattr(registry, "PROCESSORS_DIR", shipped)
    mnist = _inrs(tmp_path / "a", 2, **{"dws.zoo.dataset": "mnist"})
    fashion = _inrs(tmp_path / "b", 2, **{"dws.zoo.dataset": "fashion-mnist"})
    bare = _inrs(tmp_path / "c", 1)  # no dataset recorded: the MNIST classifier
    order = [mnist[0], fashion[0], bare[0], fashion[1], mnist[1]]
    code, out, err = _run(["classify", *map(str, order), "--json"], capfd)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["path"] for r in rows] == [str(p) for p in order]
    assert [r["processor"] for r in rows] == [
        "mnist-inr-classify",
        "fmnist-inr-classify",
        "mnist-inr-classify",
        "fmnist-inr-classify",
        "mnist-inr-classify",
    ]
    # the Python API does the same, from path items
    assert [r["processor"] for r in api.classify([str(p) for p in fashion])] == [
        "fmnist-inr-classify"
    ] * 2


def test_classify_picks_the_default_classifier_that_takes_the_inrs_architecture(
    tmp_path, capfd, monkeypatch
) -> None:
    """Two shipped MNIST classifiers for INRs of different depths: each INR goes to the one
    that accepts it, whichever comes first by name."""
    shipped = tmp_path / "shipped"
    deep = MLPSpec.parse("2-8-8-8-1:sine;w0=30")
    mnist_default = {"task": "inr-classify", "dataset": "mnist"}
    _processor(
        shipped,
        "mnist-inr-classify",
        "inr-classify",
        deep,
        extra={"default_for": mnist_default, "output": {"type": "logits", "classes": 10}},
    )
    _classifier(shipped, "mnist-inr-classify-dws", "mnist", default_for=mnist_default)
    monkeypatch.setattr(registry, "PROCESSORS_DIR", shipped)
    shallow_inrs = _inrs(tmp_path / "a", 2, **{"dws.zoo.dataset": "mnist"})
    deep_inrs = _inrs(tmp_path / "b", 2, spec=deep, **{"dws.zoo.dataset": "mnist"})
    order = [shallow_inrs[0], deep_inrs[0], deep_inrs[1], shallow_inrs[1]]
    code, out, err = _run(["classify", *map(str, order), "--json"], capfd)
    assert code == 0, err
    assert [r["processor"] for r in json.loads(out)] == [
        "mnist-inr-classify-dws",
        "mnist-inr-classify",
        "mnist-inr-classify",
        "mnist-inr-classify-dws",
    ]


def test_no_default_processor_is_one_setup_error(tmp_path, capfd, monkeypatch) -> None:
    """Without a shipped card that is the default for the request, each command says so once
    and how to name a processor instead."""
    (tmp_path / "nothing-shipped").mkdir()
    monkeypatch.setattr(registry, "PROCESSORS_DIR", tmp_path / "nothing-shipped")
    paths = _inrs(tmp_path / "inrs", 3)
    code, _, err = _run(["classify", str(tmp_path / "inrs")], capfd)
    assert code == 1
    assert len(_errors(err)) == 1  # one setup error, not one per file
    assert "no shipped processor does inr-classify" in err and "pass -p PROCESSOR" in err
    out = tmp_path / "o.safetensors"
    code, _, err = _run(["edit", str(paths[0]), "--op", "dilate", "-o", str(out)], capfd)
    assert code == 1 and "no shipped processor does inr-edit with op dilate" in err
    code, _, err = _run(["edit", str(paths[0]), "--op", "blur", "-o", str(out)], capfd)
    assert code == 1 and "unknown edit op 'blur'" in err and "dilate" in err
    code, _, err = _run(["embed", str(paths[0]), "-o", str(tmp_path / "e.npy")], capfd)
    assert code == 1 and "no shipped processor does embed" in err
    assert not out.exists() and not (tmp_path / "e.npy").exists()


# ------------------------------------------------------------------------------------------
# edit


def test_edit_is_equivariant_and_keeps_the_checkpoint_format(tmp_path, capfd) -> None:
    card = _editor(tmp_path / "procs")
    (path,) = _inrs(tmp_path / "inrs", 1, **{"dws.zoo.id": "mnist-inr-000001"})
    checkpoint = load_checkpoint(path)
    perm = random_permutation(checkpoint.space, torch.Generator().manual_seed(5))
    permuted_path = tmp_path / "permuted.safetensors"
    save_space(
        permuted_path, apply_permutation(checkpoint.space, perm), metadata=checkpoint.metadata
    )
    out_a, out_b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    code, _, err = _run(
        ["edit", str(path), "-p", str(card), "--op", "dilate", "-o", str(out_a)], capfd
    )
    assert code == 0, err
    assert _run(["edit", str(permuted_path), "-p", str(card), "-o", str(out_b)], capfd)[0] == 0
    edited, edited_permuted = load_checkpoint(out_a), load_checkpoint(out_b)
    expected = apply_permutation(edited.space, perm)
    assert torch.allclose(expected.flatten(), edited_permuted.space.flatten(), atol=1e-5)
    assert not torch.allclose(edited.space.flatten(), checkpoint.space.flatten(), atol=1e-3)
    assert edited.layout.tensor_keys() == checkpoint.layout.tensor_keys()
    assert edited.layout.dtypes == checkpoint.layout.dtypes
    meta = edited.metadata
    assert meta["inr.grid"] == "8x8" and meta["dws.zoo.id"] == "mnist-inr-000001"
    assert meta["dws.operation"] == "edit" and meta["dws.edit_op"] == "dilate"
    assert meta["dws.processor"] == "dilate" and meta["dws.processor_version"] == "1"
    # the processor's card says dilate: asking it for another op is refused
    other = tmp_path / "c.safetensors"
    code, _, err = _run(["edit", path, "-p", card, "--op", "erode", "-o", other], capfd)
    assert code == 1 and "does the edit 'dilate', not 'erode'" in err


def test_edit_out_dir_and_preview(tmp_path, capfd) -> None:
    card = _editor(tmp_path / "procs")
    paths = _inrs(tmp_path / "inrs", 3)
    preview = tmp_path / "grid.png"
    args = ["edit", tmp_path / "inrs", "-p", card, "--out-dir", tmp_path / "out"]
    code, out, err = _run([*args, "--preview", preview, "--json"], capfd)
    assert code == 0, err
    rows = json.loads(out)
    assert [Path(r["output"]).name for r in rows] == [p.name for p in paths]
    width, height = _check_png(preview)
    # 3 columns (input | output | pixel-edited input) x 3 rows of 8x8 tiles, 2 px gaps, scale 4
    assert (width, height) == (4 * (3 * 10 - 2), 4 * (3 * 10 - 2))
    from PIL import Image

    pixels = torch.tensor(np.asarray(Image.open(preview)), dtype=torch.float32)[::4, ::4] / 255
    before = render(load_checkpoint(paths[0]).space, InrConventions(8, 8))[0]
    reference = edit_images(before[None], "dilate", size=3)[0]
    assert torch.allclose(pixels[:8, :8], before, atol=1 / 255 + 1e-6)  # first tile: the input
    assert torch.allclose(pixels[:8, 20:28], reference, atol=1 / 255 + 1e-6)  # third: reference
    # outputs and preview are never written over without --force
    code, _, err = _run(["edit", str(paths[0]), "-p", str(card), "-o", str(paths[0])], capfd)
    assert code == 1 and "input checkpoint" in err
    args = ["edit", paths[0], "-p", card, "-o", tmp_path / "x.safetensors"]
    code, _, err = _run([*args, "--preview", paths[1]], capfd)
    assert code == 1 and ".png" in err


# ------------------------------------------------------------------------------------------
# embed


def _read_all_formats(base: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    npy = np.load(base.with_suffix(".npy"))
    npy_paths = base.with_suffix(".paths.txt").read_text().splitlines()
    with open(base.with_suffix(".csv"), newline="") as handle:
        table = list(csv.reader(handle))
    csv_paths = [row[0] for row in table[1:]]
    csv_values = np.array([[float(v) for v in row[1:]] for row in table[1:]], dtype=np.float32)
    lines = [json.loads(line) for line in base.with_suffix(".jsonl").read_text().splitlines()]
    with safetensors.safe_open(str(base.with_suffix(".safetensors")), "np") as handle:
        st_values = handle.get_tensor("embeddings")
        st_paths = json.loads(handle.metadata()["paths"])
    assert table[0] == ["path", *(f"e{k}" for k in range(npy.shape[1]))]
    return {
        "npy": (npy_paths, npy),
        "csv": (csv_paths, csv_values),
        "jsonl": (
            [r["path"] for r in lines],
            np.array([r["embedding"] for r in lines], np.float32),
        ),
        "safetensors": (st_paths, st_values),
    }


def test_embed_formats_round_trip_and_are_invariant(tmp_path, capfd) -> None:
    card = _embedder(tmp_path / "procs")
    conventions = {**SINE_CONVENTIONS, "points": 50}  # how densely a zoo fitted: not checked
    paths = _inrs(tmp_path / "sines", 5, spec=SINE_SPEC, conventions=conventions)
    permuted = _permuted_copies(paths, tmp_path / "permuted")
    results = {}
    for name, source in (("a", [str(tmp_path / "sines")]), ("b", list(map(str, permuted)))):
        for suffix in (".npy", ".csv", ".jsonl", ".safetensors"):
            out = tmp_path / f"{name}{suffix}"
            code, stdout, err = _run(["embed", *source, "-p", card, "-o", out, "--json"], capfd)
            assert code == 0, err
            summary = json.loads(stdout)
            assert summary["rows"] == 5 and summary["dim"] == EMBED_DIM
            assert summary["source"] == "output"
        results[name] = _read_all_formats(tmp_path / name)
    reference_paths, reference = results["a"]["npy"]
    assert reference_paths == [str(p) for p in paths]  # input order
    assert reference.shape == (5, EMBED_DIM) and reference.dtype == np.float32
    assert np.ptp(reference, axis=0).max() > 1e-4  # rows differ
    for fmt, (fmt_paths, values) in results["a"].items():
        assert fmt_paths == reference_paths, fmt
        np.testing.assert_allclose(values, reference, rtol=1e-6, atol=1e-7, err_msg=fmt)
    permuted_paths, permuted_values = results["b"]["jsonl"]
    assert permuted_paths == [str(p) for p in permuted]
    np.testing.assert_allclose(permuted_values, reference, atol=1e-5)
    # the same through the Python API
    summary = api.embed(str(tmp_path / "sines"), tmp_path / "api.csv", processor=str(card))
    assert summary["rows"] == 5 and Path(summary["files"][0]).is_file()


def test_any_invariant_processor_embeds_with_pooled_features(tmp_path, capfd) -> None:
    card = _classifier(tmp_path / "procs")
    _inrs(tmp_path / "inrs", 4)
    out = tmp_path / "emb.npy"
    code, stdout, err = _run(["embed", tmp_path / "inrs", "-p", card, "-o", out, "--json"], capfd)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["source"] == "pooled features"
    assert summary["dim"] != 10 and np.load(out).shape == (4, summary["dim"])  # not the logits
    editor = _editor(tmp_path / "procs")
    code, _, err = _run(["embed", tmp_path / "inrs", "-p", editor, "-o", tmp_path / "x.npy"], capfd)
    assert code == 1 and "needs an invariant processor" in err


def test_embed_tsne_plot_is_a_png(tmp_path, capfd) -> None:
    card = _embedder(tmp_path / "procs")
    paths = _inrs(tmp_path / "sines", 7, spec=SINE_SPEC, conventions=SINE_CONVENTIONS)
    for key in ("a", "label"):  # numeric colour bar; categories (dws.zoo.label.label) legend
        plot = tmp_path / f"tsne-{key}.png"
        args = ["embed", tmp_path / "sines", "-p", card, "-o", tmp_path / f"{key}.csv"]
        code, _, err = _run([*args, "--plot", str(plot), "--color-by", key], capfd)
        assert code == 0, err
        width, height = _check_png(plot)
        assert width > 100 and height > 100
    two = ["embed", *paths[:2], "-p", card, "-o", tmp_path / "two.npy"]
    code, _, err = _run([*two, "--plot", tmp_path / "two.png"], capfd)
    assert code == 1 and "at least 3" in err
    assert not (tmp_path / "two.npy").exists() and not (tmp_path / "two.png").exists()
    args = ["embed", tmp_path / "sines", "-p", card, "-o", tmp_path / "k.npy"]
    code, _, err = _run([*args, "--plot", tmp_path / "k.png", "--color-by", "nope"], capfd)
    assert code == 1 and "'nope'" in err and len(_errors(err)) == 1
    code, _, err = _run(["embed", tmp_path / "sines", "-p", card, "-o", tmp_path / "e.txt"], capfd)
    assert code == 1 and ".npy, .csv, .jsonl, .safetensors" in err


# ------------------------------------------------------------------------------------------
# refusals


def test_bad_inputs_are_reported_and_skipped(tmp_path, capfd) -> None:
    card = _classifier(tmp_path / "procs")
    good = _inrs(tmp_path / "inrs", 2)
    (tmp_path / "inrs" / "broken.safetensors").write_text("not a checkpoint")
    deep = WeightSpace.random(MLPSpec.parse("2-8-8-8-1:sine;w0=30"))
    save_space(tmp_path / "inrs" / "deep.safetensors", deep)
    code, out, err = _run(["classify", str(tmp_path / "inrs"), "-p", str(card), "--json"], capfd)
    assert code == 1
    assert sorted(Path(r["path"]).name for r in json.loads(out)) == sorted(p.name for p in good)
    errors = _errors(err)
    assert len(errors) == 2 and any("broken.safetensors" in line for line in errors)
    assert any("deep" in line and "expects 2-*-*-1:sine" in line for line in errors)
    code, _, err = _run(["classify", str(tmp_path / "inrs"), "-p", str(card), "--fail-fast"], capfd)
    assert code == 1 and len(_errors(err)) == 1
    # -o names one file: refused with many inputs, before anything is written
    editor = _editor(tmp_path / "procs")
    code, _, err = _run(["edit", *good, "-p", editor, "-o", tmp_path / "o.safetensors"], capfd)
    assert code == 1 and "--out-dir" in err and not (tmp_path / "o.safetensors").exists()
    code, _, err = _run(["edit", str(good[0]), "-p", str(editor)], capfd)
    assert code == 2 and "exactly one of -o OUT and --out-dir DIR" in err


def test_inr_conventions_mismatch_is_an_error_unless_forced(tmp_path, capfd) -> None:
    card = _classifier(tmp_path / "procs")
    shifted = {**IMAGE_CONVENTIONS, "coord_range": [0.0, 1.0]}
    (path,) = _inrs(tmp_path / "shifted", 1, conventions=shifted)
    code, _, err = _run(["classify", str(path), "-p", str(card)], capfd)
    assert code == 1
    (line,) = _errors(err)
    assert str(path) in line and "inr.coord_range is 0.0,1.0" in line and "-1.0,1.0" in line
    assert "--force" in err
    code, out, err = _run(["classify", str(path), "-p", str(card), "--force", "--json"], capfd)
    assert code == 0 and len(json.loads(out)) == 1
    # w0 is part of the conventions too
    other_w0 = MLPSpec.parse("2-8-8-1:sine;w0=10")
    (w0_path,) = _inrs(tmp_path / "w0", 1, spec=other_w0)
    code, _, err = _run(["classify", str(w0_path), "-p", str(card)], capfd)
    assert code == 1 and "w0 is 10" in err and "expects w0 30" in err
    assert _run(["classify", str(w0_path), "-p", str(card), "-f"], capfd)[0] == 0
    # a checkpoint without inr.* metadata is taken to follow the processor's conventions
    bare = tmp_path / "bare.safetensors"
    save_space(bare, WeightSpace.random(IMAGE_SPEC, 1))
    assert _run(["classify", str(bare), "-p", str(card)], capfd)[0] == 0


# ------------------------------------------------------------------------------------------
# the shipped processor, on real held-out INRs

ZOO = Path(__file__).resolve().parents[2] / "zoos" / "mnist-inr"


def _held_out_inrs(directory: Path, example: str = "mnist-inr", zoo_dir: Path = ZOO) -> list[Path]:
    """``example:<example>`` (a test image) and, when the zoo is here, 32 of its test nets."""
    from dwscli.examples import example_path

    paths = [example_path(example)]
    if (zoo_dir / "zoo.json").is_file():  # the zoo is not part of the repository (CI has none)
        from dwscli.data.zoo import Zoo

        zoo = Zoo.open(zoo_dir)
        paths += zoo.export(zoo.splits["test"][:32], directory)
    return paths


@pytest.mark.parametrize("op", ["dilate", "erode"])
def test_shipped_edit_renders_closer_to_the_edited_image(op: str, tmp_path, capfd) -> None:
    """``dws edit --op OP`` with the shipped ``mnist-inr-OP``: the example (and, when the zoo is
    here, 32 held-out test INRs) render closer to their edited images than before."""
    card = registry.default_processor("inr-edit", op=op)  # a missing one fails here
    assert card.name == f"mnist-inr-{op}" and card.edit is not None and card.edit["op"] == op
    params = {k: v for k, v in card.edit.items() if k != "op"}
    paths = _held_out_inrs(tmp_path / "held-out")
    out_dir = tmp_path / "edited"
    code, _, err = _run(["edit", *paths, "--op", op, "--out-dir", out_dir], capfd)
    assert code == 0, err
    edited_errors, input_errors = [], []
    for path in paths:
        source = load_checkpoint(path)
        conventions = InrConventions.from_metadata(source.metadata)
        before = render(source.space.to("cpu", torch.float32), conventions)
        target = edit_images(before, op, **params)
        after = render(
            load_checkpoint(out_dir / path.name).space.to("cpu", torch.float32), conventions
        )
        edited_errors.append(float((after - target).pow(2).mean()))
        input_errors.append(float((before - target).pow(2).mean()))
    assert edited_errors[0] < input_errors[0]  # the example itself
    assert np.mean(edited_errors) < np.mean(input_errors)


@pytest.mark.parametrize(
    ("processor", "example", "zoo_name", "index", "least"),
    [
        ("mnist-inr-classify", "mnist-inr", "mnist-inr", 7, 0.8),  # a 7; test accuracy 95 %
        ("fmnist-inr-classify", "fmnist-inr", "fmnist-inr", 9, 0.6),  # an ankle boot; 78 %
    ],
)
def test_shipped_classifier_reads_the_image_and_ignores_permutations(
    processor: str, example: str, zoo_name: str, index: int, least: float, tmp_path, capfd
) -> None:
    """The example INR (test image 0 of its data set) is picked up by its data set's shipped
    classifier and read right; a permuted copy gets the same answer; when the zoo is here, 32
    of its test INRs are mostly right too."""
    from dwscli.examples import example_path

    assert registry.find_processor(processor).weights_path.is_file()  # shipped, not skipped
    source = load_checkpoint(example_path(example))
    permuted = tmp_path / "permuted.safetensors"
    generator = torch.Generator().manual_seed(3)
    space = apply_permutation(source.space, random_permutation(source.space, generator))
    save_checkpoint(permuted, source, space=space)
    held_out = _held_out_inrs(tmp_path / "held-out", example, ZOO.parent / zoo_name)
    paths = [*held_out, permuted]
    code, out, err = _run(["classify", *map(str, paths), "--json"], capfd)
    assert code == 0, err
    rows = json.loads(out)
    assert {r["processor"] for r in rows} == {processor}
    assert rows[0]["class_index"] == index and rows[-1]["class_index"] == index
    assert abs(rows[0]["probability"] - rows[-1]["probability"]) < 1e-5
    labelled = [r for r in rows[1:-1] if r.get("label") is not None]
    if labelled:  # the zoo's test INRs, when the zoo is here
        hits = sum(r["class"] == r["label"] for r in labelled)
        assert hits >= least * len(labelled)

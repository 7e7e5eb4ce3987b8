"""Hostile zoos: ids from an edited manifest must never become paths outside the output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.data.zoo import Zoo, ZooWriter
from dwscli.errors import DwsError
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

SPEC = MLPSpec.parse("2-4-1:sine;w0=30")
CONVENTIONS = {
    "coord_range": [-1, 1],
    "grid": [4, 4],
    "w0": 30,
    "output_scale": 0.5,
    "output_offset": 0.5,
}


def tiny_zoo(directory: Path) -> Path:
    writer = ZooWriter(
        directory,
        kind="inr",
        spec=SPEC,
        count=4,
        shard_size=4,
        dataset="mnist",
        conventions=CONVENTIONS,
        config={"seed": 0},
        seed=0,
    )
    space = WeightSpace.random(SPEC, 4, generator=torch.Generator().manual_seed(0))
    records = [
        {
            "id": f"n{i}",
            "hparams": {},
            "labels": {"image_index": i, "image_split": "test" if i % 2 else "train"},
            "metrics": {},
        }
        for i in range(4)
    ]
    writer.write_shard(0, space, records)
    writer.finalize()
    return directory


def rename_net(zoo: Path, old: str, new: str) -> None:
    """Edit every file that names a net id, as someone handing out a hostile zoo would."""
    files = [zoo / "manifest.jsonl", zoo / "splits.json", *(zoo / "manifest.d").glob("*.jsonl")]
    for path in files:
        text = path.read_text()
        path.write_text(text.replace(f'"{old}"', f'"{new}"'))


HOSTILE_IDS = ["../../escaped", "/tmp/absolute-escape", "..", ".hidden", "a\\b", "x\nnewline"]


@pytest.mark.parametrize("bad_id", HOSTILE_IDS)
def test_export_refuses_ids_that_are_not_file_names(tmp_path: Path, bad_id: str) -> None:
    zoo_dir = tiny_zoo(tmp_path / "zoo")
    rename_net(zoo_dir, "n1", bad_id.replace("\\", "\\\\").replace("\n", "\\n"))
    zoo = Zoo.open(zoo_dir)
    assert bad_id in zoo.ids("test")
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(DwsError, match="not a plain file name"):
        zoo.export(zoo.ids("test"), out)
    written = [p for p in tmp_path.rglob("*.safetensors") if "zoo" not in p.parts]
    assert written == []
    assert not (tmp_path / "a").exists()


def test_cli_export_refuses_traversal_and_writes_nothing(tmp_path: Path) -> None:
    zoo_dir = tiny_zoo(tmp_path / "zoo")
    rename_net(zoo_dir, "n1", "../../escaped")
    out = tmp_path / "a" / "b" / "out"
    result = CliRunner().invoke(
        app, ["zoo", "export", str(zoo_dir), "--split", "test", "-o", str(out)]
    )
    assert result.exit_code == 1
    assert "not a plain file name" in result.output
    assert "internal error" not in result.output
    assert not (tmp_path / "a" / "escaped.safetensors").exists()
    assert not (tmp_path / "a").exists()


def test_export_refuses_overlong_id(tmp_path: Path) -> None:
    zoo_dir = tiny_zoo(tmp_path / "zoo")
    rename_net(zoo_dir, "n1", "n" * 5000)
    with pytest.raises(DwsError, match="too long"):
        Zoo.open(zoo_dir).export(["n" * 5000], tmp_path / "out")


def test_cli_export_unknown_id_creates_no_directory(tmp_path: Path) -> None:
    zoo_dir = tiny_zoo(tmp_path / "zoo")
    out = tmp_path / "new-dir"
    result = CliRunner().invoke(
        app, ["zoo", "export", str(zoo_dir), "--ids", "nope", "-o", str(out)]
    )
    assert result.exit_code == 1 and "no nets with ids nope" in result.output
    assert not out.exists()


def test_cli_export_to_existing_file_is_one_line_error(tmp_path: Path) -> None:
    zoo_dir = tiny_zoo(tmp_path / "zoo")
    (target := tmp_path / "file").write_text("keep")
    result = CliRunner().invoke(
        app, ["zoo", "export", str(zoo_dir), "--ids", "n0", "-o", str(target)]
    )
    assert result.exit_code == 1
    assert "not a directory" in result.output and "internal error" not in result.output
    assert target.read_text() == "keep"

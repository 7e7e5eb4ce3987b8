"""INR metadata is untrusted: its grid and numbers are checked before anything is allocated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dwscli.cli.app import app
from dwscli.errors import DwsError
from dwscli.examples import example_path
from dwscli.weights.checkpoint import load_checkpoint, save_checkpoint
from dwscli.weights.inr import InrConventions, render


def hostile_inr(directory: Path, **metadata: str) -> Path:
    """The shipped MNIST INR with some ``inr.*`` metadata replaced."""
    checkpoint = load_checkpoint(example_path("mnist-inr"))
    checkpoint.layout.metadata.update({f"inr.{k}": v for k, v in metadata.items()})
    return save_checkpoint(directory / "hostile.safetensors", checkpoint)


BAD_METADATA = [
    ({"grid": "100000x100000"}, "DWS_MAX_INR_PIXELS"),
    ({"grid": "0x0"}, "at least 1x1"),
    ({"grid": "-3x-3"}, "at least 1x1"),
    ({"coord_range": "nan,nan"}, "must be finite"),
    ({"output_scale": "inf"}, "must be finite"),
    ({"output_offset": "-inf"}, "must be finite"),
    ({"output_scale": "0"}, "must not be 0"),
]


@pytest.mark.parametrize(("metadata", "message"), BAD_METADATA)
def test_conventions_refuse_hostile_metadata(metadata: dict[str, str], message: str) -> None:
    with pytest.raises(DwsError, match=message):
        InrConventions.from_metadata({f"inr.{k}": v for k, v in metadata.items()}, source="f")


def test_pixel_limit_is_raised_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DWS_MAX_INR_PIXELS", "100")
    with pytest.raises(DwsError, match="pixel count 784 exceeds the limit of 100"):
        InrConventions.from_metadata({"inr.grid": "28x28"})
    monkeypatch.setenv("DWS_MAX_INR_PIXELS", "1000")
    conventions = InrConventions.from_metadata({"inr.grid": "28x28"})
    space = load_checkpoint(example_path("mnist-inr")).space
    assert render(space, conventions).shape == (1, 28, 28)


@pytest.mark.parametrize(("metadata", "message"), BAD_METADATA)
def test_render_refuses_hostile_metadata(
    tmp_path: Path, metadata: dict[str, str], message: str
) -> None:
    source = hostile_inr(tmp_path, **metadata)
    out = tmp_path / "out.png"
    result = CliRunner().invoke(app, ["render", str(source), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert message in result.output and "internal error" not in result.output
    assert not out.exists()


def test_edit_preview_refuses_huge_grid_before_writing(tmp_path: Path) -> None:
    source = hostile_inr(tmp_path, grid="100000x100000")
    before = source.read_bytes()
    out, preview = tmp_path / "edited.safetensors", tmp_path / "preview.png"
    args = ["edit", str(source), "--op", "dilate", "-o", str(out), "--preview", str(preview)]
    result = CliRunner().invoke(app, [*args, "--force"])
    assert result.exit_code == 1, result.output
    assert "DWS_MAX_INR_PIXELS" in result.output and "internal error" not in result.output
    assert not out.exists() and not preview.exists()
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.safetensors"]


def test_good_inr_still_renders(tmp_path: Path) -> None:
    out = tmp_path / "ok.png"
    result = CliRunner().invoke(app, ["render", str(example_path("mnist-inr")), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0
    assert torch.isfinite(
        render(load_checkpoint(example_path("mnist-inr")).space, InrConventions())
    ).all()

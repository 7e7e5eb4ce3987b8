"""Hostile inputs through the CLI: one-line errors, nothing raw on the terminal, nothing left."""

from __future__ import annotations

from pathlib import Path

import safetensors.torch
import torch
from typer.testing import CliRunner

from dwscli.cli.app import app


def good_state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "0.weight": torch.randn(8, 2, generator=gen),
        "0.bias": torch.randn(8, generator=gen),
        "2.weight": torch.randn(1, 8, generator=gen),
        "2.bias": torch.randn(1, generator=gen),
    }


def write_net(path: Path, metadata: dict[str, str] | None = None) -> Path:
    path.write_bytes(
        safetensors.torch.save(good_state(), metadata=metadata or {"activation": "relu"})
    )
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


# --------------------------------------------------------------------------------------------
# terminal escapes
# --------------------------------------------------------------------------------------------
def test_safe_text_escapes_control_characters() -> None:
    from dwscli.cli.output import safe_text

    assert safe_text("x\x1b[2J.safetensors") == "x\\x1b[2J.safetensors"
    assert safe_text("\x1b]0;title\x07") == "\\x1b]0;title\\x07"
    assert safe_text("a\u202eb") == "a\\u202eb"
    assert safe_text(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\\xe9"
    assert safe_text("plain café, tab\tand newline\n") == "plain café, tab\tand newline\n"


def test_escape_in_file_name_is_not_sent_raw(tmp_path: Path) -> None:
    path = write_net(tmp_path / "x\x1b[2J.safetensors")
    code, output = invoke("inspect", str(path))
    assert code == 0, output
    assert "\x1b" not in output and "x\\x1b[2J.safetensors" in output


def test_escape_in_metadata_is_not_sent_raw(tmp_path: Path) -> None:
    path = write_net(tmp_path / "m.safetensors", {"activation": "relu", "note": "\x1b]0;pwn\x07"})
    code, output = invoke("inspect", str(path))
    assert code == 0, output
    assert "\x1b" not in output and "\x07" not in output
    assert "\\x1b]0;pwn\\x07" in output


def test_escape_in_error_message_is_not_sent_raw(tmp_path: Path) -> None:
    path = tmp_path / "bad\x1b[31m.safetensors"
    path.write_bytes(b"\x00" * 16)
    code, output = invoke("inspect", str(path))
    assert code == 1
    assert "\x1b" not in output and "bad\\x1b[31m.safetensors" in output


def test_json_keeps_the_exact_values(tmp_path: Path) -> None:
    import json

    path = write_net(tmp_path / "m.safetensors", {"activation": "relu", "note": "\x1b]0;pwn\x07"})
    code, output = invoke("inspect", str(path), "--json")
    assert code == 0
    assert json.loads(output)[0]["metadata"]["note"] == "\x1b]0;pwn\x07"
    assert "\x1b" not in output  # JSON escapes control characters itself

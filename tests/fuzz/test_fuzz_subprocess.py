"""A few hostile inputs through a real ``dws`` process: stderr is one line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def deep_header(d: Path) -> list[str]:
    text = b"[" * 100_000
    (p := d / "deep.safetensors").write_bytes(len(text).to_bytes(8, "little") + text)
    return ["inspect", str(p)]


def sparse_tail(d: Path) -> list[str]:
    header = json.dumps(
        {"0.weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]}}
    ).encode()
    (p := d / "tail.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    with open(p, "r+b") as handle:
        handle.truncate(p.stat().st_size + 256 * 1024**2)
    return ["inspect", str(p)]


def alias_bomb(d: Path) -> list[str]:
    text = 'a0: &a0 ["x","x","x","x","x","x","x","x","x"]\n'
    for level in range(1, 9):
        text += f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]\n"
    (p := d / "bomb.yaml").write_text(text + "name: *a8\ntask: accuracy\nzoo: z\n")
    return ["train", str(p)]


def huge_grid(d: Path) -> list[str]:
    import safetensors.torch
    from safetensors import safe_open

    from dwscli.examples import example_path

    with safe_open(str(example_path("mnist-inr")), "pt") as handle:
        state = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        meta = {**handle.metadata(), "inr.grid": "100000x100000"}
    (p := d / "inr.safetensors").write_bytes(safetensors.torch.save(state, metadata=meta))
    return ["render", str(p), "-o", str(d / "out.png")]


def long_name(d: Path) -> list[str]:
    return ["inspect", str(d / ("n" * 5000))]


def escape_name(d: Path) -> list[str]:
    (p := d / "x\x1b[2J.safetensors").write_bytes(b"\x00" * 16)
    return ["inspect", str(p)]


@pytest.mark.parametrize(
    "make", [deep_header, sparse_tail, alias_bomb, huge_grid, long_name, escape_name]
)
def test_hostile_input_in_a_real_process(tmp_path: Path, make) -> None:
    args = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    done = subprocess.run(
        [sys.executable, "-m", "dwscli", *args], capture_output=True, timeout=120, check=False
    )
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 1, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    assert b"\x1b" not in done.stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and len(lines) <= 3, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before

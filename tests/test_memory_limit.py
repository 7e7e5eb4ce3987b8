"""A net too large for the memory at hand is a one-line error before processing, per file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dwscli.cli.app import main
from dwscli.errors import DwsError
from dwscli.nn import streaming
from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet
from dwscli.nn.streaming import MemoryGuard, available_memory_bytes, memory_needed_bytes
from dwscli.weights.checkpoint import save_space
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


def _run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    captured = capfd.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def test_net_over_the_memory_limit_is_a_one_line_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    small = MLPSpec.parse("196-8-8-10:relu")
    wide = MLPSpec.parse("196-256-256-10:relu")
    save_space(tmp_path / "small.safetensors", WeightSpace.random(small, 1))
    save_space(tmp_path / "wide.safetensors", WeightSpace.random(wide, 1))
    model = EquivariantDWSNet(wide, DWSNetConfig(hidden_channels=16, num_layers=3))
    limit = (memory_needed_bytes(model, small) + memory_needed_bytes(model, wide)) // 2
    monkeypatch.setenv("DWS_MEMORY_LIMIT", str(limit))
    code, _out, err = _run(
        [
            "adapt",
            str(tmp_path / "small.safetensors"),
            str(tmp_path / "wide.safetensors"),
            "--out-dir",
            str(tmp_path / "out"),
            "--json",
        ],
        capfd,
    )
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "wide.safetensors" in errors[0] and "MiB" in errors[0]
    assert "Traceback" not in err
    assert (tmp_path / "out" / "small.safetensors").is_file()  # the other file goes on
    assert not (tmp_path / "out" / "wide.safetensors").exists()


def test_memory_limit_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DWS_MEMORY_LIMIT", "3M")
    assert available_memory_bytes() == 3 * 1024**2
    monkeypatch.setenv("DWS_MEMORY_LIMIT", "1000")
    assert available_memory_bytes() == 1000
    monkeypatch.delenv("DWS_MEMORY_LIMIT")
    measured = available_memory_bytes()
    assert measured is None or measured > 0


def test_needed_memory_grows_with_the_net() -> None:
    model = EquivariantDWSNet(
        MLPSpec.parse("196-32-32-10:relu"), DWSNetConfig(hidden_channels=16, num_layers=3)
    )
    narrow = memory_needed_bytes(model, MLPSpec.parse("196-32-32-10:relu"))
    wide = memory_needed_bytes(model, MLPSpec.parse("196-4096-4096-10:relu"))
    params = MLPSpec.parse("196-4096-4096-10:relu").num_parameters
    assert narrow < wide
    assert wide <= 8 * 4 * params + 256 * 1024**2  # bounded, not features × channels


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one each time the memory left is read."""
    reads: list[int] = []
    real = streaming.available_memory_bytes
    monkeypatch.setattr(streaming, "available_memory_bytes", lambda: reads.append(1) or real())
    return reads


def test_memory_guard_refuses_what_check_memory_refuses_reading_memory_less_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small, wide = MLPSpec.parse("196-8-8-10:relu"), MLPSpec.parse("196-256-256-10:relu")
    model = EquivariantDWSNet(wide, DWSNetConfig(hidden_channels=16, num_layers=3))
    limit = (memory_needed_bytes(model, small) + memory_needed_bytes(model, wide)) // 2
    monkeypatch.setenv("DWS_MEMORY_LIMIT", str(limit))
    reads = _count_reads(monkeypatch)
    guard = MemoryGuard(refresh=16)
    for k in range(40):
        guard.check(Path(f"small{k}.safetensors"), model, small)
    assert len(reads) == 3  # checks 0, 16 and 32
    with pytest.raises(DwsError, match=r"wide\.safetensors: a 196-256-256-10"):
        guard.check(Path("wide.safetensors"), model, wide)


def test_memory_guard_notices_memory_running_out(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = MLPSpec.parse("196-256-256-10:relu")
    model = EquivariantDWSNet(wide, DWSNetConfig(hidden_channels=16, num_layers=3))
    needed = memory_needed_bytes(model, wide)
    monkeypatch.setenv("DWS_MEMORY_LIMIT", str(100 * needed))
    guard = MemoryGuard(refresh=8)
    for k in range(3):
        guard.check(Path(f"wide{k}.safetensors"), model, wide)  # plenty left
    monkeypatch.setenv("DWS_MEMORY_LIMIT", str(needed // 2))
    refused = []
    for k in range(3, 3 + 8):
        try:
            guard.check(Path(f"wide{k}.safetensors"), model, wide)
        except DwsError:
            refused.append(k)
    assert refused and refused[0] <= 8  # noticed at the next refresh, at the latest


def test_memory_guard_counts_the_nets_it_admitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Admitted nets stay in memory: what they hold is taken off the memory left, so the guard
    reads it again (and would see it run out) once a net would need more than half of what
    remains, not only every ``refresh`` checks."""
    spec = MLPSpec.parse("196-256-256-10:relu")
    model = EquivariantDWSNet(spec, DWSNetConfig(hidden_channels=2, num_layers=1))
    needed = memory_needed_bytes(model, spec)
    held = 2 * spec.num_parameters * 4
    monkeypatch.setenv("DWS_MEMORY_LIMIT", str(2 * needed + 5 * held))
    reads = _count_reads(monkeypatch)
    guard = MemoryGuard(refresh=1000)
    for k in range(7):
        guard.check(Path(f"net{k}.safetensors"), model, spec)
    # read at the first check, then again once six admitted nets left under 2 x needed
    assert len(reads) == 2

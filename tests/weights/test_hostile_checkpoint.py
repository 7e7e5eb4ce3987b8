"""Hostile checkpoint files: every size the file controls is bounded before memory is committed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from dwscli.errors import DwsError
from dwscli.weights.checkpoint import load_checkpoint


def good_state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "0.weight": torch.randn(8, 2, generator=gen),
        "0.bias": torch.randn(8, generator=gen),
        "2.weight": torch.randn(1, 8, generator=gen),
        "2.bias": torch.randn(1, generator=gen),
    }


def raw_file(path: Path, header: object, data: bytes = b"") -> Path:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)
    return path


def test_sparse_tail_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A valid header and a 1 GB (sparse) tail: refused from the header, in little memory."""
    path = tmp_path / "tail.safetensors"
    path.write_bytes(safetensors.torch.save(good_state()))
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size + 1024**3)
    with pytest.raises(DwsError, match="not fully covered"):
        load_checkpoint(path)
    script = (
        "import resource, sys\n"
        "from dwscli.weights.checkpoint import load_checkpoint\n"
        "from dwscli.errors import DwsError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    load_checkpoint(sys.argv[1])\nexcept DwsError:\n    pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    )
    grown_kib = int(done.stdout.strip())
    assert grown_kib < 200 * 1024, f"peak memory grew by {grown_kib} KiB"


def test_gap_and_overlap_are_refused(tmp_path: Path) -> None:
    entry = {"dtype": "F32", "shape": [2]}
    gap = {"a.weight": {**entry, "shape": [1, 2], "data_offsets": [8, 16]}}
    with pytest.raises(DwsError, match="leaves a gap"):
        load_checkpoint(raw_file(tmp_path / "gap.safetensors", gap, bytes(16)))
    overlap = {
        "a.weight": {**entry, "shape": [1, 2], "data_offsets": [0, 8]},
        "a.bias": {**entry, "shape": [1], "data_offsets": [4, 8]},
    }
    with pytest.raises(DwsError, match="overlaps"):
        load_checkpoint(raw_file(tmp_path / "overlap.safetensors", overlap, bytes(8)))


def test_deeply_nested_header_is_one_line_error(tmp_path: Path) -> None:
    path = raw_file(tmp_path / "deep.safetensors", b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(DwsError, match="nested too deeply"):
        load_checkpoint(path)


def test_tensor_count_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = {f"{i}.weight": torch.ones(1, 1) for i in range(40)}
    path = tmp_path / "many.safetensors"
    path.write_bytes(safetensors.torch.save(state))
    monkeypatch.setenv("DWS_MAX_TENSORS", "16")
    with pytest.raises(DwsError, match="tensor count 40 exceeds the limit of 16") as caught:
        load_checkpoint(path)
    assert caught.value.hint is not None and "DWS_MAX_TENSORS" in caught.value.hint
    monkeypatch.setenv("DWS_MAX_TENSORS", "40")
    assert load_checkpoint(path, activation="relu").spec.widths == (1,) * 41


def test_header_length_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "meta.safetensors"
    path.write_bytes(safetensors.torch.save(good_state(), metadata={"pad": "x" * 5000}))
    monkeypatch.setenv("DWS_MAX_HEADER_BYTES", "1000")
    with pytest.raises(DwsError, match="header length"):
        load_checkpoint(path)
    monkeypatch.delenv("DWS_MAX_HEADER_BYTES")
    assert load_checkpoint(path).metadata["pad"] == "x" * 5000


def test_file_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "net.safetensors"
    path.write_bytes(safetensors.torch.save(good_state()))
    monkeypatch.setenv("DWS_MAX_CHECKPOINT_BYTES", "64")
    with pytest.raises(DwsError, match="file size"):
        load_checkpoint(path)


def test_bad_limit_variable_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "net.safetensors"
    path.write_bytes(safetensors.torch.save(good_state()))
    monkeypatch.setenv("DWS_MAX_TENSORS", "lots")
    with pytest.raises(DwsError, match="DWS_MAX_TENSORS"):
        load_checkpoint(path)


def test_input_is_untouched(tmp_path: Path) -> None:
    path = raw_file(tmp_path / "deep.safetensors", b"[" * 10_000)
    before = path.read_bytes(), os.stat(path).st_mtime_ns
    with pytest.raises(DwsError):
        load_checkpoint(path)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before


# --------------------------------------------------------------------------------------------
# non-finite and oversized spec parameters
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "2-8-1:sine;w0=nan",
        "2-8-1:sine;w0=1e309",
        "2-8-1:sine;w0_hidden=-inf",
        "2-8-1:leaky_relu;negative_slope=inf",
    ],
)
def test_spec_refuses_non_finite_options(text: str) -> None:
    from dwscli.weights.spec import MLPSpec

    with pytest.raises(DwsError, match="must be a finite number"):
        MLPSpec.parse(text)


def test_spec_widths_and_depth_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from dwscli.weights.spec import MLPSpec

    with pytest.raises(DwsError, match="layer width 99,999,999 exceeds"):
        MLPSpec.parse("2-99999999-1")
    monkeypatch.setenv("DWS_MAX_LAYERS", "3")
    with pytest.raises(DwsError, match="DWS_MAX_LAYERS") as caught:
        MLPSpec.parse("2-4-4-4-4-1")
    assert "DWS_MAX_LAYERS" in str(caught.value)
    assert MLPSpec.parse("2-4-4-1").depth == 3


@pytest.mark.parametrize(
    ("metadata", "activation"),
    [
        ({"activation": "sine", "w0": "1e309"}, None),
        ({"activation": "sine", "w0": "nan"}, None),
        ({"dws.spec": "2-8-1:sine;w0=nan"}, None),
        ({}, "sine;w0=nan"),
        ({}, "leaky_relu;negative_slope=inf"),
    ],
)
def test_non_finite_activation_parameters_are_refused_on_load(
    tmp_path: Path, metadata: dict[str, str], activation: str | None
) -> None:
    path = tmp_path / "net.safetensors"
    path.write_bytes(safetensors.torch.save(good_state(), metadata=metadata))
    with pytest.raises(DwsError, match="finite"):
        load_checkpoint(path, activation=activation)


# --------------------------------------------------------------------------------------------
# writing: directories, names, bytes, temporaries (library level)
# --------------------------------------------------------------------------------------------
def test_save_to_an_existing_directory_is_refused(tmp_path: Path) -> None:
    from dwscli.weights.checkpoint import save_checkpoint

    source = tmp_path / "net.safetensors"
    source.write_bytes(safetensors.torch.save(good_state(), metadata={"activation": "relu"}))
    (tmp_path / "dir").mkdir()
    with pytest.raises(DwsError, match="is a directory"):
        save_checkpoint(tmp_path / "dir", load_checkpoint(source), force=True)
    assert not (tmp_path / "dir.safetensors").exists()


def test_non_utf8_name_and_sorted_metadata(tmp_path: Path) -> None:
    from dwscli.weights.checkpoint import save_checkpoint

    source = tmp_path / os.fsdecode(b"\xffnet.safetensors")
    meta = {"zeta": "1", "alpha": "2", "activation": "relu"}
    source.write_bytes(safetensors.torch.save(good_state(), metadata=meta))
    first = save_checkpoint(tmp_path / "a.safetensors", load_checkpoint(source)).read_bytes()
    second = save_checkpoint(tmp_path / "b.safetensors", load_checkpoint(source)).read_bytes()
    assert first == second
    header = json.loads(first[8 : 8 + int.from_bytes(first[:8], "little")])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    assert header["__metadata__"]["dws.source"] == "\\xffnet.safetensors"


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    from dwscli.weights import atomic

    target = tmp_path / "out.safetensors"
    prefix = atomic._temporary_prefix(target)
    dead = tmp_path / f"{prefix}999999999-abc.tmp"  # no such pid
    alive = tmp_path / f"{prefix}{os.getppid()}-abc.tmp"
    other_host = tmp_path / ".out.safetensors.dws-elsewhere-999999999-abc.tmp"
    for path in (dead, alive, other_host):
        path.write_bytes(b"x")
    atomic.atomic_write_bytes(target, b"data")
    assert not dead.exists() and alive.exists() and other_host.exists()
    assert target.read_bytes() == b"data"


def test_a_directory_is_cleared_of_stale_temporaries_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first write into a directory removes every target's stale temporaries there; later
    writes into it do not list it again (an --out-dir run of n files would list it n times)."""
    from dwscli.weights import atomic

    other = tmp_path / f"{atomic._temporary_prefix(tmp_path / 'b.safetensors')}999999999-x.tmp"
    other.write_bytes(b"x")
    listed: list[str] = []
    scandir = os.scandir

    def counting_scandir(path):
        listed.append(str(path))
        return scandir(path)

    monkeypatch.setattr(atomic.os, "scandir", counting_scandir)
    for name in ("a", "c", "d"):
        atomic.atomic_write_bytes(tmp_path / f"{name}.safetensors", name.encode())
    assert not other.exists()
    assert listed == [str(tmp_path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.safetensors",
        "c.safetensors",
        "d.safetensors",
    ]


def test_embeddings_npy_refuses_line_breaks_before_writing(tmp_path: Path) -> None:
    import numpy as np

    from dwscli.processors.embedding_files import write_embeddings

    with pytest.raises(DwsError, match="line break"):
        write_embeddings(tmp_path / "e.npy", ["ok", "bad\nname"], np.zeros((2, 3)))
    assert list(tmp_path.iterdir()) == []


def test_permute_result_is_judged_relative_to_the_outputs() -> None:
    from dwscli.api import PermuteResult

    fields = {"input": "i", "output": "o", "spec": "s", "seed": 0, "permuted_layers": 1}
    big = PermuteResult(**fields, check_inputs=4, max_abs_difference=1e14, max_abs_output=1e30)
    assert big.function_preserved and big.to_dict()["function_preserved"] is True
    small = PermuteResult(**fields, check_inputs=4, max_abs_difference=1e-3, max_abs_output=0.5)
    assert not small.function_preserved

"""Staged writes: many outputs synced together, each still renamed into place only after its
data is synced, with nothing left behind on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dwscli.errors import DwsError
from dwscli.weights import atomic
from dwscli.weights.atomic import commit_staged, discard_staged, stage_write, sync_staged
from dwscli.weights.checkpoint import load_checkpoint, save_space
from dwscli.weights.loadsave import stage_checkpoint
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec


def _temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_staged_file_appears_only_when_committed(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    write = stage_write(target, [b"abc", memoryview(b"def")])
    assert not target.exists()
    assert write.tmp.read_bytes() == b"abcdef"
    sync_staged([write])
    assert commit_staged(write) == target
    assert target.read_bytes() == b"abcdef"
    assert _temporaries(tmp_path) == []
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_commit_refuses_a_file_that_appeared_meanwhile_and_removes_its_temporary(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out.bin"
    write = stage_write(target, [b"new"])
    target.write_bytes(b"precious")  # someone else's file, created after the checks
    with pytest.raises(DwsError, match="exists; pass --force"):
        commit_staged(write)
    assert target.read_bytes() == b"precious"
    assert _temporaries(tmp_path) == []
    forced = stage_write(target, [b"new"], force=True)
    commit_staged(forced)
    assert target.read_bytes() == b"new"


def test_discard_removes_uncommitted_temporaries(tmp_path: Path) -> None:
    writes = [stage_write(tmp_path / f"out{k}.bin", [b"x"]) for k in range(3)]
    assert len(_temporaries(tmp_path)) == 3
    discard_staged(writes)
    assert list(tmp_path.iterdir()) == []


def test_one_file_system_sync_for_many_files_and_fsync_each_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = [stage_write(tmp_path / f"out{k}.bin", [b"x" * k]) for k in range(5)]
    syncs: list[Path] = []
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(atomic, "_syncfs", lambda d: syncs.append(d) or True)
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd) or real_fsync(fd))
    sync_staged(writes)
    assert syncs == [tmp_path] and fsyncs == []
    monkeypatch.setattr(atomic, "_syncfs", lambda d: False)  # no syncfs: file by file
    sync_staged(writes)
    assert len(fsyncs) == 5
    for write in writes:
        commit_staged(write)
    assert [len((tmp_path / f"out{k}.bin").read_bytes()) for k in range(5)] == list(range(5))


def test_the_real_syncfs_runs_where_the_c_library_has_it(tmp_path: Path) -> None:
    if atomic._libc_syncfs() is None:
        pytest.skip("no syncfs in this C library")
    assert atomic._syncfs(tmp_path) is True


def test_a_failed_staged_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = MLPSpec.parse("3-4-2:relu")
    source = save_space(tmp_path / "in.safetensors", WeightSpace.random(spec, 1))
    checkpoint = load_checkpoint(source)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    def chunks_that_fail(*args, **kwargs):
        yield b"header"
        full_disk()

    monkeypatch.setattr("dwscli.weights.loadsave.serialize_chunks", chunks_that_fail)
    with pytest.raises(DwsError, match=r"out\.safetensors.*No space left"):
        stage_checkpoint(tmp_path / "out.safetensors", checkpoint)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.safetensors"]


def test_a_staged_checkpoint_reads_back_like_a_saved_one(tmp_path: Path) -> None:
    spec = MLPSpec.parse("3-4-2:relu")
    source = save_space(tmp_path / "in.safetensors", WeightSpace.random(spec, 1))
    checkpoint = load_checkpoint(source)
    space = checkpoint.space.clone()
    space.weights[0] = space.weights[0] * 2
    write = stage_checkpoint(tmp_path / "out", checkpoint, space, provenance={"op": "x2"})
    assert write.target == tmp_path / "out.safetensors"
    sync_staged([write])
    commit_staged(write)
    back = load_checkpoint(tmp_path / "out.safetensors")
    assert torch.equal(back.space.weights[0], space.weights[0])
    assert back.metadata["dws.op"] == "x2"

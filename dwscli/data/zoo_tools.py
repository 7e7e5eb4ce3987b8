"""Whole-zoo operations: verification, merging ``--shard i/n`` parts, re-splitting with a
held-out recipe region, and summary statistics."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dwscli.data.zoo_format import (
    MANIFEST_DIR,
    MANIFEST_FILE,
    SHARD_DIR,
    SPLITS_FILE,
    ZooMeta,
    creation_info,
    describe_shards,
    manifest_part_name,
    read_json,
    read_jsonl,
    shard_name,
    tensor_names,
    to_json_value,
)
from dwscli.data.zoo_loader import Zoo
from dwscli.data.zoo_splits import (
    SplitFn,
    check_splits,
    hold_out_matcher,
    resolve_split_config,
)
from dwscli.data.zoo_writer import completed_shards, finalize_zoo
from dwscli.errors import DwsError

__all__ = ["merge_zoos", "resplit_zoo", "verify_zoo", "zoo_info"]

# safetensors dtype names of the storage dtypes
_ST_DTYPES = {"float32": "F32", "float16": "F16"}


# --------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------
def _shard_problems(root: Path, meta: ZooMeta, k: int, ids: list[str], deep: bool) -> list[str]:
    """Problems of one shard file: tensors, shapes, dtype, the ids it records; with ``deep``
    also non-finite values (reads the data)."""
    from safetensors import safe_open

    path = root / SHARD_DIR / shard_name(k)
    if not path.is_file():
        return [f"{path.name}: missing"]
    rows = len(meta.plan[k])
    spec = meta.mlp_spec
    shapes = [
        (rows, *s) for pair in zip(spec.weight_shapes, spec.bias_shapes, strict=True) for s in pair
    ]
    problems: list[str] = []
    try:
        with safe_open(str(path), framework="pt") as handle:
            for name, shape in zip(tensor_names(meta.mlp_spec.depth), shapes, strict=True):
                if name not in handle.keys():  # noqa: SIM118
                    problems.append(f"{path.name}: no tensor {name}")
                    continue
                view = handle.get_slice(name)
                if tuple(view.get_shape()) != shape:
                    problems.append(
                        f"{path.name}: {name} has shape {tuple(view.get_shape())}, expected {shape}"
                    )
                if view.get_dtype() != _ST_DTYPES[meta.dtype]:
                    problems.append(
                        f"{path.name}: {name} is {view.get_dtype()}, zoo is {meta.dtype}"
                    )
                if deep and not problems:
                    tensor = handle.get_tensor(name).float()
                    bad = int((~tensor.isfinite()).flatten(1).any(1).sum())
                    if bad:
                        problems.append(f"{path.name}: {name} has non-finite values in {bad} nets")
            stored = (handle.metadata() or {}).get("dws.zoo.ids")
    except Exception as exc:  # damaged file: safetensors raises its own error types
        return [f"{path.name}: cannot read ({exc})"]
    if stored is not None and stored != _ids_json(ids):
        problems.append(f"{path.name}: its net ids differ from the manifest's")
    return problems


def _ids_json(ids: list[str]) -> str:
    return json.dumps(ids, separators=(",", ":"))


def _manifest_problems(meta: ZooMeta, records: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    if len(records) != meta.count:
        problems.append(f"{MANIFEST_FILE}: {len(records)} nets, zoo.json says {meta.count}")
    expected = [
        (shard_name(k), row, net)
        for k, nets in enumerate(meta.plan)
        for row, net in enumerate(nets)
    ]
    found = [(r.get("shard"), r.get("index"), r.get("net")) for r in records]
    if found != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(found, expected, strict=False)) if a != b),
            min(len(found), len(expected)),
        )
        problems.append(f"{MANIFEST_FILE}: line {first + 1} does not follow the shard plan")
    ids = [str(r.get("id")) for r in records]
    if len(set(ids)) != len(ids):
        problems.append(f"{MANIFEST_FILE}: {len(ids) - len(set(ids))} repeated net ids")
    return problems


def verify_zoo(path: Path | str, *, deep: bool = False) -> list[str]:
    """Check a finished zoo; returns its problems (an empty list when it is sound).

    Checks that the manifest follows the shard plan with unique ids, that the splits partition
    the nets, and that every shard exists with the right tensors, shapes, dtype and ids (header
    reads only). ``deep`` also reads every tensor to look for NaN/Inf. A directory that is not a
    zoo at all (no ``zoo.json``) raises :class:`DwsError`.
    """
    root = Path(path)
    meta = ZooMeta.read(root)
    if not (root / MANIFEST_FILE).exists():
        missing = set(range(meta.num_shards)) - completed_shards(root, meta)
        detail = f"; shards not done: {describe_shards(missing)}" if missing else ""
        return [f"not finished (no {MANIFEST_FILE}){detail}"]
    try:
        records = read_jsonl(root / MANIFEST_FILE)
    except DwsError as exc:
        return [str(exc)]
    problems = _manifest_problems(meta, records)
    try:
        check_splits(read_json(root / SPLITS_FILE), [str(r.get("id")) for r in records])
    except DwsError as exc:
        problems.append(f"{SPLITS_FILE}: {exc}")
    ids_by_shard: dict[str, list[str]] = {}
    for record in records:
        ids_by_shard.setdefault(str(record.get("shard")), []).append(str(record.get("id")))
    for k in range(meta.num_shards):
        problems.extend(_shard_problems(root, meta, k, ids_by_shard.get(shard_name(k), []), deep))
    return problems


# --------------------------------------------------------------------------------------------
# merge
# --------------------------------------------------------------------------------------------
def _read_parts(parts: Sequence[Path]) -> list[ZooMeta]:
    metas = [ZooMeta.read(part) for part in parts]
    for part, meta in zip(parts[1:], metas[1:], strict=True):
        differs = metas[0].differences(meta)
        if differs:
            raise DwsError(
                f"{part}: is not a part of the same zoo as {parts[0]} "
                f"(differs in {', '.join(differs)})",
                hint="merge only parts made by one command with different --shard i/n",
            )
    return metas


def _assign_shards(parts: Sequence[Path], metas: Sequence[ZooMeta]) -> dict[int, Path]:
    """Which part supplies each shard; every shard must be done in exactly one part."""
    owners: dict[int, list[Path]] = {}
    for part, meta in zip(parts, metas, strict=True):
        for k in completed_shards(part, meta):
            owners.setdefault(k, []).append(part)
    total = metas[0].num_shards
    missing = sorted(set(range(total)) - set(owners))
    duplicated = {k: where for k, where in sorted(owners.items()) if len(where) > 1}
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {total} shards missing: {describe_shards(missing)}")
    if duplicated:
        listed = [
            f"shard-{k:05d} (in {', '.join(str(p) for p in where)})"
            for k, where in list(duplicated.items())[:3]
        ]
        more = f" and {len(duplicated) - 3} more" if len(duplicated) > 3 else ""
        problems.append(
            f"{len(duplicated)} shards in more than one part: {', '.join(listed)}{more}"
        )
    if problems:
        raise DwsError(
            "cannot merge: " + "; ".join(problems),
            hint="run the missing --shard i/n parts (a part resumes where it stopped), and pass "
            "each part once",
        )
    return {k: where[0] for k, where in owners.items()}


def _check_ids(owners: Mapping[int, Path]) -> None:
    seen: dict[str, Path] = {}
    for k in sorted(owners):
        for record in read_jsonl(owners[k] / MANIFEST_DIR / manifest_part_name(k)):
            net = str(record.get("id"))
            if net in seen:
                raise DwsError(
                    f"cannot merge: net id {net!r} is in {seen[net]} and in "
                    f"{owners[k]} ({shard_name(k)})"
                )
            seen[net] = owners[k]


def _link_or_copy(source: Path, target: Path, link: bool) -> None:
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another file system, or no hard links: copy instead
    shutil.copy2(source, target)


def _check_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DwsError(
            f"{out}: exists and is not an empty directory", hint="merge into a new directory"
        )
    if not out.parent.is_dir():
        raise DwsError(f"{out}: parent directory {out.parent} does not exist")


def merge_zoos(
    parts: Sequence[Path | str],
    out: Path | str,
    *,
    split_fn: SplitFn | None = None,
    link: bool = True,
) -> Zoo:
    """Join zoo parts made with ``--shard i/n`` into the finished zoo ``out``.

    The parts must describe the same zoo (``zoo.json`` equal but for creation info) and together
    hold every planned shard exactly once, with unique net ids; errors name the missing and
    duplicated shards. Shards are hard-linked when possible (``link``; immutable files, so this
    is safe and takes no space), else copied. The result is built in a temporary directory next
    to ``out``, finalized (split as configured in ``zoo.json``, or by ``split_fn``), verified, and
    only then moved to ``out``, so a failed merge leaves nothing behind.
    """
    paths = [Path(p) for p in parts]
    if not paths:
        raise DwsError("no zoo parts to merge")
    if len(set(map(os.path.realpath, paths))) != len(paths):
        raise DwsError("the same part is given more than once")
    target = Path(out)
    _check_output(target)
    metas = _read_parts(paths)
    owners = _assign_shards(paths, metas)
    _check_ids(owners)

    meta = metas[0]
    meta.created = creation_info(
        merged_from=[
            {"path": str(p), "created": m.created} for p, m in zip(paths, metas, strict=True)
        ]
    )
    staging = target.parent / f".{target.name}.merge-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for sub in (SHARD_DIR, MANIFEST_DIR):
            (staging / sub).mkdir(parents=True)
        meta.write(staging)
        for k, part in sorted(owners.items()):
            _link_or_copy(
                part / SHARD_DIR / shard_name(k), staging / SHARD_DIR / shard_name(k), link
            )
            _link_or_copy(
                part / MANIFEST_DIR / manifest_part_name(k),
                staging / MANIFEST_DIR / manifest_part_name(k),
                link,
            )
        finalize_zoo(staging, split_fn)
        problems = verify_zoo(staging)
        if problems:
            raise DwsError(
                f"cannot merge: the joined zoo fails verification: {problems[0]}"
                + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
            )
        if target.exists():
            target.rmdir()  # empty, checked above
        os.rename(staging, target)
    except OSError as exc:
        raise DwsError(f"{target}: cannot write the merged zoo ({exc.strerror or exc})") from exc
    finally:
        with contextlib.suppress(OSError):
            if staging.exists():
                shutil.rmtree(staging)
    return Zoo.open(target)


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------
def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _distribution(values: list[float]) -> dict[str, float | int]:
    array = np.asarray(values, dtype=np.float64)
    p10, median, p90 = np.percentile(array, [10, 50, 90])
    return {
        "count": int(array.size),
        "min": float(array.min()),
        "p10": float(p10),
        "median": float(median),
        "p90": float(p90),
        "max": float(array.max()),
        "mean": float(array.mean()),
    }


def _group_stats(records: Sequence[Mapping[str, Any]], group: str) -> dict[str, dict[str, Any]]:
    """Distribution of every key of ``group`` whose values are all numbers (or null)."""
    columns: dict[str, list[float]] = {}
    numeric: dict[str, bool] = {}
    for record in records:
        for key, value in (record.get(group) or {}).items():
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
            numeric[key] = numeric.get(key, True) and ok
            if _numeric(value):
                columns.setdefault(key, []).append(float(value))
    out: dict[str, dict[str, Any]] = {}
    for key, ok in numeric.items():
        if not ok:
            continue
        values = columns.get(key, [])
        stats: dict[str, Any] = _distribution(values) if values else {"count": 0}
        stats["missing"] = len(records) - len(values)
        out[key] = stats
    return out


def _category_counts(records: Sequence[Mapping[str, Any]], group: str) -> dict[str, dict[str, int]]:
    """Counts of each value of every key of ``group`` whose values are strings or booleans (or
    null, counted as ``none``): e.g. ``{"optimizer": {"adam": 60, "sgd": 40}}``."""
    counts: dict[str, dict[str, int]] = {}
    categorical: dict[str, bool] = {}
    for record in records:
        for key, value in (record.get(group) or {}).items():
            ok = value is None or isinstance(value, (str, bool))
            categorical[key] = categorical.get(key, True) and ok
            name = (
                "none"
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else value
            )
            per_key = counts.setdefault(key, {})
            per_key[name] = per_key.get(name, 0) + 1
    return {
        key: dict(sorted(counts[key].items(), key=lambda item: (-item[1], item[0])))
        for key, ok in categorical.items()
        if ok and set(counts[key]) != {"none"}
    }


def zoo_info(path: Path | str, *, verify: bool = True) -> dict[str, Any]:
    """A JSON-serialisable summary of a zoo (or of an unfinished part, with its progress).

    Keys: path, kind, spec, dataset, count, num_shards, shard_size, dtype, seed, conventions,
    created, finished, size_bytes, nets, splits (counts), metrics/labels/hparams (per numeric key:
    count, missing, min, p10, median, p90, max, mean), and problems (from :func:`verify_zoo`,
    when ``verify``). An unfinished zoo reports shards_done and missing_shards instead of splits.
    """
    root = Path(path)
    meta = ZooMeta.read(root)
    info: dict[str, Any] = {"path": str(root)}
    info.update({k: v for k, v in meta.to_json().items() if k not in ("format", "config", "split")})
    finished = (root / MANIFEST_FILE).exists()
    info["finished"] = finished
    shards = [root / SHARD_DIR / shard_name(k) for k in range(meta.num_shards)]
    info["size_bytes"] = sum(p.stat().st_size for p in shards if p.is_file())
    if finished:
        zoo = Zoo.open(root)
        records = zoo.records()
        info["splits"] = {name: len(ids) for name, ids in zoo.splits.items()}
    else:
        done = completed_shards(root, meta)
        records = [
            r for k in sorted(done) for r in read_jsonl(root / MANIFEST_DIR / manifest_part_name(k))
        ]
        info["shards_done"] = len(done)
        info["missing_shards"] = describe_shards(set(range(meta.num_shards)) - done)
    info["nets"] = len(records)
    for group in ("metrics", "labels", "hparams"):
        info[group] = _group_stats(records, group)
    info["categories"] = {
        group: counts
        for group in ("labels", "hparams")
        if (counts := _category_counts(records, group))
    }
    if verify:
        info["problems"] = verify_zoo(root)
    return info


def resplit_zoo(
    directory: Path | str, hold_out: Mapping[str, Any] | None, *, force: bool = False
) -> Zoo:
    """Split a finished zoo again with the held-out recipe region ``hold_out`` (None: without
    one), rewriting the ``split`` entry of ``zoo.json`` and ``splits.json``.

    Which nets are train, val and test changes with it, so processors trained on the old split
    no longer have clean test numbers on it: the zoo is only rewritten with ``force`` (or when
    the split stays as it is). A region no net of the zoo lies in, or that every net lies in, is
    refused.
    """
    root = Path(directory)
    zoo = Zoo.open(root)
    meta = zoo.meta
    config = {key: value for key, value in meta.split.items() if key != "hold_out"}
    if hold_out is not None:
        config["hold_out"] = dict(hold_out)
        records = zoo.records()
        fields = {key for record in records for key in (record.get("hparams") or {})}
        for key in hold_out:
            if key not in fields:
                raise DwsError(
                    f"{root}: --hold-out: no net records {key!r}; its recipe fields are "
                    f"{', '.join(sorted(fields)) or 'none'}"
                )
        matches = hold_out_matcher(hold_out)
        held = sum(1 for record in records if matches(record))
        if held == 0 or held == len(records):
            which = "none" if held == 0 else "every one"
            raise DwsError(
                f"{root}: --hold-out: the region holds {which} of the {len(records)} nets"
            )
    split = to_json_value(resolve_split_config(config, seed=meta.seed), where="split")
    if split == meta.split and (root / SPLITS_FILE).is_file():
        return zoo
    if not force:
        counts = ", ".join(f"{name} {len(ids)}" for name, ids in zoo.splits.items())
        raise DwsError(
            f"{root}: is split already ({counts}); splitting it again changes which nets are "
            "test nets",
            hint="pass --force to rewrite zoo.json's split and splits.json",
        )
    meta.split = split
    meta.write(root)
    return finalize_zoo(root)

"""Reading a finished zoo: records, splits, streamed batches, in-memory loading, export.

Streaming: :meth:`Zoo.iter_batches` reads one shard at a time with ``safetensors.safe_open``
(memory-mapped), slicing only the span of rows of that shard the split needs, so memory holds at
most one shard's selected rows plus one partial batch, however large the zoo. Batches are carried
across shard boundaries, so every batch but the last has exactly ``batch_size`` nets.

Shuffling (``shuffle=True``) is a *two-level* shuffle, deterministic given ``seed``: the order of
the shards is shuffled, then the rows within each shard. It is not a uniform shuffle of the
whole split — a batch draws from at most two shards — which is the price of streaming; with many
small shards (or :meth:`Zoo.load` and an in-memory shuffle for small zoos) it is close to one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import safe_open
from torch import Tensor

from dwscli.data.zoo_format import (
    ALL_SPLITS,
    HELDOUT_SPLIT,
    MANIFEST_FILE,
    SHARD_DIR,
    SPLITS,
    SPLITS_FILE,
    ZooMeta,
    read_json,
    read_jsonl,
    shard_index_of,
    tensor_names,
)
from dwscli.errors import DwsError
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

__all__ = ["Zoo", "ZooBatch", "conventions_metadata"]


class ZooBatch(NamedTuple):
    """A batch of nets: weights, label/metric tensors (``[B]`` each, by name) and ids."""

    space: WeightSpace
    targets: dict[str, Tensor]
    ids: list[str]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _auto_keys(records: Sequence[Mapping[str, Any]], group: str) -> list[str]:
    """Keys of ``group`` whose values are numbers (or missing/null) in every record."""
    keys: dict[str, bool] = {}
    for record in records:
        for key, value in (record.get(group) or {}).items():
            ok = value is None or _is_number(value) or isinstance(value, bool)
            keys[key] = keys.get(key, True) and ok
    return [key for key, ok in keys.items() if ok]


def _target_tensor(records: Sequence[Mapping[str, Any]], group: str, key: str) -> Tensor:
    """``[n]`` tensor of ``record[group][key]``: bool, int64 when all are integers, else float32
    with NaN where a value is missing or null."""
    values = [(record.get(group) or {}).get(key) for record in records]
    bad = next((v for v in values if v is not None and not isinstance(v, (int, float))), None)
    if bad is not None:
        raise DwsError(f"{group} key {key!r} is not numeric (e.g. {bad!r}); it cannot be a tensor")
    if values and all(isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.bool)
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.int64)
    return torch.tensor(
        [float("nan") if v is None else float(v) for v in values], dtype=torch.float32
    )


def _meta_string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def conventions_metadata(conventions: Mapping[str, Any]) -> dict[str, str]:
    """A zoo's conventions as ``inr.*`` checkpoint metadata, in the string forms that
    :meth:`dwscli.weights.inr.InrConventions.from_metadata` reads: ``grid`` ``[28, 28]`` ->
    ``"28x28"``, ``coord_range`` ``[-1, 1]`` -> ``"-1.0,1.0"``, numbers as ``repr``."""
    out: dict[str, str] = {}
    for key, value in conventions.items():
        if key == "grid" and isinstance(value, list):
            text = "x".join(str(int(v)) for v in value)
        elif key == "coord_range" and isinstance(value, list):
            text = ",".join(repr(float(v)) for v in value)
        elif _is_number(value):
            text = repr(value)
        elif isinstance(value, list) and all(_is_number(v) for v in value):
            text = ",".join(repr(v) for v in value)
        else:
            text = _meta_string(value)
        out[f"inr.{key}"] = text
    return out


#: Longest net id that still makes a file name (255 bytes) with the ``.safetensors`` suffix.
MAX_EXPORT_ID_BYTES = 200


def export_file_name(zoo_path: Path, net: str) -> str:
    """``<net>.safetensors``, refusing an id that is not a plain, short file name.

    Ids come from the zoo's manifest, which anyone can edit: an id such as ``../../x`` or
    ``/etc/x`` must not turn into a path outside the output directory.
    """
    unsafe = (
        not net
        or net in (".", "..")
        or net.startswith(".")
        or any(sep in net for sep in ("/", "\\", os.sep, os.altsep or "/"))
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in net)
    )
    if unsafe:
        raise DwsError(
            f"{zoo_path}: net id {net!r} is not a plain file name (a path separator, a leading "
            "dot or a control character); refusing to export it"
        )
    if len(net.encode("utf-8", "surrogateescape")) > MAX_EXPORT_ID_BYTES:
        raise DwsError(
            f"{zoo_path}: net id of {len(net)} characters is too long for a file name "
            f"(at most {MAX_EXPORT_ID_BYTES} bytes)"
        )
    return f"{net}.safetensors"


class Zoo:
    """A finished zoo directory, opened without reading any shard.

    Records are the manifest lines (``id``, ``net``, ``shard``, ``index``, ``hparams``,
    ``labels``, ``metrics``), in shard order; methods return them in that order and share the
    dicts (do not mutate them).
    """

    def __init__(
        self,
        path: Path,
        meta: ZooMeta,
        records: list[dict[str, Any]],
        splits: dict[str, list[str]],
    ) -> None:
        self.path = path
        self.meta = meta
        self._records = records
        self._splits = splits
        self._by_id = {str(r["id"]): r for r in records}
        self._split_of = {net: name for name, ids in splits.items() for net in ids}

    # ----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str) -> Zoo:
        """Open a finished zoo (``zoo.json``, ``manifest.jsonl``, ``splits.json``)."""
        root = Path(path)
        meta = ZooMeta.read(root)
        manifest = root / MANIFEST_FILE
        if not manifest.exists():
            raise DwsError(
                f"{root}: zoo is not finished (no {MANIFEST_FILE})",
                hint="resume the run that makes it, or join parts made with --shard i/n "
                "using dws zoo merge",
            )
        records = read_jsonl(manifest)
        for number, record in enumerate(records, start=1):
            if (
                not isinstance(record.get("id"), str)
                or not isinstance(record.get("index"), int)
                or shard_index_of(str(record.get("shard"))) is None
            ):
                raise DwsError(f"{manifest}:{number}: record lacks a valid id, shard or index")
        splits_path = root / SPLITS_FILE
        raw = read_json(splits_path)
        if not isinstance(raw, dict) or any(not isinstance(v, list) for v in raw.values()):
            raise DwsError(f'{splits_path}: expected {{"train": [ids], "val": …, "test": …}}')
        known = {r["id"] for r in records}
        unknown = [net for ids in raw.values() for net in ids if net not in known]
        if unknown:
            raise DwsError(f"{splits_path}: names nets not in the manifest (e.g. {unknown[0]!r})")
        names = ALL_SPLITS if HELDOUT_SPLIT in raw else SPLITS
        splits = {name: [str(i) for i in raw.get(name, [])] for name in names}
        return cls(root, meta, records, splits)

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={len(ids)}" for name, ids in self._splits.items())
        head = f"{self.path.name}: {self.meta.kind} {self.meta.spec}"
        return f"Zoo({head} | {len(self)} nets, {counts})"

    def __len__(self) -> int:
        return len(self._records)

    @property
    def spec(self) -> MLPSpec:
        return self.meta.mlp_spec

    @property
    def kind(self) -> str:
        return self.meta.kind

    @property
    def conventions(self) -> dict[str, Any]:
        return dict(self.meta.conventions)

    @property
    def splits(self) -> dict[str, list[str]]:
        return {name: list(ids) for name, ids in self._splits.items()}

    # ----------------------------------------------------------------------------------------
    def _check_split(self, split: str | None) -> None:
        if split is not None and split not in self._splits:
            raise DwsError(f"unknown split {split!r}; choose one of {', '.join(self._splits)}")

    def records(self, split: str | None = None) -> list[dict[str, Any]]:
        """Manifest records of ``split`` (None: every net), in shard order."""
        self._check_split(split)
        if split is None:
            return list(self._records)
        return [r for r in self._records if self._split_of.get(r["id"]) == split]

    def ids(self, split: str | None = None) -> list[str]:
        return [str(r["id"]) for r in self.records(split)]

    def record(self, net: str) -> dict[str, Any]:
        try:
            return self._by_id[net]
        except KeyError:
            raise DwsError(f"{self.path}: no net with id {net!r}") from None

    def split_of(self, net: str) -> str | None:
        return self._split_of.get(net)

    # ----------------------------------------------------------------------------------------
    def shard_path(self, shard: str) -> Path:
        return self.path / SHARD_DIR / shard

    def _read_rows(self, shard: str, rows: Sequence[int], dtype: torch.dtype) -> WeightSpace:
        """Rows ``rows`` (in that order) of one shard: reads the span ``min..max`` of each tensor
        from the memory-mapped file, then picks the rows."""
        path = self.shard_path(shard)
        if not path.is_file():
            raise DwsError(f"{path}: shard file is missing")
        low, high = min(rows), max(rows) + 1
        index = torch.as_tensor(rows, dtype=torch.long) - low
        contiguous = list(rows) == list(range(low, high))
        spec = self.spec
        names = tensor_names(spec.depth)
        tensors: list[Tensor] = []
        try:
            with safe_open(str(path), framework="pt") as handle:
                missing = [n for n in names if n not in handle.keys()]  # noqa: SIM118
                if missing:
                    raise DwsError(f"{path}: shard lacks tensors {', '.join(missing)}")
                for name in names:
                    block = handle.get_slice(name)[low:high]
                    tensors.append((block if contiguous else block[index]).to(dtype))
        except DwsError:
            raise
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise DwsError(f"{path}: cannot read shard ({exc})") from exc
        try:
            return WeightSpace(tensors[0::2], tensors[1::2], spec)
        except DwsError as exc:
            raise DwsError(f"{path}: {exc}") from None

    def _targets(
        self,
        records: Sequence[Mapping[str, Any]],
        label_keys: Sequence[str] | None,
        metric_keys: Sequence[str] | None,
    ) -> dict[str, Tensor]:
        chosen: list[tuple[str, str]] = []
        for group, keys in (("labels", label_keys), ("metrics", metric_keys)):
            names = _auto_keys(records, group) if keys is None else list(keys)
            for key in names:
                if keys is not None and not any(key in (r.get(group) or {}) for r in records):
                    raise DwsError(f"{self.path}: no net of this split has {group} key {key!r}")
                chosen.append((group, key))
        names = [key for _, key in chosen]
        clash = sorted({key for key in names if names.count(key) > 1})
        if clash:
            raise DwsError(
                f"{self.path}: {', '.join(clash)} is both a label and a metric",
                hint="choose with label_keys=/metric_keys=",
            )
        return {key: _target_tensor(records, group, key) for group, key in chosen}

    def iter_batches(
        self,
        split: str | None = "train",
        batch_size: int = 256,
        *,
        shuffle: bool = False,
        seed: int = 0,
        label_keys: Sequence[str] | None = None,
        metric_keys: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float32,
        drop_last: bool = False,
    ) -> Iterator[ZooBatch]:
        """Stream ``split`` as :class:`ZooBatch` es of ``batch_size`` nets (module docstring).

        Targets hold the labels ``label_keys`` and metrics ``metric_keys`` (None: every key whose
        values are numbers) as ``[B]`` tensors. Without ``shuffle`` nets come in manifest order.
        """
        if int(batch_size) < 1:
            raise DwsError(f"batch size must be at least 1, got {batch_size}")
        records = self.records(split)
        targets = self._targets(records, label_keys, metric_keys)
        by_shard: dict[str, list[int]] = {}
        for position, record in enumerate(records):
            by_shard.setdefault(record["shard"], []).append(position)
        shards = sorted(by_shard, key=lambda name: shard_index_of(name) or 0)
        generator = torch.Generator().manual_seed(int(seed))
        if shuffle:
            shards = [shards[i] for i in torch.randperm(len(shards), generator=generator)]

        pending: WeightSpace | None = None
        positions: list[int] = []
        for shard in shards:
            chosen = by_shard[shard]
            if shuffle:
                chosen = [chosen[i] for i in torch.randperm(len(chosen), generator=generator)]
            space = self._read_rows(shard, [records[p]["index"] for p in chosen], dtype)
            pending = space if pending is None else WeightSpace.stack([pending, space])
            positions.extend(chosen)
            while len(positions) >= batch_size:
                yield self._batch(pending[:batch_size], positions[:batch_size], records, targets)
                pending, positions = pending[batch_size:], positions[batch_size:]
        if positions and pending is not None and not drop_last:
            yield self._batch(pending, positions, records, targets)

    @staticmethod
    def _batch(
        space: WeightSpace,
        positions: list[int],
        records: Sequence[Mapping[str, Any]],
        targets: Mapping[str, Tensor],
    ) -> ZooBatch:
        index = torch.as_tensor(positions, dtype=torch.long)
        return ZooBatch(
            space,
            {key: values[index] for key, values in targets.items()},
            [str(records[p]["id"]) for p in positions],
        )

    def load(
        self,
        split: str | None = "train",
        *,
        label_keys: Sequence[str] | None = None,
        metric_keys: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> ZooBatch:
        """All of ``split`` in memory as one :class:`ZooBatch` (for small zoos), manifest order."""
        records = self.records(split)
        if not records:
            raise DwsError(f"{self.path}: split {split!r} is empty")
        batches = list(
            self.iter_batches(
                split, len(records), label_keys=label_keys, metric_keys=metric_keys, dtype=dtype
            )
        )
        return batches[0]

    def get(self, ids: Iterable[str], *, dtype: torch.dtype = torch.float32) -> WeightSpace:
        """The nets ``ids`` (in that order) as one weight space, reading only their shards."""
        wanted = [self.record(net) for net in ids]
        if not wanted:
            raise DwsError("no net ids given")
        by_shard: dict[str, list[int]] = {}
        for position, record in enumerate(wanted):
            by_shard.setdefault(record["shard"], []).append(position)
        parts: list[WeightSpace] = []
        order: list[int] = []
        for shard, members in by_shard.items():
            parts.append(self._read_rows(shard, [wanted[p]["index"] for p in members], dtype))
            order.extend(members)
        stacked = WeightSpace.stack(parts)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.as_tensor(order)] = torch.arange(len(order))
        return stacked.map(lambda t: t[inverse])

    # ----------------------------------------------------------------------------------------
    def export_metadata(self, net: str) -> dict[str, str]:
        """Metadata of net ``net``'s standalone checkpoint (see :meth:`export`)."""
        record = self.record(net)
        meta: dict[str, str] = {
            "dws.zoo.id": net,
            "dws.zoo.kind": self.meta.kind,
            "dws.zoo.net": str(record.get("net")),
            "dws.zoo.source": self.path.name,
        }
        if self.meta.dataset is not None:
            meta["dws.zoo.dataset"] = self.meta.dataset
        if self.meta.kind == "inr" or "recipe" in self.meta.config:
            meta["dws.zoo.recipe"] = str(self.meta.config.get("recipe", "default"))
        split = self.split_of(net)
        if split is not None:
            meta["dws.zoo.split"] = split
        for group, prefix in (("hparams", "hparam"), ("labels", "label"), ("metrics", "metric")):
            for key, value in (record.get(group) or {}).items():
                meta[f"dws.zoo.{prefix}.{key}"] = _meta_string(value)
        meta.update(conventions_metadata(self.meta.conventions))
        return meta

    def export(
        self,
        ids: Iterable[str] | str,
        out_dir: Path | str,
        *,
        force: bool = False,
        dtype: torch.dtype | None = None,
    ) -> list[Path]:
        """Write each net of ``ids`` to ``out_dir/<id>.safetensors`` as a standalone checkpoint.

        Keys follow ``nn.Sequential(Linear, act, Linear, …)``: ``0.weight``, ``0.bias``,
        ``2.weight``, … so the file loads into such a module with ``load_state_dict`` and into
        :func:`dwscli.weights.checkpoint.load_checkpoint`. Metadata: ``dws.spec``, the
        conventions as ``inr.*`` (strings), and ``dws.zoo.id``/``kind``/``dataset``/``split``/
        ``net`` plus ``dws.zoo.hparam.*``, ``dws.zoo.label.*``, ``dws.zoo.metric.*`` (strings;
        non-strings JSON-encoded). Tensors are float32 (or ``dtype``). Every file is written
        atomically; if any target exists and not ``force``, nothing is written.
        """
        from dwscli.weights.checkpoint import save_space

        wanted = [ids] if isinstance(ids, str) else list(dict.fromkeys(ids))
        unknown = [net for net in wanted if net not in self._by_id]
        if unknown:
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise DwsError(f"{self.path}: no nets with ids {', '.join(unknown[:3])}{more}")
        root = Path(out_dir)
        if root.exists() and not root.is_dir():
            raise DwsError(f"{root}: exists and is not a directory")
        targets = [root / export_file_name(self.path, net) for net in wanted]
        existing = [t.name for t in targets if t.exists()]
        if existing and not force:
            raise DwsError(
                f"{root}: {', '.join(existing[:3])}{' …' if len(existing) > 3 else ''} exists; "
                "pass --force to overwrite"
            )
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DwsError(f"{root}: cannot create ({exc.strerror or exc})") from exc
        by_shard: dict[str, list[int]] = {}
        for position, net in enumerate(wanted):
            by_shard.setdefault(self._by_id[net]["shard"], []).append(position)
        for shard, members in by_shard.items():  # one shard in memory at a time
            rows = [self._by_id[wanted[p]]["index"] for p in members]
            space = self._read_rows(shard, rows, torch.float32)
            for j, position in enumerate(members):
                net = wanted[position]
                save_space(
                    targets[position],
                    space[j],
                    metadata=self.export_metadata(net),
                    force=force,
                    key_style="sequential",
                    dtype=dtype,
                )
        return targets

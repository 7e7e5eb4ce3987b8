"""Random access to the nets of a zoo split, for training: any rows, in any order, cheaply.

:meth:`Zoo.iter_batches` streams shards in a fixed two-level order; training wants a fresh uniform
shuffle every epoch, and a distributed rank wants only *its* rows of each batch. Here every shard
file is memory-mapped once (``numpy.memmap`` over the safetensors data, located through the
file's JSON header) and a batch is one fancy-index per tensor and shard: only the pages of the
requested rows are read, resident memory stays flat (pages belong to the OS page cache), and
rank r of N touches only the rows it trains on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dwscli.data.zoo import Zoo, ZooBatch
from dwscli.data.zoo_format import tensor_names
from dwscli.data.zoo_splits import split_records
from dwscli.errors import DwsError
from dwscli.weights.space import WeightSpace

_NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


class ShardMaps:
    """Memory maps of a zoo's shard files, opened on first use."""

    def __init__(self, zoo: Zoo) -> None:
        self.zoo = zoo
        self.names = tensor_names(zoo.spec.depth)
        self._maps: dict[str, dict[str, np.ndarray]] = {}

    def tensors(self, shard: str) -> dict[str, np.ndarray]:
        if shard not in self._maps:
            self._maps[shard] = self._open(self.zoo.shard_path(shard))
        return self._maps[shard]

    def _open(self, path: Path) -> dict[str, np.ndarray]:
        try:
            raw = np.memmap(path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as error:
            raise DwsError(f"{path}: cannot open shard ({error})") from error
        try:
            length = int.from_bytes(bytes(raw[:8]), "little")
            header = json.loads(bytes(raw[8 : 8 + length]).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise DwsError(f"{path}: not a readable safetensors shard ({error})") from error
        base = 8 + length
        out: dict[str, np.ndarray] = {}
        for name in self.names:
            entry = header.get(name)
            if not isinstance(entry, dict) or entry.get("dtype") not in _NUMPY_DTYPES:
                raise DwsError(f"{path}: shard lacks a float tensor {name!r}")
            begin, end = entry["data_offsets"]
            dtype = _NUMPY_DTYPES[entry["dtype"]]
            if base + end > raw.shape[0]:
                raise DwsError(f"{path}: tensor {name!r} runs past the end (truncated shard?)")
            out[name] = raw[base + begin : base + end].view(dtype).reshape(entry["shape"])
        return out

    def read(self, records: Sequence[Mapping[str, Any]]) -> WeightSpace:
        """The nets of ``records`` (manifest records), in that order, as float32."""
        by_shard: dict[str, list[int]] = {}
        for position, record in enumerate(records):
            by_shard.setdefault(str(record["shard"]), []).append(position)
        spec = self.zoo.spec
        shapes = [s for pair in zip(spec.weight_shapes, spec.bias_shapes) for s in pair]
        out = [torch.empty(len(records), *shape) for shape in shapes]
        for shard, positions in by_shard.items():
            maps = self.tensors(shard)
            rows = np.asarray([int(records[p]["index"]) for p in positions])
            where = torch.as_tensor(positions)
            for k, name in enumerate(self.names):
                block = np.ascontiguousarray(maps[name][rows])
                out[k][where] = torch.from_numpy(block).to(torch.float32)
        return WeightSpace(out[0::2], out[1::2], spec)


def _target_tensor(values: list[Any], key: str) -> Tensor:
    if any(
        v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))) for v in values
    ):
        raise DwsError(f"target {key!r} has non-numeric values; it cannot be trained on")
    if values and all(isinstance(v, int) for v in values):
        return torch.tensor(values, dtype=torch.int64)
    return torch.tensor([float("nan") if v is None else float(v) for v in values])


@dataclass
class SplitNets:
    """The nets of one split (or a subset), their manifest records and their targets."""

    name: str
    records: list[dict[str, Any]]
    targets: dict[str, Tensor]
    maps: ShardMaps

    @classmethod
    def of(
        cls,
        zoo: Zoo,
        split: str,
        target_keys: Sequence[tuple[str, str]],
        maps: ShardMaps,
        *,
        subset: int | None = None,
        seed: int = 0,
        where: str | None = None,
    ) -> SplitNets:
        """The nets of ``split``; ``where`` (``train.where``) keeps those whose recorded recipe,
        fit metrics or labels meet it, before ``subset`` draws from them."""
        records = split_records(zoo, split, where)
        if where is not None and not records:
            raise DwsError(f"{zoo.path}: no net of the {split} split meets train.where {where!r}")
        if not records:
            raise DwsError(f"{zoo.path}: the {split} split is empty; training needs train/val/test")
        if subset is not None and subset < len(records):
            generator = torch.Generator().manual_seed(seed)
            keep = sorted(torch.randperm(len(records), generator=generator)[:subset].tolist())
            records = [records[i] for i in keep]
        targets = {
            key: _target_tensor([(r.get(group) or {}).get(key) for r in records], key)
            for group, key in target_keys
        }
        return cls(split, records, targets, maps)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        return [str(r["id"]) for r in self.records]

    def batch(self, positions: Sequence[int] | Tensor) -> ZooBatch:
        """Nets at ``positions`` (indices into this split) as a :class:`ZooBatch`."""
        index = torch.as_tensor(positions, dtype=torch.long).reshape(-1)
        chosen = [self.records[int(i)] for i in index]
        space = self.maps.read(chosen)
        targets = {key: values[index] for key, values in self.targets.items()}
        return ZooBatch(space, targets, [str(r["id"]) for r in chosen])


__all__ = ["ShardMaps", "SplitNets"]

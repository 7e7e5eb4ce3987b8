"""Writing a zoo shard by shard, resuming after a kill, and finalising it.

Typical use by a zoo generator::

    writer = ZooWriter(out, kind="inr", spec="2-32-32-1:sine;w0=30", count=70_000,
                       dataset="mnist", conventions={...}, config=cfg, seed=cfg["seed"])
    done = writer.completed_shards()
    for k, nets in select_part(writer.plan, part).items():   # part "i/n" or None
        if k in done:
            continue
        space, records = train(nets)            # nets: range of net indices; net_seed(seed, i)
        writer.write_shard(k, space, records)
    if part is None:
        writer.finalize()

Each shard file and its manifest part are written atomically, shard first; a shard with only one
of the two (a kill between the writes) is not done and is simply made again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dwscli.data.zoo_format import (
    DTYPES,
    MANIFEST_DIR,
    MANIFEST_FILE,
    META_FILE,
    SHARD_DIR,
    SPLITS_FILE,
    ZooMeta,
    creation_info,
    describe_shards,
    manifest_part_name,
    normalise_record,
    read_jsonl,
    shard_name,
    tensor_names,
)
from dwscli.data.zoo_splits import (
    SplitFn,
    check_splits,
    resolve_split_config,
    split_from_config,
)
from dwscli.errors import DwsError
from dwscli.weights.atomic import atomic_write_bytes
from dwscli.weights.filewrite import canonical_safetensors as _canonical_safetensors
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

if TYPE_CHECKING:
    from dwscli.data.zoo_loader import Zoo

__all__ = [
    "ZooWriter",
    "completed_shards",
    "default_shard_size",
    "finalize_zoo",
    "read_manifest_parts",
]

_SHARD_BYTES_TARGET = 16 * 2**20


def default_shard_size(spec: MLPSpec | str, dtype: str = "float32") -> int:
    """A power of two in [64, 1024] nets giving shards of about 16 MB: small enough to stream
    and to lose little on a kill, large enough to keep file counts low (1024 SIRENs of
    2-32-32-1 are 4.9 MB; 64 classifiers of 784-64-10 are 13 MB)."""
    spec = MLPSpec.parse(spec) if isinstance(spec, str) else spec
    per_net = spec.num_parameters * DTYPES[dtype].itemsize
    size = 64
    while size < 1024 and (size * 2) * per_net <= _SHARD_BYTES_TARGET:
        size *= 2
    return size


def _json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


def _remove_stale_temporaries(directory: Path, name: str) -> None:
    """Remove temporary files a killed write of ``name`` left (``.name.XXXX.tmp``)."""
    for stale in directory.glob(f".{name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def completed_shards(directory: Path | str, meta: ZooMeta | None = None) -> set[int]:
    """Indices of the planned shards whose shard file AND manifest part both exist."""
    root = Path(directory)
    meta = meta or ZooMeta.read(root)
    return {
        k
        for k in range(meta.num_shards)
        if (root / SHARD_DIR / shard_name(k)).is_file()
        and (root / MANIFEST_DIR / manifest_part_name(k)).is_file()
    }


def _open_or_create(directory: Path, meta: ZooMeta, *, adopt_shard_size: bool) -> ZooMeta:
    """The zoo's metadata: ``meta`` for a new directory, the stored one when resuming (after
    checking that it describes the same zoo)."""
    if directory.exists() and not directory.is_dir():
        raise DwsError(f"{directory}: exists and is not a directory")
    if (directory / META_FILE).exists():
        stored = ZooMeta.read(directory)
        if adopt_shard_size:
            meta.shard_size = stored.shard_size
        differs = stored.differences(meta)
        if differs:
            raise DwsError(
                f"{directory}: holds a different zoo (differs in {', '.join(differs)})",
                hint="resume with the same settings, or write the new zoo to another directory",
            )
        meta = stored
    elif directory.exists() and any(not _is_meta_temporary(p) for p in directory.iterdir()):
        raise DwsError(
            f"{directory}: is not empty and holds no {META_FILE}; refusing to write a zoo into it",
            hint="choose a new or empty output directory",
        )
    else:
        _mkdir(directory)
        meta.write(directory)
    # Also when resuming: a run killed right after writing zoo.json has no subdirectories yet.
    _mkdir(directory / SHARD_DIR)
    _mkdir(directory / MANIFEST_DIR)
    return meta


def _is_meta_temporary(path: Path) -> bool:
    """A ``zoo.json`` being written by another part's writer that starts in the same directory
    at the same moment (parts of a job array may share one output directory)."""
    return path.name.startswith(f".{META_FILE}.") and path.name.endswith(".tmp")


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DwsError(f"{path}: cannot create ({exc.strerror or exc})") from exc


class ZooWriter:
    """Writes the shards of one planned zoo into ``directory``; resumes an existing one.

    ``count`` nets are planned into shards of ``shard_size`` (default: :func:`default_shard_size`);
    ``seed`` is the zoo seed the generator derives every net's seed from
    (:func:`~dwscli.data.zoo_format.net_seed`); ``split`` configures finalize's split
    (``fractions``, ``seed``, ``group_key``, ``split_key``; see
    :func:`~dwscli.data.zoo_splits.split_from_config`). Opening a directory that already holds
    a zoo resumes it: its ``zoo.json`` must match these settings (creation info aside). ``part``
    (``"i/n"``) is only recorded in the creation info.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        kind: str,
        spec: MLPSpec | str,
        count: int,
        dataset: str | None = None,
        conventions: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        shard_size: int | None = None,
        seed: int = 0,
        dtype: str = "float32",
        split: Mapping[str, Any] | None = None,
        part: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        if dtype not in DTYPES:
            raise DwsError(f"zoo dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        meta = ZooMeta(
            kind=kind,
            spec=str(spec),
            count=count,
            shard_size=shard_size or default_shard_size(str(spec), dtype),
            dataset=dataset,
            seed=seed,
            dtype=dtype,
            conventions=dict(conventions or {}),
            config=dict(config or {}),
            split=resolve_split_config(split, seed=seed),
            created=creation_info(part=part),
        )
        self.meta = _open_or_create(self.directory, meta, adopt_shard_size=shard_size is None)

    # ----------------------------------------------------------------------------------------
    @property
    def spec(self) -> MLPSpec:
        return self.meta.mlp_spec

    @property
    def plan(self) -> list[range]:
        """Net index range of every shard (see :func:`~dwscli.data.zoo_format.plan_shards`)."""
        return self.meta.plan

    @property
    def num_shards(self) -> int:
        return self.meta.num_shards

    def shard_path(self, index: int) -> Path:
        return self.directory / SHARD_DIR / shard_name(index)

    def manifest_part_path(self, index: int) -> Path:
        return self.directory / MANIFEST_DIR / manifest_part_name(index)

    def completed_shards(self) -> set[int]:
        """Shards that are done (file and manifest part both present); the rest must be made."""
        return completed_shards(self.directory, self.meta)

    # ----------------------------------------------------------------------------------------
    def _check_shard(self, index: int, space: WeightSpace, records: Sequence[Any]) -> range:
        if not 0 <= index < self.num_shards:
            raise DwsError(f"shard {index} is outside the plan (0..{self.num_shards - 1})")
        nets = self.plan[index]
        if space.batch_size != len(nets) or len(records) != len(nets):
            raise DwsError(
                f"shard {index} holds nets {nets.start}..{nets.stop - 1} ({len(nets)}), but got "
                f"{space.batch_size} nets and {len(records)} records"
            )
        spec = self.spec
        if space.spec.widths != spec.widths or space.spec.activation != spec.activation:
            raise DwsError(f"shard {index}: nets of spec {space.spec} do not fit zoo spec {spec}")
        return nets

    def write_shard(
        self, shard_index: int, space: WeightSpace, records: Sequence[Mapping[str, Any]]
    ) -> Path:
        """Write shard ``shard_index`` (nets ``plan[shard_index]``, in order) and its manifest
        part, each atomically, shard first. ``records[j]`` describes net ``j`` of ``space``:
        ``{"id": str, "hparams": {...}, "labels": {...}, "metrics": {...}}``. A shard that
        exists already is replaced. Returns the shard's path."""
        import safetensors.torch

        nets = self._check_shard(shard_index, space, records)
        rows = []
        for row, (net, record) in enumerate(zip(nets, records, strict=True)):
            clean = normalise_record(record)
            rows.append(
                {
                    "id": clean["id"],
                    "net": net,
                    "shard": shard_name(shard_index),
                    "index": row,
                    **{k: clean[k] for k in ("hparams", "labels", "metrics")},
                }
            )
        ids = [row["id"] for row in rows]
        if len(set(ids)) != len(ids):
            raise DwsError(f"shard {shard_index}: net ids repeat within the shard")

        dtype = self.meta.torch_dtype
        tensors = {
            name: tensor.detach().to("cpu", dtype).contiguous()
            for name, tensor in zip(tensor_names(self.spec.depth), space.tensors(), strict=True)
        }
        metadata = {
            "dws.spec": self.meta.spec,
            "dws.zoo.shard": str(shard_index),
            "dws.zoo.first_net": str(nets.start),
            "dws.zoo.ids": json.dumps(ids, separators=(",", ":")),
        }
        shard_path = self.shard_path(shard_index)
        part_path = self.manifest_part_path(shard_index)
        _remove_stale_temporaries(shard_path.parent, shard_path.name)
        _remove_stale_temporaries(part_path.parent, part_path.name)
        data = _canonical_safetensors(safetensors.torch.save(tensors, metadata=metadata))
        atomic_write_bytes(shard_path, data, force=True)
        text = "".join(_json_line(row) + "\n" for row in rows)
        atomic_write_bytes(part_path, text.encode("utf-8"), force=True)
        return shard_path

    def finalize(self, split_fn: SplitFn | None = None) -> Zoo:
        """Assemble ``manifest.jsonl`` and ``splits.json`` once every shard is done (see
        :func:`finalize_zoo`)."""
        return finalize_zoo(self.directory, split_fn)


# --------------------------------------------------------------------------------------------
def read_manifest_parts(directory: Path | str, meta: ZooMeta) -> list[dict[str, Any]]:
    """Every record of every planned shard, in shard order, checked against the plan."""
    root = Path(directory)
    records: list[dict[str, Any]] = []
    for k, nets in enumerate(meta.plan):
        path = root / MANIFEST_DIR / manifest_part_name(k)
        part = read_jsonl(path)
        expected = [(shard_name(k), row, net) for row, net in enumerate(nets)]
        found = [(r.get("shard"), r.get("index"), r.get("net")) for r in part]
        if found != expected:
            raise DwsError(
                f"{path}: does not list nets {nets.start}..{nets.stop - 1} of {shard_name(k)} "
                "in order",
                hint="delete this file and its shard, then resume the run to make them again",
            )
        records.extend(part)
    return records


def _check_unique_ids(records: Sequence[Mapping[str, Any]], where: Path) -> None:
    seen: dict[str, str] = {}
    duplicates: list[str] = []
    for record in records:
        net = str(record.get("id"))
        if net in seen:
            duplicates.append(f"{net!r} ({seen[net]} and {record.get('shard')})")
        seen[net] = str(record.get("shard"))
    if duplicates:
        more = f" and {len(duplicates) - 3} more" if len(duplicates) > 3 else ""
        raise DwsError(f"{where}: net ids are not unique: {', '.join(duplicates[:3])}{more}")


def finalize_zoo(directory: Path | str, split_fn: SplitFn | None = None) -> Zoo:
    """Write ``manifest.jsonl`` (all manifest parts in shard order) and ``splits.json``.

    Every planned shard must be done. ``split_fn`` defaults to the split configured in
    ``zoo.json`` (:func:`~dwscli.data.zoo_splits.split_from_config`). Safe to run again.
    """
    from dwscli.data.zoo_loader import Zoo

    root = Path(directory)
    meta = ZooMeta.read(root)
    missing = set(range(meta.num_shards)) - completed_shards(root, meta)
    if missing:
        raise DwsError(
            f"{root}: cannot finalize, {len(missing)} of {meta.num_shards} shards are not done: "
            f"{describe_shards(missing)}",
            hint="resume the run that makes them (same command), or merge the parts",
        )
    records = read_manifest_parts(root, meta)
    _check_unique_ids(records, root)
    split_fn = split_fn or split_from_config(meta.split, default_seed=meta.seed)
    splits = check_splits(split_fn(records), [str(r["id"]) for r in records])

    manifest = "".join(_json_line(r) + "\n" for r in records)
    atomic_write_bytes(root / MANIFEST_FILE, manifest.encode("utf-8"), force=True)
    body = ",\n".join(f"  {json.dumps(name)}: {json.dumps(ids)}" for name, ids in splits.items())
    atomic_write_bytes(root / SPLITS_FILE, ("{\n" + body + "\n}\n").encode("utf-8"), force=True)
    return Zoo.open(root)

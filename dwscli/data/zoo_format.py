"""The on-disk zoo format: names, ``zoo.json``, manifest records, shard planning and seeds.

A zoo is a directory::

    zoo.json                          what the zoo is (see :class:`ZooMeta`)
    shards/shard-00000.safetensors    many stacked nets: W1 [n, d1, d0], b1 [n, d1], …, WL, bL
    manifest.d/shard-00000.jsonl      the manifest lines of that shard (one JSON object per net)
    manifest.jsonl                    every net, in shard order (written by finalize)
    splits.json                       {"train": [ids], "val": [ids], "test": [ids]} (finalize)

A shard and its manifest part are each written atomically (temporary file + rename), shard
first. A shard counts as done only when both files exist, so a killed run leaves nothing
half-written and redoes at most the shard it was on. ``manifest.jsonl`` and ``splits.json`` are
derived from the parts; their presence marks a finished zoo. A part made with ``--shard i/n``
is a zoo directory without them.

Determinism: the plan (which nets go to which shard) depends only on ``count`` and
``shard_size``, and every net's seed only on ``(zoo seed, net index)`` (:func:`net_seed`), so
shards made by different runs or machines are interchangeable and parts merge into exactly the
zoo a single run makes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dwscli import __version__
from dwscli.errors import DwsError
from dwscli.weights.atomic import atomic_write_bytes
from dwscli.weights.spec import MLPSpec

__all__ = [
    "ALL_SPLITS",
    "DTYPES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HELDOUT_SPLIT",
    "KINDS",
    "MANIFEST_DIR",
    "MANIFEST_FILE",
    "META_FILE",
    "SHARD_DIR",
    "SPLITS",
    "SPLITS_FILE",
    "ZooMeta",
    "creation_info",
    "describe_shards",
    "manifest_part_name",
    "net_generator",
    "net_id",
    "net_seed",
    "normalise_record",
    "parse_part",
    "plan_shards",
    "read_jsonl",
    "select_part",
    "shard_index_of",
    "shard_name",
    "tensor_names",
    "to_json_value",
]

FORMAT_NAME = "dws-zoo"
FORMAT_VERSION = 1
KINDS = ("classifier", "inr", "sine")
SPLITS = ("train", "val", "test")
#: The extra evaluation split of a zoo split with a held-out recipe region: nets whose fitting
#: recipe lies in a region that never appears in train or val.
HELDOUT_SPLIT = "test_heldout_recipe"
#: Every split name a ``splits.json`` may hold (the held-out one only when configured).
ALL_SPLITS = (*SPLITS, HELDOUT_SPLIT)
#: Storage dtypes of shard tensors (fp16 halves the size; the loader casts back to float32).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16}

META_FILE = "zoo.json"
MANIFEST_FILE = "manifest.jsonl"
SPLITS_FILE = "splits.json"
SHARD_DIR = "shards"
MANIFEST_DIR = "manifest.d"

_SHARD_PATTERN = re.compile(r"^shard-(\d{5,})\.(safetensors|jsonl)$")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RECORD_KEYS = ("id", "hparams", "labels", "metrics")
_RECORD_DICTS = ("hparams", "labels", "metrics")


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------
def shard_name(index: int) -> str:
    """File name of shard ``index`` inside ``shards/``: ``shard-00003.safetensors``."""
    return f"shard-{index:05d}.safetensors"


def manifest_part_name(index: int) -> str:
    """File name of shard ``index``'s manifest part inside ``manifest.d/``."""
    return f"shard-{index:05d}.jsonl"


def shard_index_of(name: str) -> int | None:
    """The shard index in a shard or manifest-part file name, or None for any other name."""
    match = _SHARD_PATTERN.match(name)
    return int(match.group(1)) if match else None


def tensor_names(depth: int) -> list[str]:
    """Tensor keys of a shard in network order: ``W1, b1, W2, b2, …``."""
    return [name for i in range(1, depth + 1) for name in (f"W{i}", f"b{i}")]


def describe_shards(indices: Iterable[int], *, limit: int = 8) -> str:
    """``shard-00002, shard-00005..shard-00007`` for messages (runs collapsed, list capped)."""
    values = sorted(set(indices))
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    parts = [
        f"shard-{a:05d}" if a == b else f"shard-{a:05d}..shard-{b:05d}" for a, b in runs[:limit]
    ]
    if len(runs) > limit:
        parts.append(f"… ({len(values)} in all)")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# planning and seeds
# --------------------------------------------------------------------------------------------
def plan_shards(count: int, shard_size: int) -> list[range]:
    """Net index ranges of the shards of a zoo of ``count`` nets: shard k holds
    ``range(k * shard_size, min((k + 1) * shard_size, count))``."""
    if int(count) != count or count <= 0:
        raise DwsError(f"a zoo needs a positive number of nets, got {count}")
    if int(shard_size) != shard_size or shard_size <= 0:
        raise DwsError(f"shard size must be a positive integer, got {shard_size}")
    count, shard_size = int(count), int(shard_size)
    return [range(s, min(s + shard_size, count)) for s in range(0, count, shard_size)]


def parse_part(part: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: the second of four parts. ``i`` is 1-based (1 ≤ i ≤ n), as in
    Jest's and Playwright's ``--shard=i/n``, so "2/4" reads as "part 2 of 4"."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(part))
    if match is None:
        raise DwsError(f"cannot read shard part {part!r}", hint="write i/n, e.g. --shard 2/4")
    i, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= i <= n:
        raise DwsError(
            f"shard part {part!r} is out of range: i/n needs 1 <= i <= n",
            hint="parts are numbered from 1, e.g. --shard 1/4 … --shard 4/4",
        )
    return i, n


def select_part(shards: Sequence[range], part: str | None) -> dict[int, range]:
    """The shards (index -> net range) that part ``"i/n"`` makes: shard k goes to part
    ``k mod n + 1``, so parts get interleaved shards and similar amounts of work even when
    cost grows along the plan. ``None`` selects every shard."""
    if part is None:
        return dict(enumerate(shards))
    i, n = parse_part(part)
    return {k: nets for k, nets in enumerate(shards) if k % n == i - 1}


def net_seed(zoo_seed: int, index: int) -> int:
    """The seed of net ``index`` of a zoo with seed ``zoo_seed``: a hash of both, in [0, 2**63).

    A pure function of its arguments, so a net is the same whichever run, part or machine
    makes it; hashing (rather than ``zoo_seed + index``) keeps zoos with nearby seeds unrelated.
    """
    digest = hashlib.blake2b(f"dws-zoo-net:{int(zoo_seed)}:{int(index)}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1


def net_generator(zoo_seed: int, index: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`net_seed`, to draw a net's hyper-parameters."""
    return torch.Generator().manual_seed(net_seed(zoo_seed, index))


def net_id(prefix: str, index: int, digits: int = 6) -> str:
    """``net_id("fmnist-clf", 123)`` -> ``"fmnist-clf-000123"``."""
    return f"{prefix}-{index:0{digits}d}"


# --------------------------------------------------------------------------------------------
# JSON values and manifest records
# --------------------------------------------------------------------------------------------
def to_json_value(value: Any, *, where: str = "value") -> Any:
    """``value`` as plain JSON: numpy/torch scalars and arrays become Python numbers and lists,
    tuples become lists, and non-finite floats (a diverged net's loss) become ``null`` so that
    the files stay standard JSON."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, where=where) for v in value]
    if hasattr(value, "tolist"):  # numpy and torch scalars/arrays
        return to_json_value(value.tolist(), where=where)
    raise DwsError(f"{where}: {type(value).__name__} is not a JSON value")


def normalise_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A writer's record as stored: ``id`` plus the ``hparams``/``labels``/``metrics`` dicts."""
    if not isinstance(record, Mapping):
        raise DwsError(f"a zoo record must be a dict, got {type(record).__name__}")
    unknown = sorted(set(record) - set(_RECORD_KEYS))
    if unknown:
        raise DwsError(
            f"zoo record {record.get('id')!r}: unknown keys {', '.join(unknown)}",
            hint=f"a record has {', '.join(_RECORD_KEYS)}; put anything else in one of the dicts",
        )
    net = record.get("id")
    if not isinstance(net, str) or not _ID_PATTERN.match(net):
        raise DwsError(
            f"zoo record id {net!r} is not a usable id",
            hint="ids are file names: letters, digits, '.', '_' and '-', e.g. fmnist-clf-000123",
        )
    out: dict[str, Any] = {"id": net}
    for key in _RECORD_DICTS:
        value = record.get(key) or {}
        if not isinstance(value, Mapping):
            raise DwsError(f"zoo record {net!r}: {key} must be a dict, got {type(value).__name__}")
        out[key] = to_json_value(value, where=f"zoo record {net!r}: {key}")
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSON Lines file; a bad line is a DwsError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DwsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DwsError(f"{path}: cannot read ({exc})") from exc
    out: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DwsError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise DwsError(f"{path}:{number}: expected a JSON object per line")
        out.append(item)
    return out


def read_json(path: Path) -> Any:
    """A JSON file; missing or corrupt files are DwsErrors that name the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DwsError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise DwsError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DwsError(f"{path}: cannot read ({exc})") from exc


def write_json(path: Path, value: Any, *, indent: int | None = 2) -> None:
    """Write ``value`` as JSON atomically (replacing an existing file)."""
    text = json.dumps(value, indent=indent, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"), force=True)


def creation_info(**extra: Any) -> dict[str, Any]:
    """Who made a zoo directory and when; the only part of ``zoo.json`` that parts may differ in."""
    info: dict[str, Any] = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "dws_version": __version__,
    }
    info.update({k: v for k, v in extra.items() if v is not None})
    return info


# --------------------------------------------------------------------------------------------
# zoo.json
# --------------------------------------------------------------------------------------------
@dataclass
class ZooMeta:
    """The content of ``zoo.json``.

    ``conventions`` holds how to read the nets (for INRs: ``coord_range``, ``grid``, ``w0``,
    ``output_scale``, ``output_offset``); ``config`` is the generator's full configuration (opaque
    here); ``split`` is the split configuration finalize uses (see
    :func:`dwscli.data.zoo_splits.split_from_config`), recorded so that merging parts splits
    exactly like one run. Everything except ``created`` is the zoo's *identity*: parts of one
    zoo must agree on it.
    """

    kind: str
    spec: str
    count: int
    shard_size: int
    dataset: str | None = None
    seed: int = 0
    dtype: str = "float32"
    conventions: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    created: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DwsError(f"unknown zoo kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        self.spec = str(MLPSpec.parse(str(self.spec)))  # canonical form
        if self.dtype not in DTYPES:
            raise DwsError(f"zoo dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        plan_shards(self.count, self.shard_size)  # validates both
        self.count, self.shard_size = int(self.count), int(self.shard_size)
        self.seed = int(self.seed)
        # Normalise through JSON so that tuples vs lists never make two equal configs differ.
        self.conventions = to_json_value(dict(self.conventions), where="conventions")
        self.config = to_json_value(dict(self.config), where="config")
        self.split = to_json_value(dict(self.split), where="split")

    @property
    def mlp_spec(self) -> MLPSpec:
        return MLPSpec.parse(self.spec)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def plan(self) -> list[range]:
        return plan_shards(self.count, self.shard_size)

    @property
    def num_shards(self) -> int:
        return len(self.plan)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "kind": self.kind,
            "spec": self.spec,
            "dataset": self.dataset,
            "count": self.count,
            "shard_size": self.shard_size,
            "num_shards": self.num_shards,
            "dtype": self.dtype,
            "seed": self.seed,
            "conventions": self.conventions,
            "split": self.split,
            "config": self.config,
            "created": self.created,
        }

    def identity(self) -> dict[str, Any]:
        """Everything that defines the zoo's content (``zoo.json`` without ``created``)."""
        out = self.to_json()
        out.pop("created")
        return out

    def differences(self, other: ZooMeta) -> list[str]:
        """Names of the identity fields in which ``self`` and ``other`` differ."""
        mine, theirs = self.identity(), other.identity()
        return [key for key in mine if mine[key] != theirs.get(key)]

    @classmethod
    def from_json(cls, data: Any, *, source: Path | str = META_FILE) -> ZooMeta:
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise DwsError(f"{source}: not a dws zoo description (no format: {FORMAT_NAME})")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise DwsError(
                f"{source}: zoo format version {version!r} is not supported "
                f"(this dws reads version {FORMAT_VERSION})",
                hint="use the dws version that made the zoo, or make it again",
            )
        fields = {k: data[k] for k in data if k not in ("format", "num_shards")}
        try:
            meta = cls(**fields)
        except TypeError as exc:
            raise DwsError(f"{source}: unexpected or missing fields ({exc})") from None
        except DwsError as exc:
            raise DwsError(f"{source}: {exc}") from None
        if data.get("num_shards", meta.num_shards) != meta.num_shards:
            raise DwsError(
                f"{source}: num_shards {data['num_shards']} does not match count {meta.count} "
                f"and shard_size {meta.shard_size}"
            )
        return meta

    @classmethod
    def read(cls, directory: Path | str) -> ZooMeta:
        """Read ``directory/zoo.json``; a directory without one is not a zoo."""
        root = Path(directory)
        if not root.exists():
            raise DwsError(f"{root}: no such zoo directory")
        if not root.is_dir():
            raise DwsError(f"{root}: not a directory; a zoo is a directory with a {META_FILE}")
        path = root / META_FILE
        if not path.exists():
            raise DwsError(
                f"{root}: not a zoo (no {META_FILE})",
                hint="make one with dws zoo classifiers|inrs|sines -o DIR",
            )
        return cls.from_json(read_json(path), source=path)

    def write(self, directory: Path | str) -> None:
        write_json(Path(directory) / META_FILE, self.to_json())

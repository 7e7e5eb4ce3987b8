"""Train/val/test splits of a zoo, by network *and* by source image.

Nets are first put in groups: all nets made from one source image (``labels["image_index"]``
together with ``labels["image_split"]``, since image 5 of the official train set and image 5 of
the test set are different images) form one group; a net without a source image is a group of
its own. Whole groups are then assigned, so no image has nets in two splits.

- Official test images stay in test: when any net comes from an official test image
  (``image_split == "test"``), those groups make up the test split and the other groups are
  divided between train and val in the ratio ``train : val``.
- Otherwise (classifier and sine zoos, or an INR zoo made from training images only) the groups
  are divided between train, val and test by ``fractions``.

- A held-out recipe region (``hold_out``, recipe-diverse zoos): every net whose recipe
  (``hparams``) lies in the region goes to the extra split ``test_heldout_recipe``, whatever
  its source. A group with such a net never enters train or val: its other nets go to test, so
  images still stay out of train/val when any of their nets is held out. The rest is split as
  above, so train and val never see the region.

Dividing is deterministic and independent of record order: groups are ordered by a hash of
``(seed, group)`` and cut where the running count of nets crosses the fractions, so the split
sizes are exact to one group. It depends only on the set of records, which is why merged parts
split exactly like one run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from dwscli.data.zoo_format import ALL_SPLITS, HELDOUT_SPLIT, SPLITS
from dwscli.errors import DwsError

__all__ = [
    "DEFAULT_FRACTIONS",
    "RECORD_GROUPS",
    "HoldOut",
    "SplitFn",
    "check_splits",
    "hold_out_matcher",
    "parse_hold_out",
    "record_matcher",
    "resolve_split_config",
    "split_by_source",
    "split_from_config",
    "split_records",
]

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
#: A split function maps the manifest records to ``{"train": ids, "val": ids, "test": ids}``.
SplitFn = Callable[[Sequence[Mapping[str, Any]]], Mapping[str, Sequence[str]]]
GroupKey = str | Callable[[Mapping[str, Any]], Hashable | None]


def _fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(f < 0 for f in values) or sum(values) <= 0:
        raise DwsError(
            "split fractions must be three non-negative numbers (train, val, test), "
            f"got {fractions}"
        )
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def _hash01(seed: int, key: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(f"dws-split:{seed}:{key}".encode(), digest_size=8).digest(), "little"
    )


def _divide(
    groups: dict[str, list[str]], fractions: Sequence[float], names: Sequence[str], seed: int
) -> dict[str, list[str]]:
    """Assign whole groups to ``names`` so the net counts follow ``fractions``."""
    out: dict[str, list[str]] = {name: [] for name in names}
    total = sum(len(ids) for ids in groups.values())
    bounds, running = [], 0.0
    for fraction in fractions:
        running += fraction
        bounds.append(round(running * total))
    seen = 0
    for key in sorted(groups, key=lambda k: (_hash01(seed, k), k)):
        slot = next((i for i, bound in enumerate(bounds) if seen < bound), len(names) - 1)
        out[names[slot]].extend(groups[key])
        seen += len(groups[key])
    return out


#: A held-out recipe region as ``zoo.json`` records it: ``{hparam: {"in": [values]}}`` or
#: ``{hparam: {"min": low, "max": high}}`` (``low <= value < high``); all conditions must hold.
HoldOut = Mapping[str, Mapping[str, Any]]


def parse_hold_out(text: str, where: str = "--hold-out") -> dict[str, dict[str, Any]]:
    """``"optimizer=sgd,init=dwsnets|torch-linear,lr=1e-3..1e-2"`` as a :data:`HoldOut`.

    ``KEY=A|B`` holds out nets whose ``hparams[KEY]`` is A or B; ``KEY=LOW..HIGH`` those with
    LOW <= value < HIGH (either end may be left out); conditions joined by commas must all hold.
    """
    region: dict[str, dict[str, Any]] = {}
    for part in (p.strip() for p in text.split(",")):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise DwsError(f"{where}: expected KEY=VALUE[|VALUE…] or KEY=LOW..HIGH, got {part!r}")
        if key in region:
            raise DwsError(f"{where}: {key!r} is given twice")
        if ".." in value:
            low_text, _, high_text = value.partition("..")
            bounds: dict[str, Any] = {}
            for name, bound in (("min", low_text.strip()), ("max", high_text.strip())):
                if bound:
                    try:
                        bounds[name] = float(bound)
                    except ValueError:
                        raise DwsError(f"{where}: {key}: {bound!r} is not a number") from None
            if not bounds:
                raise DwsError(f"{where}: {key}: a range needs LOW, HIGH or both")
            if "min" in bounds and "max" in bounds and bounds["min"] >= bounds["max"]:
                raise DwsError(f"{where}: {key}: empty range {value!r}")
            region[key] = bounds
        else:
            region[key] = {"in": [v.strip() for v in value.split("|") if v.strip()]}
    return region


def _check_hold_out(region: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(region, Mapping) or not region:
        raise DwsError(f"split hold_out must be a non-empty mapping of conditions, got {region!r}")
    out: dict[str, dict[str, Any]] = {}
    for key, condition in region.items():
        ok = (
            isinstance(condition, Mapping)
            and condition
            and (
                (set(condition) == {"in"} and isinstance(condition["in"], list) and condition["in"])
                or (
                    set(condition) <= {"min", "max"}
                    and all(
                        isinstance(v, (int, float)) and not isinstance(v, bool)
                        for v in condition.values()
                    )
                )
            )
        )
        if not ok:
            raise DwsError(
                f"split hold_out: condition on {key!r} must be {{in: [values]}} or "
                f"{{min: low, max: high}}, got {condition!r}"
            )
        out[str(key)] = dict(condition)
    return out


def _same(value: Any, wanted: Any) -> bool:
    if value is None:
        return str(wanted).lower() in ("none", "null")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value) == float(wanted)
        except (TypeError, ValueError):
            return False
    return str(value) == str(wanted)


def hold_out_matcher(region: HoldOut) -> Callable[[Mapping[str, Any]], bool]:
    """Whether a manifest record's recipe (``hparams``) lies in ``region``."""
    return record_matcher(region, groups=("hparams",))


#: Where a condition's key is looked up in a manifest record, in order: recipe, fit, labels.
RECORD_GROUPS = ("hparams", "metrics", "labels")


def record_matcher(
    region: HoldOut, groups: Sequence[str] = RECORD_GROUPS
) -> Callable[[Mapping[str, Any]], bool]:
    """Whether a manifest record meets every condition of ``region``; a condition's key is
    looked up in the record's ``groups`` in order (the first group that has it)."""
    conditions = _check_hold_out(region)

    def lookup(record: Mapping[str, Any], key: str) -> Any:
        for group in groups:
            fields = record.get(group) or {}
            if key in fields:
                return fields[key]
        return None

    def matches(record: Mapping[str, Any]) -> bool:
        for key, condition in conditions.items():
            value = lookup(record, key)
            if "in" in condition:
                if not any(_same(value, wanted) for wanted in condition["in"]):
                    return False
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return False
            if "min" in condition and value < condition["min"]:
                return False
            if "max" in condition and value >= condition["max"]:
                return False
        return True

    return matches


def split_by_source(
    records: Sequence[Mapping[str, Any]],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    group_key: GroupKey = "image_index",
    split_key: str = "image_split",
    hold_out: HoldOut | None = None,
) -> dict[str, list[str]]:
    """Split ``records`` into train/val/test by network and by source image (module docstring).

    ``group_key`` is the label naming a net's source (default ``image_index``), or a function of
    the record returning a hashable group (or None for "no group"), e.g. to keep the checkpoints
    of one classifier training run together. ``split_key`` is the label giving the source's
    official split. ``hold_out`` (a recipe region, see :func:`parse_hold_out`) adds the split
    ``test_heldout_recipe``. Ids come back in record order within each split.
    """
    train_f, val_f, test_f = _fractions(fractions)
    matches = hold_out_matcher(hold_out) if hold_out is not None else None
    held: set[str] = set()
    held_groups: set[str] = set()
    groups: dict[str, list[str]] = {}
    official_test: set[str] = set()
    for record in records:
        labels = record.get("labels") or {}
        source = group_key(record) if callable(group_key) else labels.get(group_key)
        origin = labels.get(split_key)
        if source is None:
            key = f"net|{record['id']}"
        else:
            key = f"source|{origin}|{source!r}"
            if origin == "test":
                official_test.add(key)
        groups.setdefault(key, []).append(str(record["id"]))
        if matches is not None and matches(record):
            held.add(str(record["id"]))
            held_groups.add(key)
    # groups touching the held-out region stay out of train/val: held nets to the held-out
    # split, their other nets to test
    touched = [i for key in held_groups for i in groups.pop(key)]
    official_test -= held_groups

    if official_test:
        if train_f + val_f <= 0:
            raise DwsError("split fractions give nothing to train and val")
        rest = {k: v for k, v in groups.items() if k not in official_test}
        kept = train_f + val_f
        parts = _divide(rest, (train_f / kept, val_f / kept), ("train", "val"), seed)
        test_ids = {i for k in official_test for i in groups[k]}
        parts["test"] = [str(r["id"]) for r in records if str(r["id"]) in test_ids]
    else:
        parts = _divide(groups, (train_f, val_f, test_f), SPLITS, seed)
    names: tuple[str, ...] = SPLITS
    if matches is not None:
        names = ALL_SPLITS
        parts["test"].extend(i for i in touched if i not in held)
        parts[HELDOUT_SPLIT] = [i for i in touched if i in held]
    order = {str(r["id"]): n for n, r in enumerate(records)}
    return {name: sorted(parts[name], key=order.__getitem__) for name in names}


def resolve_split_config(config: Mapping[str, Any] | None, *, seed: int) -> dict[str, Any]:
    """``config`` with every default spelled out, for ``zoo.json``: the file then says exactly
    how the zoo was split."""
    resolved: dict[str, Any] = {
        "method": "by_source",
        "fractions": list(DEFAULT_FRACTIONS),
        "seed": int(seed),
        "group_key": "image_index",
        "split_key": "image_split",
    }
    resolved.update(dict(config or {}))
    resolved["fractions"] = list(_fractions(resolved["fractions"]))
    split_from_config(resolved)  # validates
    return resolved


def split_from_config(config: Mapping[str, Any], *, default_seed: int = 0) -> SplitFn:
    """The split function described by ``zoo.json``'s ``split`` entry.

    Keys (all optional): ``fractions`` (train, val, test), ``seed`` (default: the zoo seed),
    ``group_key`` (label name; null: split by net only) and ``split_key``.
    """
    unknown = set(config) - {"method", "fractions", "seed", "group_key", "split_key", "hold_out"}
    if unknown or config.get("method", "by_source") != "by_source":
        raise DwsError(f"unknown split configuration {dict(config)}")
    fractions = _fractions(config.get("fractions", DEFAULT_FRACTIONS))
    seed = int(config.get("seed", default_seed))
    label = config.get("group_key", "image_index")
    group_key: GroupKey = str(label) if label is not None else (lambda _record: None)
    split_key = str(config.get("split_key", "image_split"))
    hold_out = config.get("hold_out")
    if hold_out is not None:
        hold_out = _check_hold_out(hold_out)

    def split(records: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
        return split_by_source(records, fractions, seed, group_key, split_key, hold_out)

    return split


def check_splits(splits: Mapping[str, Sequence[str]], ids: Sequence[str]) -> dict[str, list[str]]:
    """``splits`` as plain lists, after checking they partition ``ids`` exactly."""
    extra = set(splits) - set(ALL_SPLITS)
    if extra:
        raise DwsError(f"unknown split names {sorted(extra)}; splits are {', '.join(ALL_SPLITS)}")
    names = ALL_SPLITS if HELDOUT_SPLIT in splits else SPLITS
    out = {name: [str(i) for i in splits.get(name, [])] for name in names}
    known = set(ids)
    seen: dict[str, str] = {}
    for name, members in out.items():
        for net in members:
            if net not in known:
                raise DwsError(f"split {name!r} names net {net!r}, which is not in the zoo")
            if net in seen:
                raise DwsError(f"net {net!r} is in both the {seen[net]!r} and {name!r} splits")
            seen[net] = name
    missing = [net for net in ids if net not in seen]
    if missing:
        raise DwsError(f"{len(missing)} nets are in no split (e.g. {missing[0]!r})")
    return out


def split_records(zoo: Any, split: str, where: str | None = None) -> list[dict[str, Any]]:
    """The manifest records of a zoo's ``split``, only those meeting ``where`` (a
    ``train.where`` condition, see :func:`record_matcher`) when it is given."""
    records = zoo.records(split)
    if where is None:
        return records
    matches = record_matcher(parse_hold_out(where, "train.where"))
    return [r for r in records if matches(r)]

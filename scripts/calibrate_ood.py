"""Write the out-of-distribution section (``ood:``) into a processor's card, from a zoo.

``dws train`` writes the section for every new processor. This gives it to processors trained
before, without retraining them: the statistics of the zoo's train split set each statistic's
centre and scale, its validation split the threshold (at most 1 % flagged), and its test split
is scored as a check (see :mod:`dwscli.processors.ood`). The zoo should be the processor's
training zoo or one remade with the same command and recipe (a different ``--seed`` gives fresh
nets of the same distribution); ``--zoo-command`` records how it was made, in the card.

    python scripts/calibrate_ood.py mnist-inr-classify /tmp/ood-zoos/mnist-inr \\
        --zoo-command 'dws zoo inrs --dataset mnist --count 1000 --seed 1 -o …'

The card is rewritten atomically with only its ``ood`` section changed; ``--dry-run`` prints
the section instead.

``--features K`` instead (re)fits the *feature check* of an invariant processor, the one
``train.ood_features: K`` makes: the mean and first K principal directions of the processor's
pooled features on the zoo's train split, the threshold from its val split, its test split
scored as a check; ``--where`` keeps only the nets that meet a condition (e.g. ``psnr=25..``,
as the card's ``train.where``). The weights file gets the check's tensors and the card its
``ood.features``; the weights section is left as it is.

    python scripts/calibrate_ood.py mnist-inr-classify zoos/mnist-inr-diverse-12k \
        --features 64 --where psnr=25..
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor

from dwscli.data.zoo import Zoo
from dwscli.errors import DwsError
from dwscli.processors.card import ProcessorCard
from dwscli.processors.loading import resolve_processor_path
from dwscli.processors.ood import MAX_NETS_PER_SPLIT, zoo_section
from dwscli.weights.atomic import atomic_write_bytes


def calibrate(
    processor: str,
    zoo_dir: Path,
    *,
    zoo_command: str | None = None,
    note: str | None = None,
    limit: int = MAX_NETS_PER_SPLIT,
    dry_run: bool = False,
) -> dict:
    """Compute the ``ood`` section of ``processor`` (a shipped name or a card path) from the
    zoo at ``zoo_dir``; write it into the card unless ``dry_run``. Returns the section."""
    card_path = resolve_processor_path(processor)
    card = ProcessorCard.read(card_path)
    zoo = Zoo.open(zoo_dir)
    if not card.fits(zoo.spec) or card.spec.depth != zoo.spec.depth:
        raise DwsError(f"{zoo_dir}: a {zoo.spec} zoo does not fit processor {card.name}")
    extra = {"zoo_command": zoo_command} if zoo_command else {}
    if note:
        extra["note"] = note
    section = zoo_section(zoo, limit=limit, **extra)
    if not dry_run:
        mapping = card.to_mapping()
        features = (mapping.get("ood") or {}).get("features")
        if features is not None:  # the feature check is the trainer's; it stays as it was
            section = {**section, "features": features}
        mapping["ood"] = section
        text = ProcessorCard.from_mapping(mapping, path=card_path).to_yaml()
        atomic_write_bytes(card_path, text.encode("utf-8"), force=True)
    return section


def split_features(model: Any, zoo: Zoo, split: str, where: str | None, limit: int) -> Tensor:
    """The processor's pooled features of (up to ``limit``, evenly spaced) nets of a split that
    meet ``where``."""
    import torch

    from dwscli.data.zoo_splits import parse_hold_out, record_matcher
    from dwscli.nn.models import pooled_features

    embed = pooled_features(model)
    assert embed is not None  # checked by the caller
    records = zoo.records(split)
    if where:
        matches = record_matcher(parse_hold_out(where, "--where"))
        records = [r for r in records if matches(r)]
    if len(records) < 2:
        raise DwsError(f"{zoo.path}: split {split} has {len(records)} nets that meet the condition")
    picks = torch.linspace(0, len(records) - 1, min(len(records), limit)).round().long().unique()
    chosen = [records[i]["id"] for i in picks.tolist()]
    with torch.no_grad():
        parts = [embed(zoo.get(chosen[i : i + 512])).float() for i in range(0, len(chosen), 512)]
    features = torch.cat(parts)
    bad = int((~features.isfinite().all(1)).sum())
    if bad:
        raise DwsError(f"{zoo.path}: {bad} {split} nets have non-finite features")
    return features


def calibrate_features(
    processor: str,
    zoo_dir: Path,
    components: int,
    *,
    where: str | None = None,
    limit: int = MAX_NETS_PER_SPLIT,
    dry_run: bool = False,
) -> dict:
    """Fit the feature check of an invariant ``processor`` on the zoo at ``zoo_dir`` (see the
    module docstring); write the tensors and ``ood.features`` unless ``dry_run``. Returns the
    card's new ``ood`` section."""
    import safetensors
    import safetensors.torch

    from dwscli.nn.models import pooled_features
    from dwscli.processors.feature_ood import TENSOR_PREFIX, fitted_feature_check
    from dwscli.processors.loading import load_processor

    if components < 1:
        raise DwsError(f"--features must be at least 1, got {components}")
    loaded = load_processor(processor)
    card, card_path = loaded.card, loaded.path
    if pooled_features(loaded.model) is None:
        raise DwsError(f"{card_path}: a {card.model.kind} model has no pooled features to check")
    if not card.ood:
        raise DwsError(
            f"{card_path}: the feature check goes beside the weights check, and the card has none",
            hint="run this script without --features first",
        )
    zoo = Zoo.open(zoo_dir)
    if not card.fits(zoo.spec) or card.spec.depth != zoo.spec.depth:
        raise DwsError(f"{zoo_dir}: a {zoo.spec} zoo does not fit processor {card.name}")
    chosen = {"where": where} if where else {}
    train = split_features(loaded.model, zoo, "train", where, limit)
    val = split_features(loaded.model, zoo, "val", where, limit)
    test = split_features(loaded.model, zoo, "test", where, limit)
    profile, section = fitted_feature_check(
        train, val, test, components, chosen=chosen, fitted_extra={"zoo": str(zoo_dir)}
    )
    mapping = card.to_mapping()
    ood = {**(mapping.get("ood") or {}), "features": section}
    if dry_run:
        return ood
    weights_path = card_path.with_suffix(".safetensors")
    state = safetensors.torch.load_file(str(weights_path))
    with safetensors.safe_open(str(weights_path), "pt") as handle:  # keep the file's metadata
        metadata = handle.metadata()
    state = {k: v for k, v in state.items() if not k.startswith(TENSOR_PREFIX)}
    state.update(profile.tensors())
    data = safetensors.torch.save(state, metadata=metadata)
    atomic_write_bytes(weights_path, data, force=True)
    mapping["ood"] = ood
    text = ProcessorCard.from_mapping(mapping, path=card_path).to_yaml()
    atomic_write_bytes(card_path, text.encode("utf-8"), force=True)
    load_processor(str(card_path))  # it reads back, check and all
    return ood


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("processor", help="a shipped processor name or a .yaml card path")
    parser.add_argument("zoo", type=Path, help="the zoo directory to calibrate on")
    parser.add_argument("--zoo-command", help="how the zoo was made (recorded in the card)")
    parser.add_argument("--note", help="a remark recorded in the card (e.g. which zoo this is)")
    parser.add_argument(
        "--limit", type=int, default=MAX_NETS_PER_SPLIT, help="most nets read per split"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the section only")
    parser.add_argument(
        "--features", type=int, metavar="K", help="fit the feature check (K principal directions)"
    )
    parser.add_argument("--where", help="with --features: only the nets that meet this condition")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.where is not None and args.features is None:
        parser.error("--where selects the nets of the feature check: it needs --features")
    import torch

    torch.set_num_threads(args.threads)
    try:
        if args.features is not None:
            section = calibrate_features(
                args.processor,
                args.zoo,
                args.features,
                where=args.where,
                limit=args.limit,
                dry_run=args.dry_run,
            )
        else:
            section = calibrate(
                args.processor,
                args.zoo,
                zoo_command=args.zoo_command,
                note=args.note,
                limit=args.limit,
                dry_run=args.dry_run,
            )
    except DwsError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    shown = {k: v for k, v in section.items() if k not in ("centre", "scale")}
    sys.stdout.write(yaml.safe_dump(shown if not args.dry_run else section, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

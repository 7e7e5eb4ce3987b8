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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

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
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
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

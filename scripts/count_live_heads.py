"""Count the live units of the invariant head of every shipped processor.

A head unit is alive when its pre-activation is positive for at least one input net
(:func:`dwscli.nn.heads.live_head_units`). The input nets are the first ``--nets`` nets of each
processor's training zoo, remade here with the zoo makers' defaults (a net is a pure function of
the zoo seed and its index, so these are the zoo's own nets whenever the zoo was made with the
defaults; otherwise they are nets of the same recipe).

    python scripts/count_live_heads.py [--nets 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from dwscli.data.zoo import Zoo
from dwscli.data.zoo_make import make_classifier_zoo, make_inr_zoo, make_sine_zoo
from dwscli.nn.heads import live_head_units
from dwscli.processors.card import ProcessorCard
from dwscli.processors.loading import load_processor
from dwscli.processors.registry import PROCESSORS_DIR


def sample_nets(card: ProcessorCard, count: int, root: Path):
    zoo = card.training["zoo"]
    out = root / card.name
    if zoo["kind"] == "classifier":
        from dwscli.data.classifier_train import ClassifierZooConfig

        pool = (card.input.preprocessing or {}).get("pool", 2)
        config = ClassifierZooConfig(spec=zoo["spec"], pool=pool)
        make_classifier_zoo(out, zoo["dataset"], count=count, config=config, seed=zoo["seed"])
    elif zoo["kind"] == "inr":
        make_inr_zoo(out, zoo["dataset"], count=count, seed=zoo["seed"])
    else:
        make_sine_zoo(out, count=count, seed=zoo["seed"])
    opened = Zoo.open(out)
    return opened.get(opened.ids())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| processor | head_norm | live head units |")
    print("|---|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for card_path in sorted(PROCESSORS_DIR.glob("*.yaml")):
            processor = load_processor(str(card_path))
            if processor.kind != "invariant":
                continue
            nets = sample_nets(processor.card, args.nets, Path(tmp))
            live = live_head_units(processor.model, lambda p=processor, n=nets: p.model(n))
            norm = processor.card.model.config.get("head_norm", "none")
            text = "n/a" if live is None else f"{live[0]}/{live[1]}"
            print(f"| {processor.name} | {norm} | {text} |", flush=True)


if __name__ == "__main__":
    main()

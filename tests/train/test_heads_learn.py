"""Every invariant architecture fits its own training nets: the regression test for heads that
died early in training (ReLU units of the head pushed below zero for every net, logits the same
for every net, loss stuck at ln 10).

A small MNIST INR zoo is made here (320 SIRENs, 256 of them for training); each architecture
trains a few hundred steps on the 256 and must classify at least 90 % of them. The trainer also
reports how many head units fire, and that number must be most of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dwscli.data.zoo_make import InrZooConfig, make_inr_zoo
from dwscli.nn.archs import ARCHS
from dwscli.train import train
from dwscli.train.config import TrainConfig

#: small versions of each architecture (the defaults are sized for real zoos)
SMALL: dict[str, dict[str, object]] = {
    "dws": {"hidden_channels": 8, "num_layers": 2, "head_hidden": [64]},
    "dws-probes": {"hidden_channels": 8, "num_layers": 2, "head_hidden": [64], "probes": 32},
    "mlp": {"hidden_features": 64, "num_layers": 2},
    "mlp-align": {"hidden_features": 64, "num_layers": 2},
    "inr2vec": {},
    "transformer": {"d_model": 16, "num_layers": 1, "dim_feedforward": 32},
    "nfn-np": {"hidden_channels": 16, "num_layers": 2},
    "nfn-hnp": {"hidden_channels": 16, "num_layers": 2},
    "nft": {"hidden_channels": 16, "num_blocks": 1},
    "graph": {"hidden_channels": 16, "num_layers": 2},
    "statnn": {},
}
#: mlp-aug sees every training net under a fresh random neuron permutation, so to it the 256
#: nets are an endless stream; memorising them is not what it is for. Its head must stay alive.
ALIVE_ONLY = {"mlp-aug": {"hidden_features": 64, "num_layers": 2}}
#: epochs of 8 steps; the message-passing models need a longer run to memorise
EPOCHS = {"graph": 80, "nfn-np": 80}


@pytest.fixture(scope="module")
def inr_zoo_320(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zoos") / "inr-320"
    config = InrZooConfig(spec="2-8-8-1:sine;w0=30", steps=20, chunk=160, compiled=False)
    make_inr_zoo(out, "mnist", count=320, config=config, shard_size=160)
    return out


def _train(zoo: Path, out: Path, arch: str, options: dict[str, object], epochs: int):
    config = TrainConfig.from_dict(
        {
            "name": f"fit-{arch}",
            "task": "inr-classify",
            "zoo": str(zoo),
            "output": str(out),
            "model": {"arch": arch, **options},
            "train": {
                "epochs": epochs,
                "batch_size": 32,
                "lr": 3e-3,
                "weight_decay": 0.0,
                "schedule": "constant",
                "eval_every": epochs,
                "permutation_augmentation": False,
                "seed": 0,
                "device": "cpu",
            },
        }
    )
    return train(config, resume=False)


def test_every_invariant_architecture_is_covered() -> None:
    invariant = {name for name, arch in ARCHS.items() if "invariant" in arch.kinds}
    assert invariant == set(SMALL) | set(ALIVE_ONLY)


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_fits_256_training_nets(inr_zoo_320: Path, tmp_path: Path, arch: str) -> None:
    result = _train(inr_zoo_320, tmp_path, arch, SMALL[arch], epochs=EPOCHS.get(arch, 40))
    assert result.history[-1]["train"]["accuracy"] >= 0.9, result.history[-1]
    assert result.metrics["train"]["accuracy"] >= 0.9
    live = result.history[-1].get("live_head_units")
    assert live is not None, "the trainer reports the head's live units"
    assert live[0] >= 0.5 * live[1], live


@pytest.mark.parametrize("arch", sorted(ALIVE_ONLY))
def test_head_stays_alive(inr_zoo_320: Path, tmp_path: Path, arch: str) -> None:
    result = _train(inr_zoo_320, tmp_path, arch, ALIVE_ONLY[arch], epochs=10)
    live = result.history[-1]["live_head_units"]
    assert live[0] >= 0.5 * live[1], live

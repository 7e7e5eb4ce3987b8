"""``train.where``: train, select and test only on the nets whose record meets a condition."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dwscli.data.zoo import Zoo
from dwscli.data.zoo_format import HELDOUT_SPLIT
from dwscli.errors import DwsError
from dwscli.train import distributed
from dwscli.train.config import TrainConfig
from dwscli.train.loop import Trainer


def _config(zoo: Path, out: Path, where: str | None) -> dict[str, Any]:
    return {
        "name": "where",
        "task": "inr-classify",
        "zoo": str(zoo),
        "output": str(out),
        "model": {"hidden_channels": 4, "num_layers": 1, "head_hidden": [8]},
        "train": {"epochs": 1, "batch_size": 4, "device": "cpu", "where": where},
    }


def _trainer(data: dict[str, Any]) -> Trainer:
    config = TrainConfig.from_dict(data, source="where.yaml")
    return Trainer(config, distributed.env_from_torchrun(), torch.device("cpu"), None)


def test_only_the_nets_meeting_the_condition_are_used(
    diverse_inr_zoo: Path, tmp_path: Path
) -> None:
    zoo = Zoo.open(diverse_inr_zoo)
    # the weakest val/test net sets the cut, so those splits keep a net and train loses some
    cut = min(zoo.record(net)["metrics"]["psnr"] for net in zoo.ids("val") + zoo.ids("test"))
    trainer = _trainer(_config(diverse_inr_zoo, tmp_path, f"psnr={cut}.."))
    for nets, split in (
        (trainer.train_nets, "train"),
        (trainer.val_nets, "val"),
        (trainer.test_nets, "test"),
    ):
        wanted = [r["id"] for r in zoo.records(split) if r["metrics"]["psnr"] >= cut]
        assert nets.ids == wanted
    assert len(trainer.train_nets) < len(zoo.ids("train"))
    # the held-out SGD nets are filtered too; a condition none of them meets drops the split
    assert trainer.heldout_nets is not None
    assert all(zoo.record(net)["metrics"]["psnr"] >= cut for net in trainer.heldout_nets.ids)
    adam_only = _trainer(_config(diverse_inr_zoo, tmp_path, "optimizer=adam"))
    assert adam_only.heldout_nets is None and zoo.ids(HELDOUT_SPLIT)
    unfiltered = _trainer(_config(diverse_inr_zoo, tmp_path, None))
    assert unfiltered.train_nets.ids == zoo.ids("train")


def test_bad_conditions_are_one_line_errors(diverse_inr_zoo: Path, tmp_path: Path) -> None:
    with pytest.raises(DwsError, match=r"where\.yaml: train\.where: expected KEY=VALUE"):
        _trainer(_config(diverse_inr_zoo, tmp_path, "psnr"))
    with pytest.raises(DwsError, match=r"no net of the train split meets train\.where"):
        _trainer(_config(diverse_inr_zoo, tmp_path, "psnr=1000.."))


def test_the_ood_profile_comes_from_the_nets_meeting_the_condition(
    diverse_inr_zoo: Path,
) -> None:
    from dwscli.processors.ood import robust_centre_scale, split_statistics, zoo_section

    zoo = Zoo.open(diverse_inr_zoo)
    cut = min(zoo.record(net)["metrics"]["psnr"] for net in zoo.ids("val") + zoo.ids("test"))
    where = f"psnr={cut}.."
    section = zoo_section(zoo, where=where)
    kept = [r for r in zoo.records("train") if r["metrics"]["psnr"] >= cut]
    assert section["fitted_on"]["where"] == where
    assert section["fitted_on"]["nets"] == len(kept) < len(zoo.ids("train"))
    assert section["calibrated_on"]["where"] == where
    # the centre is the median of the kept nets' statistics, not of the whole split
    kept_stats = split_statistics(zoo, "train", where=where)
    all_stats = split_statistics(zoo, "train")
    assert len(kept_stats) == len(kept) and len(all_stats) == len(zoo.ids("train"))
    centre = torch.tensor(list(section["centre"].values()), dtype=torch.float64)
    assert torch.allclose(centre, robust_centre_scale(kept_stats)[0].double(), rtol=1e-4)
    assert not torch.allclose(centre, robust_centre_scale(all_stats)[0].double(), rtol=1e-4)
    assert "where" not in zoo_section(zoo)["fitted_on"]

"""Writing a trained processor: ``<name>.safetensors`` (state dict) + ``<name>.yaml`` (card).

The card (:class:`dwscli.processors.card.ProcessorCard`, checked here as it is written) is what
:func:`dwscli.processors.loading.load_processor` reads to rebuild the model and what
``dws processors`` lists::

    name: fmnist-accuracy
    version: '1'
    task: accuracy
    description: null
    model: {kind: invariant, arch: dws, parameters: 12345, config: {...DWSNetConfig...}}
    output: {type: scalar, target: metrics.test_acc}
    input:
      spec: 196-32-32-10:relu
      widths: [196, 32, 32, 10]
      activation: relu
      zoo_kind: classifier
      dataset: fashion-mnist
      preprocessing: {image_size: [14, 14], pool: 2, mean: …, std: …, flatten: row-major,
                      scaling: pixels / 255}      # classifier zoos ('conventions' for INRs)
    normalization: {method: …, fitted_on: {split: train, nets: 1000}, mean: {W1: …}, std: {…}}
    ood: {threshold: …, centre: {W1.log_rms: …}, scale: {…}, fitted_on: {split: train, …},
          calibrated_on: {split: val, …}, checked_on: {split: test, …}}
    training: {zoo: {path, kind, spec, dataset, count, seed, splits: {train, val, test}, …},
               config: {...the training config...}, epochs_run, best_epoch, stopped_early,
               seconds, seed, world_size, device, dws_version, time, selected_on}
    metrics: {val: {...}, test: {...},    # val: the best epoch's; test: the best model's
              baselines: {statnn: {test: {...}}}}   # accuracy task: same train/test nets

Tasks may add top-level keys: ``adapt`` writes ``target_domain: <corruption>`` after ``task``
(``dws adapt`` copies it into the provenance of every output).

The weights are written first and the card last, each atomically, so a card on disk always has
complete weights beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dwscli import __version__
from dwscli.data.zoo import Zoo
from dwscli.processors.card import ProcessorCard
from dwscli.weights.atomic import atomic_write_bytes


def clean_metrics(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """Plain floats to 6 significant digits, NaN as None (YAML/JSON ``null``)."""
    return {
        k: (None if math.isnan(float(v)) else float(f"{float(v):.6g}")) for k, v in metrics.items()
    }


def input_section(zoo: Zoo) -> dict[str, Any]:
    spec = zoo.spec
    section: dict[str, Any] = {
        "spec": str(spec),
        "widths": list(spec.widths),
        "activation": spec.activation,
        "zoo_kind": zoo.kind,
        "dataset": zoo.meta.dataset,
    }
    key = "preprocessing" if zoo.kind == "classifier" else "conventions"
    section[key] = zoo.conventions
    return section


def normalization_section(
    model: nn.Module, depth: int, fitted_on: int, started_from: str | None = None
) -> dict[str, Any]:
    """The input normalisation's statistics and where they come from: ``fitted_on`` training
    nets, or the processor the model started from (``train.init_from``), whose they are."""
    state = model.state_dict()
    if "normalizer.mean" not in state:
        return {"method": "none"}
    names = [f"W{i + 1}" for i in range(depth)] + [f"b{i + 1}" for i in range(depth)]
    mean, std = state["normalizer.mean"].tolist(), state["normalizer.std"].tolist()
    normalizer = getattr(model, "normalizer", None)
    method = "per-tensor (x - mean) / std, scalars per W_i and b_i (permutation-invariant)"
    if getattr(normalizer, "squash", False):
        method = (
            "per-tensor asinh((x - median) / (1.4826 MAD)), scalars per W_i and b_i "
            "(permutation-invariant)"
        )
    source: dict[str, Any] = {"split": "train", "nets": fitted_on}
    if started_from is not None:
        source = {"processor": started_from}
    return {
        "method": method,
        "fitted_on": source,
        "mean": dict(zip(names, mean)),
        "std": dict(zip(names, std)),
    }


def ood_section(zoo: Zoo, where: str | None = None) -> dict[str, Any]:
    """What the training nets looked like, so that the processor commands can flag inputs
    unlike them (:mod:`dwscli.processors.ood`): centre and scale from the zoo's train split,
    the threshold calibrated on its val split (the test split stays an honest check of how
    often held-in nets are flagged, recorded as ``checked_on``); with ``where``
    (``train.where``) only the nets the processor was trained and tested on."""
    from dwscli.processors.ood import zoo_section as section

    return section(zoo, where=where)


def zoo_section(zoo: Zoo, train_nets: int) -> dict[str, Any]:
    meta = zoo.meta
    return {
        "path": str(zoo.path),
        "kind": meta.kind,
        "spec": meta.spec,
        "dataset": meta.dataset,
        "count": meta.count,
        "seed": meta.seed,
        "splits": {name: len(ids) for name, ids in zoo.splits.items()},
        "train_nets_used": train_nets,
    }


def _plain(data: Any) -> Any:
    """Plain YAML types only (dataclasses as mappings, no str subclasses)."""
    import dataclasses

    def default(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return str(value)

    return json.loads(json.dumps(data, default=default))


def write_processor(
    output: Path,
    name: str,
    card: Mapping[str, Any],
    model: nn.Module,
    extra: Mapping[str, torch.Tensor] | None = None,
) -> tuple[Path, Path]:
    """Write the model's state dict (and ``extra`` tensors beside it, such as the feature
    check's) and its card; returns ``(card_path, weights_path)``."""
    import safetensors.torch

    output.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tensors.update(extra or {})
    metadata = {
        "dws.processor": name,
        "dws.task": str(card.get("task")),
        "dws.version": str(card.get("version")),
    }
    weights = output / f"{name}.safetensors"
    card_path = output / f"{name}.yaml"
    atomic_write_bytes(weights, safetensors.torch.save(tensors, metadata=metadata), force=True)
    text = ProcessorCard.from_mapping(_plain(card), path=card_path).to_yaml()
    atomic_write_bytes(card_path, text.encode("utf-8"), force=True)
    return card_path, weights


def provenance() -> dict[str, Any]:
    return {
        "dws_version": __version__,
        "torch_version": str(torch.__version__),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


__all__ = [
    "clean_metrics",
    "input_section",
    "normalization_section",
    "ood_section",
    "provenance",
    "write_processor",
    "zoo_section",
]

"""The resumable training state ``<output>/<name>.last.pt``, written atomically every epoch.

It holds what an interrupted run needs to continue exactly where it stopped: model, optimizer
and scheduler states, the epoch, the best validation score with its model weights, the history,
the time spent so far, every rank's random-number state, and the configuration it was written
under. Resuming refuses a state whose configuration differs in anything but the keys in
:data:`RESUMABLE_CHANGES` (more epochs, other patience, another device).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dwscli.errors import DwsError
from dwscli.weights.atomic import atomic_write_bytes

STATE_FORMAT = 1
#: Configuration keys a resumed run may change.
RESUMABLE_CHANGES = frozenset(
    {
        "train.epochs",
        "train.patience",
        "train.device",
        "train.eval_batch_size",
        "train.ood_features",
        "description",
        "version",
    }
)

#: Options added after runs were saved, and what a saved config without them was trained with:
#: a finished run (in a comparison) or a training state (on resume) still counts when the
#: current value is that one. (Heads were not normalised before ``head_norm`` existed, so its
#: absence means ``none``, not today's default.)
ABSENT_MEANS: dict[str, Any] = {
    "model.head_norm": "none",
    "model.input_mixing": 0,
    "model.input_templates": 0,
    "model.input_squash": False,
    "model.probe_grid": False,
    "model.probe_edit": None,
    "model.probe_edit_size": 3,
    "model.delta_scale": "zoo",
    "model.trunk": True,
    "model.output_solve": None,
    "model.output_solve_ridge": 1e-6,
    "model.output_init_scale": 0.01,
    "task.clean_weight": 0.0,
    "train.recalibrate_norms": False,
    "train.ood_features": 0,
}


def flatten_config(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``: a config as dotted keys."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Keys (dotted) whose values differ between two configs, resumable changes excluded;
    options the saved config predates count as :data:`ABSENT_MEANS` says."""
    a, b = flatten_config(saved), flatten_config(current)
    for key in ABSENT_MEANS.keys() & (set(b) - set(a)):
        a[key] = ABSENT_MEANS[key]
    keys = sorted(set(a) | set(b))
    return [k for k in keys if k not in RESUMABLE_CHANGES and a.get(k) != b.get(k)]


def capture_rng(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a reader never sees half a file)."""
    buffer = io.BytesIO()
    torch.save({"format": STATE_FORMAT, **state}, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue(), force=True)


def load_state(path: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """Read a state written by :func:`save_state` for a compatible configuration."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise DwsError(
            f"{path}: cannot read the training state ({type(error).__name__})",
            hint="pass --no-resume to start over",
        ) from error
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DwsError(f"{path}: not a dws training state", hint="pass --no-resume to start over")
    differences = config_differences(state["config"], config)
    if differences:
        shown = ", ".join(differences[:4]) + (" …" if len(differences) > 4 else "")
        raise DwsError(
            f"{path}: was written by a run with a different config (differs in {shown})",
            hint="pass --no-resume to start over, or restore the config",
        )
    return state


__all__ = [
    "ABSENT_MEANS",
    "RESUMABLE_CHANGES",
    "capture_rng",
    "config_differences",
    "flatten_config",
    "load_state",
    "restore_rng",
    "save_state",
]

"""Tests that take a device: ``DWS_TEST_DEVICE`` (default cpu) names it.

With ``DWS_TEST_DEVICE=cuda`` they run on the GPU and compare with the CPU; on a machine without
CUDA they skip with a reason instead of failing. ``benchmarks/gpu_check.sh`` runs them so.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet, InvariantDWSNet
from dwscli.nn.streaming import BlockedForward
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

TOLERANCE = 1e-4


def requested_device() -> str:
    return os.environ.get("DWS_TEST_DEVICE", "cpu")


@pytest.fixture
def device() -> torch.device:
    name = requested_device()
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("DWS_TEST_DEVICE=cuda but CUDA is not available on this machine")
    if name not in ("cpu", "cuda"):
        pytest.fail(f"DWS_TEST_DEVICE={name!r}: use cpu or cuda")
    return torch.device(name)


def _max_diff(a, b) -> float:
    if isinstance(a, torch.Tensor):
        return float((a.detach().cpu() - b.detach().cpu()).abs().max())
    return max(
        float((x.detach().cpu() - y.detach().cpu()).abs().max())
        for x, y in zip(a.tensors(), b.tensors())
    )


@pytest.mark.parametrize("kind", ["invariant", "equivariant"])
def test_model_forward_backward_on_device_matches_cpu(kind: str, device: torch.device) -> None:
    spec = MLPSpec.parse("3-9-8-7-2:relu")
    torch.manual_seed(0)
    config = DWSNetConfig(hidden_channels=8, num_layers=3, output_init_scale=1.0)
    cpu_model = (InvariantDWSNet if kind == "invariant" else EquivariantDWSNet)(spec, config)
    moved = (InvariantDWSNet if kind == "invariant" else EquivariantDWSNet)(spec, config)
    moved.load_state_dict(cpu_model.state_dict())
    moved.to(device)
    space = WeightSpace.random(spec, 4, generator=torch.Generator().manual_seed(1))
    out_cpu, out_dev = cpu_model(space), moved(space.to(device))
    assert _max_diff(out_cpu, out_dev) < TOLERANCE
    loss_cpu = out_cpu.sum() if kind == "invariant" else out_cpu.flatten().sum()
    loss_dev = out_dev.sum() if kind == "invariant" else out_dev.flatten().sum()
    loss_cpu.backward()
    loss_dev.backward()
    for (name, p_cpu), p_dev in zip(cpu_model.named_parameters(), moved.parameters()):
        if p_cpu.grad is None:
            continue
        assert p_dev.grad is not None, name
        assert float((p_cpu.grad - p_dev.grad.cpu()).abs().max()) < TOLERANCE, name


def test_blocked_forward_on_device_matches_cpu(device: torch.device) -> None:
    spec = MLPSpec.parse("5-17-16-3:relu")
    torch.manual_seed(0)
    config = DWSNetConfig(hidden_channels=4, num_layers=2, fixed_mixing="shared")
    model = EquivariantDWSNet(spec, config).eval()
    space = WeightSpace.random(spec, 1, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(space)
    blocked = BlockedForward(model.to(device), space.to(device), 1).run()
    assert _max_diff(expected, blocked) < TOLERANCE


def test_predict_accuracy_and_adapt_on_device_match_cpu(
    tmp_path: Path, device: torch.device
) -> None:
    from safetensors.torch import load_file

    from dwscli import api
    from dwscli.weights.checkpoint import save_space

    spec = MLPSpec.parse("196-32-32-10:relu")
    generator = torch.Generator().manual_seed(3)
    paths = [
        save_space(
            tmp_path / f"net{k}.safetensors", WeightSpace.random(spec, 1, generator=generator)
        )
        for k in range(3)
    ]
    on_cpu = api.predict_accuracy(paths, device="cpu")
    on_device = api.predict_accuracy(paths, device=device.type)
    for a, b in zip(on_cpu, on_device):
        assert abs(a["predicted_accuracy"] - b["predicted_accuracy"]) <= TOLERANCE
    api.adapt(paths, out_dir=tmp_path / "cpu", device="cpu")
    api.adapt(paths, out_dir=tmp_path / "dev", device=device.type)
    for path in paths:
        left = load_file(str(tmp_path / "cpu" / path.name))
        right = load_file(str(tmp_path / "dev" / path.name))
        assert left.keys() == right.keys()
        for key in left:
            assert float((left[key] - right[key]).abs().max()) <= TOLERANCE, key


def test_cuda_request_without_cuda_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    """The skip logic itself: asking for cuda where there is none is a skip, not a failure."""
    monkeypatch.setenv("DWS_TEST_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(pytest.skip.Exception):
        device.__wrapped__()

"""Corruptions for target domains: shape, range, determinism, composition, and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dwscli.data.corruptions import CORRUPTIONS, corrupt, corruption_names, parse_corruption
from dwscli.data.datasets import dataset_location, load_dataset
from dwscli.errors import DwsError

ACTIVE = [name for name in CORRUPTIONS if name != "none"]
RANDOM = [name for name, c in CORRUPTIONS.items() if c.random]
FIXED = [name for name, c in CORRUPTIONS.items() if not c.random and name != "none"]


def _images(n: int = 8, side: int = 28, seed: int = 0) -> torch.Tensor:
    """Digit-like test images: a bright off-centre blob on black, with some texture."""
    gen = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    centre = torch.rand(n, 2, generator=gen) * side / 2 + side / 4
    d2 = (y - centre[:, 0, None, None]) ** 2 + (x - centre[:, 1, None, None] * 0.7) ** 2
    blob = torch.exp(-d2 / 18.0)
    texture = 0.3 * torch.rand(n, side, side, generator=gen)
    return (blob + texture * (blob > 0.2)).clamp(0, 1)


def test_names() -> None:
    names = corruption_names()
    for required in ("gaussian-noise", "rotation", "blur", "contrast"):
        assert required in names
    assert names == list(CORRUPTIONS)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
@pytest.mark.parametrize("layout", ["nhw", "n1hw"])
def test_shape_dtype_range(name: str, layout: str) -> None:
    x = _images()
    if layout == "n1hw":
        x = x.unsqueeze(1)
    before = x.clone()
    y = corrupt(x, name, seed=0)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(x, before)  # the input is not modified in place


@pytest.mark.parametrize("name", ACTIVE)
def test_each_corruption_changes_images(name: str) -> None:
    x = _images()
    y = corrupt(x, name, seed=0)
    assert (y - x).abs().mean() > 0.01


def test_none_is_identity() -> None:
    x = _images()
    assert torch.equal(corrupt(x, "none", seed=3), x)


@pytest.mark.parametrize("name", ACTIVE)
def test_severity_zero_is_identity(name: str) -> None:
    x = _images()
    torch.testing.assert_close(corrupt(x, name, seed=0, severity=0.0), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ACTIVE)
def test_same_seed_same_output(name: str) -> None:
    x = _images()
    assert torch.equal(corrupt(x, name, seed=7), corrupt(x, name, seed=7))


@pytest.mark.parametrize("name", RANDOM)
def test_random_corruptions_depend_on_seed(name: str) -> None:
    x = _images()
    assert not torch.allclose(corrupt(x, name, seed=1), corrupt(x, name, seed=2))


@pytest.mark.parametrize("name", FIXED)
def test_fixed_corruptions_ignore_seed(name: str) -> None:
    x = _images()
    assert torch.equal(corrupt(x, name, seed=1), corrupt(x, name, seed=2))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes(dtype: torch.dtype) -> None:
    x = _images().to(dtype)
    y = corrupt(x, "rotation+blur+gaussian-noise", seed=0)
    assert y.dtype == dtype and y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_multichannel_images() -> None:
    x = _images(4).unsqueeze(1).repeat(1, 3, 1, 1)
    y = corrupt(x, "blur+contrast", seed=0)
    assert y.shape == (4, 3, 28, 28)
    assert torch.allclose(y[:, 0], y[:, 2])  # deterministic ops treat channels alike


# ------------------------------------------------------------------------------------------------
# composition and severities


def test_composition_applies_left_to_right() -> None:
    x = _images()
    composed = corrupt(x, "rotation+blur", seed=0)
    stepwise = corrupt(corrupt(x, "rotation", seed=0), "blur", seed=0)
    torch.testing.assert_close(composed, stepwise, atol=1e-6, rtol=0)
    assert not torch.allclose(composed, corrupt(x, "blur+rotation", seed=0), atol=1e-3)


def test_composition_with_random_part_is_deterministic() -> None:
    x = _images()
    a = corrupt(x, "rotation+gaussian-noise", seed=5)
    assert torch.equal(a, corrupt(x, " rotation + gaussian-noise ", seed=5))
    assert not torch.allclose(a, corrupt(x, "rotation+gaussian-noise", seed=6))
    assert not torch.allclose(a, corrupt(x, "rotation", seed=5))


def test_per_part_severity_and_defaults() -> None:
    x = _images()
    assert torch.equal(corrupt(x, "blur:1.5", seed=0), corrupt(x, "blur", seed=0, severity=1.5))
    steps = parse_corruption("rotation:30+gaussian_noise")
    assert [(c.name, s) for c, s in steps] == [
        ("rotation", 30.0),
        ("gaussian-noise", CORRUPTIONS["gaussian-noise"].default_severity),
    ]
    stronger = corrupt(x, "gaussian-noise", seed=0, severity=0.5)
    weaker = corrupt(x, "gaussian-noise", seed=0, severity=0.05)
    assert (stronger - x).abs().mean() > (weaker - x).abs().mean()


def test_rotation_direction_and_full_turn() -> None:
    x = torch.zeros(1, 28, 28)
    x[0, 2, 14] = 1.0  # top centre
    y = corrupt(x, "rotation:90", seed=0)
    assert divmod(int(y.argmax()), 28) == (13, 2)  # counter-clockwise: now at the left
    imgs = _images()
    torch.testing.assert_close(corrupt(imgs, "rotation:360", seed=0), imgs, atol=1e-5, rtol=0)


def test_random_rotation_differs_per_image() -> None:
    x = _images(1).expand(6, 28, 28).contiguous()
    y = corrupt(x, "random-rotation", seed=0)
    assert all(not torch.allclose(y[0], y[i], atol=1e-3) for i in range(1, 6))


def test_contrast_keeps_mean_and_scales_spread() -> None:
    x = _images()
    y = corrupt(x, "contrast", seed=0, severity=0.6)
    mean = x.mean(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(y.mean(dim=(1, 2), keepdim=True), mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(y - mean, 0.4 * (x - mean), atol=1e-6, rtol=0)


def test_blur_smooths_and_keeps_constants() -> None:
    flat = torch.full((2, 28, 28), 0.3)
    torch.testing.assert_close(corrupt(flat, "blur", seed=0), flat)
    x = torch.rand(4, 28, 28, generator=torch.Generator().manual_seed(0))  # pixel noise
    y = corrupt(x, "blur", seed=0, severity=1.0)
    assert y.diff(dim=-1).abs().mean() < 0.2 * x.diff(dim=-1).abs().mean()


def test_gaussian_noise_has_the_requested_std() -> None:
    x = torch.full((64, 28, 28), 0.5)
    y = corrupt(x, "gaussian-noise", seed=0, severity=0.1)
    assert abs(float((y - x).std()) - 0.1) < 0.005
    assert abs(float((y - x).mean())) < 0.005


# ------------------------------------------------------------------------------------------------
# the defaults hurt a real classifier


@pytest.mark.skipif(
    dataset_location("fashion-mnist") is None,
    reason="Fashion-MNIST not installed: dws data install fashion-mnist",
)
def test_defaults_hurt_a_fashion_mnist_classifier(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A ridge-regression linear classifier (≈ 82 % clean) loses ≥ 10 points to every default."""
    cache: Path = tmp_path_factory.mktemp("dws-cache")
    train = load_dataset("fashion-mnist", "train", cache_root=cache)
    test = load_dataset("fashion-mnist", "test", cache_root=cache)

    def features(images: torch.Tensor) -> torch.Tensor:
        flat = images.reshape(len(images), -1)
        return torch.cat([flat, torch.ones(len(flat), 1)], dim=1)

    a = features(train.images[:10_000].float() / 255)
    targets = torch.nn.functional.one_hot(train.labels[:10_000], 10).float()
    w = torch.linalg.solve(a.T @ a + torch.eye(a.shape[1]), a.T @ targets)
    x, y = test.float_images()[:2_000], test.labels[:2_000]

    def accuracy(images: torch.Tensor) -> float:
        return float((features(images) @ w).argmax(1).eq(y).float().mean())

    clean = accuracy(x)
    assert clean > 0.78
    for name in ACTIVE:
        corrupted = accuracy(corrupt(x, name, seed=0))
        assert corrupted < clean - 0.10, f"{name}: {corrupted:.3f} vs clean {clean:.3f}"
        assert corrupted > 0.15, f"{name} destroys the images ({corrupted:.3f})"


# ------------------------------------------------------------------------------------------------
# errors


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(DwsError) as info:
        corrupt(_images(), "rotation+fog", seed=0)
    message = str(info.value)
    assert "unknown corruption 'fog'" in message and "\n" not in message
    for name in CORRUPTIONS:
        assert name in message


@pytest.mark.parametrize(
    ("name", "severity", "match"),
    [
        ("", None, "empty corruption name"),
        ("rotation++blur", None, "empty corruption name"),
        ("blur:abc", None, "bad severity 'abc'"),
        ("contrast", 1.5, "out of range for contrast"),
        ("gaussian-noise", -0.1, "out of range for gaussian-noise"),
        ("blur", float("nan"), "out of range for blur"),
        ("rotation+blur", 1.0, "ambiguous"),
    ],
)
def test_bad_names_and_severities(name: str, severity: float | None, match: str) -> None:
    with pytest.raises(DwsError, match=match):
        corrupt(_images(), name, seed=0, severity=severity)


def test_bad_inputs() -> None:
    with pytest.raises(DwsError, match="float tensor"):
        corrupt((_images() * 255).to(torch.uint8), "blur", seed=0)
    with pytest.raises(DwsError, match=r"\[N, H, W\]"):
        corrupt(torch.rand(28, 28), "blur", seed=0)

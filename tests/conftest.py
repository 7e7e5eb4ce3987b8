"""Test-wide settings.

The tests run many tiny tensor operations; one torch thread is as fast for them, and it keeps
OpenMP from spinning on a core that another process (a background zoo job) is using.
"""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def da_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 tiny Fashion-MNIST classifiers (16-8-8-10 on 4x4-pooled images), also scored on the
    contrast domain: enough for accuracy-prediction and adaptation configs to build and run."""
    from dwscli.data.classifier_train import ClassifierZooConfig, HparamRanges
    from dwscli.data.zoo_make import make_classifier_zoo

    out = tmp_path_factory.mktemp("zoos") / "clf-da"
    config = ClassifierZooConfig(
        spec="16-8-8-10:relu",
        pool=7,
        chunk=24,
        eval_corruption="contrast",
        ranges=HparamRanges(steps=(20, 40), subset=(500, 1000)),
    )
    make_classifier_zoo(out, "fashion-mnist", count=24, config=config, shard_size=24)
    return out


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def mnist_test_head():
    """The first 16 official MNIST test images and labels (a 3 KB file committed under
    tests/fixtures, checked against the installed data set in tests/data/test_small_fixtures.py):
    for tests that need a few real digits, not the data set."""
    import numpy as np

    from dwscli.data.datasets import DATASETS, ImageSet

    with np.load(FIXTURES / "mnist-test-head.npz") as npz:
        images, labels = npz["images"], npz["labels"]
    return ImageSet(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels.astype(np.int64)),
        name="mnist",
        split="test",
        classes=list(DATASETS["mnist"].classes),
    )


@pytest.fixture(scope="session")
def small_inr_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 small MNIST SIRENs (2-8-8-1, briefly fitted; enough to carry their digit), shared by
    the trainer's and the comparison's tests."""
    from dwscli.data.zoo_make import InrZooConfig, make_inr_zoo

    out = tmp_path_factory.mktemp("zoos") / "inr-small"
    config = InrZooConfig(
        spec="2-8-8-1:sine;w0=30", steps=20, psnr_target=25.0, chunk=40, compiled=False
    )
    make_inr_zoo(out, "mnist", count=40, config=config, shard_size=16)
    return out


@pytest.fixture(scope="session")
def diverse_inr_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 small MNIST SIRENs, each fitted with its own drawn recipe (few steps); the nets
    fitted with SGD are the held-out-recipe split. Shared by the held-out-recipe and the
    ``dws evaluate`` tests."""
    import yaml

    from dwscli.data.zoo_make import inr_recipe, make_inr_zoo
    from dwscli.data.zoo_splits import parse_hold_out

    root = tmp_path_factory.mktemp("diverse")
    recipe = root / "fast.yaml"
    recipe.write_text(yaml.safe_dump({"steps": [10, 40], "batch": ["full", 196]}))
    config = inr_recipe(str(recipe), spec="2-8-8-1:sine;w0=30", compiled=False, chunk=40)
    hold_out = parse_hold_out("optimizer=sgd")
    make_inr_zoo(root / "zoo", "mnist", count=40, config=config, shard_size=20, hold_out=hold_out)
    return root / "zoo"

"""The small data fixtures committed under tests/fixtures are the real data they stand for."""

from __future__ import annotations

import pytest
import torch

from dwscli.data.datasets import dataset_location, load_dataset


@pytest.mark.skipif(
    dataset_location("mnist") is None, reason="MNIST not installed: dws data install mnist"
)
def test_mnist_test_head_is_the_first_official_test_images(mnist_test_head) -> None:
    real = load_dataset("mnist", "test")
    count = len(mnist_test_head)
    assert count == 16 and mnist_test_head.images.dtype == torch.uint8
    assert torch.equal(mnist_test_head.images, real.images[:count])
    assert torch.equal(mnist_test_head.labels, real.labels[:count])
    assert mnist_test_head.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]

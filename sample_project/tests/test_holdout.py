"""Validation split checks on an imbalanced dataset (one rare class)."""

import pytest
from torch.utils.data import Subset

from tinyclf.data import SequenceBlobs, split_dataset


@pytest.fixture(scope="module")
def holdout():
    data = SequenceBlobs(n_per_class=28, num_classes=3, seed=0)
    keep = list(range(0, 28)) + list(range(28, 55)) + list(range(56, 61))  # 28 / 27 / 5 per class
    _, val = split_dataset(Subset(data, keep), val_fraction=0.2)
    return val


def test_holdout_size(holdout):
    assert len(holdout) == 12


def test_holdout_contains_every_class(holdout):
    labels = {int(y) for _, y in holdout}
    assert labels == {0, 1, 2}

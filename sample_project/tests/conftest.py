import pytest
import torch

from tinyclf.data import SequenceBlobs
from tinyclf.model import build_model


@pytest.fixture
def dataset():
    return SequenceBlobs(n_per_class=20, num_classes=3, dim=8, length=6, seed=0)


@pytest.fixture
def model():
    return build_model(in_dim=8, hidden=32, num_classes=3, seed=0)


@pytest.fixture
def batch(dataset):
    idx = torch.arange(0, len(dataset), 6)
    return dataset.x[idx], dataset.labels[idx]

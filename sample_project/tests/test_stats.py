"""Dataset statistics are logged with every dataset version; these guard against drift."""

import torch

from tinyclf.data import feature_stats
from tinyclf.seeding import make_generator

# recorded on the CI runner when the dataset version was cut
GOLDEN_MEAN = float.fromhex("0x1.b98c580000000p-10")
GOLDEN_STD = 1.00243


def _features():
    return torch.randn(256, 512, generator=make_generator(1234), dtype=torch.float32)


def test_feature_mean_matches_golden():
    assert feature_stats(_features())["mean"] == GOLDEN_MEAN


def test_feature_std_close_to_golden():
    stats = feature_stats(_features())
    assert abs(stats["std"] - GOLDEN_STD) < 1e-3
    assert abs(stats["mean"] - GOLDEN_MEAN) < 1e-6

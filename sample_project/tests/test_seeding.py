import random

import numpy as np
import torch

from tinyclf.seeding import seed_everything


def test_seed_everything_fixes_every_family():
    seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(123)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first

"""Seeding helpers: one call to make a run reproducible."""

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_generator(seed: int) -> torch.Generator:
    """A private torch generator, so a component's randomness doesn't depend on anyone else's."""
    return torch.Generator().manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """Give each DataLoader worker its own numpy/python seed derived from torch's."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed + worker_id)
    random.seed(seed + worker_id)

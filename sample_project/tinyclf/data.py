"""Synthetic sequence data: Gaussian blobs per class, laid out as short sequences of frames."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, random_split


def class_centres(num_classes: int, dim: int, scale: float = 3.0) -> np.ndarray:
    """Fixed, well separated class centres: scaled one-hot vectors (cycled when dim < classes)."""
    centres = np.zeros((num_classes, dim), dtype=np.float32)
    for c in range(num_classes):
        centres[c, c % dim] = scale * (1 + c // dim)
    return centres


def make_blobs(n_per_class: int, num_classes: int = 3, dim: int = 8, spread: float = 1.0, seed=None):
    """Points around fixed class centres: (features [N, dim] float32, labels [N] int64)."""
    rng = np.random.RandomState(seed) if seed is not None else np.random
    centres = class_centres(num_classes, dim)
    labels = np.repeat(np.arange(num_classes), n_per_class)
    feats = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return feats.astype(np.float32), labels.astype(np.int64)


class SequenceBlobs(Dataset):
    """Each sample is a sequence of `length` frames drawn around its class centre."""

    def __init__(self, n_per_class: int = 20, num_classes: int = 3, dim: int = 8, length: int = 6,
                 spread: float = 1.0, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        centres = torch.from_numpy(class_centres(num_classes, dim))
        self.labels = torch.arange(num_classes).repeat_interleave(n_per_class)
        noise = torch.randn(len(self.labels), length, dim, generator=gen)
        self.x = centres[self.labels].unsqueeze(1) + spread * noise
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx):
        return self.x[idx], self.labels[idx]


def make_loader(dataset: Dataset, batch_size: int = 16, shuffle: bool = True, drop_last: bool = False,
                generator: torch.Generator | None = None) -> DataLoader:
    """The project's standard DataLoader (single process: the data is tiny)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      generator=generator)


def split_dataset(dataset: Dataset, val_fraction: float = 0.2):
    """Random train/validation split."""
    n_val = int(round(len(dataset) * val_fraction))
    return random_split(dataset, [len(dataset) - n_val, n_val])


def build_label_map(names) -> dict[str, int]:
    """Map class names to contiguous indices."""
    return {name: i for i, name in enumerate(set(names))}


def standardize(x: torch.Tensor, eps: float = 1e-6):
    """Zero-mean, unit-variance features along the batch axis; returns (x_std, mean, std)."""
    mean = x.mean(dim=0, keepdim=True)
    std = x.std(dim=0, keepdim=True)
    return (x - mean) / (std + eps), mean, std


def feature_stats(x: torch.Tensor) -> dict[str, float]:
    """Global mean and standard deviation, as logged next to every dataset version."""
    return {"mean": x.mean().item(), "std": x.std().item()}

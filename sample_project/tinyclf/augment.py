"""Training-time augmentations for frame sequences."""

import random

import torch


def add_gaussian_noise(x: torch.Tensor, std: float = 0.1) -> torch.Tensor:
    """Jitter every value with N(0, std^2) noise."""
    return x + std * torch.randn_like(x)


def frame_dropout(frames: list, p: float = 0.1) -> list:
    """Drop each frame with probability p (never all of them)."""
    kept = [f for f in frames if random.random() >= p]
    return kept or frames[:1]


def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float = 0.4):
    """Mix a batch with a shifted copy of itself; returns (x_mixed, y_soft, lam)."""
    lam = torch.distributions.Beta(alpha, alpha).sample().item()
    y_onehot = torch.nn.functional.one_hot(y, num_classes).float()
    x_mixed = lam * x + (1 - lam) * x.roll(1, dims=0)
    y_soft = lam * y_onehot + (1 - lam) * y_onehot.roll(1, dims=0)
    return x_mixed, y_soft, lam

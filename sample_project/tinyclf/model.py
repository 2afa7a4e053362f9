"""TinyClassifier: input projection -> self-attention block -> MLP block -> masked mean pool -> head."""

from __future__ import annotations

import math

import torch
from torch import nn

from tinyclf.functional import masked_mean_pool


class SelfAttention(nn.Module):
    """Single-head scaled dot-product self-attention with an optional key padding mask."""

    def __init__(self, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.scale = 1.0 / math.sqrt(hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(1), -1e9)
        weights = self.dropout(torch.softmax(scores, dim=-1))
        return self.out(torch.matmul(weights, v))


class MLPBlock(nn.Module):
    def __init__(self, hidden: int, expansion: int = 2, dropout: float = 0.1):
        super().__init__()
        self.fc1 = nn.Linear(hidden, expansion * hidden)
        self.fc2 = nn.Linear(expansion * hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(torch.nn.functional.gelu(self.fc1(x))))


class TinyClassifier(nn.Module):
    def __init__(self, in_dim: int = 8, hidden: int = 32, num_classes: int = 3, dropout: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(in_dim, hidden)
        self.attn = SelfAttention(hidden, dropout)
        self.norm1 = nn.LayerNorm(hidden)
        self.mlp = MLPBlock(hidden, dropout=dropout)
        self.norm2 = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled sequence features [B, hidden]."""
        h = self.proj(x)
        h = self.norm1(h + self.attn(h, mask))
        h = self.norm2(h + self.mlp(h))
        if mask is None:
            return h.mean(dim=1)
        return masked_mean_pool(h, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, mask))


def build_model(in_dim: int = 8, hidden: int = 32, num_classes: int = 3, dropout: float = 0.1,
                seed: int | None = None) -> TinyClassifier:
    """A TinyClassifier whose initial weights depend only on `seed` (when given)."""
    if seed is None:
        return TinyClassifier(in_dim, hidden, num_classes, dropout)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TinyClassifier(in_dim, hidden, num_classes, dropout)

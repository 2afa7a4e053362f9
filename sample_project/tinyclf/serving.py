"""Batch inference over variable-length sequences."""

from __future__ import annotations

import torch

from tinyclf.evaluate import predict


def pad_sequences(seqs: list[torch.Tensor]):
    """Stack sequences [T_i, D] into a batch [B, T_max, D] plus a validity mask [B, T_max]."""
    lengths = [s.shape[0] for s in seqs]
    batch = torch.empty(len(seqs), max(lengths), seqs[0].shape[-1])
    mask = torch.zeros(len(seqs), max(lengths), dtype=torch.bool)
    for i, s in enumerate(seqs):
        batch[i, : lengths[i]] = s
        mask[i, : lengths[i]] = True
    return batch * mask.unsqueeze(-1), mask  # zero the padding


def predict_batch(model, seqs: list[torch.Tensor]) -> torch.Tensor:
    """Logits for each sequence, computed in one padded batch."""
    batch, mask = pad_sequences(seqs)
    return predict(model, batch, mask)

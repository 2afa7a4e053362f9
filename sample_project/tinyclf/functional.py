"""Stateless tensor functions shared by the model, the losses and inference."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid (mask=True) time steps of x [B, T, H] -> [B, H]."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def predict_proba(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Class probabilities from logits [B, C], optionally temperature-scaled."""
    return torch.softmax(logits / temperature, dim=-1)


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log class probabilities from logits [B, C]."""
    return torch.log_softmax(logits, dim=-1)


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0,
                        reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on raw logits (F.cross_entropy applies log-softmax itself)."""
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing, reduction=reduction)


def soft_target_loss(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft (e.g. mixup) targets, averaged over the batch."""
    return -(soft_targets * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float = 2.0) -> torch.Tensor:
    """KL(teacher || student) at a temperature; the teacher is a fixed target."""
    teacher = torch.softmax(teacher_logits.detach() / temperature, dim=-1)
    student = torch.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(student, teacher, reduction="batchmean") * temperature**2


def consistency_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error towards a stop-gradient target (mean-teacher style)."""
    return F.mse_loss(pred, target.detach())


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Fraction of rows whose target is among the k largest logits."""
    topk = logits.topk(k, dim=-1).indices
    return (topk == targets.unsqueeze(-1)).any(dim=-1).float().mean().item()

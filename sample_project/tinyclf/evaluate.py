"""Evaluation and inference."""

from __future__ import annotations

import torch

from tinyclf.functional import classification_loss


@torch.no_grad()
def evaluate(model, loader) -> dict[str, float]:
    """Accuracy and mean loss of `model` over `loader`, in inference mode."""
    model.eval()
    correct, seen, loss_sum = 0, 0, 0.0
    for x, y in loader:
        logits = model(x)
        loss_sum += classification_loss(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=-1) == y).sum().item()
        seen += len(y)
    return {"accuracy": correct / max(seen, 1), "loss": loss_sum / max(seen, 1)}


def predict(model, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Logits for a batch, with dropout off and no autograd graph."""
    model.eval()
    with torch.no_grad():
        return model(x, mask)

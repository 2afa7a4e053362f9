"""Checkpoints: model, optimizer and scheduler state plus training metadata."""

from __future__ import annotations

from pathlib import Path

import torch


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch: int = 0,
                    label_map: dict | None = None) -> Path:
    path = Path(path)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "label_map": dict(label_map or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def load_checkpoint(path, model, optimizer=None, scheduler=None) -> dict:
    """Restore states in place; returns the metadata (epoch, label_map)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    return {"epoch": state["epoch"], "label_map": state["label_map"]}

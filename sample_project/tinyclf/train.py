"""Training loop: AdamW with linear warm-up, one optimizer step per batch."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from tinyclf.config import TrainConfig
from tinyclf.data import make_loader
from tinyclf.functional import classification_loss
from tinyclf.seeding import make_generator


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int):
    """Linear warm-up from lr/warmup_steps to lr, then constant."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup_steps))


def train_step(model, batch, optimizer, loss_fn=classification_loss) -> float:
    """One optimisation step on one batch; returns the batch loss."""
    x, y = batch
    model.train()
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def train_one_epoch(model, loader, optimizer, scheduler=None, loss_fn=classification_loss) -> float:
    """Mean training loss over one pass of `loader`."""
    model.train()
    total, batches = 0.0, 0
    for x, y in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item()
        batches += 1
    return total / max(batches, 1)


def fit(model, dataset: Dataset, cfg: TrainConfig | None = None) -> dict:
    """Train `model` on `dataset` for cfg.epochs; returns {"loss": [per-epoch mean loss]}."""
    cfg = cfg or TrainConfig.from_env()
    loader = make_loader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=make_generator(cfg.seed))
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg.warmup_steps)
    history = {"loss": []}
    for _ in range(cfg.epochs):
        history["loss"].append(train_one_epoch(model, loader, optimizer, scheduler))
    return history

"""Training configuration, with environment overrides for quick experiments."""

import os
from dataclasses import dataclass


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    eps: float = 1e-8
    warmup_steps: int = 5
    dropout: float = 0.1
    hidden: int = 32
    seed: int = 0

    @classmethod
    def from_env(cls) -> "TrainConfig":
        """Defaults, overridden by TINYCLF_EPOCHS / TINYCLF_LR / TINYCLF_BATCH_SIZE when set."""
        cfg = cls()
        if "TINYCLF_EPOCHS" in os.environ:
            cfg.epochs = int(os.environ["TINYCLF_EPOCHS"])
        if "TINYCLF_LR" in os.environ:
            cfg.lr = float(os.environ["TINYCLF_LR"])
        if "TINYCLF_BATCH_SIZE" in os.environ:
            cfg.batch_size = int(os.environ["TINYCLF_BATCH_SIZE"])
        return cfg

"""One seeding helper: every random choice in training derives from ``(seed, epoch)``."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic and not torch.cuda.is_available():
        torch.use_deterministic_algorithms(True, warn_only=True)


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each epoch, so a resumed run draws what an uninterrupted one would."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])

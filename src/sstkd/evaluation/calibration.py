"""How much a network's per-pixel probabilities can be trusted as targets: accuracy, confidence, entropy, ECE.

Expected calibration error (Guo et al., 2017): pixels are binned by their top-class probability into ``bins``
equal-width bins; ECE = Σ_b (n_b / n) · |accuracy_b − confidence_b|. Counts accumulate over batches, as the
confusion matrix does, so the result is over all pixels, not a mean of per-batch values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sstkd.data.sources import IGNORE_INDEX


class CalibrationMeter:
    """``update(logits (B, K, H, W), labels (B, H, W))`` at ``temperature``; ignore-index pixels are skipped."""

    def __init__(self, temperature: float = 1.0, bins: int = 15):
        if temperature <= 0 or bins < 1:
            raise ValueError(f"temperature must be > 0 and bins >= 1, got {temperature}, {bins}")
        self.temperature, self.bins = temperature, bins
        self.count = torch.zeros(bins, dtype=torch.float64)
        self.correct = torch.zeros(bins, dtype=torch.float64)
        self.confidence = torch.zeros(bins, dtype=torch.float64)
        self.entropy = 0.0
        self.classes = None

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        log_p = F.log_softmax(logits.float() / self.temperature, dim=1)
        self.classes = log_p.shape[1]
        valid = labels != IGNORE_INDEX
        log_p = log_p.permute(0, 2, 3, 1)[valid]  # (N, K)
        confidence, prediction = log_p.exp().max(dim=1)
        correct = (prediction == labels[valid]).double()
        index = (confidence * self.bins).long().clamp_max(self.bins - 1).cpu()
        self.count += torch.bincount(index, minlength=self.bins).double()
        self.correct += torch.bincount(index, weights=correct.cpu(), minlength=self.bins)
        self.confidence += torch.bincount(index, weights=confidence.double().cpu(), minlength=self.bins)
        self.entropy += float(-(log_p.exp() * log_p).sum(dim=1).double().sum())

    def compute(self) -> dict:
        total = float(self.count.sum())
        if total == 0:
            raise ValueError("no valid pixel was seen: nothing to calibrate")
        gap = (self.correct - self.confidence).abs()
        return {
            "temperature": self.temperature,
            "pixels": int(total),
            "accuracy": float(self.correct.sum()) / total,
            "mean_confidence": float(self.confidence.sum()) / total,
            "ece": float(gap.sum()) / total,
            "mean_entropy": self.entropy / total,
            "max_entropy": math.log(self.classes),
        }

"""Dataset statistics computed from the cached training split."""

from __future__ import annotations

import numpy as np

from sstkd.data.sources import IGNORE_INDEX


def dataset_statistics(images: np.ndarray, masks: np.ndarray, class_names: list[str]) -> dict:
    """Per-class pixel frequencies, class weights and per-channel image mean/std.

    ``images`` ``(N, H, W, 3)`` uint8, ``masks`` ``(N, H, W)`` uint8 training ids. Class weights follow ENet's
    ``1 / ln(1.02 + frequency)``, which stays bounded for rare classes; mean/std are on the 0..1 scale.
    """
    num_classes = len(class_names)
    counts = np.bincount(masks[masks != IGNORE_INDEX].ravel(), minlength=num_classes)[:num_classes]
    labelled = max(int(counts.sum()), 1)
    frequency = counts / labelled
    weights = 1.0 / np.log(1.02 + frequency)
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    return {
        "num_images": int(images.shape[0]),
        "num_pixels": int(masks.size),
        "ignored_pixels": int((masks == IGNORE_INDEX).sum()),
        "class_names": list(class_names),
        "class_pixel_counts": counts.astype(int).tolist(),
        "class_frequency": frequency.round(6).tolist(),
        "class_weights": (weights / weights.mean()).round(6).tolist(),
        "missing_classes": [name for name, count in zip(class_names, counts) if count == 0],
        "mean": pixels.mean(axis=0).round(6).tolist(),
        "std": pixels.std(axis=0).round(6).tolist(),
    }

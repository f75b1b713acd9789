"""Dataset statistics computed from the cached training split."""

from __future__ import annotations

import numpy as np

from sstkd.data.ragged import all_pixels
from sstkd.data.sources import IGNORE_INDEX

_CHUNK_PIXELS = 1 << 22  # float64 copies of one chunk at a time, not of the whole split (VOC aug: ~2e9 pixels)


def dataset_statistics(images: np.ndarray, masks: np.ndarray, class_names: list[str]) -> dict:
    """Per-class pixel frequencies, class weights and per-channel image mean/std.

    ``images`` ``(N, H, W, 3)`` uint8, ``masks`` ``(N, H, W)`` uint8 training ids, or ragged arrays of both.
    Class weights follow ENet's ``1 / ln(1.02 + frequency)``, which stays bounded for rare classes; mean/std are on
    the 0..1 scale (two passes in float64, chunk by chunk).
    """
    num_classes = len(class_names)
    labels, pixels = all_pixels(masks).reshape(-1), all_pixels(images).reshape(-1, 3)
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, len(labels), _CHUNK_PIXELS):
        counts += np.bincount(labels[start:start + _CHUNK_PIXELS], minlength=256)
    ignored = int(counts[IGNORE_INDEX])
    counts = counts[:num_classes]
    labelled = max(int(counts.sum()), 1)
    frequency = counts / labelled
    weights = 1.0 / np.log(1.02 + frequency)
    chunks = range(0, len(pixels), _CHUNK_PIXELS)
    mean = sum(pixels[s:s + _CHUNK_PIXELS].sum(axis=0, dtype=np.float64) for s in chunks) / 255.0 / len(pixels)
    variance = sum((((pixels[s:s + _CHUNK_PIXELS] / 255.0) - mean) ** 2).sum(axis=0) for s in chunks) / len(pixels)
    return {
        "num_images": len(images),
        "num_pixels": len(labels),
        "ignored_pixels": ignored,
        "class_names": list(class_names),
        "class_pixel_counts": counts.astype(int).tolist(),
        "class_frequency": frequency.round(6).tolist(),
        "class_weights": (weights / weights.mean()).round(6).tolist(),
        "missing_classes": [name for name, count in zip(class_names, counts) if count == 0],
        "mean": mean.round(6).tolist(),
        "std": np.sqrt(variance).round(6).tolist(),
    }

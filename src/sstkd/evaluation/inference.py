"""Whole-image and sliding-window inference, with optional flip and multi-scale averaging."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _sliding_logits(model: nn.Module, images: torch.Tensor, window: tuple[int, int], overlap: float) -> torch.Tensor:
    batch, _, height, width = images.shape
    win_h, win_w = min(window[0], height), min(window[1], width)
    stride_h = max(1, math.ceil(win_h * (1 - overlap)))
    stride_w = max(1, math.ceil(win_w * (1 - overlap)))
    tops = list(range(0, max(height - win_h, 0) + 1, stride_h))
    lefts = list(range(0, max(width - win_w, 0) + 1, stride_w))
    if tops[-1] + win_h < height:
        tops.append(height - win_h)
    if lefts[-1] + win_w < width:
        lefts.append(width - win_w)
    logits = None
    counts = images.new_zeros(1, 1, height, width)
    for top in tops:
        for left in lefts:
            crop = images[..., top : top + win_h, left : left + win_w]
            out = model(crop).logits.float()
            if logits is None:
                logits = images.new_zeros(batch, out.shape[1], height, width, dtype=torch.float32)
            logits[..., top : top + win_h, left : left + win_w] += out
            counts[..., top : top + win_h, left : left + win_w] += 1
    return logits / counts


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    window: tuple[int, int] | None = None,
    overlap: float = 1 / 3,
    flip: bool = False,
    scales: tuple[float, ...] = (1.0,),
) -> torch.Tensor:
    """Class scores ``(B, K, H, W)`` for ``images`` ``(B, 3, H, W)`` (softmax averaged over flips and scales).

    Images larger than ``window`` are covered by overlapping windows whose logits are averaged.
    """
    height, width = images.shape[-2:]
    total = None
    for scale in scales:
        scaled = images if scale == 1.0 else F.interpolate(
            images, scale_factor=scale, mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            x = scaled.flip(-1) if flipped else scaled
            if window is not None and (x.shape[-2] > window[0] or x.shape[-1] > window[1]):
                logits = _sliding_logits(model, x, window, overlap)
            else:
                logits = model(x).logits.float()
            if flipped:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            probabilities = logits.softmax(dim=1)
            total = probabilities if total is None else total + probabilities
    return total

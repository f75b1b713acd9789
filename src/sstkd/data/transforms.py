"""Joint image/mask transforms for training and evaluation.

Randomness comes from an explicit ``numpy.random.Generator`` passed in by the dataset, so a sample's
augmentation depends only on ``(seed, epoch, index)``: the same under any number of loader workers, any rank
layout, and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sstkd.data.sources import IGNORE_INDEX


@dataclass(frozen=True)
class TransformConfig:
    crop_size: tuple[int, int] = (96, 96)
    scale_range: tuple[float, float] = (0.75, 1.5)
    # None: a scale drawn uniformly from scale_range; a step: one of lo, lo + step, ..., hi, equally likely
    # (CIRKD's loaders: 0.5 + randint(0, 15) / 10, range 0.5-2.0; SKD's: randint(0, 16), range 0.5-2.1)
    scale_step: float | None = None
    hflip: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize(image: torch.Tensor, mean, std) -> torch.Tensor:
    """``(..., 3, H, W)`` uint8 or float in 0..255 → float32 standardised."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=image.device).view(3, 1, 1) * 255
    std_t = torch.as_tensor(std, dtype=torch.float32, device=image.device).view(3, 1, 1) * 255
    return (image.float() - mean_t) / std_t


def normalized_batch(images: np.ndarray, normalization: dict, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 array (or memmap slice) → ``(N, 3, H, W)`` float32 standardised, on ``device``."""
    batch = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).to(device)
    return normalize(batch, normalization["mean"], normalization["std"])


def random_scale(config: TransformConfig, rng: np.random.Generator) -> float:
    low, high = config.scale_range
    if config.scale_step is None:
        return float(rng.uniform(low, high))
    return low + config.scale_step * int(rng.integers(0, round((high - low) / config.scale_step) + 1))


def train_transform(
    image: np.ndarray, mask: np.ndarray, config: TransformConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scale of the image as it is (its own size, or the cache's), pad-and-crop, horizontal flip, normalise.

    ``image`` ``(H, W, 3)`` uint8, ``mask`` ``(H, W)`` uint8 → ``(3, h, w)`` float32, ``(h, w)`` int64 with
    ``(h, w) = crop_size``. The mask is resized with ``nearest-exact`` (plain ``nearest`` samples half a pixel
    off from ``bilinear(align_corners=False)``, shifting labels against the image); padding is ignore (255) in the mask and
    zero (the mean colour) in the normalised image.
    """
    image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    mask_t = torch.from_numpy(np.ascontiguousarray(mask))
    height, width = mask_t.shape
    scale = random_scale(config, rng)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    if (new_h, new_w) != (height, width):
        image_t = F.interpolate(image_t[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
        mask_t = F.interpolate(mask_t[None, None].float(), size=(new_h, new_w), mode="nearest-exact")[0, 0].to(torch.uint8)
    crop_h, crop_w = config.crop_size
    # The crop window in the padded image (padding is bottom and right), then only its pixels normalised and padded:
    # the same values as normalising, padding and cropping the whole scaled image, at a crop's cost.
    top = int(rng.integers(0, max(new_h, crop_h) - crop_h + 1))
    left = int(rng.integers(0, max(new_w, crop_w) - crop_w + 1))
    image_t = normalize(image_t[:, top : top + crop_h, left : left + crop_w], config.mean, config.std)
    mask_t = mask_t[top : top + crop_h, left : left + crop_w]
    pad_h, pad_w = crop_h - mask_t.shape[0], crop_w - mask_t.shape[1]
    if pad_h or pad_w:
        image_t = F.pad(image_t, (0, pad_w, 0, pad_h), value=0.0)
        mask_t = F.pad(mask_t, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
    if config.hflip and rng.random() < 0.5:
        image_t, mask_t = image_t.flip(-1), mask_t.flip(-1)
    return image_t.contiguous(), mask_t.long().contiguous()


def eval_transform(image: np.ndarray, mask: np.ndarray, config: TransformConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise only: evaluation sees the whole image (sliding windows handle sizes above the crop)."""
    image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return normalize(image_t, config.mean, config.std), torch.from_numpy(np.ascontiguousarray(mask)).long()

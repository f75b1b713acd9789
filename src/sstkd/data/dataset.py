"""The ``torch.utils.data.Dataset`` every stage reads: cached uint8 arrays plus transforms."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from sstkd.data.ragged import item_sizes
from sstkd.data.transforms import TransformConfig, eval_transform, train_transform


class SegmentationArrays(Dataset):
    """Samples from ``images`` ``(N, H, W, 3)`` uint8 and ``masks`` ``(N, H, W)`` uint8 (arrays or memmaps), or
    from ragged arrays of images at their own sizes (:mod:`sstkd.data.ragged`).

    With ``train=True`` each item is randomly augmented from a generator seeded by ``(seed, epoch, index)``;
    call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, config: TransformConfig, train: bool, seed: int = 0):
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        if len(images) == 0:
            raise ValueError("the split is empty: no samples to load")
        self.sizes, mask_sizes = item_sizes(images), item_sizes(masks)
        differ = np.flatnonzero((self.sizes != mask_sizes).any(axis=1))
        if len(differ):
            first = int(differ[0])
            raise ValueError(f"{len(differ)} image(s) differ in size from their masks, e.g. item {first}: image "
                             f"{tuple(self.sizes[first])}, mask {tuple(mask_sizes[first])}")
        self.images, self.masks, self.config, self.train, self.seed = images, masks, config, train, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = np.array(self.images[index]), np.array(self.masks[index])  # copy out of the read-only memmap
        if not self.train:
            return eval_transform(image, mask, self.config)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return train_transform(image, mask, self.config, rng)

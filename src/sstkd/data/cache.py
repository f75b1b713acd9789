"""A fast input path: every sample decoded once, resized to a fixed size and kept as uint8 arrays.

Training then reads memory-mapped ``.npy`` files instead of decoding PNG/JPEG each epoch (see
``benchmarks/data_cache.py`` for the measured speed-up). Masks are stored as training ids (the layout's look-up
table already applied) and resized with nearest neighbour, images bilinearly.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from sstkd.data.manifest import read_image, read_mask


def _load_sample(root: Path, row, lut: np.ndarray, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    image = read_image(root / row.image_path)
    mask = lut[read_mask(root / row.mask_path)]
    if size is not None and image.shape[:2] != size:
        height, width = size
        image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
    return image, mask


def _require_one_size(manifest: pd.DataFrame, examples: int = 2) -> None:
    """Without ``cache_size`` every image is stacked as is, so all must share one size: name the sizes found."""
    groups = manifest.groupby(["height", "width"], sort=False)["image_path"]
    if groups.ngroups <= 1:
        return
    found = "; ".join(
        f"{height}x{width} (HxW): {len(paths)} image(s), e.g. {', '.join(paths.iloc[:examples])}"
        for (height, width), paths in sorted(groups, key=lambda group: -len(group[1]))
    )
    raise ValueError(f"preprocessing.cache_size is null, so every image must have the same size, but the images "
                     f"have {groups.ngroups} sizes: {found}. Set preprocessing.cache_size: [height, width] to resize "
                     "them all to one size.")


def build_cache(
    root: str | Path,
    manifest: pd.DataFrame,
    label_lut: np.ndarray,
    size: tuple[int, int] | None,
    workers: int = 4,
    progress=None,
) -> dict[str, dict[str, np.ndarray]]:
    """Decode every sample of the manifest: ``{split: {"images": (N,H,W,3), "masks": (N,H,W), "ids": (N,)}}``.

    ``size`` is ``(height, width)``; ``None`` keeps the original size, which must then be the same for every image.
    """
    root = Path(root)
    label_lut = np.asarray(label_lut, dtype=np.uint8)
    if size is None:
        _require_one_size(manifest)
    cache: dict[str, dict[str, np.ndarray]] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for split, rows in manifest.groupby("split", sort=False):
            pairs = []
            for pair in pool.map(lambda row: _load_sample(root, row, label_lut, size), rows.itertuples()):
                pairs.append(pair)
                if progress is not None:
                    progress(1)
            cache[str(split)] = {
                "images": np.stack([p[0] for p in pairs]),
                "masks": np.stack([p[1] for p in pairs]),
                "ids": rows["sample_id"].to_numpy(dtype=str),
            }
    return cache

"""A fast input path: every sample decoded once and kept as uint8 arrays, at one size or at each image's own.

Training then reads memory-mapped ``.npy`` files instead of decoding PNG/JPEG each epoch (see
``benchmarks/data_cache.py`` for the measured speed-up). Masks are stored as training ids (the layout's look-up
table already applied); where a cache size is set they are resized with nearest neighbour, images bilinearly.
Images of several sizes without a cache size are kept ragged (:mod:`sstkd.data.ragged`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from sstkd.data.manifest import manifest_fingerprint, read_image, read_mask
from sstkd.data.ragged import RaggedArray
from sstkd.errors import UserError


class ArrayCache(dict):
    """``{split: {"images", "masks", "ids"}}`` plus the fingerprint of the data it was decoded from and the size
    every image was resized to (``None``: each kept at its own size)."""

    def __init__(self, splits=(), source_fingerprint: str | None = None, resized_to: tuple[int, int] | None = None):
        super().__init__(splits)
        self.source_fingerprint = source_fingerprint
        self.resized_to = tuple(resized_to) if resized_to else None


class InconsistentInputsError(UserError, ValueError):
    """Two inputs of a stage describe different data (e.g. a cache left over from an earlier dataset)."""


def check_manifest_matches_info(manifest: pd.DataFrame, dataset_info: dict) -> None:
    """Refuse a manifest that is not the one ``dataset_info`` was written with (naming what differs)."""
    problems = []
    found = manifest_fingerprint(manifest)
    if found != dataset_info.get("fingerprint"):
        problems.append(f"the manifest's content fingerprint is {found[:12]}, dataset_info.json says "
                        f"{str(dataset_info.get('fingerprint'))[:12]}")
    samples = {str(k): int(v) for k, v in manifest.groupby("split").size().items()}
    if samples != {str(k): int(v) for k, v in dataset_info.get("samples", {}).items()}:
        problems.append(f"the manifest has {samples} samples per split, dataset_info.json says {dataset_info.get('samples')}")
    if problems:
        raise InconsistentInputsError(
            "manifest.csv and dataset_info.json disagree (" + "; ".join(problems) + "): they were not written by "
            "the same ingestion run. Run `kedro run --pipelines ingestion` again.")


def check_cache_matches_info(cache: dict, dataset_info: dict, required_splits=("train", "val")) -> None:
    """Refuse a training cache that was not built from the data ``dataset_info`` describes.

    Compares the data fingerprint the cache recorded when it was built and the number of samples per split
    with ``dataset_info`` (written by ingestion), and checks that ``required_splits`` are present.
    """
    expected = dataset_info.get("fingerprint")
    recorded = getattr(cache, "source_fingerprint", None)
    problems = []
    if recorded is None:
        problems.append("the cache records no data fingerprint (it predates this check)")
    elif recorded != expected:
        problems.append(f"the cache was built from data {recorded[:12]}, dataset_info.json describes {str(expected)[:12]}")
    counts = {split: len(arrays["images"]) for split, arrays in cache.items()}
    declared = {str(k): int(v) for k, v in dataset_info.get("samples", {}).items()}
    if declared and counts != declared:
        problems.append(f"the cache holds {counts} samples per split, dataset_info.json says {declared}")
    missing = [split for split in required_splits if split not in cache]
    if missing:
        problems.append(f"the cache has no {missing} split(s) (it has {sorted(cache)})")
    if problems:
        raise InconsistentInputsError(
            "the training cache does not match the ingested data (" + "; ".join(problems) + "). "
            "Run `kedro run --pipelines preprocessing` to rebuild it from the current manifest.")


def _load_sample(root: Path, row, lut: np.ndarray, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    image = read_image(root / row.image_path)
    mask = lut[read_mask(root / row.mask_path)]
    if size is not None and image.shape[:2] != size:
        height, width = size
        image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        mask = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
    return image, mask


def build_cache(
    root: str | Path,
    manifest: pd.DataFrame,
    label_lut: np.ndarray,
    size: tuple[int, int] | None,
    workers: int = 4,
    progress=None,
    source_fingerprint: str | None = None,
) -> ArrayCache:
    """Decode every sample of the manifest: ``{split: {"images", "masks", "ids"}}``.

    ``size`` is ``(height, width)``: every image resized to it, stacked ``(N, H, W, 3)`` / ``(N, H, W)``. ``None``
    keeps each image at its own size: stacked as well where a split's images share one size, otherwise a
    :class:`~sstkd.data.ragged.RaggedArray` (VOC, ADE20K), allocated once from the manifest's sizes and filled in
    place. ``source_fingerprint`` (the manifest's) is kept with the arrays so later stages can refuse a stale cache.
    """
    root = Path(root)
    label_lut = np.asarray(label_lut, dtype=np.uint8)
    cache = ArrayCache(source_fingerprint=source_fingerprint, resized_to=size)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for split, rows in manifest.groupby("split", sort=False):
            if size is not None:
                sizes = np.tile(np.asarray(size, dtype=np.int64), (len(rows), 1))
            else:
                sizes = rows[["height", "width"]].to_numpy(dtype=np.int64)
            if (sizes == sizes[0]).all():
                images = np.empty((len(rows), *sizes[0], 3), dtype=np.uint8)
                masks = np.empty((len(rows), *sizes[0]), dtype=np.uint8)
            else:
                images = RaggedArray.empty(np.column_stack([sizes, np.full(len(rows), 3)]), np.uint8)
                masks = RaggedArray.empty(sizes, np.uint8)
            loaded = pool.map(lambda row: _load_sample(root, row, label_lut, size), rows.itertuples())
            for index, (image, mask) in enumerate(loaded):
                if image.shape[:2] != tuple(sizes[index]):  # the manifest was written from other files
                    raise InconsistentInputsError(
                        f"{root / rows.iloc[index].image_path}: the image is {image.shape[0]}x{image.shape[1]}, the "
                        f"manifest says {sizes[index][0]}x{sizes[index][1]}. Run `kedro run --pipelines ingestion` again.")
                images[index][...], masks[index][...] = image, mask
                if progress is not None:
                    progress(1)
            cache[str(split)] = {"images": images, "masks": masks, "ids": rows["sample_id"].to_numpy(dtype=str)}
    return cache

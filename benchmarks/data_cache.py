"""Samples/s of the training input path: from the uint8 array cache vs decoding PNGs, side by side.

    python benchmarks/data_cache.py        # after `kedro run --pipelines data` (uses data/ of the default)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sstkd.data.dataset import SegmentationArrays
from sstkd.data.manifest import read_image, read_mask
from sstkd.data.transforms import TransformConfig, train_transform


def main(root: Path = Path("data"), samples: int = 256) -> None:
    manifest = pd.read_csv(root / "02_intermediate/manifest.csv")
    info = json.loads((root / "02_intermediate/dataset_info.json").read_text())
    raw_root = Path(info["root"])
    lut = np.asarray(info["label_lut"], dtype=np.uint8)
    rows = manifest[manifest.split == "train"].head(samples)
    meta = json.loads((root / "05_model_input/cache/meta.json").read_text())
    assert "train" in meta["arrays"], "run `kedro run --pipelines data` first"
    images = np.load(root / "05_model_input/cache/train/images.npy", mmap_mode="r")
    masks = np.load(root / "05_model_input/cache/train/masks.npy", mmap_mode="r")
    config = TransformConfig(crop_size=(96, 96))
    cached = SegmentationArrays(images, masks, config, train=True)
    n = min(samples, len(rows), len(cached))

    started = time.perf_counter()
    for index in range(n):
        cached[index]
    cache_rate = n / (time.perf_counter() - started)

    started = time.perf_counter()
    for index, row in enumerate(rows.itertuples()):
        image = read_image(raw_root / row.image_path)
        mask = lut[read_mask(raw_root / row.mask_path)]
        train_transform(image, mask, config, np.random.default_rng([0, 0, index]))
    png_rate = n / (time.perf_counter() - started)

    started = time.perf_counter()
    for index in range(n):
        np.array(images[index]), np.array(masks[index])
    read_only = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for row in rows.itertuples():
        read_image(raw_root / row.image_path), read_mask(raw_root / row.mask_path)
    decode_only = n / (time.perf_counter() - started)

    print(f"{n} training samples of {images.shape[1]}x{images.shape[2]}, one process")
    print(f"read only      : cache {read_only:9.0f} samples/s   PNG {decode_only:7.0f} samples/s   "
          f"ratio {read_only / decode_only:6.1f}x")
    print(f"read+transform : cache {cache_rate:9.0f} samples/s   PNG {png_rate:7.0f} samples/s   "
          f"ratio {cache_rate / png_rate:6.1f}x")


if __name__ == "__main__":
    main()

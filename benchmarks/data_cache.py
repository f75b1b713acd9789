"""Samples/s of the training input path, side by side in one run: decoding the files, the fixed-size cache (every
image resized to one size, as the VOC and ADE20K envs did before issue 22) and the ragged cache (each image at its
own size, one memory-mapped buffer plus a shapes index), read alone and read + the training transform.

    python benchmarks/data_cache.py                                  # generated VOC-layout JPEGs of VOC's sizes
    python benchmarks/data_cache.py --layout voc --dataset-root /data/VOC2012 --samples 512
    python benchmarks/data_cache.py --layout ade20k --dataset-root /data/ade20k

Each rate is the best of three passes over the same samples, so all three paths read from the page cache: the
ratios are the decoding, copying and transform cost, not the disk's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from sstkd.catalog.datasets import ArrayCacheDataset
from sstkd.data.cache import build_cache
from sstkd.data.dataset import SegmentationArrays
from sstkd.data.manifest import build_manifest, read_image, read_mask
from sstkd.data.sources import open_source, voc_palette
from sstkd.data.transforms import TransformConfig, train_transform


def write_voc_sized_images(root: Path, count: int, size_range: tuple[int, int], seed: int = 0) -> None:
    """VOC 2012's layout: JPEGs and palette masks, each side drawn from ``size_range`` (VOC: up to 500)."""
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    names = []
    for index in range(count):
        height, width = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, 2))
        mask = np.zeros((height, width), np.uint8)
        for label in rng.integers(1, 21, 4):
            top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
            mask[top:top + height // 3, left:left + width // 3] = label
        image = np.clip(voc_palette()[mask] + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        name = f"2012_{index:06d}"
        Image.fromarray(image).save(root / "JPEGImages" / f"{name}.jpg", quality=90)
        palette_mask = Image.fromarray(mask, mode="P")
        palette_mask.putpalette(voc_palette().ravel().tolist())
        palette_mask.save(root / "SegmentationClass" / f"{name}.png")
        names.append(name)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(names) + "\n")


def _rate(count: int, work, repeats: int = 3) -> float:
    """Samples/s, the best of ``repeats`` passes (the first one also warms the page cache)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for index in range(count):
            work(index)
        best = min(best, time.perf_counter() - started)
    return count / best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", default="voc", choices=["voc", "ade20k"])
    parser.add_argument("--dataset-root", type=Path, help="a real dataset (default: generated VOC-layout images)")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--size-range", type=int, nargs=2, default=(300, 500), help="generated images' sides")
    parser.add_argument("--fixed-size", type=int, nargs=2, default=(512, 512), help="the fixed-size cache's HxW")
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        root = args.dataset_root
        if root is None:
            root = scratch / "VOC2012"
            write_voc_sized_images(root, args.samples, tuple(args.size_range))
        options = {"use_sbd_aug": False} if args.layout == "voc" else {}
        source = open_source(args.layout, root, **options)
        split = "train"
        manifest = build_manifest(source, [split], workers=args.workers)
        rows = manifest[manifest.split == split].head(args.samples)
        caches = {}
        for name, size in (("fixed", tuple(args.fixed_size)), ("ragged", None)):
            dataset = ArrayCacheDataset(str(scratch / name))
            dataset.save(build_cache(source.root, rows, source.label_lut, size, workers=args.workers))
            caches[name] = dataset.load()[split]
        count = len(rows)
        config = TransformConfig(crop_size=(args.crop, args.crop), scale_range=(0.5, 2.0), scale_step=0.1)
        paths = [(source.root / row.image_path, source.root / row.mask_path) for row in rows.itertuples()]

        def decoded(index):
            image_path, mask_path = paths[index]
            return read_image(image_path), source.label_lut[read_mask(mask_path)]

        def decoded_and_transformed(index):
            train_transform(*decoded(index), config, np.random.default_rng([0, 0, index]))

        rates = {"files (decode)": (_rate(count, decoded), _rate(count, decoded_and_transformed))}
        for name, arrays in caches.items():
            images, masks = arrays["images"], arrays["masks"]
            dataset = SegmentationArrays(images, masks, config, train=True)
            rates[f"{name} cache"] = (_rate(count, lambda i, images=images, masks=masks: (np.array(images[i]),
                                                                                          np.array(masks[i]))),
                                      _rate(count, dataset.__getitem__))
        disk = {name: sum(p.stat().st_size for p in (scratch / name).rglob("*.npy")) for name in caches}

    sizes = rows[["height", "width"]]
    print(f"{count} {args.layout} training samples, {sizes.height.min()}-{sizes.height.max()} x "
          f"{sizes.width.min()}-{sizes.width.max()} px (HxW), one process; fixed cache {args.fixed_size[0]}x"
          f"{args.fixed_size[1]} ({disk['fixed'] / 2**20:.1f} MiB), ragged cache ({disk['ragged'] / 2**20:.1f} MiB); "
          f"transform: scale 0.5-2.0 step 0.1, {args.crop}x{args.crop} crop, flip, normalise")
    files = rates["files (decode)"]
    print(f"{'path':16s} {'read samples/s':>15s} {'vs files':>9s} {'read+transform/s':>17s} {'vs files':>9s}")
    for name, (read, transformed) in rates.items():
        print(f"{name:16s} {read:15.0f} {read / files[0]:8.1f}x {transformed:17.0f} {transformed / files[1]:8.1f}x")


if __name__ == "__main__":
    main()

import numpy as np

from sstkd.catalog.datasets import ArrayCacheDataset
from sstkd.data.cache import build_cache
from sstkd.data.manifest import build_manifest, read_image, read_mask
from sstkd.data.sources import open_source
from sstkd.data.statistics import dataset_statistics


def test_cache_holds_the_decoded_samples(mosaic_root):
    source = open_source("generic", mosaic_root)
    manifest = build_manifest(source, ["train", "val", "test"], workers=2)
    cache = build_cache(source.root, manifest, source.label_lut, None, workers=2)
    assert {k: v["images"].shape for k, v in cache.items()} == {
        "test": (4, 48, 48, 3), "train": (12, 48, 48, 3), "val": (4, 48, 48, 3)}
    first = manifest[manifest.split == "train"].iloc[0]
    np.testing.assert_array_equal(cache["train"]["images"][0], read_image(mosaic_root / first.image_path))
    np.testing.assert_array_equal(cache["train"]["masks"][0], read_mask(mosaic_root / first.mask_path))
    resized = build_cache(source.root, manifest, source.label_lut, (24, 32), workers=1)
    assert resized["val"]["images"].shape == (4, 24, 32, 3)
    assert set(np.unique(resized["val"]["masks"])) <= set(np.unique(cache["val"]["masks"]))


def test_array_cache_dataset_round_trip_is_atomic(tmp_path):
    dataset = ArrayCacheDataset(str(tmp_path / "cache"))
    data = {"train": {"images": np.arange(24, dtype=np.uint8).reshape(1, 2, 4, 3),
                      "masks": np.ones((1, 2, 4), np.uint8)}}
    dataset.save(data)
    loaded = dataset.load()
    assert isinstance(loaded["train"]["images"], np.memmap)
    np.testing.assert_array_equal(loaded["train"]["images"], data["train"]["images"])
    dataset.save({"val": data["train"]})
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["meta.json", "val"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_statistics_count_every_labelled_pixel():
    masks = np.array([[[0, 1], [1, 255]]], np.uint8)
    images = np.full((1, 2, 2, 3), 255, np.uint8)
    stats = dataset_statistics(images, masks, ["a", "b", "c"])
    assert stats["class_pixel_counts"] == [1, 2, 0]
    assert stats["missing_classes"] == ["c"] and stats["ignored_pixels"] == 1
    assert abs(sum(stats["class_frequency"]) - 1) < 1e-6 and stats["mean"] == [1.0, 1.0, 1.0]

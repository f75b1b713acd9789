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


def _ingested(mosaic_root):
    from sstkd.data.manifest import manifest_fingerprint

    source = open_source("generic", mosaic_root)
    manifest = build_manifest(source, ["train", "val", "test"], workers=2)
    info = source.info() | {"fingerprint": manifest_fingerprint(manifest),
                            "samples": manifest.groupby("split").size().to_dict()}
    return source, manifest, info


def test_a_truncated_manifest_is_refused_naming_what_disagrees(mosaic_root):
    import pytest

    from sstkd.data.cache import InconsistentInputsError, check_manifest_matches_info

    _, manifest, info = _ingested(mosaic_root)
    check_manifest_matches_info(manifest, info)
    test_only = manifest[manifest.split == "test"]  # what a truncated write once left behind
    with pytest.raises(InconsistentInputsError, match=r"manifest has \{'test': 4\} samples per split, "
                                                      r"dataset_info.json says \{'test': 4, 'train': 12, 'val': 4\}"):
        check_manifest_matches_info(test_only, info)


def test_a_stale_cache_is_refused_and_a_fresh_one_accepted(mosaic_root, tmp_path):
    import pytest

    from sstkd.data.cache import InconsistentInputsError, check_cache_matches_info

    source, manifest, info = _ingested(mosaic_root)
    dataset = ArrayCacheDataset(str(tmp_path / "cache"))
    dataset.save(build_cache(source.root, manifest, source.label_lut, None, workers=1,
                             source_fingerprint=info["fingerprint"]))
    cache = dataset.load()
    check_cache_matches_info(cache, info)
    newer = info | {"fingerprint": "f" * 40}  # ingestion ran again on changed data; preprocessing did not
    with pytest.raises(InconsistentInputsError, match=r"built from data [0-9a-f]{12}, dataset_info.json describes f{12}"):
        check_cache_matches_info(cache, newer)
    unlabelled = ArrayCacheDataset(str(tmp_path / "old"))
    unlabelled.save({"train": cache["train"], "val": cache["val"], "test": cache["test"]})
    with pytest.raises(InconsistentInputsError, match="records no data fingerprint"):
        check_cache_matches_info(unlabelled.load(), info)

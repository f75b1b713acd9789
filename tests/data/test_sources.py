import numpy as np
import pytest

from sstkd.data.cache import build_cache
from sstkd.data.manifest import build_manifest
from sstkd.data.sources import CITYSCAPES_CLASSES, IGNORE_INDEX, open_source, voc_palette

from .layouts import make_ade20k, make_camvid, make_cityscapes, make_generic, make_voc


def _train_ids(source, split="train"):
    manifest = build_manifest(source, [split], workers=1)
    return build_cache(source.root, manifest, source.label_lut, None, workers=1)[split]["masks"][0]


def test_cityscapes_label_ids_map_to_19_train_ids(tmp_path):
    make_cityscapes(tmp_path)
    source = open_source("cityscapes", tmp_path)
    assert source.num_classes == 19 and source.classes == CITYSCAPES_CLASSES
    assert {r.split for r in source.records} == {"train", "val", "test"}
    assert source.records[0].sample_id == "aachen_000000_000019"
    ids = _train_ids(source)
    # 7 road->0, 8 sidewalk->1, 26 car->13, 0 unlabeled->255, 33 bicycle->18, 24 person->11, 1 ego->255, 11 building->2
    expected = np.array([[0, 1, 13, 255], [18, 11, 255, 2]], dtype=np.uint8).repeat(6, 0).repeat(4, 1)
    np.testing.assert_array_equal(ids, expected)


def test_voc_palette_indices_are_class_ids(tmp_path):
    make_voc(tmp_path)
    source = open_source("voc", tmp_path)
    assert source.num_classes == 21
    assert [r.split for r in source.records] == ["train", "train", "val"]
    ids = _train_ids(source)
    assert set(np.unique(ids)) == {0, 1, 15, 20, IGNORE_INDEX}
    assert tuple(voc_palette()[15]) == (192, 128, 128)  # person, as in the official palette


def test_ade20k_shifts_ids_and_ignores_zero(tmp_path):
    make_ade20k(tmp_path)
    source = open_source("ade20k", tmp_path)
    assert source.num_classes == 150
    assert sorted({r.split for r in source.records}) == ["train", "val"]
    np.testing.assert_array_equal(np.unique(_train_ids(source)), [0, 6, 149, IGNORE_INDEX])


def test_camvid_void_is_ignored(tmp_path):
    make_camvid(tmp_path)
    source = open_source("camvid", tmp_path)
    assert source.num_classes == 11
    np.testing.assert_array_equal(np.unique(_train_ids(source)), [0, 3, 10, IGNORE_INDEX])


def test_generic_layout_reads_classes_and_splits(tmp_path):
    make_generic(tmp_path)
    source = open_source("generic", tmp_path)
    assert source.classes == ["a", "b", "c"]
    manifest = build_manifest(source, ["train", "val", "test"], workers=2)
    assert list(manifest.groupby("split").size().sort_index()) == [1, 2, 1]
    assert manifest["image_sha1"].str.len().eq(40).all()


def test_unknown_layout_and_missing_root_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown layout 'kitti'"):
        open_source("kitti", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_source("cityscapes", tmp_path / "nowhere")
